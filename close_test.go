package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFourWayTeardownActiveSide(t *testing.T) {
	// RFC9293 3.10.4 (ESTAB close), (FW1 ACK), (FW2), MUST-13, 3.10.8 (TW timeout).
	c := finWait1(t, Config{})
	c.timer(TimerRetransmit, at(1))
	c.peer(pkt(".", 301, 102))
	c.state(FinWait2)
	c.notes(NoteCloseDone)
	c.timer(TimerRetransmit, 0)
	// FIN-WAIT-2 still takes data (MAY-1).
	c.peer(pkt("P.", 301, 102, data(50)))
	c.nothing() // a delayed ACK; the FIN's ACK covers the data too
	c.notes(NoteReadable)
	c.peer(pkt("F.", 351, 102))
	c.sent(". seq=102 ack=352")
	c.state(TimeWait)
	c.notes(NotePeerClosed)
	c.timer(TimerClose, c.now.Add(4*time.Minute))
	c.advanceTo(c.now.Add(4*time.Minute) - 1)
	c.state(TimeWait)
	c.advance(1)
	c.state(Closed)
	c.notes(NoteClosed)
	c.nothing()
}

func TestFourWayTeardownPassiveSide(t *testing.T) {
	// RFC9293 3.10.7.4 (FIN), 3.10.4 (CLOSE-WAIT close), (LAST-ACK ACK).
	c := closeWait(t, Config{})
	c.notes()
	c.user(Send(10))
	c.sent("P. seq=101 ack=302 len=10")
	c.user(Close())
	c.sent("F. seq=111 ack=302")
	c.state(LastAck)
	c.peer(pkt(".", 302, 112))
	c.state(Closed)
	c.notes(NoteSendAcked, NoteClosed)
	c.nothing()
}

func TestCloseWaitLastsUntilTheApplicationCloses(t *testing.T) {
	// The background articles' CLOSE-WAIT that never ends by itself.
	c := closeWait(t, Config{})
	c.advance(24 * time.Hour)
	c.state(CloseWait)
	c.nothing()
	_, running := c.tcb.NextDeadline()
	require.False(t, running)
	c.user(Close())
	c.state(LastAck)
}

func TestFINACKMergedTeardown(t *testing.T) {
	// RFC9293 3.10.7.4 (FIN+ACK in FW1): three-way teardown.
	c := finWait1(t, Config{})
	c.peer(pkt("F.", 301, 102))
	c.sent(". seq=102 ack=302")
	c.state(TimeWait)
	c.timer(TimerClose, c.now.Add(4*time.Minute))
	c.timer(TimerRetransmit, 0)
	c.notes(NoteCloseDone, NotePeerClosed)
}

func TestSimultaneousClose(t *testing.T) {
	// RFC9293 3.6 (simultaneous close), (CLOSING ACK).
	c := closing(t, Config{})
	c.peer(pkt(".", 302, 102))
	c.state(TimeWait)
	c.timer(TimerClose, c.now.Add(4*time.Minute))
	c.nothing()
}

func TestTimeWaitAcksRetransmittedFINAndRestarts(t *testing.T) {
	// RFC9293 3.10.7.4 (TW FIN): the last ACK was lost.
	c := timeWait(t, Config{})
	c.advanceTo(at(60))
	c.peer(pkt("F.", 301, 102))
	c.sent(". seq=102 ack=302")
	c.timer(TimerClose, at(60).Add(4*time.Minute))
	c.state(TimeWait)
}

func TestTimeWaitIgnoresRSTByDefault(t *testing.T) {
	// RFC1337 section 3 F1 (default), and the RFC 9293 option.
	c := timeWait(t, Config{})
	d, _ := c.tcb.Deadline(TimerClose)
	c.peer(pkt("R", 302, 0))
	c.state(TimeWait)
	c.nothing()
	c.drops(DropTimeWaitRST)
	c.timer(TimerClose, d)

	c = timeWait(t, Config{TimeWaitRST: true})
	c.peer(pkt("R", 302, 0))
	c.state(Closed)
	c.notes(NoteReset)
}

func TestTimeWaitSYN(t *testing.T) {
	// RFC9293 MAY-2 and RFC5961 4.2 (TIME-WAIT).
	c := timeWait(t, Config{})
	c.peer(pkt("S", 200, 0)) // below RCV.NXT: an old duplicate
	c.sent(". seq=102 ack=302")
	c.state(TimeWait)
	c.peer(pkt("S", 5000, 0)) // above: a new incarnation
	c.state(Closed)
	c.notes(NoteReopen)
	c.nothing()

	c = timeWait(t, Config{TimeWaitChallenge: true})
	c.peer(pkt("S", 5000, 0))
	c.sent(". seq=102 ack=302")
	c.state(TimeWait)
}

func TestTimeWaitSYNWaitsForTheUserToRead(t *testing.T) {
	// RFC9293 MAY-2: a SYN that could open a new incarnation does not
	// delete a connection whose user has yet to read what arrived before
	// the FIN (the data would be lost); it gets a challenge ACK, and once
	// everything is read the next one reopens.
	c := established(t, Config{QuickACK: true})
	c.peer(pkt("P.", 301, 101, data(10)))
	c.user(Close())
	c.peer(pkt("F.", 311, 102))
	c.state(TimeWait)
	c.clear()
	c.peer(pkt("S", 5000, 0))
	c.state(TimeWait)
	c.sent(". seq=102 ack=312")
	c.user(Receive(10))
	c.clear()
	c.peer(pkt("S", 5000, 0))
	c.state(Closed)
	c.notes(NoteReopen)
}

func TestLastAckRST(t *testing.T) {
	// RFC9293 3.10.7.4 RST (CLOSING/LAST-ACK).
	c := lastAck(t, Config{})
	c.peer(pkt("R", 302, 0))
	c.state(Closed)
	c.notes(NoteReset)
	c.nothing()
	_, running := c.tcb.NextDeadline()
	require.False(t, running)

	c = closing(t, Config{})
	c.peer(pkt("R", 302, 0))
	c.state(Closed)
}

func TestFINAfterQueuedData(t *testing.T) {
	// RFC9293 3.10.4 (ESTAB close): the FIN rides on the last data segment.
	c := established(t, Config{})
	c.tcb.SndWnd = 1000
	c.user(Send(3000))
	c.sent(". seq=101 len=1000") // PSH only on the segment that empties the queue
	c.user(Close())
	c.state(FinWait1)
	c.nothing()
	c.peer(pkt(".", 301, 1101, win(5000)))
	c.sent(". seq=1101 len=1460", "FP. seq=2561 len=540")
	c.peer(pkt(".", 301, 3102, win(5000)))
	c.state(FinWait2)
}

func TestNoSendAfterClose(t *testing.T) {
	// RFC9293 3.10.4 (no send after close), 3.10.2.
	c := finWait1(t, Config{})
	c.userErr(Send(1), ErrConnectionClosing)
	c.userErr(Close(), ErrConnectionClosing)
	c = closeWait(t, Config{})
	c.user(Close())
	c.userErr(Send(1), ErrConnectionClosing)
}

func TestEarlyClose(t *testing.T) {
	// RFC9293 3.10.4 (early close).
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	c.user(Close())
	c.state(Closed)
	c.nothing()
	c.notes(NoteClosed)

	c = newConn(t, Config{})
	c.user(ListenOn(ourPort))
	c.user(Close())
	c.state(Closed)
	c.nothing()

	// SYN-RECEIVED: the FIN follows the handshake.
	c = synRcvdFrom(t, Config{}, 100, 1000)
	c.user(Close())
	c.nothing()
	c.peer(pkt(".", 101, 1001))
	c.state(FinWait1)
	c.sent("F. seq=1001 ack=101")
}

func TestHalfCloseKeepsReceiving(t *testing.T) {
	// RFC9293 MAY-1: FIN-WAIT-2 takes any amount of data, with no timeout.
	c := finWait2(t, Config{QuickACK: true})
	seq := Seq(301)
	for range 100 {
		c.peer(pkt(".", seq, 102, data(500)))
		c.sent(". seq=102 ack=" + itoa(seq.Add(500)))
		seq = seq.Add(500)
		c.user(Receive(500))
		c.clear()
	}
	c.advance(time.Hour)
	c.state(FinWait2)
}

func TestFinWait2Timeout(t *testing.T) {
	c := finWait2(t, Config{FinWait2Timeout: time.Minute})
	c.advance(time.Minute)
	c.state(Closed)
	c.notes(NoteTimedOut)
}

func TestFinWait2AfterCloseFullTimesOut(t *testing.T) {
	// SHLD-3 and MAY-1: a connection the user closed with CloseFull takes
	// no more data, so in FIN-WAIT-2 it waits 2*MSL for the peer's FIN and
	// no longer (a peer whose RST was lost cannot keep it); one the user
	// closed only for sending waits for ever (TestHalfCloseKeepsReceiving).
	c := established(t, Config{MSL: time.Minute})
	c.user(CloseFull())
	c.peer(pkt(".", 301, 102))
	c.state(FinWait2)
	c.clear()
	c.advance(2*time.Minute - time.Millisecond)
	c.state(FinWait2)
	c.advance(time.Millisecond)
	c.state(Closed)
	c.notes(NoteTimedOut)

	// CloseFull after the FIN was acknowledged starts the wait then.
	c = finWait2(t, Config{MSL: time.Minute})
	c.advance(time.Hour)
	c.state(FinWait2)
	c.user(CloseFull())
	c.advance(2 * time.Minute)
	c.state(Closed)
}

func TestLostFINRetransmitted(t *testing.T) {
	// The first teardown segment lost: FIN retransmitted with backoff.
	c := finWait1(t, Config{})
	for _, sec := range []float64{1, 3, 7} {
		c.advanceTo(at(sec))
		c.sent("F. seq=101 ack=301")
	}
	c.peer(pkt(".", 301, 102))
	c.state(FinWait2)
}

func TestLostACKOfFIN(t *testing.T) {
	// The second teardown segment lost: the peer's retransmitted FIN... here
	// our FIN is resent until the ACK arrives; a duplicate ACK is harmless.
	c := finWait1(t, Config{})
	c.advanceTo(at(1))
	c.sent("F. seq=101 ack=301")
	c.peer(pkt(".", 301, 102))
	c.peer(pkt(".", 301, 102))
	c.state(FinWait2)
	c.nothing()
}

func TestLostPeerFINRetransmittedByPeer(t *testing.T) {
	// The third teardown segment lost: we wait in FIN-WAIT-2 until the
	// peer retransmits its FIN.
	c := finWait2(t, Config{})
	c.advance(3 * time.Second)
	c.nothing()
	c.peer(pkt("F.", 301, 102))
	c.sent(". seq=102 ack=302")
	c.state(TimeWait)
}

func TestLostLastACK(t *testing.T) {
	// The fourth teardown segment lost: LAST-ACK retransmits its FIN, the
	// TIME-WAIT side ACKs it again (see TestTimeWaitAcksRetransmittedFINAndRestarts).
	c := lastAck(t, Config{})
	c.advanceTo(at(1))
	c.sent("F. seq=101 ack=302")
	c.advanceTo(at(3))
	c.sent("F. seq=101 ack=302")
	c.peer(pkt(".", 302, 102))
	c.state(Closed)
}

func TestAbort(t *testing.T) {
	// RFC9293 3.10.5 (ABORT).
	c := established(t, Config{})
	c.user(Send(100))
	c.clear()
	c.user(Abort())
	c.sent("R. seq=201 ack=301")
	c.state(Closed)
	c.notes(NoteAborted)

	c = newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 1))
	c.clear()
	c.user(Abort())
	c.nothing()
	c.state(Closed)

	c = timeWait(t, Config{})
	c.user(Abort())
	c.nothing()
	c.state(Closed)

	c = newConn(t, Config{})
	c.userErr(Abort(), ErrConnectionDoesNotExist)
}

func itoa(s Seq) string { return Seq.String(s) }

// TestFiveCausesOfRST walks the background articles' list of the five
// situations in which TCP sends a reset.
func TestFiveCausesOfRST(t *testing.T) {
	t.Run("1 a SYN to a port nobody listens on", func(t *testing.T) {
		c := newConn(t, Config{}) // no TCB for the port: CLOSED
		c.peer(pkt("S", 1000, 0))
		c.sent("R. seq=0 ack=1001")
	})
	t.Run("2 one side fails and aborts", func(t *testing.T) {
		c := established(t, Config{})
		c.user(Abort())
		c.sent("R. seq=101 ack=301")
	})
	t.Run("3 a segment for a connection that does not exist", func(t *testing.T) {
		c := newConn(t, Config{}) // e.g. the host rebooted and lost the connection
		c.peer(pkt("P.", 5000, 777, data(100)))
		c.sent("R seq=777")
	})
	t.Run("4 retransmissions exhausted", func(t *testing.T) {
		c := established(t, Config{R2: 5 * time.Second})
		c.user(Send(10))
		c.clear()
		c.advance(time.Minute)
		sent := c.takeSent()
		require.Equal(t, FlagRST|FlagACK, sent[len(sent)-1].Seg.Flags)
		c.state(Closed)
	})
	t.Run("5 an application releases a finished connection at once", func(t *testing.T) {
		c := closeWait(t, Config{})
		c.user(Abort()) // instead of CLOSE, LAST-ACK and the wait for the ACK
		c.sent("R. seq=101 ack=302")
		c.state(Closed)
	})
}

func TestCloseFullResetsWhenDataIsLost(t *testing.T) {
	// RFC9293 SHLD-3: after a full close (CloseFull) the user reads no
	// more. Data unread at the close, or new data arriving later, is lost,
	// and a RST says so; old duplicates are only acknowledged. In CLOSING,
	// LAST-ACK and TIME-WAIT the TCB is deleted as ABORT deletes it.
	rst := func(c *conn) {
		t.Helper()
		c.state(Closed)
		notes := c.take(ActNotify)
		require.NotEmpty(t, notes)
		require.Equal(t, NoteAborted, notes[len(notes)-1].Note)
		var flags []Flags
		for _, a := range c.takeSent() {
			flags = append(flags, a.Seg.Flags&FlagRST)
		}
		require.Contains(t, flags, FlagRST, "a RST went out")
	}
	gone := func(c *conn) {
		t.Helper()
		c.state(Closed)
		c.nothing()
	}
	t.Run("nothing unread closes as CLOSE does", func(t *testing.T) {
		c := established(t, Config{})
		c.user(CloseFull())
		c.sent("F. seq=101 ack=301")
		c.state(FinWait1)
		c.peer(pkt(".", 291, 102, data(10))) // an old duplicate: only ACKed
		c.sent(". seq=102 ack=301")
		c.state(FinWait1)
		c.peer(pkt(".", 301, 102))
		c.state(FinWait2)
	})
	t.Run("ESTABLISHED, data unread", func(t *testing.T) {
		c := established(t, Config{QuickACK: true})
		c.peer(pkt("P.", 301, 101, data(10)))
		c.clear()
		c.user(CloseFull())
		rst(c)
	})
	t.Run("CLOSE-WAIT, data unread", func(t *testing.T) {
		c := established(t, Config{})
		c.peer(pkt("FP.", 301, 101, data(10)))
		c.state(CloseWait)
		c.clear()
		c.user(CloseFull())
		rst(c)
	})
	t.Run("FIN-WAIT-1, new data", func(t *testing.T) {
		c := established(t, Config{})
		c.user(CloseFull())
		c.clear()
		c.peer(pkt("P.", 301, 101, data(10)))
		rst(c)
	})
	t.Run("FIN-WAIT-1, new data with FIN", func(t *testing.T) {
		c := established(t, Config{})
		c.user(CloseFull())
		c.clear()
		c.peer(pkt("FP.", 301, 101, data(10)))
		rst(c)
	})
	t.Run("FIN-WAIT-1, data unread at a full close after CLOSE", func(t *testing.T) {
		c := finWait1(t, Config{QuickACK: true})
		c.peer(pkt("P.", 301, 101, data(10)))
		c.clear()
		c.user(CloseFull())
		rst(c)
	})
	t.Run("FIN-WAIT-2, new data", func(t *testing.T) {
		c := finWait2(t, Config{})
		c.user(CloseFull())
		c.nothing()
		c.peer(pkt("P.", 301, 102, data(10)))
		rst(c)
	})
	t.Run("FIN-WAIT-2, new data with FIN", func(t *testing.T) {
		c := finWait2(t, Config{})
		c.user(CloseFull())
		c.peer(pkt("FP.", 301, 102, data(10)))
		rst(c)
	})
	t.Run("FIN-WAIT-2, data unread", func(t *testing.T) {
		c := finWait2(t, Config{QuickACK: true})
		c.peer(pkt("P.", 301, 102, data(10)))
		c.clear()
		c.user(CloseFull())
		rst(c)
	})
	t.Run("SYN-RECEIVED, data on the third ACK", func(t *testing.T) {
		c := synReceived(t, Config{})
		c.user(CloseFull())
		c.peer(pkt("P.", 301, 101, data(10)))
		rst(c)
	})
	t.Run("SYN-RECEIVED, data and FIN on the third ACK", func(t *testing.T) {
		c := synReceived(t, Config{})
		c.user(CloseFull())
		c.peer(pkt("FP.", 301, 101, data(10)))
		rst(c)
	})
	t.Run("SYN-RECEIVED of a simultaneous open, data on the crossing SYN-ACK", func(t *testing.T) {
		c := activeSynReceived(t, Config{})
		c.user(CloseFull())
		c.peer(pkt("S.", 300, 101, data(10)))
		rst(c)
	})
	t.Run("CLOSING, data unread", func(t *testing.T) {
		c := established(t, Config{QuickACK: true})
		c.peer(pkt("P.", 301, 101, data(10)))
		c.user(Close())
		c.peer(pkt("F.", 311, 101))
		c.state(Closing)
		c.clear()
		c.user(CloseFull())
		gone(c)
	})
	t.Run("LAST-ACK, data unread", func(t *testing.T) {
		c := established(t, Config{})
		c.peer(pkt("FP.", 301, 101, data(10)))
		c.user(Close())
		c.state(LastAck)
		c.clear()
		c.user(CloseFull())
		gone(c)
	})
	t.Run("TIME-WAIT, data unread", func(t *testing.T) {
		c := established(t, Config{QuickACK: true})
		c.peer(pkt("P.", 301, 101, data(10)))
		c.user(Close())
		c.peer(pkt("F.", 311, 102))
		c.state(TimeWait)
		c.clear()
		c.user(CloseFull())
		gone(c)
	})
}

func TestDelayedFINACKRidesOnOurFIN(t *testing.T) {
	// SHLD-18 applied to the peer's FIN (Config.DelayFINACK): an
	// application that closes within the delayed-ACK time sends FIN and
	// ACK in one segment, a three-segment teardown as Linux makes.
	c := established(t, Config{DelayFINACK: true})
	c.peer(pkt("F.", 301, 101))
	c.state(CloseWait)
	c.nothing()
	c.notes(NotePeerClosed)
	c.advance(40 * time.Millisecond)
	c.nothing()
	c.user(Close())
	c.sent("F. seq=101 ack=302")
	c.state(LastAck)
	c.advance(time.Second / 2)
	require.Empty(t, c.takeSent(), "no ACK follows: the FIN carried it")

	// An application that closes later: the ACK goes when the timer fires.
	c = established(t, Config{DelayFINACK: true})
	c.peer(pkt("F.", 301, 101))
	c.nothing()
	c.advance(200 * time.Millisecond)
	c.sent(". seq=101 ack=302")
	c.user(Close())
	c.sent("F. seq=101 ack=302")

	// By default the ACK goes at once.
	c = established(t, Config{})
	c.peer(pkt("F.", 301, 101))
	c.sent(". seq=101 ack=302")
}
