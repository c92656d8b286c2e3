package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// drawNearPrediction draws a segment close to what header prediction
// takes: mostly the next in-order data or an ACK of new data, with one
// field at a time nudged off the predicted shape.
func drawNearPrediction(t *rapid.T, tcb *TCB) Segment {
	s := Segment{
		SrcPort: peerPort, DstPort: ourPort,
		Seq:    tcb.RcvNxt.Add(uint32(rapid.SampledFrom([]int{0, 0, 0, 0, 1, -1, 1460}).Draw(t, "dseq"))),
		Flags:  Flags(rapid.SampledFrom([]uint8{0x10, 0x10, 0x18, 0x18, 0x11, 0x30, 0x14, 0x12, 0x00}).Draw(t, "flags")),
		Window: uint16(tcb.SndWnd >> tcb.sndShift()),
	}
	inflight := int(tcb.SndNxt.Diff(tcb.SndUna))
	switch rapid.IntRange(0, 4).Draw(t, "ackKind") {
	case 0, 1:
		s.Ack = tcb.SndUna
	case 2:
		s.Ack = tcb.SndUna.Add(uint32(rapid.IntRange(0, inflight).Draw(t, "acked")))
	case 3:
		s.Ack = tcb.SndNxt.Add(uint32(rapid.IntRange(-2, 2).Draw(t, "dack")))
	default:
		s.Ack = tcb.SndUna.Add(uint32(rapid.IntRange(-70000, 70000).Draw(t, "far")))
	}
	if rapid.IntRange(0, 4).Draw(t, "wchange") == 0 {
		s.Window = uint16(rapid.SampledFrom([]int{0, 0, 1, 100, 65535, rapid.IntRange(0, 65535).Draw(t, "win")}).Draw(t, "wsize"))
	}
	if n := rapid.SampledFrom([]int{0, 0, 1, 100, 1460, 1460, 3000, 65535}).Draw(t, "len"); n > 0 {
		s.Payload = zeros[:n]
	}
	if tcb.flags&flagTS != 0 && rapid.IntRange(0, 9).Draw(t, "nots") > 0 {
		s.Options.Present = OptTimestamps
		s.Options.TSVal = tcb.tsRecent + uint32(rapid.SampledFrom([]int{0, 1, 1, 1000, -1}).Draw(t, "dts"))
		s.Options.TSEcr = tcb.tsVal(0) + uint32(rapid.IntRange(0, 2000).Draw(t, "ecr"))
	}
	if rapid.IntRange(0, 5).Draw(t, "sack") == 0 {
		l := tcb.SndUna.Add(uint32(rapid.IntRange(0, inflight).Draw(t, "sl")))
		s.Options.AddSACK(SACKBlock{l, l.Add(uint32(rapid.IntRange(1, 3000).Draw(t, "sn")))})
	}
	return s
}

// TestPredictionMatchesFullPath steps copies of random ESTABLISHED TCBs
// through header prediction, through Step (which tries inOrderData
// first), and through the full RFC 9293 section 3.10.7.4 path, for
// segments near the predicted shapes: the TCBs and the actions must come
// out identical. It also counts how often prediction and inOrderData took
// the segment, so the test fails if either never applies.
func TestPredictionMatchesFullPath(t *testing.T) {
	taken, inOrder, pure, total := 0, 0, 0, 0
	checkTaken(t, func() bool { return taken >= minTaken && inOrder >= minTaken && pure >= minTaken }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		for range 20 {
			seg := drawNearPrediction(rt, &c.tcb)
			now := c.now.Add(time.Duration(rapid.IntRange(0, 50).Draw(rt, "ms")) * time.Millisecond)

			// Header prediction alone (segmentArrives), against the full path.
			fast := c.tcb
			got := fast.segmentArrives(&seg, 0, now, nil)
			got = fast.output(now, got)
			full := c.tcb
			want := fullPath(&full, &seg, 0, false, now)
			require.Equal(rt, want, got, "actions for %v", seg.String())
			require.Equal(rt, full, fast, "TCB after %v", seg.String())

			// Step, which tries inOrderData first, with output and
			// without (More).
			more := rapid.IntRange(0, 3).Draw(rt, "more") == 0
			ev := Arrive(&seg, 0)
			ev.More = more
			requireStepIsFullPath(rt, c.tcb, ev, now)

			probe := c.tcb
			if _, ok := probe.predict(&seg, now, nil); ok {
				taken++
			}
			// Each tried on what Step hands it, as it checks no more.
			probe = c.tcb
			if len(seg.Payload) != 0 {
				if _, ok := probe.inOrderData(now, nil, &seg, more); ok {
					inOrder++
				}
			} else if seg.Flags&FlagFIN == 0 {
				if _, ok := probe.pureACK(now, nil, &seg, more); ok {
					pure++
				}
			}
			total++
		}
	})
	require.GreaterOrEqual(t, taken, minTaken, "header prediction took %d of %d segments", taken, total)
	t.Logf("prediction %d, inOrderData %d, pureACK %d, of %d", taken, inOrder, pure, total)
	require.GreaterOrEqual(t, inOrder, minTaken, "inOrderData took %d of %d segments", inOrder, total)
	require.GreaterOrEqual(t, pure, minTaken, "pureACK took %d of %d segments", pure, total)
}

// advertise is the window field segment writes, with its move of the
// window's edge, and nothing else segment changes.
func (t *TCB) advertise() uint16 {
	last, fl := t.lastAckSent, t.flags
	var a Action
	t.segment(&a, t.SndNxt, 0, 0)
	t.lastAckSent, t.flags = last, fl
	return a.Header.Window
}

// advertiseReference is the window rule segment applies, written plainly,
// one rule per line, as it stood before the loads were shared: segment
// must agree.
func (t *TCB) advertiseReference() uint16 {
	right := t.rightEdge()
	if right.GreaterThan(t.rcvAdv) && right.Diff(t.rcvAdv) >= t.swsThreshold() {
		t.rcvAdv = right
	}
	s := t.rcvShift()
	w := t.RcvWnd()
	field := min((w+(1<<s)-1)>>s, 0xffff)
	bufEnd := t.rcvUser.Add(t.finBit() + t.cfg.rcvBuf)
	if adv := t.RcvNxt.Add(field << s); adv.GreaterThan(bufEnd) {
		field = bufEnd.Diff(t.RcvNxt) >> s
	}
	if adv := t.RcvNxt.Add(field << s); adv.GreaterThan(t.rcvAdv) {
		t.rcvAdv = adv
	}
	return uint16(field)
}

func TestAdvertiseMatchesReference(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		tcb := drawWindowTCB(rt)
		a, b := tcb, tcb
		require.Equal(rt, b.advertiseReference(), a.advertise())
		require.Equal(rt, b, a)
	})
}

func TestWindowMayOpenRulesOutOnly(t *testing.T) {
	// windowMayOpen, which spares a call, may only say no where
	// windowUpdateDue would.
	rapid.Check(t, func(rt *rapid.T) {
		tcb := drawWindowTCB(rt)
		if !tcb.windowMayOpen() {
			require.False(rt, tcb.windowUpdateDue())
		}
	})
}

// drawWindowTCB draws the receive side of a TCB: buffer, scale, what was
// read and received, and the edge advertised, often near where it may
// move.
func drawWindowTCB(rt *rapid.T) TCB {
	var tcb TCB
	tcb.cfg = defaultSettings
	tcb.cfg.rcvBuf = uint32(rapid.SampledFrom([]int{1, 100, 5000, 65535, 1 << 20, 1 << 29}).Draw(rt, "buf"))
	tcb.cfg.mss = 1460
	// A third of the cases without scaling, which segment takes apart.
	tcb.shifts = uint8(max(rapid.IntRange(-7, 14).Draw(rt, "shift"), 0))
	tcb.rcvUser = Seq(rapid.Uint32().Draw(rt, "user"))
	unread := uint32(rapid.IntRange(0, int(tcb.cfg.rcvBuf)).Draw(rt, "unread"))
	tcb.RcvNxt = tcb.rcvUser.Add(unread)
	if rapid.Bool().Draw(rt, "fin") {
		tcb.flags |= flagFinRcvd
		tcb.RcvNxt = tcb.RcvNxt.Add(1)
	}
	if rapid.Bool().Draw(rt, "nearEdge") {
		// Just short of the right edge, around the SWS threshold.
		sws := int(tcb.swsThreshold())
		d := rapid.SampledFrom([]int{0, 1, sws - 1, sws, sws + 1, 2 * sws}).Draw(rt, "d")
		tcb.rcvAdv = tcb.rightEdge().Add(uint32(-d))
		if tcb.rcvAdv.LessThan(tcb.RcvNxt) {
			tcb.rcvAdv = tcb.RcvNxt
		}
	} else {
		tcb.rcvAdv = tcb.RcvNxt.Add(uint32(rapid.IntRange(-3, int(tcb.cfg.rcvBuf-unread)).Draw(rt, "wnd")))
	}
	if rapid.IntRange(0, 3).Draw(rt, "whole") == 0 {
		// A window of whole units of the scale, as segment leaves
		// it, and which its rule for an edge that stays takes apart.
		sh := tcb.rcvShift()
		tcb.rcvAdv = tcb.RcvNxt.Add(tcb.RcvWnd() >> sh << sh)
	}
	return tcb
}

// fullPath is what Step does with a segment, without its shortcuts (no
// inOrderData, no header prediction): RFC 9293 section 3.10.7 step by
// step, then output unless more input follows.
func fullPath(t *TCB, seg *Segment, iss Seq, more bool, now Time) []Action {
	var out []Action
	if t.State == Established && seg.DstPort == t.LocalPort && seg.SrcPort == t.RemotePort {
		idle := now.Sub(t.lastRcv)
		t.lastRcv = now
		t.keepProbes = 0
		out = t.arriveOther(seg, idle, now, nil)
	} else {
		out = t.segmentArrives(seg, iss, now, nil)
	}
	if !more {
		out = t.output(now, out)
	}
	return out
}

// requireStepIsFullPath steps copies of tcb through Step and through
// fullPath and requires the same actions and TCB; it returns the TCB.
func requireStepIsFullPath(t testingT, tcb TCB, ev Event, now Time) TCB {
	t.Helper()
	step := tcb
	got, err := step.Step(ev, now, nil)
	require.NoError(t, err)
	want := fullPath(&tcb, ev.Seg, ev.ISS, ev.More, now)
	require.Equal(t, want, got, "actions for %v (more %v)", ev.Seg.String(), ev.More)
	require.Equal(t, tcb, step, "TCB after %v (more %v)", ev.Seg.String(), ev.More)
	return step
}

// TestInOrderDataWithDataWaitingTakesTheFullPath: in-order data arriving
// while queued data waits for the peer's window to open further (sender
// silly-window avoidance holds it), after an idle spell. The full path's
// output shrinks cwnd to the restart window (RFC 5681 section 4.1) even
// though it sends nothing, so Step must not take the shortcut.
func TestInOrderDataWithDataWaitingTakesTheFullPath(t *testing.T) {
	c := established(t, Config{})
	for range 4 { // grow cwnd past the initial window
		c.user(Send(4000))
		c.peer(pkt(".", 301, c.tcb.SndNxt, win(60000)))
	}
	// The window shrinks to 100 bytes, and data waits for more; the
	// persist timer is due an RTO later, and before it fires the last data
	// sent is over an RTO old.
	c.advance(900 * time.Millisecond)
	c.peer(pkt(".", 301, c.tcb.SndNxt, win(100)))
	c.user(Send(1000))
	require.True(t, c.tcb.running(TimerPersist))
	c.advance(600 * time.Millisecond)
	require.Greater(t, sinceMs(c.now, c.tcb.lastSend), c.tcb.rtoDur())
	iw := c.tcb.iw()
	require.Greater(t, c.tcb.cwnd, iw)
	seg := pkt("P.", 301, c.tcb.SndNxt, win(100), data(100))
	after := requireStepIsFullPath(t, c.tcb, Arrive(&seg, 0), c.now)
	require.Equal(t, iw, after.cwnd, "restart after idle")
	require.Equal(t, Seq(401), after.RcvNxt)
}

// TestInOrderDataIsTakenWithDataInFlight: the shortcut applies while our
// data is in flight, and leaves the retransmission timer running.
func TestInOrderDataIsTakenWithDataInFlight(t *testing.T) {
	c := established(t, Config{})
	c.user(Send(1000))
	c.clear()
	seg := pkt("P.", 301, c.tcb.SndUna, data(100))
	probe := c.tcb
	_, ok := probe.inOrderData(c.now, nil, &seg, false)
	require.True(t, ok, "inOrderData takes in-order data with our data in flight")
	after := requireStepIsFullPath(t, c.tcb, Arrive(&seg, 0), c.now)
	require.True(t, after.running(TimerRetransmit))
}

// wandered is an ESTABLISHED connection with random settings that has
// wandered a while: data each way, some of it acknowledged, some out of
// order. It may have left ESTABLISHED on the way.
func wandered(rt *rapid.T) *conn {
	cfg := Config{RecvBuffer: uint32(rapid.SampledFrom([]int{0, 5000, 1 << 20}).Draw(rt, "rbuf"))}
	if rapid.IntRange(0, 2).Draw(rt, "settings") == 0 {
		// Settings the shortcuts must notice, or take in their stride.
		cfg.Congestion = CongestionAlgorithm(rapid.IntRange(0, 1).Draw(rt, "cubic"))
		cfg.TimerActions = rapid.Bool().Draw(rt, "timerActions")
		cfg.Keepalive = rapid.IntRange(0, 3).Draw(rt, "keepalive") == 0
		cfg.HyStart = rapid.IntRange(0, 3).Draw(rt, "hystart") == 0
		cfg.SlowStartLimit = rapid.SampledFrom([]int{0, 0, 2, -1}).Draw(rt, "ssLimit")
		cfg.PRR = rapid.Bool().Draw(rt, "prr")
		cfg.TailLossProbe = rapid.Bool().Draw(rt, "tlp")
		cfg.QuickACK = rapid.Bool().Draw(rt, "quickACK")
		cfg.DelayFINACK = rapid.IntRange(0, 3).Draw(rt, "delayFINACK") == 0
		drawRTOSettings(rt, &cfg)
		if rapid.IntRange(0, 3).Draw(rt, "userTimeout") == 0 {
			cfg.UserTimeout = time.Minute
		}
	}
	var c *conn
	if rapid.Bool().Draw(rt, "opts") {
		c = negotiated(rt, cfg, wsopt(uint8(rapid.IntRange(0, 14).Draw(rt, "ws"))), tsopt(5000, 100), sackOK())
	} else {
		c = established(rt, cfg)
	}
	c.clear()
	// Wander: data each way, some of it acknowledged, some out of order.
	for range rapid.IntRange(0, 30).Draw(rt, "warm") {
		if c.tcb.State != Established {
			break
		}
		switch rapid.IntRange(0, 4).Draw(rt, "w") {
		case 0:
			_ = c.step(Send(uint32(rapid.IntRange(1, 8000).Draw(rt, "n"))))
		case 1:
			_ = c.step(Receive(c.tcb.RcvNxt.Diff(c.tcb.rcvUser)))
		case 2:
			c.now = c.now.Add(time.Duration(rapid.IntRange(0, 300).Draw(rt, "ms")) * time.Millisecond)
			_ = c.step(Tick())
		case 3:
			// Out of order: a hole of one or more segments before it.
			seg := pkt(".", c.tcb.RcvNxt.Add(uint32(1460*rapid.IntRange(1, 3).Draw(rt, "gap"))), c.tcb.SndUna, data(1460))
			if c.tcb.flags&flagTS != 0 {
				tsopt(c.tcb.tsRecent, 0)(&seg)
			}
			_ = c.step(Arrive(&seg, 0))
		default:
			seg := drawNearPrediction(rt, &c.tcb)
			_ = c.step(Arrive(&seg, 0))
		}
		c.clear()
	}
	return c
}

// TestSendIdleMatchesFullPath steps copies of random ESTABLISHED and
// CLOSE-WAIT TCBs, mostly with nothing in flight, through Step (which
// tries sendIdle first) and through send, for sends near sendIdle's
// shape: the TCBs, the actions and the errors must come out identical.
// It counts how often sendIdle took the call, so the test fails if it
// never applies.
func TestSendIdleMatchesFullPath(t *testing.T) {
	taken, total := 0, 0
	checkTaken(t, func() bool { return taken >= minTaken }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		for range 10 {
			if c.tcb.State != Established && c.tcb.State != CloseWait {
				return
			}
			if rapid.IntRange(0, 4).Draw(rt, "ackAll") > 0 {
				ackAll(rt, c)
			}
			mss := int(c.tcb.effMSS())
			n := uint32(rapid.SampledFrom([]int{1, 100, 1024, mss - 1, mss, mss + 1, 8000, 0}).Draw(rt, "n"))
			urgent := rapid.IntRange(0, 9).Draw(rt, "urgent") == 0
			now := c.now.Add(time.Duration(rapid.SampledFrom([]int{0, 1, 50, 999, 1001, 4000}).Draw(rt, "ms")) * time.Millisecond)

			ev := Send(n)
			if urgent {
				ev = SendUrgent(n)
			}
			step := c.tcb
			got, gerr := step.Step(ev, now, nil)
			full := c.tcb
			want, werr := full.send(now, nil, n, urgent)
			require.Equal(rt, werr, gerr, "error of send %d (urgent %v)", n, urgent)
			require.Equal(rt, want, got, "actions of send %d (urgent %v)", n, urgent)
			require.Equal(rt, full, step, "TCB after send %d (urgent %v)", n, urgent)

			probe := c.tcb
			if _, ok, _ := probe.sendIdle(now, nil, n, urgent); ok {
				taken++
			}
			total++
			c.now = now
			_ = c.step(ev)
			c.clear()
		}
	})
	t.Logf("sendIdle %d of %d", taken, total)
	require.GreaterOrEqual(t, taken, minTaken, "sendIdle took %d of %d sends", taken, total)
}

// TestPureACKMatchesFullPath steps copies of random TCBs in the states
// that wait for the ACK of data or of our FIN (ESTABLISHED, CLOSE-WAIT,
// FIN-WAIT-1, CLOSING, LAST-ACK) through Step (which tries pureACK
// first) and through the full path, for segments near the shape of a
// pure ACK: the TCBs and the actions must come out identical. It counts
// how often pureACK took the segment in each state, so the test fails if
// it never applies in one.
func TestPureACKMatchesFullPath(t *testing.T) {
	taken := map[State]int{}
	total, closed := 0, 0
	checkTaken(t, func() bool {
		return allTaken(taken, Established, CloseWait, FinWait1, Closing, LastAck) && closed >= minTaken
	}, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		peerFIN := func() {
			seg := pkt("F.", c.tcb.RcvNxt, c.tcb.SndUna, win(uint16(c.tcb.SndWnd>>c.tcb.sndShift())))
			if c.tcb.flags&flagTS != 0 {
				tsopt(c.tcb.tsRecent, 0)(&seg)
			}
			_ = c.step(Arrive(&seg, 0))
		}
		// Close one way or the other, or not at all.
		switch rapid.IntRange(0, 4).Draw(rt, "close") {
		case 1:
			_ = c.step(Close()) // FIN-WAIT-1
		case 2:
			peerFIN()
			_ = c.step(Close()) // LAST-ACK
		case 3:
			_ = c.step(Close())
			peerFIN() // CLOSING
		case 4:
			peerFIN() // CLOSE-WAIT
		}
		c.clear()
		for range 40 {
			if !c.tcb.State.sendsData() {
				return
			}
			seg := drawNearPrediction(rt, &c.tcb)
			switch inflight := int(c.tcb.SndNxt.Diff(c.tcb.SndUna)); {
			case inflight > 0 && rapid.IntRange(0, 2).Draw(rt, "pure") == 0:
				// The shape itself: a pure ACK of new data.
				seg.Flags, seg.Seq, seg.Payload = FlagACK, c.tcb.RcvNxt, nil
				seg.Ack = c.tcb.SndUna.Add(uint32(rapid.IntRange(1, inflight).Draw(rt, "acked")))
			case rapid.Bool().Draw(rt, "fin"):
				// An ACK of our FIN, or just short of it.
				seg.Ack = c.tcb.SndNxt.Add(uint32(rapid.IntRange(-1, 0).Draw(rt, "finAck")))
			}
			now := c.now.Add(time.Duration(rapid.IntRange(0, 50).Draw(rt, "ms")) * time.Millisecond)
			ev, probe, ok := requireShortcutIsFullPath(rt, c.tcb, &seg, now, (*TCB).pureACK, false)
			if ok {
				taken[c.tcb.State]++
				if probe.State == Closed {
					closed++
				}
			}
			total++
			c.now = now
			_ = c.step(ev)
			c.clear()
		}
	})
	t.Logf("pureACK %v of %d, %d of them to CLOSED", taken, total, closed)
	for _, s := range []State{Established, CloseWait, FinWait1, Closing, LastAck} {
		require.GreaterOrEqual(t, taken[s], minTaken, "pureACK took %d segments in %v", taken[s], s)
	}
	require.GreaterOrEqual(t, closed, minTaken, "pureACK took the ACK of our FIN in LAST-ACK %d times", closed)
}

// ackAll has the peer acknowledge everything c sent, until nothing is
// left in flight or queued (or eight ACKs), then once more with a window
// drawn, maybe with a FIN; then maybe lets time pass to a Tick.
func ackAll(rt *rapid.T, c *conn) {
	// The peer acknowledges everything, with the window drawn,
	// until nothing is left in flight or queued.
	for range 8 {
		if c.tcb.State.IsSynchronized() && c.tcb.SndNxt == c.tcb.sndEnd && c.tcb.SndUna == c.tcb.SndNxt {
			break
		}
		seg := pkt(".", c.tcb.RcvNxt, c.tcb.SndNxt, win(65535))
		if c.tcb.flags&flagTS != 0 {
			tsopt(c.tcb.tsRecent+1, c.tcb.tsVal(c.now))(&seg)
		}
		_ = c.step(Arrive(&seg, 0))
	}
	seg := pkt(".", c.tcb.RcvNxt, c.tcb.SndNxt,
		win(uint16(rapid.SampledFrom([]int{65535, 65535, 1000, 100, 0}).Draw(rt, "win"))))
	if rapid.IntRange(0, 3).Draw(rt, "fin") == 0 {
		seg.Flags |= FlagFIN
	}
	if c.tcb.flags&flagTS != 0 {
		tsopt(c.tcb.tsRecent+1, c.tcb.tsVal(c.now))(&seg)
	}
	_ = c.step(Arrive(&seg, 0))
	if rapid.Bool().Draw(rt, "delack") {
		c.now = c.now.Add(time.Duration(rapid.SampledFrom([]int{1, 200, 1100, 5000}).Draw(rt, "wait")) * time.Millisecond)
		_ = c.step(Tick())
	}
	c.clear()
}

// TestCloseIdleMatchesFullPath steps copies of random ESTABLISHED and
// CLOSE-WAIT TCBs, mostly with nothing in flight, through Step (which
// tries closeIdle first) and through close: the TCBs, the actions and
// the errors must come out identical. It counts how often closeIdle took
// the call, so the test fails if it never applies.
func TestCloseIdleMatchesFullPath(t *testing.T) {
	taken, total, busy, fulls := map[State]int{}, 0, 0, 0
	checkTaken(t, func() bool { return allTaken(taken, Established, CloseWait) && busy >= minTaken && fulls >= minTaken }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		if rapid.IntRange(0, 4).Draw(rt, "ackAll") > 0 {
			ackAll(rt, c)
		}
		if !c.tcb.State.sendsData() {
			return
		}
		now := c.now.Add(time.Duration(rapid.SampledFrom([]int{0, 1, 50, 1001}).Draw(rt, "ms")) * time.Millisecond)
		// A CLOSE, or a close of both halves (closeFull), which resets
		// instead with data unread: some is left unread at times.
		closeAll := rapid.Bool().Draw(rt, "full")
		if unread := c.tcb.RcvNxt.Diff(c.tcb.rcvUser) - c.tcb.finBit(); unread > 0 && rapid.Bool().Draw(rt, "read") {
			_ = c.step(Receive(unread))
			c.clear()
		}
		ev, fullPath := Close(), (*TCB).close
		if closeAll {
			ev, fullPath = CloseFull(), (*TCB).closeFull
		}
		step := c.tcb
		got, gerr := step.Step(ev, now, nil)
		full := c.tcb
		want, werr := fullPath(&full, now, nil)
		require.Equal(rt, werr, gerr, "error of close (full %v) in %v", closeAll, c.tcb.State)
		require.Equal(rt, want, got, "actions of close (full %v) in %v", closeAll, c.tcb.State)
		require.Equal(rt, full, step, "TCB after close (full %v) in %v", closeAll, c.tcb.State)
		probe := c.tcb
		if _, ok, _ := probe.closeIdle(now, nil, closeAll); ok {
			taken[c.tcb.State]++
			if c.tcb.SndUna != c.tcb.SndNxt {
				busy++
			}
			if closeAll {
				fulls++
			}
		}
		total++
	})
	t.Logf("closeIdle %v of %d, %d of them with data in flight, %d closing both halves", taken, total, busy, fulls)
	for _, s := range []State{Established, CloseWait} {
		require.GreaterOrEqual(t, taken[s], minTaken, "closeIdle took %d of %d closes in %v", taken[s], total, s)
	}
	require.GreaterOrEqual(t, busy, minTaken, "closeIdle took %d closes with data in flight", busy)
	require.GreaterOrEqual(t, fulls, minTaken, "closeIdle took %d closes of both halves", fulls)
}

// peerSeg is a segment from the peer at RCV.NXT acknowledging SND.NXT,
// with the window c last saw and a timestamp when they are in use.
func peerSeg(c *conn, flags string, opts ...func(*Segment)) Segment {
	seg := pkt(flags, c.tcb.RcvNxt, c.tcb.SndNxt, win(uint16(c.tcb.SndWnd>>c.tcb.sndShift())))
	for _, o := range opts {
		o(&seg)
	}
	if c.tcb.flags&flagTS != 0 {
		tsopt(c.tcb.tsRecent, c.tcb.tsVal(c.now))(&seg)
	}
	return seg
}

// toFinWait2 closes c, in ESTABLISHED, and has the peer acknowledge
// everything until our FIN is acknowledged (or eight ACKs).
func toFinWait2(c *conn) {
	_ = c.step(Close())
	for range 8 {
		if c.tcb.State != FinWait1 {
			break
		}
		seg := peerSeg(c, ".", win(65535))
		_ = c.step(Arrive(&seg, 0))
	}
	c.clear()
}

// TestInOrderFINMatchesFullPath steps copies of random ESTABLISHED and
// FIN-WAIT-2 TCBs, mostly with nothing in flight, through Step (which
// tries inOrderFIN first) and through the full path, for segments near
// the shape of the peer's FIN alone at RCV.NXT: the TCBs and the actions
// must come out identical. It counts how often inOrderFIN took the
// segment in each state, so the test fails if it never applies in one.
func TestInOrderFINMatchesFullPath(t *testing.T) {
	taken, total := map[State]int{}, 0
	checkTaken(t, func() bool { return allTaken(taken, Established, FinWait2) }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		if rapid.IntRange(0, 4).Draw(rt, "ackAll") > 0 {
			ackAll(rt, c)
		}
		if c.tcb.State == Established && rapid.Bool().Draw(rt, "fw2") {
			toFinWait2(c)
		}
		for range 4 {
			if c.tcb.State != Established && c.tcb.State != FinWait2 {
				return
			}
			seg := drawNearPrediction(rt, &c.tcb)
			if rapid.IntRange(0, 3).Draw(rt, "shape") > 0 {
				// The shape itself, with drawNearPrediction's window,
				// timestamp and SACK blocks, and now and then its flags,
				// sequence number or text.
				seg.Flags = FlagFIN | FlagACK | Flags(rapid.SampledFrom([]uint8{0, 0, 0x08}).Draw(rt, "psh"))
				seg.Ack = c.tcb.SndUna
				switch rapid.IntRange(0, 5).Draw(rt, "nudge") {
				case 0:
					seg.Flags |= Flags(rapid.SampledFrom([]uint8{0x01, 0x02, 0x04, 0x20}).Draw(rt, "extra"))
				case 1:
					seg.Seq = c.tcb.RcvNxt.Add(uint32(rapid.IntRange(-1, 1).Draw(rt, "dseqFin")))
				case 2:
					seg.Ack = c.tcb.SndNxt.Add(uint32(rapid.IntRange(-1, 1).Draw(rt, "dackFin")))
				default:
					seg.Seq, seg.Payload = c.tcb.RcvNxt, nil
				}
			}
			now := c.now.Add(time.Duration(rapid.IntRange(0, 50).Draw(rt, "ms")) * time.Millisecond)
			ev, _, ok := requireShortcutIsFullPath(rt, c.tcb, &seg, now, (*TCB).inOrderFIN, true)
			if ok {
				taken[c.tcb.State]++
			}
			total++
			c.now = now
			_ = c.step(ev)
			c.clear()
		}
	})
	t.Logf("inOrderFIN %v of %d", taken, total)
	for _, s := range []State{Established, FinWait2} {
		require.GreaterOrEqual(t, taken[s], minTaken, "inOrderFIN took %d of %d segments in %v", taken[s], total, s)
	}
}

// TestTickDelayedACKMatchesFullPath steps copies of random ESTABLISHED,
// CLOSE-WAIT and FIN-WAIT-2 TCBs that owe the peer a delayed ACK through
// Step (which tries tickDelayedACK first) and through tick, at times
// around the timers' deadlines: the TCBs and the actions must come out
// identical. It counts how often tickDelayedACK took the tick in each
// state, so the test fails if it never applies in one.
func TestTickDelayedACKMatchesFullPath(t *testing.T) {
	taken, total := map[State]int{}, 0
	checkTaken(t, func() bool { return allTaken(taken, Established, CloseWait, FinWait2) }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		if rapid.IntRange(0, 4).Draw(rt, "ackAll") > 0 {
			ackAll(rt, c)
		}
		if c.tcb.State == Established {
			switch rapid.IntRange(0, 2).Draw(rt, "close") {
			case 1:
				toFinWait2(c)
			case 2:
				seg := peerSeg(c, "F.")
				_ = c.step(Arrive(&seg, 0)) // CLOSE-WAIT
				c.clear()
			}
		}
		for range 4 {
			if rapid.Bool().Draw(rt, "data") {
				// In-order data that may start the delayed-ACK timer.
				seg := peerSeg(c, "P.", data(rapid.SampledFrom([]int{1, 100, 1000}).Draw(rt, "n")))
				_ = c.step(Arrive(&seg, 0))
				c.clear()
			}
			d, ok := c.tcb.NextDeadline()
			if !ok {
				return
			}
			if dack, ok := c.tcb.Deadline(TimerDelayedACK); ok && rapid.Bool().Draw(rt, "atDelAck") {
				d = dack
			}
			now := d.Add(time.Duration(rapid.SampledFrom([]int{-1, 0, 0, 1, 1000, 3_000_000}).Draw(rt, "us")) * time.Microsecond)
			step := c.tcb
			got, err := step.Step(Tick(), now, nil)
			require.NoError(rt, err)
			full := c.tcb
			want := full.tick(now, nil)
			require.Equal(rt, want, got, "actions of a tick in %v", c.tcb.State)
			require.Equal(rt, full, step, "TCB after a tick in %v", c.tcb.State)
			probe := c.tcb
			if d := probe.timers[slotDelayedACK]; d != 0 && d <= now { // as Step calls it
				if _, ok := probe.tickDelayedACK(now, nil); ok {
					taken[c.tcb.State]++
				}
			}
			total++
			c.now = now
			_ = c.step(Tick())
			c.clear()
		}
	})
	t.Logf("tickDelayedACK %v of %d", taken, total)
	for _, s := range []State{Established, CloseWait, FinWait2} {
		require.GreaterOrEqual(t, taken[s], minTaken, "tickDelayedACK took %d of %d ticks in %v", taken[s], total, s)
	}
}

// TestHandshakeACKMatchesFullPath steps copies of random SYN-RECEIVED
// TCBs (passive opens and simultaneous ones, with options or without,
// some with the SYN-ACK resent, data on the SYN, or a SEND or CLOSE
// queued) through Step (which tries handshakeACK first) and through the
// full path, for segments near the shape of the handshake's ACK: the
// TCBs and the actions must come out identical. It counts how often
// handshakeACK took the segment, so the test fails if it never applies.
func TestHandshakeACKMatchesFullPath(t *testing.T) {
	taken, total := 0, 0
	checkTaken(t, func() bool { return taken >= minTaken }, func(rt *rapid.T) {
		cfg := Config{
			RecvBuffer:      uint32(rapid.SampledFrom([]int{0, 5000, 1 << 20}).Draw(rt, "rbuf")),
			TimerActions:    rapid.Bool().Draw(rt, "timerActions"),
			Keepalive:       rapid.IntRange(0, 3).Draw(rt, "keepalive") == 0,
			QuickACKAtStart: rapid.Bool().Draw(rt, "quickStart"),
			InitialWindow10: rapid.Bool().Draw(rt, "iw10"),
			TailLossProbe:   rapid.Bool().Draw(rt, "tlp"),
		}
		drawRTOSettings(rt, &cfg)
		if rapid.IntRange(0, 3).Draw(rt, "userTimeout") == 0 {
			cfg.UserTimeout = time.Minute
		}
		c := newConn(rt, cfg)
		syn := pkt("S", 300, 0, mss(uint16(rapid.SampledFrom([]int{536, 1460, 9000}).Draw(rt, "mss"))))
		ts := rapid.Bool().Draw(rt, "ts")
		if ts {
			tsopt(5000, 0)(&syn)
		}
		if rapid.Bool().Draw(rt, "ws") {
			wsopt(uint8(rapid.IntRange(0, 14).Draw(rt, "shift")))(&syn)
		}
		if rapid.Bool().Draw(rt, "sackOK") {
			sackOK()(&syn)
		}
		if rapid.IntRange(0, 5).Draw(rt, "synData") == 0 {
			syn.Payload = zeros[:100]
		}
		if rapid.IntRange(0, 4).Draw(rt, "simultaneous") == 0 {
			c.user(Open(ourPort, peerPort, 100))
			syn.Flags = FlagSYN
			_ = c.step(Arrive(&syn, 0))
		} else {
			c.user(ListenOn(ourPort))
			_ = c.step(Arrive(&syn, 100))
		}
		if c.tcb.State != SynReceived {
			return
		}
		switch rapid.IntRange(0, 6).Draw(rt, "before") {
		case 0:
			c.now = c.now.Add(time.Duration(rapid.SampledFrom([]int{1, 3}).Draw(rt, "rtx")) * time.Second)
			_ = c.step(Tick()) // the SYN-ACK again
		case 1:
			_ = c.step(Send(1000))
		case 2:
			_ = c.step(Close())
		case 3:
			_ = c.step(SendUrgent(10))
		}
		c.clear()
		if c.tcb.State != SynReceived {
			return
		}
		now := c.now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(rt, "ms")) * time.Millisecond)
		seg := pkt(".", c.tcb.RcvNxt, c.tcb.Iss.Add(1), win(uint16(rapid.IntRange(0, 65535).Draw(rt, "win"))))
		if ts && rapid.IntRange(0, 9).Draw(rt, "nots") > 0 {
			ecr := c.tcb.tsVal(c.now) + uint32(rapid.SampledFrom([]int64{0, 0, 1, -1, 100000, 1 << 31}).Draw(rt, "ecr"))
			tsopt(5000+uint32(rapid.IntRange(-1, 2).Draw(rt, "dtsval")), ecr)(&seg)
		}
		switch rapid.IntRange(0, 9).Draw(rt, "nudge") {
		case 0:
			seg.Flags |= Flags(rapid.SampledFrom([]uint8{0x01, 0x02, 0x04, 0x08, 0x20}).Draw(rt, "extra"))
		case 1:
			seg.Seq = seg.Seq.Add(uint32(rapid.IntRange(-1, 1).Draw(rt, "dseq")))
		case 2:
			seg.Ack = seg.Ack.Add(uint32(rapid.IntRange(-1, 1).Draw(rt, "dack")))
		case 3:
			seg.Payload = zeros[:rapid.SampledFrom([]int{1, 1000}).Draw(rt, "len")]
		case 4:
			seg.Options.AddSACK(SACKBlock{seg.Ack, seg.Ack.Add(10)})
		}
		if _, _, ok := requireShortcutIsFullPath(rt, c.tcb, &seg, now, (*TCB).handshakeACK, false); ok {
			taken++
		}
		total++
	})
	t.Logf("handshakeACK %d of %d", taken, total)
	require.GreaterOrEqual(t, taken, minTaken, "handshakeACK took %d of %d segments", taken, total)
}

// TestSynACKMatchesFullPath steps copies of random SYN-SENT TCBs (some
// with the SYN resent, or a SEND or CLOSE queued) through Step (which
// tries synACK first) and through the full path, for segments near the
// shape of the SYN-ACK that answers our SYN, with options or without: the
// TCBs and the actions must come out identical. It counts how often
// synACK took the segment, so the test fails if it never applies.
func TestSynACKMatchesFullPath(t *testing.T) {
	taken, total := 0, 0
	checkTaken(t, func() bool { return taken >= minTaken }, func(rt *rapid.T) {
		cfg := Config{
			RecvBuffer:      uint32(rapid.SampledFrom([]int{0, 5000, 1 << 20}).Draw(rt, "rbuf")),
			TimerActions:    rapid.Bool().Draw(rt, "timerActions"),
			Keepalive:       rapid.IntRange(0, 3).Draw(rt, "keepalive") == 0,
			QuickACKAtStart: rapid.Bool().Draw(rt, "quickStart"),
			InitialWindow10: rapid.Bool().Draw(rt, "iw10"),
			NoWindowScale:   rapid.IntRange(0, 3).Draw(rt, "noWS") == 0,
			NoTimestamps:    rapid.IntRange(0, 3).Draw(rt, "noTS") == 0,
		}
		drawRTOSettings(rt, &cfg)
		if rapid.IntRange(0, 3).Draw(rt, "userTimeout") == 0 {
			cfg.UserTimeout = time.Minute
		}
		c := newConn(rt, cfg)
		c.user(Open(ourPort, peerPort, 100))
		switch rapid.IntRange(0, 6).Draw(rt, "before") {
		case 0:
			c.now = c.now.Add(time.Duration(rapid.SampledFrom([]int{1, 3}).Draw(rt, "rtx")) * time.Second)
			_ = c.step(Tick()) // the SYN again
		case 1:
			_ = c.step(Send(1000))
		case 2:
			_ = c.step(Close())
		}
		c.clear()
		if c.tcb.State != SynSent {
			return
		}
		now := c.now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(rt, "ms")) * time.Millisecond)
		seg := pkt("S.", 300, c.tcb.Iss.Add(1), win(uint16(rapid.IntRange(0, 65535).Draw(rt, "win"))))
		if rapid.IntRange(0, 4).Draw(rt, "mss") > 0 {
			mss(uint16(rapid.SampledFrom([]int{0, 536, 1460, 9000}).Draw(rt, "mssv")))(&seg)
		}
		if rapid.Bool().Draw(rt, "ts") {
			ecr := c.tcb.tsVal(c.now) + uint32(rapid.SampledFrom([]int64{0, 0, 1, -1, 100000, 1 << 31}).Draw(rt, "ecr"))
			tsopt(5000, ecr)(&seg)
		}
		if rapid.Bool().Draw(rt, "ws") {
			wsopt(uint8(rapid.IntRange(0, 15).Draw(rt, "shift")))(&seg)
		}
		if rapid.Bool().Draw(rt, "sackOK") {
			sackOK()(&seg)
		}
		switch rapid.IntRange(0, 9).Draw(rt, "nudge") {
		case 0:
			seg.Flags |= Flags(rapid.SampledFrom([]uint8{0x01, 0x04, 0x08, 0x20, 0x40}).Draw(rt, "extra"))
		case 1:
			seg.Flags &^= FlagACK
		case 2:
			seg.Ack = seg.Ack.Add(uint32(rapid.IntRange(-1, 1).Draw(rt, "dack")))
		case 3:
			seg.Payload = zeros[:rapid.SampledFrom([]int{1, 1000}).Draw(rt, "len")]
		case 4:
			seg.SrcPort++
		}
		if _, _, ok := requireShortcutIsFullPath(rt, c.tcb, &seg, now, (*TCB).synACK, false); ok {
			taken++
		}
		total++
	})
	t.Logf("synACK %d of %d", taken, total)
	require.GreaterOrEqual(t, taken, minTaken, "synACK took %d of %d segments", taken, total)
}

// TestReceiveIdleMatchesFullPath steps copies of random ESTABLISHED and
// CLOSE-WAIT TCBs, with data in flight or not, through Step (which tries
// receiveIdle first) and through receive, for RECEIVEs of all that is
// readable, part of it, or more: the TCBs, the actions and the errors
// must come out identical. It counts how often receiveIdle took the call
// in each state, so the test fails if it never applies in one.
func TestReceiveIdleMatchesFullPath(t *testing.T) {
	taken, total := map[State]int{}, 0
	checkTaken(t, func() bool { return allTaken(taken, Established, CloseWait) }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		if rapid.IntRange(0, 2).Draw(rt, "ackAll") > 0 {
			ackAll(rt, c)
		}
		for range 6 {
			if c.tcb.State != Established && c.tcb.State != CloseWait {
				return
			}
			if rapid.Bool().Draw(rt, "data") {
				seg := peerSeg(c, "P.", data(rapid.SampledFrom([]int{1, 100, 1000, 1460}).Draw(rt, "n")))
				seg.Ack = c.tcb.SndUna
				_ = c.step(Arrive(&seg, 0))
				c.clear()
			}
			avail := int(c.tcb.Unread())
			n := uint32(rapid.SampledFrom([]int{avail, avail, avail / 2, avail + 1, 1, 0}).Draw(rt, "n"))
			now := c.now.Add(time.Duration(rapid.IntRange(0, 300).Draw(rt, "ms")) * time.Millisecond)
			step := c.tcb
			got, gerr := step.Step(Receive(n), now, nil)
			full := c.tcb
			want, werr := full.receive(now, nil, n)
			require.Equal(rt, werr, gerr, "error of receive %d", n)
			require.Equal(rt, want, got, "actions of receive %d", n)
			require.Equal(rt, full, step, "TCB after receive %d", n)
			probe := c.tcb
			if _, ok, _ := probe.receiveIdle(now, nil, n); ok {
				taken[c.tcb.State]++
			}
			total++
			c.now = now
			_ = c.step(Receive(n))
			c.clear()
		}
	})
	t.Logf("receiveIdle %v of %d", taken, total)
	for _, s := range []State{Established, CloseWait} {
		require.GreaterOrEqual(t, taken[s], minTaken, "receiveIdle took %d of %d receives in %v", taken[s], total, s)
	}
}

// minTaken is how often each differential test must see its shortcut
// taken (in each state it covers), so that a shortcut that never applies
// fails the test.
const minTaken = 5

// checkTaken runs prop under rapid.Check until enough reports that the
// shortcut was taken often enough, at most 30 times: how often random
// cases take a shortcut varies from one seed to the next, and a test
// that asserted a share of one run would fail now and then.
func checkTaken(t *testing.T, enough func() bool, prop func(*rapid.T)) {
	t.Helper()
	for i := 0; i < 30 && (i == 0 || !enough()); i++ {
		rapid.Check(t, prop)
	}
}

// allTaken reports whether taken counts at least minTaken in each state.
func allTaken(taken map[State]int, states ...State) bool {
	for _, s := range states {
		if taken[s] < minTaken {
			return false
		}
	}
	return true
}

// requireShortcutIsFullPath steps seg, arriving at tcb with More drawn at
// random, through Step and through the full path, requiring the same
// result (requireStepIsFullPath). It returns the event, and whether
// shortcut takes the segment when tried on a copy of tcb, with that copy
// as the shortcut leaves it. It tries the shortcut only on a segment Step
// hands it, one with no text, and with a FIN for inOrderFIN (fin) or
// without one for the others (the tests draw the states): a shortcut
// leaves those checks to Step.
func requireShortcutIsFullPath(rt *rapid.T, tcb TCB, seg *Segment, now Time,
	shortcut func(*TCB, Time, []Action, *Segment, bool) ([]Action, bool), fin bool) (ev Event, probe TCB, taken bool) {
	ev = Arrive(seg, 0)
	ev.More = rapid.IntRange(0, 3).Draw(rt, "more") == 0
	requireStepIsFullPath(rt, tcb, ev, now)
	probe = tcb
	if len(seg.Payload) != 0 || (seg.Flags&FlagFIN != 0) != fin {
		return ev, probe, false
	}
	_, taken = shortcut(&probe, now, nil, seg, ev.More)
	return ev, probe, taken
}

// TestListenMatchesFullPath: Step takes a segment in LISTEN with
// arriveListen alone, skipping output, which must come to what
// segmentArrives and output do for any segment: SYNs with options, data
// or FIN, RSTs, ACKs, segments for another port. It fails too if the
// draws bring too few SYNs through.
func TestListenMatchesFullPath(t *testing.T) {
	syns, total := 0, 0
	checkTaken(t, func() bool { return syns >= minTaken }, func(rt *rapid.T) {
		cfg := Config{
			RecvBuffer:    uint32(rapid.SampledFrom([]int{0, 5000, 1 << 20}).Draw(rt, "rbuf")),
			NoTimestamps:  rapid.Bool().Draw(rt, "noTS"),
			NoSACK:        rapid.Bool().Draw(rt, "noSACK"),
			NoWindowScale: rapid.Bool().Draw(rt, "noWS"),
			TimerActions:  rapid.Bool().Draw(rt, "timerActions"),
			TailLossProbe: rapid.Bool().Draw(rt, "tlp"),
			QuickACK:      rapid.Bool().Draw(rt, "quickACK"),
		}
		if rapid.Bool().Draw(rt, "userTimeout") {
			cfg.UserTimeout = time.Minute
		}
		tcb, err := NewTCB(cfg)
		require.NoError(rt, err)
		_, err = tcb.Step(ListenOn(ourPort), 0, nil)
		require.NoError(rt, err)
		flags := rapid.SampledFrom([]string{"S", "S", "SP", "SF", "S.", "SR", "R", "R.", ".", "P.", "F."}).Draw(rt, "flags")
		seg := pkt(flags, Seq(rapid.Uint32().Draw(rt, "seq")), Seq(rapid.Uint32().Draw(rt, "ack")),
			win(rapid.Uint16().Draw(rt, "win")))
		if rapid.IntRange(0, 9).Draw(rt, "otherPort") == 0 {
			seg.DstPort++
		}
		if rapid.Bool().Draw(rt, "mss") {
			mss(uint16(rapid.IntRange(0, 9000).Draw(rt, "mssValue")))(&seg)
		}
		if rapid.Bool().Draw(rt, "ws") {
			wsopt(uint8(rapid.IntRange(0, 15).Draw(rt, "shift")))(&seg)
		}
		if rapid.Bool().Draw(rt, "ts") {
			tsopt(rapid.Uint32().Draw(rt, "tsval"), 0)(&seg)
		}
		if rapid.Bool().Draw(rt, "sackOK") {
			sackOK()(&seg)
		}
		if rapid.IntRange(0, 3).Draw(rt, "data") == 0 {
			data(rapid.IntRange(1, 3000).Draw(rt, "n"))(&seg)
		}
		ev := Arrive(&seg, Seq(rapid.Uint32().Draw(rt, "iss")))
		ev.More = rapid.IntRange(0, 3).Draw(rt, "more") == 0
		now := Time(rapid.Int64Range(0, 1<<40).Draw(rt, "now"))
		if requireStepIsFullPath(rt, tcb, ev, now).State == SynReceived {
			syns++
		}
		total++
	})
	t.Logf("%d of %d segments in LISTEN opened a connection", syns, total)
	require.GreaterOrEqual(t, syns, minTaken)
}

// TestTimeWaitEndMatchesTick: Step ends TIME-WAIT at its close timer
// without tick's loop, which must come to what tick does, for a Tick just
// before the deadline, at it or after it, with or without timer actions.
// It fails too if the draws bring too few connections to the end of
// TIME-WAIT.
func TestTimeWaitEndMatchesTick(t *testing.T) {
	ended, total := 0, 0
	checkTaken(t, func() bool { return ended >= minTaken }, func(rt *rapid.T) {
		c := wandered(rt)
		if c.tcb.State != Established {
			return
		}
		ackAll(rt, c)
		if c.tcb.State != Established {
			return
		}
		toFinWait2(c)
		if c.tcb.State != FinWait2 {
			return
		}
		seg := peerSeg(c, "F.")
		_ = c.step(Arrive(&seg, 0))
		c.clear()
		if c.tcb.State != TimeWait {
			return
		}
		d, ok := c.tcb.Deadline(TimerClose)
		require.True(rt, ok, "TIME-WAIT without its close timer")
		now := d.Add(time.Duration(rapid.SampledFrom([]int{-1, 0, 0, 1, 1000}).Draw(rt, "us")) * time.Microsecond)
		step := c.tcb
		got, err := step.Step(Tick(), now, nil)
		require.NoError(rt, err)
		full := c.tcb
		want := full.tick(now, nil)
		require.Equal(rt, want, got, "actions of a tick in TIME-WAIT")
		require.Equal(rt, full, step, "TCB after a tick in TIME-WAIT")
		if c.tcb.timeWaitEnds(now) {
			require.Equal(rt, Closed, step.State)
			ended++
		}
		total++
	})
	t.Logf("%d of %d ticks in TIME-WAIT ended it", ended, total)
	require.GreaterOrEqual(t, ended, minTaken)
}

// TestLongRTTSamplesMatchFullPath: RTT samples of seconds to half an
// hour, with MaxRTO at its least or raised, timed or from a timestamp
// echo, first or later, through the three places that work out the RTO of
// a sample: rttSampleUs on the full path, and written out in pureACK and,
// for the handshake's first sample, in establishOnSYNAck (synACK and
// handshakeACK). Step and the full path must come out identical, each
// shortcut must take its segments, and each must meet RTOs past
// minMaxRTO that MaxRTO caps and, when raised, ones it lets through.
func TestLongRTTSamplesMatchFullPath(t *testing.T) {
	samples := []time.Duration{
		15 * time.Second, 25 * time.Second, 40 * time.Second, 90 * time.Second,
		5 * time.Minute, 30 * time.Minute, 10 * time.Millisecond, 2 * time.Second,
	}
	capped, through := map[string]int{}, map[string]int{}
	// check steps seg through Step and the full path, requires shortcut
	// to take it, and counts how the RTO came out against MaxRTO.
	check := func(c *conn, name string, seg Segment, maxRTO time.Duration,
		shortcut func(*TCB, Time, []Action, *Segment, bool) ([]Action, bool)) {
		t.Helper()
		after := requireStepIsFullPath(t, c.tcb, Arrive(&seg, 0), c.now)
		probe := c.tcb
		_, ok := shortcut(&probe, c.now, nil, &seg, false)
		require.True(t, ok, "%s takes %v at %v", name, seg.String(), c.now)
		limit := uint32(max(maxRTO, minMaxRTO) / time.Microsecond)
		switch rto := after.rto; {
		case rto == limit:
			capped[name]++
		case rto > uint32(minMaxRTO/time.Microsecond):
			through[name]++
		}
		c.peer(seg)
		c.clear()
	}
	for _, maxRTO := range []time.Duration{0, 90 * time.Second, 10 * time.Minute, 9 * time.Hour} {
		for _, ts := range []bool{false, true} {
			cfg := Config{MaxRTO: maxRTO, NoTimestamps: !ts}
			for _, x := range samples {
				// synACK: the SYN-ACK x after our SYN.
				c := newConn(t, cfg)
				c.user(Open(ourPort, peerPort, 100))
				c.clear()
				c.now = c.now.Add(x)
				check(c, "synACK", pkt("S.", 300, 101, mss(1460), tsopt(5000, c.tcb.tsVal(0))), maxRTO, (*TCB).synACK)

				// handshakeACK: the ACK x after our SYN-ACK.
				c = newConn(t, cfg)
				c.user(ListenOn(ourPort))
				syn := pkt("S", 300, 0, mss(1460), tsopt(5000, 0))
				require.NoError(t, c.step(Arrive(&syn, 100)))
				c.clear()
				ecr := c.tcb.tsVal(0)
				c.now = c.now.Add(x)
				check(c, "handshakeACK", pkt(".", 301, 101, tsopt(5001, ecr)), maxRTO, (*TCB).handshakeACK)
			}
			// pureACK: data sent, then acknowledged each sample later, from
			// a first sample on and after the handshake's.
			for _, first := range []bool{true, false} {
				c := newConn(t, cfg)
				c.user(Open(ourPort, peerPort, 100))
				c.peer(pkt("S.", 300, 101, mss(1460), tsopt(5000, c.tcb.tsVal(0))))
				c.clear()
				if first {
					c.tcb.flags &^= flagHaveRtt // the next sample is the first
				}
				for i, x := range samples {
					c.user(Send(100))
					c.clear()
					ecr := c.tcb.tsVal(c.now)
					c.now = c.now.Add(x)
					check(c, "pureACK", pkt(".", 301, c.tcb.SndNxt, tsopt(5001+uint32(i), ecr)), maxRTO, (*TCB).pureACK)
				}
			}
		}
	}
	t.Logf("capped %v, let through %v", capped, through)
	for _, name := range []string{"synACK", "handshakeACK", "pureACK"} {
		require.GreaterOrEqual(t, capped[name], minTaken, "%s: RTOs MaxRTO capped", name)
		require.GreaterOrEqual(t, through[name], minTaken, "%s: RTOs past 60 s MaxRTO let through", name)
	}
}

// drawRTOSettings draws the settings the RTO rule reads besides the
// samples (MinRTO and MinRTOOnVariance), so that each copy of the rule a
// shortcut runs is compared with rttSampleUs under them.
func drawRTOSettings(rt *rapid.T, cfg *Config) {
	cfg.MinRTO = rapid.SampledFrom([]time.Duration{0, 200 * time.Millisecond}).Draw(rt, "minRTO")
	cfg.MinRTOOnVariance = rapid.Bool().Draw(rt, "minRTOOnVariance")
}
