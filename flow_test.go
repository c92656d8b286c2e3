package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Delayed ACK, Nagle, silly-window avoidance, window probes (RFC 9293
// sections 3.8.6 and 3.8.6.3).

func TestDelayedACK(t *testing.T) {
	// SHLD-18, MUST-40: one sub-MSS segment is not ACKed at once.
	c := established(t, Config{})
	c.peer(pkt("P.", 301, 101, data(100)))
	c.nothing()
	c.timer(TimerDelayedACK, at(0.2))
	c.advanceTo(at(0.2) - 1)
	c.nothing()
	c.advanceTo(at(0.2))
	c.sent(". seq=101 ack=401")
	var cfg Config
	cfg.DelayedACK = 500 * time.Millisecond
	require.ErrorIs(t, cfg.Validate(), ErrConfigDelayedACK)
}

func TestACKEverySecondFullSegment(t *testing.T) {
	// SHLD-19.
	c := established(t, Config{})
	c.peer(pkt(".", 301, 101, data(1460)))
	c.nothing()
	c.peer(pkt(".", 1761, 101, data(1460)))
	c.sent(". seq=101 ack=3221")
	c.timer(TimerDelayedACK, 0)
}

func TestACKEverySecondSegmentOfThePeersSize(t *testing.T) {
	// SHLD-19, RFC 5681 section 4.2: "full-sized" is the peer's segment
	// size as seen, which a path or its options may make smaller than our
	// MSS: two 1420-byte segments are ACKed at once, not after a third or
	// the timer.
	c := established(t, Config{})
	c.peer(pkt(".", 301, 101, data(1420)))
	c.nothing()
	c.peer(pkt(".", 1721, 101, data(1420)))
	c.sent(". seq=101 ack=3141")
	c.timer(TimerDelayedACK, 0)
	// A smaller segment does not lower the estimate.
	c.peer(pkt(".", 3141, 101, data(100)))
	c.peer(pkt(".", 3241, 101, data(1420)))
	c.nothing()
	c.peer(pkt(".", 4661, 101, data(1420)))
	c.sent(". seq=101 ack=6081")
}

func TestQuickACKAfterOutOfOrder(t *testing.T) {
	// After out-of-order data, the next 16 in-order segments are ACKed
	// one by one (a sender recovering from loss often sends one at a
	// time), then every second one again.
	c := established(t, Config{})
	c.peer(pkt(".", 401, 101, data(100))) // out of order: ACK at once
	c.sent(". seq=101 ack=301")
	c.peer(pkt(".", 301, 101, data(100))) // fills the hole: ACK at once
	c.sent(". seq=101 ack=501")
	next := Seq(501)
	for i := range maxQuickAcks {
		c.peer(pkt(".", next, 101, data(100)))
		next = next.Add(100)
		c.sent(". seq=101 ack=" + itoa(next))
		require.Equal(t, maxQuickAcks-1-i, int(c.tcb.quickAcks))
	}
	c.peer(pkt(".", next, 101, data(100)))
	c.nothing()
	c.peer(pkt(".", next.Add(100), 101, data(100)))
	c.sent(". seq=101 ack=" + itoa(next.Add(200)))
}

func TestDelayedACKRidesOnData(t *testing.T) {
	c := established(t, Config{})
	c.peer(pkt("P.", 301, 101, data(100)))
	c.nothing()
	c.user(Send(10)) // the reply carries the ACK
	c.sent("P. seq=101 ack=401 len=10")
	c.timer(TimerDelayedACK, 0)
}

func TestQuickACK(t *testing.T) {
	c := established(t, Config{QuickACK: true})
	c.peer(pkt("P.", 301, 101, data(100)))
	c.sent(". seq=101 ack=401")
}

func TestNagle(t *testing.T) {
	// SHLD-7, MUST-60, MUST-17.
	c := established(t, Config{})
	c.user(Send(1))
	c.sent("P. seq=101 len=1") // nothing in flight: at once
	c.advanceTo(at(0.1))
	c.user(Send(1))
	c.nothing() // held: small data in flight
	c.peer(pkt(".", 301, 102))
	c.sent("P. seq=102 len=1")

	c = established(t, Config{NoDelay: true})
	c.user(Send(1))
	c.user(Send(1))
	c.sent("P. seq=101 len=1", "P. seq=102 len=1")
}

func TestSenderSWSAvoidance(t *testing.T) {
	// MUST-38: window 100 B after 10 kB: no 100-byte segment until the
	// override (the persist timer) fires.
	c := established(t, Config{})
	c.peer(pkt(".", 301, 101, win(10000)))
	c.peer(pkt(".", 301, 101, win(100)))
	c.user(Send(5000))
	c.nothing()
	c.timer(TimerPersist, at(1))
	c.advanceTo(at(1))
	c.sent(". seq=101 len=100")
	// Half the largest window goes at once.
	c = established(t, Config{})
	c.peer(pkt(".", 301, 101, win(10000)))
	c.peer(pkt(".", 301, 101, win(5000)))
	c.user(Send(8000))
	c.sent(". seq=101 len=1460", ". seq=1561 len=1460", ". seq=3021 len=1460")
	c.peer(pkt(".", 301, 3021, win(5000)))
	// 620 of the last 700 bytes fit: less than half the largest window, so
	// they wait for the next ACK rather than go as a runt.
	c.sent(". seq=4481 len=1460", ". seq=5941 len=1460")
	c.peer(pkt(".", 301, 5941, win(5000)))
	// Now all 700 fit; only full-sized segments are in flight, so Nagle
	// (with Minshall's variant) lets the tail go.
	c.sent("P. seq=7401 len=700")
}

func TestZeroWindowProbes(t *testing.T) {
	// MUST-36, SHLD-29, SHLD-30, MUST-37.
	c := established(t, Config{})
	c.peer(pkt(".", 301, 101, win(0)))
	c.user(Send(1000))
	c.nothing()
	for _, sec := range []float64{1, 3, 7, 15, 31, 63, 123, 183} {
		c.advanceTo(at(sec))
		c.sent(". seq=100 ack=301") // <SEQ=SND.NXT-1>: forces an ACK with the window
		c.peer(pkt(".", 301, 101, win(0)))
	}
	c.advanceTo(at(3600))
	c.state(Established) // an answered probe never times out
	c.clear()
	c.peer(pkt(".", 301, 101, win(2000))) // the window opens
	c.sent("P. seq=101 len=1000")
	require.Zero(t, c.tcb.retries)
}

func TestWindowClosesWithDataInFlight(t *testing.T) {
	// MUST-35: the retransmission timer turns into window probes.
	c := established(t, Config{R2: 20 * time.Second})
	c.user(Send(1000))
	c.clear()
	c.peer(pkt(".", 301, 101, win(0)))
	for range 10 {
		d, _ := c.tcb.NextDeadline()
		c.advanceTo(d)
		c.sent(". seq=100 ack=301")
		c.peer(pkt(".", 301, 101, win(0)))
	}
	c.state(Established)
	c.peer(pkt(".", 301, 101, win(5000)))
	c.sent("P. seq=101 len=1000") // the window opened: resend at once
	c.peer(pkt(".", 301, 1101, win(5000)))
	c.state(Established)
	c.timer(TimerRetransmit, 0)
}

func TestReceiverMayKeepWindowClosed(t *testing.T) {
	// MAY-8 and MUST-39: the app never reads; every ACK says 0.
	c := established(t, Config{RecvBuffer: 1000, QuickACK: true})
	c.peer(pkt(".", 301, 101, data(1000)))
	c.sent(". seq=101 ack=1301 win=0")
	for i := range 5 {
		c.peer(pkt(".", 1301, 101, data(10)))
		c.sent(". seq=101 ack=1301 win=0")
		_ = i
	}
	c.notes(NoteReadable)
	// Reading 100 bytes at a time does not move the edge until an MSS
	// (or half the buffer) is free (MUST-39).
	c.user(Receive(100))
	c.nothing()
	c.user(Receive(400))
	c.sent(". seq=101 ack=1301 win=500")
}

func TestShrunkWindowNoAbort(t *testing.T) {
	// SHLD-17 / MAY-7: data past a shrunk edge goes unACKed for longer
	// than R2 while in-window data is ACKed: no abort.
	c := established(t, Config{NoDelay: true, R2: 10 * time.Second})
	c.peer(pkt(".", 301, 101, win(4000)))
	c.user(Send(4000))
	c.clear()
	una := Seq(101)
	for i := range 30 {
		c.advance(time.Second)
		una = una.Add(100)
		c.peer(pkt(".", 301, una, win(100))) // the edge stays just past SND.UNA
		_ = i
	}
	c.state(Established)
}

func TestNoDelayPerConnection(t *testing.T) {
	// MUST-17: the application turns Nagle off (and on) per connection.
	c := established(t, Config{})
	c.user(Send(1))
	c.sent("P. seq=101 len=1")
	c.user(Send(1))
	c.nothing() // held: small data in flight
	c.user(SetNoDelay(true))
	c.sent("P. seq=102 len=1") // what Nagle held goes at once
	c.user(Send(1))
	c.sent("P. seq=103 len=1")
	c.user(SetNoDelay(false))
	c.user(Send(1))
	c.nothing()
	// Before the connection opens, the setting waits for it.
	c = newConn(t, Config{})
	c.user(SetNoDelay(true))
	c.nothing()
	require.NotZero(t, c.tcb.cfg.opts&optNoDelay)
}

func TestQuickACKAtStart(t *testing.T) {
	// As Linux at the start of a connection (RFC 5681 4.2 allows ACKing
	// more often): the first 16 in-order data segments are ACKed at once,
	// the 17th waits for the delayed-ACK timer.
	c := established(t, Config{QuickACKAtStart: true})
	seq := Seq(301)
	for i := range 16 {
		c.peer(pkt("P.", seq, 101, data(100)))
		seq = seq.Add(100)
		c.sent(". seq=101 ack=" + itoa(seq))
		require.Equal(t, seq, c.tcb.RcvNxt, "segment %d", i)
	}
	c.peer(pkt("P.", seq, 101, data(100)))
	c.nothing()
	// The passive side too, from its first data.
	s := synReceived(t, Config{QuickACKAtStart: true})
	s.peer(pkt("P.", 301, 101, data(100)))
	s.sent(". seq=101 ack=401")
}

func TestFlushEndsABatch(t *testing.T) {
	// MUST-58: segments stepped with More owe one ACK, sent by Flush.
	c := established(t, Config{})
	for i := range 4 {
		seg := pkt(".", Seq(301+1460*i), 101, data(1460))
		ev := Arrive(&seg, 0)
		ev.More = true
		require.NoError(t, c.step(ev))
	}
	c.nothing()
	c.user(Flush())
	c.sent(". seq=101 ack=" + itoa(Seq(301+4*1460)))
	c.user(Flush())
	c.nothing() // nothing more is owed
}
