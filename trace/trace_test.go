package trace

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

func TestPcapRoundTrip(t *testing.T) {
	for _, pair := range [][2]string{{"192.0.2.1", "192.0.2.2"}, {"2001:db8::1", "2001:db8::2"}} {
		src, dst := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		seg := tcpfsm.Segment{SrcPort: 1, DstPort: 2, Seq: 100, Flags: tcpfsm.FlagSYN, Window: 100,
			Options: tcpfsm.Options{Present: tcpfsm.OptMSS, MSS: 100}}
		b := seg.AppendTo(nil)
		require.NoError(t, tcpfsm.SetChecksum(b, src, dst))
		var f bytes.Buffer
		epoch := time.Unix(1_700_000_000, 0)
		w, err := NewPcapWriter(&f, epoch)
		require.NoError(t, err)
		require.NoError(t, w.WriteSegment(tcpfsm.Time(1500*time.Millisecond), src, dst, b))
		pkts, err := ReadPcap(&f)
		require.NoError(t, err)
		require.Len(t, pkts, 1)
		require.Equal(t, src, pkts[0].Src)
		require.Equal(t, dst, pkts[0].Dst)
		require.Equal(t, b, pkts[0].TCP)
		require.Equal(t, epoch.Add(1500*time.Millisecond), pkts[0].Time)
		require.True(t, tcpfsm.VerifyChecksum(pkts[0].TCP, src, dst))
		other := netip.MustParseAddr("::1")
		if src.Is6() {
			other = netip.MustParseAddr("192.0.2.9")
		}
		require.ErrorIs(t, w.WriteSegment(0, src, other, b), ErrAddressFamily)
	}
}

func TestReadsLinuxCapture(t *testing.T) {
	f, err := os.Open("../testdata/linux-ipv4.pcap")
	require.NoError(t, err)
	defer f.Close()
	pkts, err := ReadPcap(f)
	require.NoError(t, err)
	require.Len(t, pkts, 19)
	for _, p := range pkts {
		require.True(t, tcpfsm.VerifyChecksum(p.TCP, p.Src, p.Dst))
	}
}

func TestIPv4HeaderChecksum(t *testing.T) {
	var f bytes.Buffer
	w, _ := NewPcapWriter(&f, time.Unix(0, 0))
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	require.NoError(t, w.WriteSegment(0, src, dst, make([]byte, 20)))
	ip := f.Bytes()[24+16 : 24+16+20]
	require.Zero(t, ipv4Checksum(ip), "a header with its checksum sums to zero")
}

func TestDiagram(t *testing.T) {
	d := NewDiagram("client", "server")
	d.State(0, 0, tcpfsm.SynSent)
	d.Segment(0, 0, tcpfsm.Segment{Seq: 100, Flags: tcpfsm.FlagSYN, Window: 100}, false)
	d.State(tcpfsm.Time(10*time.Millisecond), 1, tcpfsm.SynReceived)
	d.Segment(tcpfsm.Time(10*time.Millisecond), 1, tcpfsm.Segment{Seq: 200, Ack: 101, Flags: tcpfsm.FlagSYN | tcpfsm.FlagACK, Window: 100}, true)
	d.Note(tcpfsm.Time(time.Second), 1, "timer fires")
	d.State(tcpfsm.Time(time.Second), 1, tcpfsm.SynReceived) // unchanged: not recorded
	var text, mm bytes.Buffer
	require.NoError(t, d.WriteText(&text))
	require.NoError(t, d.WriteMermaid(&mm))
	require.Contains(t, text.String(), "──▶ Flags [S], seq 100, win 100, length 0")
	require.Contains(t, text.String(), "◀── Flags [S.], seq 200, ack 101, win 100, length 0  ✗ lost")
	require.Contains(t, text.String(), "(server: timer fires)")
	require.Equal(t, 2, strings.Count(text.String(), "SYN-"))
	require.Contains(t, mm.String(), "A->>B: Flags [S], seq 100, win 100, length 0")
	require.Contains(t, mm.String(), "B-xA: Flags [S.]")
	require.Contains(t, mm.String(), "Note over B: SYN-RECEIVED")
}
