package pktdrill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSocketScripts runs the socket-layer scripts, each with the verdict
// and, for a failure or an unsupported feature, the reason it must give.
func TestSocketScripts(t *testing.T) {
	want := map[string]struct {
		v      Verdict
		reason string
	}{
		"accept-child.pkt":     {Pass, ""},
		"nonblocking.pkt":      {Pass, ""},
		"reset-errors.pkt":     {Pass, ""},
		"close-unread-rst.pkt": {Pass, ""},
		"linger-zero.pkt":      {Pass, ""},
		"blocking-read.pkt":    {Pass, ""},
		"fast-open.pkt":        {Unsupported, "TCP Fast Open"},
		"assert-fails.pkt":     {Fail, "tcpi_snd_cwnd == 99"},
	}
	files, err := filepath.Glob("testdata/socket/*.pkt")
	require.NoError(t, err)
	require.Len(t, files, len(want))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			w, ok := want[filepath.Base(f)]
			require.True(t, ok, "no expected verdict for %s", f)
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			res := RunScript(string(b), Options{Dir: "testdata/socket"})
			require.Equal(t, w.v, res.Verdict, "%v", res.Err)
			require.Contains(t, res.Reason(), w.reason)
		})
	}
}

// TestBlockingCallTiming: a blocking call must return at its end time.
func TestBlockingCallTiming(t *testing.T) {
	script := `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 listen(3, 1) = 0
+0...0.300 accept(3, ..., ...) = 4
+.1 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 <mss 1460>
+.1 < . 1:1(0) ack 1 win 257`
	res := RunScript(script, Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "returned at 200ms")
	require.Equal(t, Pass, RunScript(strings.Replace(script, "0.300", "0.200", 1), Options{}).Verdict)
	// Never completing is a failure too.
	res = RunScript("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3, 1) = 0\n+0...1 accept(3, ..., ...) = 4", Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "still blocked")
}

// TestSysctlsAndProfiles: sysctls map onto Config or are listed as
// ignored; the linux profile changes what the SYN-ACK offers.
func TestSysctlsAndProfiles(t *testing.T) {
	script := "`../common/defaults.sh\nsysctl -q net.ipv4.tcp_window_scaling=0 net.ipv4.tcp_frobnicate=1\n" +
		"../common/set_sysctls.py /proc/sys/net/ipv4/tcp_sack=0 \\\n /proc/sys/net/ipv4/tcp_notsent_lowat=1`\n" +
		"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3, 1) = 0\n" +
		"+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,wscale 7>\n+0 > S. 0:0(0) ack 1 <mss 1460>\n"
	res := RunScript(script, Options{})
	require.Equal(t, Pass, res.Verdict, "%v", res.Err)
	require.Contains(t, res.Ignored, "net.ipv4.tcp_frobnicate")
	require.Contains(t, res.Ignored, "net.ipv4.tcp_notsent_lowat")
	require.Contains(t, res.Ignored, "shell: defaults.sh") // no Dir: not read

	linux, err := ProfileConfig("linux")
	require.NoError(t, err)
	require.True(t, linux.InitialWindow10 && linux.TailLossProbe && linux.EarlyRetransmit)
	require.Equal(t, 200*time.Millisecond, linux.MinRTO)
	syn := "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3, 1) = 0\n" +
		"+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,wscale 7>\n+0 > S. 0:0(0) ack 1 <mss 1460,sackOK,nop,wscale 8>\n"
	require.Equal(t, Pass, RunScript(syn, Options{Profile: "linux"}).Verdict)
	require.Equal(t, Fail, RunScript(syn, Options{Profile: "rfc"}).Verdict)
	_, err = ProfileConfig("plan9")
	require.Error(t, err)
	require.Equal(t, Fail, RunScript(syn, Options{Profile: "plan9"}).Verdict)
}

// TestMalformedScripts: bad input gives a clear failure, never a panic.
func TestMalformedScripts(t *testing.T) {
	for _, s := range []string{
		"`unterminated",
		"0 %{ assert tcpi_state ==",
		"x socket() = 3",
		"0 socket(..., SOCK_STREAM = 3",
		"0 write(3, ..., 10)",
		"0 < S 0:0(10)",
		"0 < S a:b(c)",
		"0 > S 0:0(0) <mss>",
		"0 < S 0:0(0) <TS val>",
		"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0 poll([{fd=3}], 1) = 0",
		"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0 epoll_wait(9, {events=0, ptr=0}, 1, 0) = 0",
		"0 %{ assert 1 / 0 }%",
		"0 %{ assert (1 }%",
		"--tolerance_usecs=abc",
		"0 frobnicate(3) = 0",
	} {
		res := RunScript(s, Options{})
		require.Equal(t, Fail, res.Verdict, "%q: %v", s, res.Err)
		require.NotEmpty(t, res.Reason(), s)
		require.NotContains(t, res.Reason(), "internal error", s)
	}
}

// TestTSOCoalescing: consecutive segments sent at once may stand for one
// larger expected packet, but only if they add up to exactly its length.
func TestTSOCoalescing(t *testing.T) {
	script := `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 32792
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 2000) = 2000
+0 > P. 1:2001(2000) ack 1`
	require.Equal(t, Pass, RunScript(script, Options{}).Verdict)
	res := RunScript(strings.Replace(script, "1:2001(2000)", "1:1501(1500)", 1), Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "got: . 1:1001(1000)")
}

// TestPacketdrillLeniency: packetdrill lets a packet no line expects go
// unnoticed until an expected packet differs; IgnoreUnexpected does too.
func TestPacketdrillLeniency(t *testing.T) {
	script := "0 listen(3, 1) = 0\n+0 < S 0:0(0) win 100\n+1 close(3) = 0"
	require.Equal(t, Fail, RunScript(script, Options{}).Verdict)
	require.Equal(t, Pass, RunScript(script, Options{IgnoreUnexpected: true}).Verdict)
	push := "0 listen(3, 1) = 0\n+0 < S 0:0(0) win 100 <mss 1000>\n+0 > S. 0:0(0) ack 1 <mss 1460>\n" +
		"+0 < . 1:1(0) ack 1 win 1000\n+0 write(4, ..., 10) = 10\n+0 > . 1:11(10) ack 1"
	require.Equal(t, Fail, RunScript(push, Options{}).Verdict)
	require.Equal(t, Pass, RunScript(push, Options{IgnorePush: true}).Verdict)
}

// TestGROAndIoctl: --mss cuts a long injected packet into one batch of
// segments (one ACK for all); SIOCINQ reports the bytes to read; a "~"
// range accepts a packet anywhere in it.
func TestGROAndIoctl(t *testing.T) {
	script := `--mss=1000
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 < . 1:4001(4000) ack 1 win 257
+0 > . 1:1(0) ack 4001
+0 ioctl(4, SIOCINQ, [4000]) = 0
+0 %{ assert tcpi_rcv_mss == 1000, tcpi_rcv_mss }%
+0 read(4, ..., 4000) = 4000
+0 ioctl(4, SIOCINQ, [0]) = 0
+0 write(4, ..., 10) = 10
+0~+.01 > P. 1:11(10) ack 4001`
	res := RunScript(script, Options{})
	require.Equal(t, Pass, res.Verdict, "%v", res.Err)
	res = RunScript(strings.Replace(script, "[0]) = 0", "[7]) = 0", 1), Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "[0]")
	// Without --mss the 4000 bytes are one segment: tcp_info says so.
	res = RunScript(strings.TrimPrefix(script, "--mss=1000\n"), Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "tcpi_rcv_mss = 4000")
}

// FuzzRunScript feeds the runner arbitrary scripts, seeded with its own:
// whatever the text, it ends in a verdict, never in a panic (which the
// runner would report as an internal error).
func FuzzRunScript(f *testing.F) {
	for _, name := range []string{"01-passive-open.pkt", "02-active-open.pkt", "34-half-close.pkt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, script string) {
		if len(script) > 4096 {
			return // long scripts only cost time
		}
		res := RunScript(script, Options{})
		if strings.Contains(res.Reason(), "internal error") {
			t.Fatalf("the runner panicked: %v\n%s", res.Err, script)
		}
	})
}

// TestDisorderState: SACKs or duplicate ACKs with no recovery yet read as
// TCP_CA_Disorder, and tcpi_sacked counts the SACKed segments.
func TestDisorderState(t *testing.T) {
	script := `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 320
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 4000) = 4000
+0 > P. 1:4001(4000) ack 1
+0 %{ assert tcpi_ca_state == TCP_CA_Open, tcpi_ca_state }%
+.1 < . 1:1(0) ack 1 win 320 <sack 1001:3001,nop,nop>
+0 %{
assert tcpi_ca_state == TCP_CA_Disorder, tcpi_ca_state
assert tcpi_sacked == 2, tcpi_sacked
}%`
	res := RunScript(script, Options{Profile: "linux", IgnoreUnexpected: true})
	require.Equal(t, Pass, res.Verdict, res.Reason())
}

// TestScriptNames: "%{ NAME = expression }%" defines a name that later
// assertions read, as the Python that packetdrill runs does.
func TestScriptNames(t *testing.T) {
	script := `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 32792
+0 accept(3, ..., ...) = 4
+0 %{ INFINITE = 0x7fffffff }%
+0 %{ assert tcpi_snd_ssthresh == INFINITE, tcpi_snd_ssthresh }%`
	require.Equal(t, Pass, RunScript(script, Options{}).Verdict)
	res := RunScript(strings.Replace(script, "0x7fffffff", "5", 1), Options{})
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "tcpi_snd_ssthresh = 2147483647")
	for _, line := range []string{"a == 1", "tcpi_x = 1", "2x = 1", "= 1"} {
		_, _, ok := assignment(line)
		require.False(t, ok, line)
	}
}

// sndbufScript: SO_SNDBUF 20000 (40000 in the kernel), MSS 1000, a peer
// window of 60000 (so 30000-byte skbs) and TSO packets of 10 segments.
// write(70000) fills a 30000-byte skb, sends 10 segments (cutting the
// skb), tops the rest up to 30000 bytes and blocks with 40000 bytes and
// two skbs queued. The ACK of 10001 frees one skb, but sending 20 more
// segments cuts two: 30000 bytes in three skbs is not writeable (free
// space below half of what is queued). The ACK of 20001 leaves 20000
// bytes in two skbs: writeable, and the write completes. Counting bytes
// alone, the write would take 10000 bytes at each ACK and return only
// after the third.
const sndbufScript = "`sysctl -q net.ipv4.tcp_min_tso_segs=10`" + `
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+.1 < S 0:0(0) win 60000 <mss 1000>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 60000
+0 accept(3, ..., ...) = 4
+0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [20000], 4) = 0
+0...0.200 write(4, ..., 70000) = 70000
+.1 < . 1:1(0) ack 10001 win 60000
+.1 < . 1:1(0) ack 20001 win 60000
+.1 < . 1:1(0) ack 30001 win 60000
`

// TestLinuxSendBuffer: under -profile linux a blocking write wakes as
// Linux's skb accounting says, not when bytes alone would fit.
func TestLinuxSendBuffer(t *testing.T) {
	res := RunScript(sndbufScript, linuxOpts)
	require.Equal(t, Pass, res.Verdict, "%v", res.Err)

	// Not at the first ACK.
	res = RunScript(strings.Replace(sndbufScript, "0.200", "0.100", 1), linuxOpts)
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "returned at 400ms")

	// POLLOUT follows the same rule: not writeable after the first ACK,
	// writeable after the second.
	poll := strings.Replace(sndbufScript, "+0...0.200 write(4, ..., 70000) = 70000",
		"+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 write(4, ..., 70000) = 40000", 1)
	poll = strings.Replace(poll, "+.1 < . 1:1(0) ack 20001", "+0 poll([{fd=4, events=POLLOUT}], 1, 0) = 0\n+.1 < . 1:1(0) ack 20001", 1)
	poll += "+0 poll([{fd=4, events=POLLOUT}], 1, 0) = 1\n"
	res = RunScript(poll, linuxOpts)
	require.Equal(t, Pass, res.Verdict, "%v", res.Err)
}
