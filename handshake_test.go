package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestActiveOpen(t *testing.T) {
	// RFC9293 3.10.1 (OPEN), 3.10.7.3 (SYN-ACK), 3.4 (SEG.LEN), RFC6298 2.1.
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.sent("S seq=100 mss=1460 win=65535")
	c.state(SynSent)
	c.timer(TimerRetransmit, at(1))
	require.Equal(t, Seq(100), c.tcb.SndUna)
	require.Equal(t, Seq(101), c.tcb.SndNxt)

	c.peer(pkt("S.", 5000, 101, mss(1400), win(4000)))
	c.sent(". seq=101 ack=5001")
	c.state(Established)
	c.notes(NoteConnected)
	require.Equal(t, uint32(4000), c.tcb.SndWnd, "SND.WND from SEG.WND")
	require.Equal(t, uint16(1400), c.tcb.sndMSS, "the peer's MSS limits ours")
	c.timer(TimerRetransmit, 0)
	c.nothing()
}

func TestPassiveOpen(t *testing.T) {
	// RFC9293 3.10.7.2 (SYN), 3.10.7.4 (SYN-RCVD ACK).
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	c.state(Listen)
	s := pkt("S", 100, 0, mss(536))
	require.NoError(t, c.step(Arrive(&s, 777)))
	c.sent("S. seq=777 ack=101 mss=1460")
	c.state(SynReceived)
	require.Equal(t, Seq(100), c.tcb.Irs)
	require.Equal(t, Seq(101), c.tcb.RcvNxt)
	require.Equal(t, Seq(777), c.tcb.SndUna)
	require.Equal(t, Seq(778), c.tcb.SndNxt)
	require.Equal(t, uint16(536), c.tcb.sndMSS)
	c.peer(pkt(".", 101, 778))
	c.state(Established)
	c.notes(NoteConnected)
	c.nothing()
}

func TestListenIgnoresRSTAndResetsACK(t *testing.T) {
	// RFC9293 3.10.7.2 (RST), (ACK), (other).
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	c.peer(pkt("R", 5, 0))
	c.nothing()
	c.drops(DropListenNotSYN)
	c.peer(pkt(".", 5, 777))
	c.sent("R seq=777")
	c.state(Listen)
	c.peer(pkt("F", 5, 0))
	c.peer(pkt("", 5, 0, data(10)))
	c.nothing()
	c.state(Listen)
}

func TestClosedAnswersWithRST(t *testing.T) {
	// RFC9293 3.10.7.1 and its RST form.
	c := newConn(t, Config{})
	c.peer(pkt("R", 5, 0))
	c.nothing()
	c.peer(pkt("S", 1000, 0))
	c.sent("R. seq=0 ack=1001")
	c.peer(pkt(".", 1000, 5000))
	c.sent("R seq=5000")
	c.peer(pkt("F", 1000, 0, data(10)))
	c.sent("R. seq=0 ack=1011")
	c.state(Closed)

	r, ok := ResetFor(&Segment{SrcPort: 1, DstPort: 2, Flags: FlagSYN, Seq: 9})
	require.True(t, ok)
	require.Equal(t, Segment{SrcPort: 2, DstPort: 1, Flags: FlagRST | FlagACK, Ack: 10}, r)
}

func TestSynSentBadACK(t *testing.T) {
	// RFC9293 3.10.7.3 (bad ACK), 3.5.1 (half-open, crashed side).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 1000))
	c.clear()
	c.peer(pkt("S.", 5000, 1000))
	c.sent("R seq=1000")
	c.drops(DropSynSentBadACK)
	c.state(SynSent)
	c.peer(pkt("R.", 5000, 1000))
	c.nothing()
	c.state(SynSent)
	c.peer(pkt(".", 5000, 1002))
	c.sent("R seq=1002")
	c.state(SynSent)
}

func TestSynSentAcceptsPartialACKOfSYN(t *testing.T) {
	// RFC9293 3.10.7.3 (=< not ==): queued data stays queued.
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.user(Send(5))
	c.sent("S seq=100")
	c.peer(pkt("S.", 300, 101))
	c.state(Established)
	c.sent("P. seq=101 ack=301 len=5")
	require.Equal(t, Seq(101), c.tcb.SndUna)
}

func TestSynSentRST(t *testing.T) {
	// RFC9293 3.10.7.3 (RST).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	c.peer(pkt("R", 0, 0))
	c.state(SynSent)
	c.drops(DropSynSentNoSYN)
	c.peer(pkt("R.", 0, 101))
	c.state(Closed)
	c.notes(NoteRefused)
	c.nothing()
}

func TestSynSentDropsNeitherSYNNorRST(t *testing.T) {
	// RFC9293 3.10.7.3 (neither), (FIN not in unsync).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	c.peer(pkt(".", 300, 101))
	c.peer(pkt("F", 300, 0))
	c.nothing()
	c.state(SynSent)
	c.drops(DropSynSentNoSYN, DropSynSentNoSYN)
}

func TestSimultaneousOpen(t *testing.T) {
	// RFC9293 MUST-10, 3.10.7.3 (SYN w/o ACK).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	c.peer(pkt("S", 300, 0))
	c.sent("S. seq=100 ack=301")
	c.state(SynReceived)
	c.peer(pkt(".", 301, 101))
	c.state(Established)
	c.notes(NoteConnected)
}

func TestSimultaneousOpenCrossingSynAcks(t *testing.T) {
	// RFC 9293 figure 7: the peer's SYN-ACK arrives in SYN-RECEIVED.
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.peer(pkt("S", 300, 0))
	c.clear()
	c.peer(pkt("S.", 300, 101))
	c.state(Established)
	c.nothing()
}

func TestSynRcvdRSTPassiveReturnsToListen(t *testing.T) {
	// RFC9293 MUST-11 (passive path), 3.5 Fig.8 (responder side).
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("S", 90, 0)
	require.NoError(t, c.step(Arrive(&s, 500)))
	c.clear()
	c.peer(pkt("R", 91, 0))
	c.state(Listen)
	c.notes()
	c.timer(TimerRetransmit, 0)
}

func TestSynRcvdRSTActiveIsRefused(t *testing.T) {
	// RFC9293 MUST-11 (active path).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.peer(pkt("S", 300, 0))
	c.clear()
	c.peer(pkt("R", 301, 0))
	c.state(Closed)
	c.notes(NoteRefused)
}

func TestSynRcvdBadACK(t *testing.T) {
	// RFC9293 3.10.7.4 (SYN-RCVD ACK), 3.5.2 (reset gen, unsync).
	c := synRcvdFrom(t, Config{}, 100, 1000)
	c.peer(pkt(".", 101, 1099))
	c.sent("R seq=1099")
	c.state(SynReceived)
	c.peer(pkt(".", 101, 1001))
	c.state(Established)
}

func TestSynInPassiveSynRcvdReturnsToListen(t *testing.T) {
	// RFC9293 3.10.7.4 (SYN in SYN-RCVD).
	c := synRcvdFrom(t, Config{}, 100, 1000)
	c.peer(pkt("S", 150, 0))
	c.state(Listen)
	c.timer(TimerRetransmit, 0)
	c.nothing()
}

func TestSynDataQueuedUntilEstablished(t *testing.T) {
	// RFC9293 3.10.7.3 (SYN data).
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("S", 100, 0, data(10))
	require.NoError(t, c.step(Arrive(&s, 1000)))
	c.sent("S. seq=1000 ack=101")
	acc := c.take(ActAccept)
	require.Len(t, acc, 1)
	require.Equal(t, Action{Kind: ActAccept, DataSeq: 101, DataLen: 10}, acc[0])
	require.Equal(t, Seq(101), c.tcb.RcvNxt, "not readable before ESTABLISHED")
	c.peer(pkt(".", 101, 1001))
	c.state(Established)
	require.Equal(t, Seq(111), c.tcb.RcvNxt)
	c.notes(NoteConnected, NoteReadable)
}

func TestFinOnThirdACKGoesToCloseWait(t *testing.T) {
	// RFC9293 3.10.7.4 (FIN in SYN-RCVD).
	c := synRcvdFrom(t, Config{}, 100, 1000)
	c.peer(pkt("F.", 101, 1001, data(5)))
	c.state(CloseWait)
	c.sent(". seq=1001 ack=107")
	c.notes(NoteConnected, NoteReadable, NotePeerClosed)
}

func TestQueuedCloseAndFinOnTheSYNGoToClosing(t *testing.T) {
	// A SYN carrying data and FIN, our CLOSE queued in SYN-RECEIVED, then
	// the third ACK: the handshake completes, the FIN held since the SYN
	// is processed, and our FIN goes out: CLOSING in one step (FuzzStep
	// found this path missing from the transition table).
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("SF", 100, 0, data(5))
	require.NoError(t, c.step(Arrive(&s, 1000)))
	c.state(SynReceived)
	c.clear()
	c.user(Close())
	c.nothing()
	c.peer(pkt(".", 107, 1001)) // the peer's next sequence number, after its FIN
	c.state(Closing)
	c.sent("F. seq=1001 ack=107")
	c.notes(NoteConnected, NoteReadable, NotePeerClosed)
}

func TestDataOnThirdACK(t *testing.T) {
	c := synRcvdFrom(t, Config{}, 100, 1000)
	c.peer(pkt("P.", 101, 1001, data(20)))
	c.state(Established)
	require.Equal(t, Seq(121), c.tcb.RcvNxt)
	c.nothing()
	c.advance(200 * time.Millisecond) // the delayed ACK
	c.sent(". seq=1001 ack=121")
}

func TestOldDuplicateSYN(t *testing.T) {
	// RFC 9293 section 3.5 figure 8, both ends wired together: an old SYN
	// reaches the responder, whose SYN-ACK the initiator resets; the
	// responder returns to LISTEN and the initiator's own SYN then opens.
	a := newConn(t, Config{}) // initiator, ISS 100
	b := newConn(t, Config{}) // responder
	a.user(Open(ourPort, peerPort, 100))
	a.sent("S seq=100") // delayed in the network
	b.user(ListenOn(peerPort))
	old := Segment{SrcPort: ourPort, DstPort: peerPort, Seq: 90, Flags: FlagSYN, Window: 1000}
	require.NoError(t, b.step(Arrive(&old, 300)))
	synack := b.takeSent()[0].Seg
	require.Equal(t, Seq(91), synack.Ack)
	a.peer(synack)
	a.sent("R seq=91")
	a.state(SynSent)
	rst := Segment{SrcPort: ourPort, DstPort: peerPort, Seq: 91, Flags: FlagRST}
	require.NoError(t, b.step(Arrive(&rst, 0)))
	b.state(Listen)
	// The real SYN arrives now.
	syn := Segment{SrcPort: ourPort, DstPort: peerPort, Seq: 100, Flags: FlagSYN, Window: 1000}
	b.clear()
	require.NoError(t, b.step(Arrive(&syn, 400)))
	b.state(SynReceived)
	a.peer(b.takeSent()[0].Seg)
	a.state(Established)
}

func TestHalfOpenLiveSide(t *testing.T) {
	// RFC9293 3.5.1 (half-open, live side).
	c := established(t, Config{})
	c.peer(pkt("S", 9999, 0))
	c.sent(". seq=101 ack=301")
	c.state(Established)
	c.peer(pkt("R", 301, 0))
	c.state(Closed)
	c.notes(NoteReset)
}

// The three handshake segments lost, as in the background articles.

func TestLostSYNRetransmittedWithBackoff(t *testing.T) {
	// RFC9293 MUST-22, MUST-19, RFC6298 5.4-5.6; SynRetries=5 gives the
	// textbook 1, 3, 7, 15, 31 s retransmissions and failure at 63 s.
	c := newConn(t, Config{SynRetries: 5})
	c.user(Open(ourPort, peerPort, 100))
	c.sent("S seq=100")
	for _, sec := range []float64{1, 3, 7, 15, 31} {
		c.advanceTo(at(sec) - 1)
		c.nothing()
		c.advanceTo(at(sec))
		c.sent("S seq=100")
		c.state(SynSent)
	}
	c.advanceTo(at(63) - 1)
	c.nothing()
	c.state(SynSent)
	c.advanceTo(at(63))
	c.nothing() // no RST for a SYN nobody answered
	c.state(Closed)
	c.notes(NoteStalled, NoteTimedOut)
}

func TestSynGiveUpAfterThreeMinutesByDefault(t *testing.T) {
	// RFC9293 MUST-23: with the default config the open lasts past 180 s.
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.advanceTo(at(180))
	c.state(SynSent)
	c.notes(NoteStalled) // R1: the third retransmission, at 7 s
	c.advanceTo(at(183) - 1)
	c.state(SynSent)
	c.advanceTo(at(183))
	c.state(Closed)
	c.notes(NoteTimedOut)
}

func TestSynRetriesLinuxLike(t *testing.T) {
	// The documented Linux-like setting: 6 SYN retries.
	c := newConn(t, Config{SynRetries: 6})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	n := 0
	for c.tcb.State == SynSent {
		d, _ := c.tcb.NextDeadline()
		c.advanceTo(d)
		n += len(c.takeSent())
	}
	require.Equal(t, 6, n, "six retransmissions")
	require.Equal(t, at(123), c.now, "1+2+4+8+16+32+60 s with the 60 s RTO cap")
}

func TestLostSYNACKRecoveredByRetransmittedSYN(t *testing.T) {
	// The second handshake segment lost: the client's retransmitted SYN
	// makes the server send its SYN-ACK again at once; the server's own
	// timer would also resend it at 1 s.
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("S", 100, 0)
	require.NoError(t, c.step(Arrive(&s, 1000)))
	c.sent("S. seq=1000 ack=101") // lost
	c.advanceTo(at(0.9))
	c.peer(pkt("S", 100, 0)) // client's retransmission at its 1 s... here 0.9
	c.sent("S. seq=1000 ack=101")
	c.peer(pkt(".", 101, 1001))
	c.state(Established)
}

func TestLostSYNACKServerRetransmits(t *testing.T) {
	c := newConn(t, Config{SynRetries: 5})
	c.user(ListenOn(ourPort))
	s := pkt("S", 100, 0)
	require.NoError(t, c.step(Arrive(&s, 1000)))
	c.sent("S. seq=1000 ack=101")
	for _, sec := range []float64{1, 3, 7, 15, 31} {
		c.advanceTo(at(sec))
		c.sent("S. seq=1000 ack=101")
	}
	c.advanceTo(at(63))
	c.sent("R. seq=1001 ack=101") // the peer had our ISN: a give-up resets
	c.state(Closed)
	c.notes(NoteStalled, NoteTimedOut)
}

func TestLostThirdACK(t *testing.T) {
	// The third handshake segment lost: the server retransmits its SYN-ACK
	// at 1 s, the client (ESTABLISHED) answers with an ACK, and the
	// connection completes. Data from the client would complete it too.
	srv := newConn(t, Config{})
	srv.user(ListenOn(ourPort))
	s := pkt("S", 100, 0)
	require.NoError(t, srv.step(Arrive(&s, 1000)))
	srv.sent("S. seq=1000 ack=101")
	srv.advanceTo(at(1))
	srv.sent("S. seq=1000 ack=101")

	cli := established(t, Config{}) // ISS 100, peer ISS 300
	cli.peer(pkt("S.", 300, 101))   // the retransmitted SYN-ACK
	cli.sent(". seq=101 ack=301")   // unacceptable duplicate: ACK it
	cli.state(Established)
}

func TestRTOResetTo3sAfterSYNTimeout(t *testing.T) {
	// RFC6298 5.7 and RFC5681 3.1 (SYN loss IW).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.advanceTo(at(1))
	c.clear()
	c.peer(pkt("S.", 300, 101, mss(1000)))
	c.state(Established)
	require.Equal(t, uint32(1000), c.tcb.cwnd, "IW is one segment after a lost SYN")
	c.clear()
	c.user(Send(10_000))
	c.sent(". seq=101 len=1000")
	c.timer(TimerRetransmit, c.now.Add(3*time.Second))
}

func TestSynQueueAndSendIn(t *testing.T) {
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	c.userErr(Send(1), ErrRemoteUnspecified)
	c.userErr(Open(ourPort, 0, 1), ErrRemoteUnspecified)
	c.user(Open(ourPort, peerPort, 1)) // LISTEN becomes active
	c.state(SynSent)
	c.sent("S seq=1")
	c.userErr(Open(ourPort, peerPort, 1), ErrConnectionExists)
	c.userErr(ListenOn(ourPort), ErrConnectionExists)
}
