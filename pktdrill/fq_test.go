package pktdrill

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// fqScript installs fq, opens a connection with a 50 ms RTT and sends
// 30 segments of 1000 bytes in a window of 10. The first 10 segments
// leave at once (fq does not pace the first 10), in packets of 2
// segments (tcp_min_tso_segs). The ACK at 100 ms makes the rate
// 2*12*1000/50ms = 480000 bytes/s: the first packet after it leaves at
// once, and as it came 45 ms after its departure time, it advances the
// next one by only half of 2000/480000 s, to 102.08 ms. The ACK at
// 104 ms (rate 2*14*1000/50ms) lets two more go, at the departure time
// the previous packet left (106.25 ms) and 3.57 ms after it.
const fqScript = `--tolerance_usecs=500
` + "`tc qdisc replace dev tun0 root fq`" + `
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1000>
+0 > S. 0:0(0) ack 1 <...>
+.05 < . 1:1(0) ack 1 win 65535
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 30000) = 30000
+0 > . 1:2001(2000) ack 1
+0 > . 2001:4001(2000) ack 1
+0 > . 4001:6001(2000) ack 1
+0 > . 6001:8001(2000) ack 1
+0 > . 8001:10001(2000) ack 1
+.05 < . 1:1(0) ack 2001 win 65535
+0 > . 10001:12001(2000) ack 1
+.002 > . 12001:14001(2000) ack 1
+.002 < . 1:1(0) ack 4001 win 65535
+.002 > . 14001:16001(2000) ack 1
+.004 > . 16001:18001(2000) ack 1
`

var linuxOpts = Options{Profile: "linux", IgnorePush: true, IgnoreUnexpected: true}

// TestFQPacing: with fq installed, segments leave at the times Linux's
// pacing gives them; without it they leave at once, too early for the
// script.
func TestFQPacing(t *testing.T) {
	res := RunScript(fqScript, linuxOpts)
	require.Equal(t, Pass, res.Verdict, "%v", res.Err)

	noFQ := strings.Replace(fqScript, "`tc qdisc replace dev tun0 root fq`", "`tc qdisc replace dev tun0 root pfifo`", 1)
	res = RunScript(noFQ, linuxOpts)
	require.Equal(t, Fail, res.Verdict)
	require.Contains(t, res.Reason(), "12001:14001(2000) ack 1 at 102ms")
	require.Contains(t, res.Reason(), "at 100ms")

	// Other profiles do not model Linux's pacing: the command is listed
	// as ignored.
	rfc := linuxOpts
	rfc.Profile = "rfc"
	res = RunScript(fqScript, rfc)
	require.Contains(t, strings.Join(res.Ignored, ","), "tc qdisc fq")
}

// TestSmallQueues: with two packets waiting in fq, TCP keeps the rest
// until one leaves.
func TestSmallQueues(t *testing.T) {
	// Cut the script at the ACK of 100 ms, and let an ACK of four more
	// segments come 1 ms later: cwnd 16, 8 segments may go, but the
	// packet of 102.08 ms and the next one fill the queue.
	script := fqScript[:strings.Index(fqScript, "+.002 > . 12001")] + "+.001 < . 1:1(0) ack 6001 win 65535\n"
	r, err := newRunner(linuxOpts)
	require.NoError(t, err)
	require.NoError(t, r.run(script))
	p := r.latest.pace
	require.NotNil(t, p)
	require.Len(t, p.queue, 2)
	require.Equal(t, tcpfsm.Time(102083333), p.queue[0].at)
	require.Len(t, p.held, 6, "segments TCP Small Queues holds back")
	// When the first leaves, the next packet joins the queue.
	require.NoError(t, r.advance(p.queue[0].at))
	require.Len(t, p.queue, 2)
	require.Len(t, p.held, 4)
}

// TestPacingRate checks tcp_update_pacing_rate's arithmetic and the TSO
// packet size that follows from it.
func TestPacingRate(t *testing.T) {
	h := defaultHost
	st := tcpfsm.Status{SendMSS: 1460, Cwnd: 10 * 1460, Ssthresh: 1 << 30, SRTT: 100 * time.Millisecond}
	// Slow start: 200% of 10*1460 bytes per 100 ms.
	require.Equal(t, uint64(292000), h.pacingRate(&st, 0))
	// More packets out than cwnd: they count instead.
	require.Equal(t, uint64(584000), h.pacingRate(&st, 20))
	// cwnd >= ssthresh/2: 120%.
	st.Ssthresh = 20 * 1460
	require.Equal(t, uint64(175200), h.pacingRate(&st, 0))
	// No RTT sample yet: no pacing.
	st.SRTT = 0
	require.Equal(t, uint64(0), h.pacingRate(&st, 0))
	// Timestamps take 12 bytes of each segment.
	st = tcpfsm.Status{SendMSS: 1460, Cwnd: 10 * 1448, Ssthresh: 1 << 30, SRTT: 100 * time.Millisecond, Timestamps: true}
	require.Equal(t, uint64(289600), h.pacingRate(&st, 0))

	require.Equal(t, uint32(2), h.tsoSegs(292000, 1460))
	require.Equal(t, uint32(10), h.tsoSegs(15_000_000, 1448)) // 14648 bytes a millisecond
	require.Equal(t, uint32(45), h.tsoSegs(1<<30, 1448))      // at most 64 KiB
	h.minTSOSegs = 10
	require.Equal(t, uint32(10), h.tsoSegs(292000, 1460))
}
