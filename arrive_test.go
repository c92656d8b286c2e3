package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Segment arrival in synchronized states (RFC 9293 section 3.10.7.4).

func TestAcceptabilityZeroWindow(t *testing.T) {
	// T6 row 1 and row 3, MUST-66.
	c := established(t, Config{RecvBuffer: 1000, QuickACK: true})
	c.peer(pkt("P.", 301, 101, data(1000)))
	c.sent(". seq=101 ack=1301 win=0")
	require.Zero(t, c.tcb.RcvWnd())
	c.user(Send(10))
	c.sent("P. seq=101 len=10")
	// An empty ACK at RCV.NXT is processed.
	c.peer(pkt(".", 1301, 106))
	require.Equal(t, Seq(106), c.tcb.SndUna)
	c.nothing()
	// The same at RCV.NXT+1 gets an ACK and is dropped.
	c.peer(pkt(".", 1302, 111))
	c.sent(". seq=111 ack=1301")
	require.Equal(t, Seq(106), c.tcb.SndUna)
	c.drops(DropUnacceptable)
	// Data at RCV.NXT with a new ACK: data dropped, ACK out, SND.UNA moves.
	c.clear()
	c.peer(pkt("P.", 1301, 111, data(10)))
	require.Equal(t, Seq(111), c.tcb.SndUna)
	require.Equal(t, Seq(1301), c.tcb.RcvNxt)
	c.sent(". seq=111 ack=1301 win=0")
	require.Empty(t, c.take(ActAccept))
	// RST at RCV.NXT still resets.
	c.peer(pkt("R", 1301, 0))
	c.state(Closed)
}

func TestAcceptabilityEmptySegments(t *testing.T) {
	// T6 row 2: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND.
	c := established(t, Config{RecvBuffer: 1000})
	c.peer(pkt(".", 301+999, 101))
	c.nothing()
	c.drops()
	c.peer(pkt(".", 301+1000, 101))
	c.sent(". seq=101 ack=301")
	c.drops(DropUnacceptable)
}

func TestTrimOverlappingRetransmission(t *testing.T) {
	// T6 row 4 and (trim): only the new bytes are delivered.
	c := established(t, Config{})
	c.peer(pkt("P.", 301, 101, data(10)))
	c.clear()
	c.peer(pkt("P.", 301, 101, data(20)))
	acc := c.take(ActAccept)
	require.Len(t, acc, 1)
	require.Equal(t, Action{Kind: ActAccept, DataSeq: 311, DataLen: 10, Offset: 10}, acc[0])
	require.Equal(t, Seq(321), c.tcb.RcvNxt)
	// Entirely old: a duplicate ACK, nothing delivered.
	c.clear()
	c.peer(pkt("P.", 301, 101, data(20)))
	c.sent(". seq=101 ack=321")
	require.Empty(t, c.take(ActAccept))
	c.drops(DropUnacceptable)
}

func TestOutOfWindowDataGetsOneACK(t *testing.T) {
	// RFC9293 3.10.7.4 (unacceptable): one ACK, nothing delivered; an
	// out-of-window RST gets nothing.
	c := established(t, Config{RecvBuffer: 1000})
	c.peer(pkt("P.", 301+5000, 101, data(10)))
	c.sent(". seq=101 ack=301")
	require.Empty(t, c.take(ActAccept))
	c.peer(pkt("R", 301+5000, 0))
	c.nothing()
	c.state(Established)
}

func TestOutOfOrderHeldAndDeliveredInOrder(t *testing.T) {
	// SHLD-31, RFC5681 4.2: seg2 then seg1; immediate ACKs.
	c := established(t, Config{})
	c.peer(pkt("P.", 401, 101, data(100)))
	c.sent(". seq=101 ack=301") // duplicate ACK at once
	acc := c.take(ActAccept)
	require.Equal(t, []Action{{Kind: ActAccept, DataSeq: 401, DataLen: 100}}, acc)
	require.Equal(t, Seq(301), c.tcb.RcvNxt)
	c.notes()
	c.peer(pkt(".", 301, 101, data(100)))
	c.sent(". seq=101 ack=501") // one cumulative ACK
	require.Equal(t, Seq(501), c.tcb.RcvNxt)
	c.notes(NoteReadable)
}

func TestOutOfOrderFINHeldUntilHoleFills(t *testing.T) {
	// RFC9293 3.10.7.4 (out-of-order FIN).
	c := established(t, Config{})
	c.peer(pkt("F.", 401, 101))
	c.state(Established)
	c.sent(". seq=101 ack=301")
	c.peer(pkt("P.", 301, 101, data(100)))
	c.state(CloseWait)
	c.sent(". seq=101 ack=402")
	c.notes(NoteReadable, NotePeerClosed)
}

func TestBatchGetsOneACK(t *testing.T) {
	// MUST-58/59.
	c := established(t, Config{QuickACK: true})
	c.peerBatch(
		pkt(".", 301, 101, data(100)),
		pkt(".", 401, 101, data(100)),
		pkt(".", 501, 101, data(100)),
		pkt("P.", 601, 101, data(100)),
	)
	c.sent(". seq=101 ack=701")
}

func TestRSTInSynchronizedStates(t *testing.T) {
	// RFC5961 3.2 (1)(2)(3) in every synchronized state, and RFC9293
	// 3.10.7.4 RST (ESTAB/FW1/FW2/CW).
	for _, f := range []struct {
		name  string
		make  func(testingT, Config) *conn
		rcv   Seq
		final Note
	}{
		{"ESTABLISHED", established, 301, NoteReset},
		{"FIN-WAIT-1", finWait1, 301, NoteReset},
		{"FIN-WAIT-2", finWait2, 301, NoteReset},
		{"CLOSE-WAIT", closeWait, 302, NoteReset},
		{"CLOSING", closing, 302, NoteReset},
		{"LAST-ACK", lastAck, 302, NoteReset},
	} {
		t.Run(f.name, func(t *testing.T) {
			c := f.make(t, Config{RecvBuffer: 1000})
			st := c.tcb.State
			wnd := c.tcb.RcvWnd()
			c.peer(pkt("R", f.rcv.Add(wnd), 0)) // outside: silent drop
			c.nothing()
			c.state(st)
			c.peer(pkt("R", f.rcv.Add(1), 0)) // inside, not exact: challenge ACK
			c.sent(". ack=" + itoa(f.rcv))
			c.drops(DropUnacceptable, DropRSTNotExact)
			c.state(st)
			c.peer(pkt("R.", f.rcv, 0, data(20))) // exact, with data (SHLD-2)
			c.state(Closed)
			c.notes(f.final)
			c.nothing()
		})
	}
	// SYN-RECEIVED too.
	c := synRcvdFrom(t, Config{}, 100, 1000)
	c.peer(pkt("R", 105, 0))
	c.sent(". seq=1001 ack=101")
	c.state(SynReceived)
}

func TestESTABLISHEDResetFlushes(t *testing.T) {
	// RFC9293 3.10.7.4 RST: queued data and timers gone.
	c := established(t, Config{})
	c.user(Send(5000))
	c.clear()
	c.peer(pkt("R", 301, 0))
	c.state(Closed)
	c.nothing()
	_, running := c.tcb.NextDeadline()
	require.False(t, running)
	_, err := c.tcb.Status()
	require.ErrorIs(t, err, ErrConnectionDoesNotExist)
}

func TestSYNInSynchronizedStateGetsChallengeACK(t *testing.T) {
	// RFC9293 3.10.7.4 step 4, RFC5961 4.2.
	c := established(t, Config{})
	for _, seq := range []Seq{301, 401, 99999} {
		c.peer(pkt("S", seq, 0))
		c.sent(". seq=101 ack=301")
		c.state(Established)
	}
}

func TestNoACKBitDropped(t *testing.T) {
	// RFC9293 3.10.7.4 step 5 (no ACK).
	c := established(t, Config{})
	c.peer(pkt("P", 301, 0, data(10)))
	c.drops(DropNoACK)
	require.Empty(t, c.take(ActAccept))
	require.Equal(t, Seq(301), c.tcb.RcvNxt)
}

func TestACKOfUnsentData(t *testing.T) {
	// RFC9293 3.10.7.4 (ACK>SND.NXT): ACK out, data not delivered.
	c := established(t, Config{})
	c.peer(pkt("P.", 301, 1101, data(10)))
	c.sent(". seq=101 ack=301")
	require.Empty(t, c.take(ActAccept))
	c.drops(DropBadACK)
}

func TestDropACKOfUnsent(t *testing.T) {
	// Config.DropACKOfUnsent: the same segment is dropped unanswered, and
	// nothing in it is taken: not its data, its FIN, its window or its
	// timestamp (which would otherwise poison TS.Recent).
	c := negotiated(t, Config{DropACKOfUnsent: true}, tsopt(5000, 100))
	c.clear()
	c.peer(pkt("F.", 301, 9999, data(10), tsopt(900000, 100)))
	c.drops(DropBadACK)
	c.nothing()
	require.Empty(t, c.take(ActAccept))
	require.Equal(t, Seq(301), c.tcb.RcvNxt)
	require.Equal(t, uint32(5000), c.tcb.TSRecent())
	c.state(Established)
	// The next acceptable segment is answered with TS.Recent unchanged.
	c.peer(pkt("P.", 301, 101, data(10), tsopt(5001, 100)))
	require.Len(t, c.take(ActAccept), 1)
	require.Equal(t, Seq(311), c.tcb.RcvNxt)
	require.Equal(t, uint32(5001), c.tcb.TSRecent())
}

func TestDuplicateACKWithData(t *testing.T) {
	// RFC9293 3.10.7.4 (dup ACK): data delivered, SND.UNA unchanged.
	c := established(t, Config{})
	c.user(Send(100))
	c.clear()
	c.peer(pkt("P.", 301, 101, data(10)))
	require.Equal(t, Seq(101), c.tcb.SndUna)
	require.Equal(t, Seq(311), c.tcb.RcvNxt)
}

func TestNewACKRemovesAndReports(t *testing.T) {
	// RFC9293 3.10.7.4 (SND.UNA): 3 segments in flight, ACK covers 2.
	c := established(t, Config{NoDelay: true})
	c.tcb.SndWnd = 10000
	c.user(Send(3000))
	c.sent(". seq=101 len=1460", ". seq=1561 len=1460", "P. seq=3021 len=80")
	c.peer(pkt(".", 301, 3021))
	c.notes(NoteSendAcked)
	st, err := c.tcb.Status()
	require.NoError(t, err)
	require.Equal(t, uint32(80), st.InFlight)
}

func TestWindowUpdateRule(t *testing.T) {
	// RFC9293 3.10.7.4 (WL1/WL2).
	c := established(t, Config{})
	c.peer(pkt("P.", 301, 101, data(10), win(5000)))
	require.Equal(t, uint32(5000), c.tcb.SndWnd)
	c.peer(pkt(".", 301, 101, win(100))) // older (reordered) segment
	require.Equal(t, uint32(5000), c.tcb.SndWnd)
	c.peer(pkt(".", 311, 101, win(7000)))
	require.Equal(t, uint32(7000), c.tcb.SndWnd)
}

func TestACKRangeRFC5961(t *testing.T) {
	// RFC5961 5.2 / MAY-12, and MAX.SND.WND.
	c := established(t, Config{})
	c.peer(pkt(".", 301, 101, win(60000)))
	c.peer(pkt(".", 301, 101, win(1000)))
	require.Equal(t, uint32(60000), c.tcb.MaxSndWnd)
	c.clear()
	bad := Seq(101).Add(1<<32 - 60001)
	c.peer(pkt("P.", 301, bad, data(10)))
	c.sent(". seq=101 ack=301")
	require.Empty(t, c.take(ActAccept))
	c.drops(DropBadACK)
	c.peer(pkt("P.", 301, Seq(91), data(10)))
	require.Len(t, c.take(ActAccept), 1)
}

func TestChallengeACKRateLimitPerConnection(t *testing.T) {
	// RFC5961 7 and Errata 4772.
	a := established(t, Config{ChallengeACKLimit: 5})
	b := established(t, Config{ChallengeACKLimit: 5})
	for range 100 {
		a.peer(pkt("R", 302, 0))
	}
	require.Len(t, a.takeSent(), 5)
	b.peer(pkt("R", 302, 0))
	b.sent(". seq=101 ack=301")
	a.advance(time.Second)
	a.peer(pkt("R", 302, 0))
	a.sent(". seq=101 ack=301")
}

func TestAckedFINInFW1ThenData(t *testing.T) {
	c := finWait1(t, Config{})
	c.peer(pkt("P.", 301, 102, data(10)))
	c.state(FinWait2)
	c.nothing() // the ACK is delayed
	c.advance(200 * time.Millisecond)
	c.sent(". seq=102 ack=311")
}

func TestTextAfterFINIgnored(t *testing.T) {
	// RFC9293 3.10.7.4 (text after FIN).
	c := closeWait(t, Config{})
	c.peer(pkt("P.", 302, 101, data(10)))
	require.Empty(t, c.take(ActAccept))
	c.drops(DropAfterFIN)
}

func TestInvalidACKsAreThrottled(t *testing.T) {
	// RFC 5961 section 7: the ACKs that answer unacceptable segments
	// without data (here, pure ACKs PAWS rejects, RFC 7323 section 5.3)
	// count against the challenge-ACK limit; data is answered every time.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	acks := 0
	for range 30 {
		c.peer(pkt(".", 301, 101, tsopt(4000, 100))) // older than TS.Recent
		acks += len(c.takeSent())
	}
	require.Equal(t, 10, acks, "the default limit: 10 a second")
	c.clear()
	c.peer(pkt(".", 301, 101, tsopt(4000, 100)))
	c.drops(DropPAWS, DropRateLimited)
	c.peer(pkt("P.", 301, 101, data(10), tsopt(4000, 100)))
	require.Len(t, c.takeSent(), 1, "data is answered whatever the limit")
	c.advance(time.Second)
	c.peer(pkt(".", 301, 101, tsopt(4000, 100)))
	require.Len(t, c.takeSent(), 1, "a new second, a new budget")
}

func TestNoACKLoopWithAForgedFIN(t *testing.T) {
	// A forged FIN, acceptable and with a TSval far ahead, moves one end's
	// RCV.NXT past what its peer sent and its TS.Recent past every TSval
	// the peer will send. It then rejects each of the peer's segments
	// (PAWS) and answers with an ACK of data the peer never sent, which
	// the peer answers with an ACK of its own (RFC 9293 section
	// 3.10.7.4). Throttled (invalidACK), the two exchange a few ACKs a
	// second, not one a round trip for as long as both live.
	p := newPair(Config{}, Config{})
	p.delay = time.Millisecond
	sent := 0
	p.lose = func(int, Segment) bool { sent++; return sent > 2000 } // where a loop would end
	_ = p.step(1, ListenOn(80))
	_ = p.step(0, Open(40000, 80, 100))
	p.run(p.now.Add(time.Second))
	require.Equal(t, Established, p.tcb[1].State)
	forged := Segment{SrcPort: 40000, DstPort: 80, Seq: p.tcb[1].RcvNxt, Ack: p.tcb[1].SndNxt,
		Flags: FlagACK | FlagFIN, Window: 1000}
	forged.Options.Present = OptTimestamps
	forged.Options.TSVal = p.tcb[1].TSRecent() + 1<<30
	before := sent
	_ = p.step(1, Arrive(&forged, 0))
	p.run(p.now.Add(2 * time.Second))
	require.Equal(t, CloseWait, p.tcb[1].State)
	require.Less(t, sent-before, 100, "segments exchanged in 2 s")
}
