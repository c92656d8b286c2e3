package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// probing is an ESTABLISHED connection with SACK, the tail loss probe on,
// and an RTT sample of 20 ms: SND.NXT is 1561, SND.UNA too.
func probing(t *testing.T, cfg Config) *conn {
	cfg.NoDelay = true
	c := newConn(t, cfg)
	c.user(Open(ourPort, peerPort, 100))
	c.advance(20 * time.Millisecond)
	c.peer(pkt("S.", 300, 101, mss(1460), sackOK(), win(65535)))
	c.state(Established)
	c.user(Send(1460))
	c.advance(20 * time.Millisecond)
	c.peer(pkt(".", 301, 1561, win(65535)))
	require.Equal(t, 20*time.Millisecond, mustStatus(t, c).SRTT)
	c.clear()
	return c
}

func mustStatus(t *testing.T, c *conn) Status {
	st, err := c.tcb.Status()
	require.NoError(t, err)
	return st
}

func TestTailLossProbeAfterLostACKs(t *testing.T) {
	// RFC8985 7.2, 7.3: two segments go out and no ACK comes back. After
	// the PTO (2*SRTT, plus 2 ms) the highest segment goes again, the RTO takes over,
	// and one ACK for everything ends it.
	c := probing(t, Config{TailLossProbe: true})
	start := c.now
	c.user(Send(2920))
	c.sent(". seq=1561 len=1460", "P. seq=3021 len=1460")
	c.timer(TimerProbe, start.Add(42*time.Millisecond))
	c.timer(TimerRetransmit, 0)
	c.advance(41 * time.Millisecond)
	c.nothing()
	c.advance(time.Millisecond)
	c.sent("P. seq=3021 len=1460")
	c.timer(TimerProbe, 0)
	c.timer(TimerRetransmit, c.now.Add(time.Second))
	c.peer(pkt(".", 301, 4481, win(65535)))
	c.timer(TimerRetransmit, 0)
	c.timer(TimerProbe, 0)
	c.nothing()
	require.False(t, mustStatus(t, c).Recovery)
}

func TestTailLossProbeSendsNewDataPastCwnd(t *testing.T) {
	// RFC8985 7.3: with unsent data the probe is a new segment, even when
	// the congestion window is full. The peer SACKs it while the flight
	// before it is unacknowledged: that flight was sent a PTO before a
	// segment that arrived, so it is lost (RFC8985 6.2), and fast recovery
	// retransmits it at once, without waiting for three duplicate ACKs.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(30 * 1460))
	sent := c.takeSent()
	cwnd := mustStatus(t, c).Cwnd
	require.Equal(t, int(cwnd/1460), len(sent), "a full congestion window")
	probe := c.tcb.SndNxt
	c.advance(42 * time.Millisecond)
	c.sent(". seq=" + itoa(probe) + " len=1460")
	require.Equal(t, probe.Add(1460), c.tcb.SndNxt)

	c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(probe, probe.Add(1460))))
	c.sent(". seq=1561 len=1460")
	st := mustStatus(t, c)
	require.True(t, st.Recovery, "fast recovery on the probe's SACK")
	require.Less(t, st.Ssthresh, cwnd, "the loss halved the window")
	c.timer(TimerRetransmit, c.now.Add(time.Second))
}

func TestTailLossProbeTimeout(t *testing.T) {
	// RFC8985 7.2: PTO = 2*SRTT, plus the worst-case delayed ACK when one
	// segment is in flight, and never past the RTO.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(100))
	c.timer(TimerProbe, c.now.Add(240*time.Millisecond))

	// WCDelAckT is the peer's delayed-ACK time, 200 ms whatever ours is.
	c = probing(t, Config{TailLossProbe: true, DelayedACK: 40 * time.Millisecond})
	c.user(Send(100))
	c.timer(TimerProbe, c.now.Add(240*time.Millisecond))

	c = probing(t, Config{TailLossProbe: true, MinRTO: 200 * time.Millisecond})
	c.user(Send(100))
	rto := mustStatus(t, c).RTO
	require.Equal(t, 200*time.Millisecond, rto)
	c.timer(TimerProbe, c.now.Add(rto))
}

func TestTailLossProbeOnAShortPath(t *testing.T) {
	// RFC8985 7.2: on a path of 1 ms, two segments in flight are probed
	// after 2*SRTT and the 2 ms slack, not after a 10 ms floor.
	c := probing(t, Config{TailLossProbe: true})
	for range 100 {
		c.tcb.rttSample(time.Millisecond)
	}
	srtt := mustStatus(t, c).SRTT
	require.InDelta(t, float64(time.Millisecond), float64(srtt), float64(10*time.Microsecond))
	c.user(Send(2920))
	c.timer(TimerProbe, c.now.Add(2*srtt+2*time.Millisecond))
}

func TestTailLossProbeNeedsSACKAndOption(t *testing.T) {
	// Off by default, and off without SACK: the RTO guards the flight.
	for _, cfg := range []Config{{}, {TailLossProbe: true, NoSACK: true}} {
		c := probing(t, cfg)
		c.user(Send(2920))
		c.timer(TimerProbe, 0)
		c.timer(TimerRetransmit, c.now.Add(time.Second))
	}
}

func TestTailLossProbeLostToo(t *testing.T) {
	// The probe is lost as well: the RTO fires, retransmits, backs off,
	// and no probe is sent again until an ACK makes progress.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(2920))
	c.clear()
	c.advance(42 * time.Millisecond)
	c.sent("P. seq=3021 len=1460")
	c.advance(time.Second)
	c.sent(". seq=1561 len=1460")
	c.timer(TimerProbe, 0)
	c.timer(TimerRetransmit, c.now.Add(2*time.Second))
	c.peer(pkt(".", 301, 3021, win(65535)))
	d, ok := c.tcb.Deadline(TimerProbe)
	require.True(t, ok, "progress: the PTO guards the rest")
	require.Equal(t, c.now.Add(mustStatus(t, c).SRTT*2+200*time.Millisecond), d)
}

func TestLostRetransmissionResent(t *testing.T) {
	// RFC8985 6.2 (RACK's rule, with SND.NXT at the retransmission as its
	// send time): in fast recovery the retransmission of SND.UNA is lost
	// too. Once the peer SACKs a full segment sent after it while SND.UNA
	// is still missing, it goes again at once instead of after the RTO.
	c := probing(t, Config{})
	c.user(Send(20 * 1460))
	c.sent(". seq=1561 len=1460", ". seq=3021 len=1460", ". seq=4481 len=1460", ". seq=5941 len=1460")
	dup := func(right Seq) {
		c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(3021, right)))
	}
	dup(4481)
	dup(5941)
	c.clear()
	dup(7401) // the third duplicate ACK: fast retransmit
	c.sent(". seq=1561 len=1460")
	require.True(t, mustStatus(t, c).Recovery)
	mark := c.tcb.SndNxt
	var resent []act
	for right := Seq(8861); !right.GreaterThan(mark.Add(1460)); right = right.Add(1460) {
		c.clear()
		dup(right)
		for _, a := range c.takeSent() {
			if a.Seg.Seq == 1561 {
				resent = append(resent, a)
			}
		}
		if right.Diff(mark) < 1460 {
			require.Empty(t, resent, "nothing sent after the retransmission has arrived yet (SACK to %v)", right)
		}
	}
	require.Len(t, resent, 1, "SND.UNA resent once a segment sent after its retransmission was SACKed")
}

func TestNoTailLossProbeInRecovery(t *testing.T) {
	// RFC8985 7.2: the PTO armed before fast recovery began does not send
	// a probe once it fires during recovery; the RTO takes over.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(20 * 1460))
	c.clear()
	d, ok := c.tcb.Deadline(TimerProbe)
	require.True(t, ok)
	for right := Seq(4481); right != 8861; right = right.Add(1460) {
		c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(3021, right)))
	}
	require.True(t, mustStatus(t, c).Recovery)
	c.clear()
	c.advanceTo(d)
	c.nothing() // no probe: neither new data nor SND.UNA again
	c.timer(TimerProbe, 0)
	c.timer(TimerRetransmit, d.Add(time.Second))
}

func TestTailLossProbeRestartsOnNewData(t *testing.T) {
	// RFC8985 7.2: the PTO restarts when new data goes out, so a probe
	// waits two round trips after the latest segment, not the first.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(1460))
	c.sent("P. seq=1561 len=1460")
	c.timer(TimerProbe, c.now.Add(240*time.Millisecond)) // one segment: plus the delayed-ACK allowance
	c.advance(30 * time.Millisecond)
	c.user(Send(1460))
	c.sent("P. seq=3021 len=1460")
	c.timer(TimerProbe, c.now.Add(42*time.Millisecond))
	c.advance(10 * time.Millisecond)
	c.user(Receive(0)) // no new data: the PTO stays
	c.timer(TimerProbe, c.now.Add(32*time.Millisecond))
}

func TestTailLossProbeAllocatesNothing(t *testing.T) {
	// The probe path is a hot path too: a flight, its PTO, the probe, the
	// ACK for everything, over and over, with no allocation.
	c := probing(t, Config{TailLossProbe: true})
	tcb, now := c.tcb, c.now
	out := make([]Action, 0, 32)
	round := func() {
		out, _ = tcb.Step(Send(2920), now, out[:0])
		d, ok := tcb.Deadline(TimerProbe)
		if !ok {
			t.Fatal("no PTO armed")
		}
		now = d
		una := tcb.SndUna
		out, _ = tcb.Step(Tick(), now, out[:0])
		if !tcb.running(TimerRetransmit) {
			t.Fatal("no probe sent")
		}
		// Everything arrived, the probe twice: the ACK reports it in a
		// D-SACK block, which ends the probe's episode.
		ack := Segment{SrcPort: peerPort, DstPort: ourPort, Seq: tcb.RcvNxt, Ack: tcb.SndNxt,
			Flags: FlagACK, Window: 0xffff}
		ack.Options.AddSACK(SACKBlock{una, una.Add(1460)})
		now = now.Add(20 * time.Millisecond)
		out, _ = tcb.Step(Arrive(&ack, 0), now, out[:0])
	}
	round()
	require.Zero(t, testing.AllocsPerRun(200, round))
}

// lostACKsProbed is TestTailLossProbeAfterLostACKs up to the probe: two
// segments out, their ACKs lost, and the probe (the highest segment
// again) sent; SND.NXT is 4481.
func lostACKsProbed(t *testing.T) *conn {
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(2920))
	c.advance(42 * time.Millisecond)
	c.clear()
	require.True(t, c.tcb.flags&flagProbeRtx != 0, "the probe was a retransmission")
	return c
}

func TestTailLossProbeDSACKMeansNoLoss(t *testing.T) {
	// RFC8985 7.4.2: the ACK for everything carries a D-SACK for the
	// probe: the original arrived too, only ACKs were lost. The window
	// stays, and the next flight is guarded by a PTO again.
	c := lostACKsProbed(t)
	ssthresh := c.tcb.ssthresh
	c.peer(pkt(".", 301, 4481, win(65535), sackBlocks(3021, 4481)))
	require.Equal(t, ssthresh, c.tcb.ssthresh, "no loss")
	require.Zero(t, c.tcb.flags&(flagProbe|flagProbeRtx), "the episode is over")
	c.user(Send(1460))
	_, ok := c.tcb.Deadline(TimerProbe)
	require.True(t, ok, "a PTO guards the next flight")
}

func TestTailLossProbeDuplicateACKMeansNoLoss(t *testing.T) {
	// RFC8985 7.4.2, a peer without D-SACK: the ACK for everything, then
	// a duplicate ACK of it (the probe's own) means both copies arrived.
	c := lostACKsProbed(t)
	ssthresh := c.tcb.ssthresh
	c.peer(pkt(".", 301, 4481, win(65535)))
	require.NotZero(t, c.tcb.flags&flagProbeRtx, "one ACK up to the probe's SND.NXT does not tell")
	c.peer(pkt(".", 301, 4481, win(65535)))
	require.Zero(t, c.tcb.flags&(flagProbe|flagProbeRtx), "the episode is over")
	require.Equal(t, ssthresh, c.tcb.ssthresh, "no loss")
}

func TestTailLossProbeRepairedALoss(t *testing.T) {
	// RFC8985 7.4.2: the first segment's ACK arrives, the second segment
	// is lost; the probe resends it. Its ACK reaches the probe's SND.NXT,
	// and the next ACK goes beyond it with no D-SACK: the probe repaired
	// a loss, so the window falls as on entering fast recovery, without a
	// recovery to follow. Until then no new probe is armed.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(2920))
	c.advance(5 * time.Millisecond)
	c.peer(pkt(".", 301, 3021, win(65535)))
	c.clear()
	c.advanceTo(mustDeadline(t, c, TimerProbe))
	c.sent("P. seq=3021 len=1460")
	ssthresh := c.tcb.ssthresh
	c.peer(pkt(".", 301, 3021, win(65535))) // a duplicate from before the probe
	require.NotZero(t, c.tcb.flags&flagProbeRtx, "an ACK below the probe's SND.NXT does not tell")
	c.peer(pkt(".", 301, 4481, win(65535)))
	c.user(Send(1460))
	c.timer(TimerProbe, 0)
	c.timer(TimerRetransmit, c.now.Add(mustStatus(t, c).RTO))
	require.Equal(t, ssthresh, c.tcb.ssthresh, "not yet known")
	cwnd := c.tcb.cwnd + 1460 // slow start grows it for the ACK first
	c.peer(pkt(".", 301, 5941, win(65535)))
	require.Equal(t, max(cwnd/2, 2*1460), c.tcb.cwnd, "the loss halved the window")
	require.Equal(t, c.tcb.cwnd, c.tcb.ssthresh)
	require.False(t, mustStatus(t, c).Recovery)
	require.Zero(t, c.tcb.flags&(flagProbe|flagProbeRtx), "the episode is over")
}

func TestTailLossProbeOfALossyTail(t *testing.T) {
	// RFC8985 7.3 and 6.2: the last three of four segments are lost.
	// The probe is the highest segment again; the peer SACKs it while the
	// two before it are missing, so they are lost (sent a PTO before a
	// segment that arrived), and fast recovery resends the first at once
	// and the next on the ACK that follows, instead of a PTO or an RTO
	// for each.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(4 * 1460))
	c.advance(5 * time.Millisecond)
	c.peer(pkt(".", 301, 3021, win(65535)))
	c.clear()
	c.advanceTo(mustDeadline(t, c, TimerProbe))
	c.sent("P. seq=5941 len=1460")
	c.peer(pkt(".", 301, 3021, win(65535), sackBlocks(5941, 7401)))
	require.True(t, mustStatus(t, c).Recovery, "the probe's SACK shows the tail lost")
	c.sent(". seq=3021 len=1460")
	c.peer(pkt(".", 301, 4481, win(65535), sackBlocks(5941, 7401)))
	c.sent(". seq=4481 len=1460")
}

func mustDeadline(t *testing.T, c *conn, k TimerKind) Time {
	d, ok := c.tcb.Deadline(k)
	require.True(t, ok, "%v not running", k)
	return d
}

func TestTailLossProbeResendsALoneFIN(t *testing.T) {
	// RFC8985 7.3: the highest segment sent is our FIN, which went on its
	// own after the data; the probe is that FIN alone, not the last data
	// segment with it. The peer SACKs it while the last data segment is
	// missing, so that segment is lost and fast recovery resends it.
	c := probing(t, Config{TailLossProbe: true})
	c.user(Send(2 * 1460))
	c.sent(". seq=1561 len=1460", "P. seq=3021 len=1460")
	c.advance(5 * time.Millisecond)
	c.user(Close())
	c.sent("F. seq=4481")
	c.advanceTo(mustDeadline(t, c, TimerProbe))
	c.sent("F. seq=4481")
	c.peer(pkt(".", 301, 3021, win(65535), sackBlocks(4481, 4482)))
	require.True(t, mustStatus(t, c).Recovery, "the probe's SACK shows the segment before it lost")
	c.sent("FP. seq=3021 len=1460")

	// A FIN that went with the last data is probed with that data.
	c = probing(t, Config{TailLossProbe: true})
	c.user(Send(5 * 1460)) // the congestion window holds four
	c.sent(". seq=1561 len=1460", ". seq=3021 len=1460", ". seq=4481 len=1460", ". seq=5941 len=1460")
	c.user(Close())
	c.nothing()
	c.peer(pkt(".", 301, 3021, win(65535)))
	c.sent("FP. seq=7401 len=1460")
	c.advanceTo(mustDeadline(t, c, TimerProbe))
	c.sent("FP. seq=7401 len=1460")
}

func TestLostRetransmissionSeenByALaterRetransmission(t *testing.T) {
	// RFC8985 6.2 (RACK's rule, with the order of sending as send times):
	// in fast recovery SND.UNA's segment is resent first and the next hole
	// after it; when the peer SACKs that later retransmission while
	// SND.UNA is still missing, SND.UNA's retransmission was lost too and
	// it goes again at once, instead of after the RTO. An ACK below
	// SND.UNA that SACKs the same data proves nothing: it left the peer
	// before one already taken, so it may report the originals.
	for _, stale := range []bool{false, true} {
		c := probing(t, Config{InitialWindow10: true})
		c.user(Send(10 * 1460))
		require.Len(t, c.takeSent(), 10)
		// 1561 and 3021 are lost; 4481 on arrive.
		for _, right := range []Seq{5941, 7401, 8861} {
			c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(4481, right)))
		}
		require.True(t, mustStatus(t, c).Recovery)
		require.Equal(t, Seq(1561), c.takeSent()[0].Seg.Seq, "fast retransmit")
		c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(4481, 10321)))
		require.Equal(t, Seq(3021), c.takeSent()[0].Seg.Seq, "the next hole")
		ack := Seq(1561)
		if stale {
			ack = 1 // below SND.UNA
		}
		c.peer(pkt(".", 301, ack, win(65535), sackBlocks(3021, 10321)))
		var resent bool
		for _, a := range c.takeSent() {
			resent = resent || a.Seg.Seq == 1561
		}
		require.Equal(t, !stale, resent, "SND.UNA resent once its later hole's retransmission is SACKed (stale ACK: %v)", stale)
	}
}

func TestLostRetransmissionNotSeenInADiscardedBlock(t *testing.T) {
	// A SACK block that the full 2-range scoreboard discards is reported
	// again by every ACK: it looks new each time, and must not count as
	// the peer SACKing a retransmission that followed SND.UNA's.
	c := probing(t, Config{InitialWindow10: true})
	c.user(Send(10 * 1460))
	for _, right := range []Seq{5941, 7401, 8861} {
		c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(4481, right)))
	}
	c.peer(pkt(".", 301, 1561, win(65535), sackBlocks(4481, 10321)))
	require.True(t, mustStatus(t, c).Recovery)
	require.Equal(t, Seq(4481), c.tcb.sndRtx, "1561 and 3021 resent")
	// Two ranges held; a third block below sndRtx touches neither.
	c.tcb.sacked = sackBoard{{4481, 5941}, {7401, 10321}}
	c.tcb.sndRtx = 8861
	var o Options
	o.AddSACK(SACKBlock{6001, 6101})
	news, afterRtx := c.tcb.recordSACK(&o)
	require.True(t, news, "the block is new to the scoreboard")
	require.False(t, afterRtx, "but not kept, so not known to be new")
	require.Equal(t, sackBoard{{4481, 5941}, {7401, 10321}}, c.tcb.sacked)
}
