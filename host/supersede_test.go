package host

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// queuedSeg is the packet flushLocked queues for seg, from addrA to addrB.
func queuedSeg(seg tcpfsm.Segment) packet {
	return packet{b: seg.AppendTo(nil), src: addrA, dst: addrB}
}

// TestSupersedes checks which queued pure ACK a later segment of the
// same connection replaces: one that acknowledges less; never one that
// acknowledges as much (it may be a duplicate ACK), a segment with data
// or another flag, nor one of another connection.
func TestSupersedes(t *testing.T) {
	ts := tcpfsm.Options{Present: tcpfsm.OptTimestamps, TSVal: 7, TSEcr: 9}
	sack := ts
	sack.AddSACK(tcpfsm.SACKBlock{Left: 3000, Right: 4000})
	ack := func(a tcpfsm.Seq, win uint16, o tcpfsm.Options) tcpfsm.Segment {
		return tcpfsm.Segment{SrcPort: 80, DstPort: 40000, Seq: 1, Ack: a, Flags: tcpfsm.FlagACK, Window: win, Options: o}
	}
	withData := ack(2000, 100, ts)
	withData.Payload = []byte("x")
	fin := ack(2000, 100, ts)
	fin.Flags |= tcpfsm.FlagFIN
	otherPort := ack(2000, 100, ts)
	otherPort.DstPort = 40001
	for _, c := range []struct {
		name        string
		later, prev tcpfsm.Segment
		want        bool
	}{
		{"more acknowledged", ack(2000, 100, ts), ack(1000, 100, ts), true},
		{"more acknowledged, past a SACK", ack(4000, 100, ts), ack(1000, 100, sack), true},
		{"more acknowledged across the wrap", ack(500, 100, ts), ack(0xffffff00, 100, ts), true},
		{"a window update", ack(1000, 200, ts), ack(1000, 100, ts), false},
		{"a window update without options", ack(1000, 200, tcpfsm.Options{}), ack(1000, 100, tcpfsm.Options{}), false},
		{"a window update after a SACK", ack(1000, 200, sack), ack(1000, 100, sack), false},
		{"the same ACK again", ack(1000, 100, ts), ack(1000, 100, ts), false},
		{"a smaller window", ack(1000, 50, ts), ack(1000, 100, ts), false},
		{"less acknowledged", ack(1000, 100, ts), ack(2000, 100, ts), false},
		{"after data", ack(3000, 100, ts), withData, false},
		{"data after", withData, ack(1000, 100, ts), false},
		{"a FIN after", fin, ack(1000, 100, ts), false},
		{"another connection", otherPort, ack(1000, 100, ts), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			prev := queuedSeg(c.prev)
			require.Equal(t, c.want, supersedes(queuedSeg(c.later), &prev))
		})
	}
	t.Run("other addresses", func(t *testing.T) {
		q := queuedSeg(ack(1000, 100, ts))
		q.dst = netip.MustParseAddr("10.0.0.3")
		require.False(t, supersedes(queuedSeg(ack(2000, 100, ts)), &q))
	})
	t.Run("a large segment", func(t *testing.T) {
		q := queuedSeg(ack(1000, 100, ts))
		q.segSize = 1000
		require.False(t, supersedes(queuedSeg(ack(2000, 100, ts)), &q))
	})
}
