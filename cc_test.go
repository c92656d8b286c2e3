package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inFlight is ESTABLISHED with a large peer window and n full segments (of
// 1460 bytes, no options) in flight from sequence number 101, plus extra
// bytes queued but not sent; the congestion window is set to allow them.
func inFlight(t *testing.T, cfg Config, n int, extra uint32, opts ...func(*Segment)) *conn {
	t.Helper()
	c := negotiated(t, cfg, opts...)
	c.tcb.cwnd = uint32(n) * c.tcb.effMSS()
	c.peer(pkt(".", 301, 101, append([]func(*Segment){win(60000)}, opts...)...))
	c.user(Send(uint32(n)*c.tcb.effMSS() + extra))
	require.Len(t, c.takeSent(), n)
	c.clear()
	return c
}

func TestDuplicateACKDefinition(t *testing.T) {
	// RFC5681 2: data, a window change or nothing outstanding: not dup.
	c := inFlight(t, Config{}, 4, 0)
	c.peer(pkt(".", 301, 101, win(60000), data(10)))
	require.Zero(t, c.tcb.dupAcks, "carries data")
	c.peer(pkt(".", 311, 101, win(50000)))
	require.Zero(t, c.tcb.dupAcks, "changes the window")
	c.peer(pkt(".", 311, 101, win(50000)))
	require.Equal(t, uint8(1), c.tcb.dupAcks, "a pure identical ACK")
}

func TestLimitedTransmit(t *testing.T) {
	// RFC5681 3.2 step 1 / RFC3042.
	c := inFlight(t, Config{}, 4, 5000)
	cw := c.tcb.cwnd
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=5941 len=1460")
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=7401 len=1460")
	require.Equal(t, cw, c.tcb.cwnd)
}

func TestFastRetransmitAndRecovery(t *testing.T) {
	// RFC5681 3.2 steps 2 to 6, RFC6582 3.2 steps 1 to 3.
	c := inFlight(t, Config{}, 10, 0)
	require.Equal(t, Seq(100), c.tcb.recover, "recover starts at ISS")
	for range 2 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	c.nothing() // limited transmit has nothing new to send
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=101 len=1460") // fast retransmit, no RTO wait
	require.Equal(t, uint32(5*1460), c.tcb.ssthresh, "FlightSize/2")
	require.Equal(t, uint32(5*1460+3*1460), c.tcb.cwnd, "ssthresh + 3*SMSS")
	st, _ := c.tcb.Status()
	require.True(t, st.Recovery)
	for i := range 2 {
		c.peer(pkt(".", 301, 101, win(60000)))
		require.Equal(t, uint32(5*1460+(4+uint32(i))*1460), c.tcb.cwnd, "each further dup ACK adds SMSS")
	}
	c.peer(pkt(".", 301, 101+10*1460, win(60000))) // the full ACK
	require.False(t, c.tcb.flags&flagRecovery != 0)
	require.LessOrEqual(t, c.tcb.cwnd, c.tcb.ssthresh)
}

func TestPartialACKRetransmitsNextHole(t *testing.T) {
	// RFC6582 3.2 step 3: two losses in one window.
	c := inFlight(t, Config{}, 10, 0)
	for range 3 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	c.sent(". seq=101 len=1460")
	c.peer(pkt(".", 301, 1561+1460, win(60000))) // partial: the second hole at 3021
	c.sent(". seq=3021 len=1460")
	require.True(t, c.tcb.flags&flagRecovery != 0, "still in recovery")
	c.timer(TimerRetransmit, c.now.Add(time.Second))
}

func TestNoFastRetransmitBelowRecoverAfterRTO(t *testing.T) {
	// RFC6582 3.2 steps 2 and 4.
	c := inFlight(t, Config{}, 10, 0)
	c.advanceTo(at(1)) // RTO
	c.clear()
	require.Equal(t, c.tcb.SndNxt.Add(^uint32(0)), c.tcb.recover, "recover = highest sent")
	ss := c.tcb.ssthresh
	c.peer(pkt(".", 301, 1561, win(60000)))
	c.clear()
	for range 3 {
		c.peer(pkt(".", 301, 1561, win(60000)))
	}
	require.False(t, c.tcb.flags&flagRecovery != 0)
	require.Equal(t, ss, c.tcb.ssthresh)
}

func TestRTOReducesWindow(t *testing.T) {
	// RFC5681 3.1 eq.4 and the repeated-RTO rule.
	c := inFlight(t, Config{}, 20, 0)
	c.advanceTo(at(1))
	c.sent(". seq=101 len=1460")
	require.Equal(t, uint32(10*1460), c.tcb.ssthresh)
	require.Equal(t, uint32(1460), c.tcb.cwnd)
	c.advanceTo(at(3))
	require.Equal(t, uint32(10*1460), c.tcb.ssthresh, "a second RTO of the same segment keeps ssthresh")
}

func TestRestartAfterIdle(t *testing.T) {
	// RFC5681 4.1.
	c := inFlight(t, Config{}, 10, 0)
	c.tcb.cwnd = 50 * 1460
	c.peer(pkt(".", 301, 101+10*1460, win(60000)))
	c.advance(3 * time.Second)
	c.user(Send(100_000))
	var sent uint32
	for _, a := range c.takeSent() {
		sent += a.DataLen
	}
	require.LessOrEqual(t, sent, uint32(3*1460), "at most IW after an idle RTO")
}

func TestFirstSendIsNoRestartAfterIdle(t *testing.T) {
	// A connection opened an hour into the TCBs' clock sends its first
	// data at once: the handshake, not the clock's start, is when it
	// last sent (RFC 5681 4.1), so the first send takes the idle
	// connection's shortcut, at both ends.
	for _, side := range []int{0, 1} {
		p := newPair(Config{}, Config{})
		p.now = at(3600)
		_ = p.step(1, ListenOn(80))
		_ = p.step(0, Open(40000, 80, 100))
		p.run(p.now.Add(time.Second))
		require.Equal(t, Established, p.tcb[side].State)
		c := p.tcb[side]
		_, ok, _ := c.sendIdle(p.now, nil, 100, false)
		require.True(t, ok, "side %d: the first send after the handshake is not after idle", side)
		// An RTO of silence later, it is.
		c = p.tcb[side]
		_, ok, _ = c.sendIdle(p.now.Add(c.rtoDur()+time.Millisecond), nil, 100, false)
		require.False(t, ok, "side %d: after an idle RTO the window restarts on the full path", side)
	}
}

func TestNoRestartAfterIdle(t *testing.T) {
	// Config.NoRestartAfterIdle (RFC 5681 4.1's SHOULD, off): the window
	// is kept over the pause, and CUBIC's epoch moves on by the idle
	// time (RFC 9438 5.8), so the pause earns no growth.
	c := inFlight(t, Config{NoRestartAfterIdle: true, Congestion: CUBIC}, 10, 0)
	c.advance(10 * time.Millisecond)
	c.tcb.cwnd, c.tcb.ssthresh, c.tcb.cubicWMax = 30*1460, 20*1460, 40*1460
	epoch := msOf(c.now)
	c.tcb.cubicEpoch = epoch
	c.peer(pkt(".", 301, 101+10*1460, win(65535)))
	require.Equal(t, epoch, c.tcb.cubicEpoch, "the epoch began before the ACK")
	cwnd := c.tcb.cwnd
	c.advance(3 * time.Second)
	c.user(Send(100_000))
	var sent uint32
	for _, a := range c.takeSent() {
		sent += a.DataLen
	}
	require.Equal(t, cwnd/1460*1460, sent, "the whole window after an idle RTO")
	require.Equal(t, epoch+3000, c.tcb.cubicEpoch, "the epoch moved on by the pause")
}

func TestSACKDoesNotStartRecoveryAlone(t *testing.T) {
	// RFC2018 5.1.
	c := inFlight(t, Config{}, 4, 0, sackOK())
	cw := c.tcb.cwnd
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(1561, 3021)))
	c.nothing()
	require.Equal(t, cw, c.tcb.cwnd)
}

func TestSACKRecoveryRetransmitsHolesFirst(t *testing.T) {
	// RFC2018 4 scoreboard: segments 1 and 3 lost of 6.
	c := inFlight(t, Config{}, 6, 0, sackOK())
	c.peer(pkt(".", 301, 101, win(60000), sackOK(), sackBlocks(1561, 3021)))
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(4481, 5941, 1561, 3021)))
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(4481, 7401, 1561, 3021)))
	c.sent(". seq=101 len=1460") // the first hole
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(4481, 8861, 1561, 3021)))
	c.sent(". seq=3021 len=1460") // the next hole, skipping SACKed 1561-3021
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(4481, 8861, 1561, 3021)))
	c.nothing() // no hole left below the highest SACKed byte
}

func TestRTOIgnoresSACKInformation(t *testing.T) {
	// RFC2018 5 (RTO) and 8 (reneging): SACKed data is kept and resent
	// from the left edge after a timeout.
	c := inFlight(t, Config{}, 3, 0, sackOK())
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(1561, 4481)))
	c.advanceTo(at(1))
	c.sent(". seq=101 len=1460")
	c.peer(pkt(".", 301, 1561, win(60000)))
	c.sent(". seq=1561 len=1460", "P. seq=3021 len=1460") // resent though once SACKed
}

func TestWindowScaleDoesNotChangeCwnd(t *testing.T) {
	// RFC7323 2.3 (cwnd): the same ACKs with shift 0 and shift 7 and equal
	// effective windows give the same cwnd trace.
	var traces [2][]uint32
	for i, sh := range []uint8{0, 7} {
		c := negotiated(t, Config{}, wsopt(sh))
		w := uint16(60000 >> sh)
		c.peer(pkt(".", 301, 101, win(w)))
		c.user(Send(50_000))
		c.clear()
		for k := range 20 {
			c.peer(pkt(".", 301, Seq(101+1460*(k+1)), win(w)))
			traces[i] = append(traces[i], c.tcb.cwnd)
		}
	}
	require.Equal(t, traces[0], traces[1])
}

func TestInitialWindow10(t *testing.T) {
	c := negotiated(t, Config{InitialWindow10: true})
	require.Equal(t, uint32(10*1460), c.tcb.cwnd)
}

func TestCUBIC(t *testing.T) {
	// RFC 9438: beta 0.7 on loss, then the cubic curve back toward W_max.
	c := inFlight(t, Config{Congestion: CUBIC}, 20, 100_000)
	for range 3 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	require.Equal(t, uint32(20*1460*7/10), c.tcb.ssthresh)
	require.Equal(t, uint32(20*1460), c.tcb.cubicWMax)
	c.peer(pkt(".", 301, 101+20*1460, win(60000)))
	after := c.tcb.cwnd
	require.LessOrEqual(t, after, c.tcb.ssthresh)
	// Congestion avoidance over simulated seconds climbs back to W_max.
	una := Seq(101 + 20*1460)
	for range 400 {
		c.advance(50 * time.Millisecond)
		una = una.Add(1460)
		c.peer(pkt(".", 301, MinSeq(una, c.tcb.SndNxt), win(60000)))
	}
	require.Greater(t, c.tcb.cwnd, after)
	require.Equal(t, "cubic", CUBIC.String())
	require.Equal(t, "newreno", NewReno.String())
	var cfg Config
	cfg.Congestion = 9
	require.Error(t, cfg.Validate())
}

func TestEarlyRetransmit(t *testing.T) {
	// RFC5827 3.1: with oseg < 4 and nothing new to send, the threshold
	// is oseg - 1 duplicate ACKs.
	er := Config{EarlyRetransmit: true}

	c := inFlight(t, er, 2, 0)
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=101 len=1460") // one dup ACK is enough for two segments
	require.True(t, c.tcb.flags&flagRecovery != 0)

	c = inFlight(t, er, 3, 0)
	c.peer(pkt(".", 301, 101, win(60000)))
	c.nothing()
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=101 len=1460") // two for three

	// Four or more outstanding: the usual three.
	c = inFlight(t, er, 4, 0)
	for range 2 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	c.nothing()
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=101 len=1460")

	// New data to send: limited transmit sends it and the threshold stays.
	c = inFlight(t, er, 2, 5000)
	c.peer(pkt(".", 301, 101, win(60000)))
	c.sent(". seq=3021 len=1460")
	require.False(t, c.tcb.flags&flagRecovery != 0)

	// Off by default: two segments and one dup ACK wait for more.
	c = inFlight(t, Config{}, 2, 0)
	c.peer(pkt(".", 301, 101, win(60000)))
	c.nothing()
}

func TestSlowStartLimit(t *testing.T) {
	// RFC5681 3.1 (at most SMSS per ACK by default), RFC3465 2.1 (L = 2),
	// and no limit, as Linux: an ACK of four segments in slow start.
	for _, tc := range []struct {
		limit int
		grow  uint32 // segments
	}{{0, 1}, {1, 1}, {2, 2}, {-1, 4}} {
		c := inFlight(t, Config{SlowStartLimit: tc.limit}, 4, 0)
		c.tcb.cwnd = 6 * c.tcb.effMSS() // 4 of 6 in flight: the window is used
		require.Less(t, c.tcb.cwnd, c.tcb.ssthresh, "in slow start")
		before := c.tcb.cwnd
		c.peer(pkt(".", 301, 101+4*1460, win(60000)))
		require.Equal(t, before+tc.grow*c.tcb.effMSS(), c.tcb.cwnd, "L=%d", tc.limit)
	}
	_, err := NewTCB(Config{SlowStartLimit: 3})
	require.ErrorIs(t, err, ErrConfigRange)
}

func TestSlowStartWithoutLimitNeedsAUsedWindow(t *testing.T) {
	// With no limit (as Linux), slow start grows only while at least half
	// the window was in flight: 4 segments out of a 10-segment window
	// leave it as it is.
	c := inFlight(t, Config{SlowStartLimit: -1}, 4, 0)
	c.tcb.cwnd = 10 * c.tcb.effMSS()
	c.peer(pkt(".", 301, 101+2*1460, win(60000)))
	require.Equal(t, 10*c.tcb.effMSS(), c.tcb.cwnd)
}

func TestPartialACKAfterNewDataInRecovery(t *testing.T) {
	// RFC6582 3.2 step 3 when the inflated window has let new data go:
	// the partial ACK still retransmits the next hole. Segments 1 and 4 of
	// 10 are lost; dup ACKs for 2, 3, 5 to 10 arrive, the last five of
	// them letting queued data out.
	c := inFlight(t, Config{}, 10, 0)
	for range 3 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	c.sent(". seq=101 len=1460")
	c.user(Send(20 * 1460))
	for range 6 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	require.NotEmpty(t, c.take(ActSend), "the inflated window sends new data")
	c.peer(pkt(".", 301, 101+3*1460, win(60000))) // partial: the hole at segment 4
	sent := c.takeSent()
	require.NotEmpty(t, sent)
	require.Equal(t, Seq(101+3*1460), sent[0].Seg.Seq, "the next hole first")
}

func TestSlowStartGrowsToTwiceTheRoundsFlight(t *testing.T) {
	// As Linux (SlowStartLimit -1, its tcp_is_cwnd_limited): a full
	// window of 10 segments sent by an application that then writes no
	// more opens the window to 20 over that flight's ACKs, though fewer
	// segments remain in flight as they come.
	c := inFlight(t, Config{SlowStartLimit: -1}, 10, 0)
	smss := c.tcb.effMSS()
	for i := 2; i <= 10; i += 2 {
		c.peer(pkt(".", 301, Seq(101+i*1460), win(60000)))
	}
	require.Equal(t, 20*smss, c.tcb.cwnd)
}

func TestSlowStartCountsDeliveredData(t *testing.T) {
	// As Linux (SlowStartLimit -1): bytes SACKed before the cumulative
	// ACK, or announced by duplicate ACKs without SACK, do not open the
	// window again when that ACK covers them. Segments 1 and 2 of 10
	// arrive before segment 0.
	for _, sack := range []bool{true, false} {
		var opts []func(*Segment)
		if sack {
			opts = append(opts, sackOK())
		}
		c := inFlight(t, Config{SlowStartLimit: -1}, 10, 0, opts...)
		smss := c.tcb.effMSS()
		before := c.tcb.cwnd
		for i := 2; i <= 3; i++ {
			dup := pkt(".", 301, 101, win(60000))
			if sack {
				dup = pkt(".", 301, 101, win(60000), sackSegs(1, i))
			}
			c.peer(dup)
		}
		require.Equal(t, before, c.tcb.cwnd)
		c.peer(pkt(".", 301, Seq(101+3*1460), win(60000)))
		require.Equal(t, before+smss, c.tcb.cwnd, "SACK %v: one segment newly delivered", sack)
	}
}

func TestZeroWindowProbesKeepCwnd(t *testing.T) {
	// RFC5681 4.1: the window shrinks to the restart window before
	// transmission begins after an idle spell, not while the peer's closed
	// window holds the data back and the persist timer probes it; once the
	// window opens after more than an RTO, the restart applies.
	c := inFlight(t, Config{}, 10, 0)
	c.tcb.cwnd = 30 * 1460
	c.peer(pkt(".", 301, 101+10*1460, win(0)))
	cw := c.tcb.cwnd
	c.user(Send(20 * 1460))
	for range 3 {
		d, ok := c.tcb.NextDeadline()
		require.True(t, ok)
		c.advanceTo(d) // a window probe
		require.Equal(t, cw, c.tcb.cwnd, "probing is not a restart")
	}
	c.clear()
	c.peer(pkt(".", 301, 101+10*1460, win(60000)))
	require.Equal(t, c.tcb.iw(), c.tcb.cwnd, "the restart window once sending begins")
	require.Len(t, c.take(ActSend), int(c.tcb.iw()/1460))
}

func TestCUBICWithoutLossGrowsFromTheWindow(t *testing.T) {
	// RFC 9438 section 4.10: when slow start ends without a loss (as
	// HyStart ends it, ssthresh = cwnd), W_max is the window congestion
	// avoidance starts with and K = 0; W_est starts there too (section
	// 4.3). The window grows at once instead of waiting out the K of a
	// loss that never happened.
	c := inFlight(t, Config{Congestion: CUBIC}, 40, 100_000)
	tcb := &c.tcb
	tcb.cwnd, tcb.ssthresh, tcb.srtt = 40*1460, 40*1460, 100_000
	now := c.now.Add(10 * time.Second)
	tcb.growCwnd(1460, now) // the epoch begins
	require.Equal(t, uint32(40*1460), tcb.cubicWMax)
	cw := float64(tcb.cwnd) / 1460
	tcb.growCwnd(1460, now.Add(time.Second))
	west := 40 + 3*(1-cubicBeta)/(1+cubicBeta)*(1.0/0.1) // above W_cubic(1.1 s) = 40.53
	require.InDelta(t, (cw+(west-cw)/cw)*1460, float64(tcb.cwnd), 1)
}
