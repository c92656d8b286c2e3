package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hyStartFlow opens a connection without timestamps and an initial window
// of 10 segments, queues 30 segments, and lets the peer acknowledge the
// first 10 one at a time after 50 ms (slow start opens the window to 20
// and sends the other 20), then segments 11 to 30 one at a time, rtt2
// after they went out. It returns the connection and the window (in
// segments) before each of the last 20 ACKs, with the ssthresh after it.
func hyStartFlow(t *testing.T, cfg Config, rtt2 time.Duration) (*conn, [][2]uint32) {
	t.Helper()
	cfg.InitialWindow10 = true
	cfg.NoTimestamps = true
	c := negotiated(t, cfg)
	const mss = 1460
	c.peer(pkt(".", 301, 101, win(60000)))
	c.user(Send(30 * mss))
	require.Len(t, c.takeSent(), 10)
	c.advance(50 * time.Millisecond)
	for k := 1; k <= 10; k++ {
		c.peer(pkt(".", 301, Seq(101+k*mss), win(60000)))
	}
	require.Len(t, c.takeSent(), 20, "slow start: two segments for each ACK")
	require.Equal(t, uint32(20*mss), c.tcb.cwnd)
	c.advance(rtt2)
	var trace [][2]uint32
	for k := 11; k <= 30; k++ {
		before := c.tcb.cwnd / mss
		c.peer(pkt(".", 301, Seq(101+k*mss), win(60000)))
		ss := c.tcb.ssthresh
		if ss != maxQueued {
			ss /= mss
		}
		trace = append(trace, [2]uint32{before, ss})
	}
	return c, trace
}

func TestHyStartLeavesSlowStartWhenRTTRises(t *testing.T) {
	// RFC 9406 section 4.2 in Linux's form: the first round starts with
	// the 7th ACK (a window of 16 segments) and ends once SND.UNA passes
	// segment 22, SND.NXT then; its samples are 50 ms (the connection's
	// least, from segment 1) and 80 ms (segment 11, timed once segment
	// 1's measurement ended). Its 9th ACK, segment 15's, finds the least
	// sample of the round, 80 ms, above 50 ms + max(50/8, 4) ms: ssthresh
	// becomes the window, 24 segments, and congestion avoidance begins.
	c, trace := hyStartFlow(t, Config{HyStart: true}, 80*time.Millisecond)
	for i, s := range trace[:4] {
		require.Equal(t, [2]uint32{uint32(20 + i), maxQueued}, s, "ACK of segment %d: slow start", 11+i)
	}
	require.Equal(t, [2]uint32{24, 24}, trace[4], "segment 15's ACK: the round's 9th")
	for _, s := range trace[5:] {
		require.Equal(t, uint32(24), s[1], "ssthresh stays")
	}
	require.Less(t, c.tcb.cwnd, uint32(26*1460), "congestion avoidance: under a segment per ACK")

	// Without HyStart, or with an RTT that does not rise past the
	// threshold (50 + 6 ms), slow start goes on: one segment per ACK.
	for _, tc := range []struct {
		cfg Config
		rtt time.Duration
	}{{Config{}, 80 * time.Millisecond}, {Config{HyStart: true}, 56 * time.Millisecond}, {Config{HyStart: true}, 50 * time.Millisecond}} {
		c, trace := hyStartFlow(t, tc.cfg, tc.rtt)
		for i, s := range trace {
			require.Equal(t, [2]uint32{uint32(20 + i), maxQueued}, s, "%+v %v: ACK of segment %d", tc.cfg, tc.rtt, 11+i)
		}
		require.Equal(t, uint32(40*1460), c.tcb.cwnd)
	}
}

func TestHyStartCUBICTakesTheWindowAsPlateau(t *testing.T) {
	// RFC 9438 section 4.10: leaving slow start without a loss, CUBIC has
	// no W_max of its own: the window at the start of congestion
	// avoidance is the plateau, and the bits HyStart kept are gone.
	c, trace := hyStartFlow(t, Config{HyStart: true, Congestion: CUBIC}, 80*time.Millisecond)
	require.Equal(t, [2]uint32{24, 24}, trace[4])
	require.Equal(t, uint32(24*1460), c.tcb.cubicWMax)
	require.NotZero(t, c.tcb.cubicEpoch)
}

func TestHyStartOnlyInTheInitialSlowStart(t *testing.T) {
	// RFC 9406 section 4.2: after a loss, slow start up to the new
	// ssthresh is the standard one; W_max stays CUBIC's.
	c := inFlight(t, Config{HyStart: true, Congestion: CUBIC}, 20, 100_000)
	for range 3 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	wmax := c.tcb.cubicWMax
	c.tcb.hyStartAck(500_000)
	require.Equal(t, wmax, c.tcb.cubicWMax)
}
