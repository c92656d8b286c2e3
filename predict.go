package tcpfsm

import (
	"math/bits"
	"time"
)

// Header prediction (Van Jacobson's, as in 4.4BSD's tcp_input): in a bulk
// transfer almost every segment is either the next in-order data with
// nothing new acknowledged, or a pure ACK of new data. predict recognises
// those two and applies them directly; everything else takes the full
// path of RFC 9293 section 3.10.7.4 (arriveOther). The result must be the
// same either way: TestPredictionMatchesFullPath steps copies of a TCB
// through both for random segments and compares TCBs and actions.

// predict applies seg if it is one of the predicted shapes and reports
// whether it did. t is in ESTABLISHED and seg's ports match.
func (t *TCB) predict(seg *Segment, now Time, out []Action) ([]Action, bool) {
	// The shapes share: flags ACK (PSH allowed), the expected sequence
	// number, no SACK blocks to record, nothing waiting behind a hole,
	// and when timestamps are in use, a timestamp that passes PAWS.
	if seg.Flags&^FlagPSH != FlagACK || seg.Seq != t.RcvNxt ||
		seg.Options.NumSACK != 0 || t.flags&(flagFinPending|flagRecovery|flagProbeRtx) != 0 {
		return out, false
	}
	if !t.tsFresh(seg) {
		return out, false
	}
	wnd := uint32(seg.Window) << t.sndShift()
	n := uint32(len(seg.Payload))
	switch {
	case n > 0:
		// In-order data: nothing new acknowledged, the same window, no
		// out-of-order data to join, and all of it inside the window.
		if seg.Ack != t.SndUna || wnd != t.SndWnd || t.ooo[0].Left != t.ooo[0].Right ||
			n > t.RcvWnd() {
			return out, false
		}
	case t.SndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(t.SndNxt):
		// A pure ACK of new data.
	default:
		return out, false
	}

	// The timestamp of the segment the next ACK acknowledges becomes
	// TS.Recent (RFC 7323 section 4.3).
	t.takeTSRecent(seg)
	if n == 0 {
		out = t.ackAdvance(seg.Ack, t.echo(seg), now, out)
	}
	// The window update rule (RFC 9293 section 3.10.7.4, WL1/WL2).
	t.updateWindow(seg.Seq, seg.Ack, wnd)
	if n == 0 {
		return out, true
	}
	var a *Action
	out, a = push(out, ActAccept)
	a.DataSeq, a.DataLen = t.RcvNxt, n
	t.RcvNxt = t.RcvNxt.Add(n)
	t.sawText(n)
	t.ackOwed()
	if t.RcvNxt.GreaterThan(t.rcvAdv) {
		t.rcvAdv = t.RcvNxt
	}
	return notify(out, NoteReadable), true
}

// inOrderData is the whole Step (segmentArrives, then output) for the
// commonest segment of a bulk transfer, the next in-order data with
// nothing new acknowledged, when there is nothing for output to send but
// the ACK: prediction's first shape, with output's work done in line.
// Anything else it hands, having changed nothing, to the full path
// (arrive), and reports false. Step calls it for any segment with data in
// ESTABLISHED, and only then: it checks neither. TestPredictionMatchesFullPath
// and FuzzStep hold it to the full path.
func (t *TCB) inOrderData(now Time, out []Action, seg *Segment, more bool) ([]Action, bool) {
	n := uint32(len(seg.Payload))
	// Prediction's conditions (see predict), and output's: nothing to
	// retransmit or send, no FIN due, no urgent data to mark; and no
	// retransmitted tail loss probe waiting for its verdict (probeAcked
	// reads every ACK then).
	nxt, fl := t.RcvNxt, t.flags
	if seg.Flags&^FlagPSH != FlagACK || seg.Seq != nxt || seg.Ack != t.SndUna ||
		!t.ours(seg) || seg.Options.NumSACK != 0 ||
		fl&(flagFinPending|flagRecovery|flagCloseCalled|flagUrgPending|flagProbeRtx) != 0 ||
		t.ooo[0].Left != t.ooo[0].Right || t.sndRtx != t.SndNxt || t.SndNxt != t.sndEnd ||
		uint32(seg.Window)<<t.sndShift() != t.SndWnd {
		return t.arrive(now, out, seg, more), false
	}
	// The data fits the window: n > RcvWnd(), with n > 0 known.
	if w := t.rcvAdv.Diff(nxt); int32(w) < 0 || n > w {
		return t.arrive(now, out, seg, more), false
	}
	// With data in flight, output only checks that the retransmission
	// timer (or the tail loss probe in its place) runs.
	if t.SndNxt != t.SndUna && (t.timers[0] == 0 || t.tkind[0] != TimerRetransmit && t.tkind[0] != TimerProbe) {
		return t.arrive(now, out, seg, more), false
	}
	if fl&flagTS != 0 {
		// tsFresh, then takeTSRecent.
		if !seg.Options.Has(OptTimestamps) || int32(seg.Options.TSVal-t.tsRecent) < 0 {
			return t.arrive(now, out, seg, more), false
		}
		if nxt.LessThanEq(t.lastAckSent) {
			t.tsRecent = seg.Options.TSVal
		}
	}
	t.lastRcv = now
	t.keepProbes = 0
	// The window update rule; the window is unchanged (and MAX.SND.WND,
	// never below SND.WND, with it), so only SND.WL1 and SND.WL2 move.
	if t.SndWl1.LessThan(nxt) || (t.SndWl1 == nxt && t.SndWl2.LessThanEq(seg.Ack)) {
		t.SndWl1, t.SndWl2 = nxt, seg.Ack
	}
	// As predict takes data, written out again (a function both call
	// costs this path 21 instructions; the differential tests hold both
	// to the full path). The data fits the window, so RCV.NXT stays
	// within the edge advertised.
	rcvNxt := nxt.Add(n)
	t.RcvNxt = rcvNxt
	t.sawText(n)
	// ackOwed, with the ACK it owes worked out here rather than read
	// back from the flags; quickAcks counts down.
	q := t.quickAcks
	if q > 0 {
		t.quickAcks = q - 1
	}
	due := t.ackAtOnce(rcvNxt, q)
	if !more && (due || fl&flagAckNow != 0) && t.timers[slotDelayedACK] == 0 && len(out)+3 <= cap(out) {
		// sendACK, with the delayed-ACK timer stopped already: ActAccept,
		// NoteReadable and the ACK go into the room out has (zeroed one
		// by one, which takes fewer instructions than all at once), and
		// segment clears the ACK owed.
		acts := (*[3]Action)(out[len(out) : len(out)+3])
		*(*[2]Action)(acts[:2]) = [2]Action{}
		acts[2] = Action{}
		acts[0].Kind, acts[0].DataSeq, acts[0].DataLen = ActAccept, nxt, n
		acts[1].Kind, acts[1].Note = ActNotify, NoteReadable
		acts[2].Kind = ActSend
		t.segment(&acts[2], t.SndNxt, 0, now)
		return out[:len(out)+3], true
	}
	out = append(out, Action{}, Action{})
	acts := out[len(out)-2:]
	acts[0].Kind, acts[0].DataSeq, acts[0].DataLen = ActAccept, nxt, n
	acts[1].Kind, acts[1].Note = ActNotify, NoteReadable
	if due {
		t.flags |= flagAckNow
	} else {
		t.flags |= flagAckDelayed
	}
	if more {
		return out, true
	}
	switch {
	case t.flags&flagAckNow != 0:
		// sendACK.
		out = t.stopDelayedACK(out)
		var a *Action
		out, a = push(out, ActSend)
		t.segment(a, t.SndNxt, 0, now)
	case !t.running(TimerDelayedACK):
		if t.cfg.more&optTimerActions == 0 {
			t.setTimer(TimerDelayedACK, now.Add(t.cfg.delAck.dur())) // arm, with nothing to report
		} else {
			out = t.arm(out, TimerDelayedACK, now, t.cfg.delAck.dur())
		}
	}
	return out, true
}

// pureACK is the whole Step for an ACK of new data with no text, in
// prediction's shape (see predict), in ESTABLISHED, CLOSE-WAIT, or a state
// that waits for the ACK of our FIN (FIN-WAIT-1, CLOSING, LAST-ACK), in
// the common case: segmentArrives, then predict or arriveOther, and
// ackAdvance, done in line, then output. The common case is no recovery,
// tail loss probe, timeout backoff, SACK scoreboard or urgent data of
// ours, and none of the settings that add to ackAdvance's work
// (keep-alive, a user timeout, HyStart, Linux's slow start). Anything
// else it hands, having changed nothing, to the full path (arrive), and
// reports false. Step calls it for any segment with no text or FIN in
// those states, and only then: it checks neither the text nor the state.
// TestPredictionMatchesFullPath, TestPureACKMatchesFullPath and FuzzStep
// hold it to the full path.
//
// In the states other than ESTABLISHED, arriveOther comes, for such a
// segment, to what predict does: its checks before the ACK field pass
// (the sequence number is RCV.NXT, acceptable in any window), and the
// ACK is neither a duplicate nor carries SACK blocks. Then comes its
// switch on the state, and text and FIN processing, which has none.
func (t *TCB) pureACK(now Time, out []Action, seg *Segment, more bool) ([]Action, bool) {
	ack := seg.Ack
	if seg.Flags&^FlagPSH != FlagACK || seg.Seq != t.RcvNxt ||
		!t.ours(seg) || seg.Options.NumSACK != 0 ||
		!t.SndUna.LessThan(ack) || ack.GreaterThan(t.SndNxt) ||
		t.flags&(flagFinPending|flagRecovery|flagProbe|flagProbeRtx|flagRtxMark|flagUrgPending) != 0 ||
		t.retries != 0 || t.sacked[0].Left != t.sacked[0].Right || t.cfg.more&optACKWork != 0 {
		return t.arrive(now, out, seg, more), false
	}
	if !t.tsFresh(seg) {
		return t.arrive(now, out, seg, more), false
	}
	var tsecr uint32 // echo(seg)
	if t.flags&flagTS != 0 {
		tsecr = seg.Options.TSEcr
	}
	if t.State == LastAck && ack == t.SndNxt && t.flags&flagFinSent != 0 && ack == t.sndEnd.Add(1) {
		// Our FIN acknowledged in LAST-ACK: the connection is deleted, so
		// of what follows only the actions remain: ackAdvance's timer
		// stops (only reported: toClosed clears the slots) and note,
		// then toClosed's.
		if t.cfg.more&optTimerActions != 0 && (t.timers[0] != 0 || t.timers[2] != 0) {
			out = t.stopFlightTimers(out)
		}
		if data := ack.Diff(t.SndUna) - 1; data > 0 {
			var a *Action
			out, a = push(out, ActNotify)
			a.Note, a.N = NoteSendAcked, data
		}
		return t.toClosed(out, NoteClosed), true
	}
	t.lastRcv = now
	t.keepProbes = 0
	t.takeTSRecent(seg)
	// The window update rule, taken first: nothing below reads the window.
	t.updateWindow(seg.Seq, ack, uint32(seg.Window)<<t.sndShift())

	// ackAdvance, with no SYN acknowledged, retries at zero and the
	// scoreboard empty. An echo of a TSval we never sent gives no sample;
	// the timed segment, if any, gives one then.
	data := ack.Diff(t.SndUna)
	if t.flags&flagFinSent != 0 && ack == t.sndEnd.Add(1) {
		data-- // the FIN
	}
	us := noSample // the RTT sample in µs
	if tsecr != 0 {
		if d := msOf(now) + uint32(t.Iss) - tsecr; !t.staleEcho(int32(d)) {
			us = uint64(d) * 1000
		}
	}
	t.SndUna = ack
	if t.sndRtx.LessThan(ack) {
		t.sndRtx = ack
	}
	if t.flags&flagRttTiming != 0 && t.rttSeq.LessThanEq(ack) {
		t.flags &^= flagRttTiming
		if us == noSample {
			us = uint64(max(usOf(now)-t.rttStart, 1))
		}
	}
	if us != noSample {
		t.rttSampleUs(us)
	}
	if data > 0 {
		t.dupAcks = 0
		if t.cwnd < t.ssthresh && t.cfg.more&optSlowStart2 == 0 {
			// growCwnd in slow start, by at most one segment.
			t.cwnd += min(data, t.effMSS())
			if t.cwnd >= t.ssthresh {
				t.cubicEpoch = 0
				if t.ssthresh == maxQueued {
					t.cubicWMax = 0
				}
			}
			t.cwnd = min(t.cwnd, maxQueued)
		} else {
			t.growCwnd(data, now)
		}
	}
	// The flight timers: with nothing to report and no tail loss probe,
	// only the slots change (stopFlightTimers, armLossTimer).
	if t.SndUna == t.SndNxt {
		if t.cfg.more&optTimerActions != 0 {
			out = t.stopFlightTimersReported(out)
		} else {
			t.clearFlightSlots()
		}
	} else {
		t.rtxStart = msOf(now)
		if t.plainLossTimer() {
			t.setTimer(TimerRetransmit, now.Add(t.rtoDur()))
		} else {
			out = t.armProbeOrRTO(now, out)
		}
	}
	if data > 0 {
		var a *Action
		out, a = push(out, ActNotify)
		a.Note, a.N = NoteSendAcked, data
	}
	switch t.State {
	case FinWait1:
		if t.finAcked() {
			// enterFinWait2, with the flight timers stopped above: the
			// FIN is the last of what was sent.
			t.State = FinWait2
			if t.cfg.fw2 != 0 || t.flags&flagReadShut != 0 {
				out = t.armFinWait2(now, out) // which does nothing otherwise
			}
			out = notify(out, NoteCloseDone)
		}
	case Closing:
		if t.finAcked() {
			out = t.toTimeWait(now, out)
		}
	case LastAck:
		if t.finAcked() {
			out = t.toClosed(out, NoteClosed)
		}
	}
	// Output has nothing to do with no ACK owed and nothing to send or
	// resend (or no sending in the state): what is still in flight has
	// the timer armed above.
	if more || t.flags&(flagAckNow|flagAckDelayed) == 0 && (!t.State.sendsData() ||
		t.sndRtx == t.SndNxt && t.SndNxt == t.sndEnd && t.flags&flagCloseCalled == 0) {
		return out, true
	}
	return t.output(now, out), true
}

// noSample stands for no RTT sample where one is kept in a uint64 of
// microseconds, which no measurement reaches.
const noSample = ^uint64(0)

// sendIdle is the whole Step for a SEND on an idle connection, when
// nothing is in flight or queued and the n bytes fit one segment and the
// send and congestion windows: send, then output and sendData, done in
// line. Anything else it hands, having changed nothing, to the full path
// (send), and reports false: urgent data, recovery, a timer in slot 0
// (persist above all), a restart after idle (RFC 5681 section 4.1),
// limited transmit's extra room.
// TestSendIdleMatchesFullPath and FuzzStep hold it to the full path.
func (t *TCB) sendIdle(now Time, out []Action, n uint32, urgent bool) ([]Action, bool, error) {
	if urgent || n == 0 || t.State != Established && t.State != CloseWait ||
		t.SndUna != t.SndNxt || t.SndNxt != t.sndEnd || t.sndRtx != t.SndNxt ||
		t.flags&(flagCloseCalled|flagRecovery|flagUrgPending|flagFinSent) != 0 ||
		t.timers[0] != 0 || t.dupAcks != 0 {
		out, err := t.send(now, out, n, urgent)
		return out, false, err
	}
	mss := t.effMSS()
	if n > mss || n > t.SndWnd || n > t.cwnd {
		out, err := t.send(now, out, n, urgent)
		return out, false, err
	}
	ms := msOf(now)
	// Idle for longer than the RTO: the time since the last send, in
	// milliseconds, against the RTO, in microseconds, both in µs.
	if uint64(ms-t.lastSend)*1000 > uint64(t.rto) {
		out, err := t.send(now, out, n, urgent)
		return out, false, err
	}
	seq := t.SndNxt
	t.sndEnd = seq.Add(n)
	if n < mss {
		t.flags |= flagSmallSent // Nagle has nothing in flight to wait for
	}
	// emitData: the segment empties the queue, so it has PSH.
	out = t.stopDelayedACK(out)
	t.lastSend = ms
	var a *Action
	out, a = push(out, ActSend)
	a.DataLen = n
	t.segment(a, seq, FlagPSH, now)
	// advanceSndNxt.
	t.SndNxt, t.sndRtx = t.sndEnd, t.sndEnd
	if t.sentFromIdle(ms, now) {
		return out, true, nil
	}
	return t.armIdleTimers(now, out), true, nil
}

// sentFromIdle ends what sendIdle and closeIdle send on an idle
// connection: advanceSndNxt's RTT timing, then startRetransmit with slot 0
// known to be free. It calls nothing, which spares it a frame, and
// reports false when timers are left that report or that a setting adds
// (the user timeout): its caller then ends with armIdleTimers.
func (t *TCB) sentFromIdle(ms uint32, now Time) bool {
	if t.flags&flagRttTiming == 0 {
		t.flags |= flagRttTiming
		t.rttSeq = t.SndNxt
		t.rttStart = usOf(now)
	}
	t.noteSSFlight()
	t.rtxStart = ms
	if !t.plainLossTimer() {
		return false
	}
	t.setTimer(TimerRetransmit, now.Add(t.rtoDur())) // armLossTimer
	return t.cfg.userTimeout == 0
}

// armIdleTimers arms what sentFromIdle left: the loss timer when that
// reports or may be the probe timeout, and the user timeout.
func (t *TCB) armIdleTimers(now Time, out []Action) []Action {
	if !t.plainLossTimer() {
		out = t.armProbeOrRTO(now, out)
	}
	if t.cfg.userTimeout != 0 && !t.running(TimerUser) {
		out = t.arm(out, TimerUser, now, t.cfg.userTimeout.dur())
	}
	return out
}

// closeIdle is the whole Step for a CLOSE in ESTABLISHED or CLOSE-WAIT
// with nothing queued: close, then output and sendData, which come to our
// FIN alone, done in line; with full, closeFull's, which is the same with
// nothing received left unread, and the read side shut. With nothing in
// flight the FIN starts the timers as from idle; with data in flight (an
// application that writes and closes at once) the loss timer already runs
// for it. Anything else it hands, having changed nothing, to the full
// path (closeCall), and reports false: recovery, urgent data, a go-back-N
// resend, a timer in slot 0 other than the loss timer of data in flight. TestCloseIdleMatchesFullPath and FuzzStep hold it
// to the full path.
func (t *TCB) closeIdle(now Time, out []Action, full bool) ([]Action, bool, error) {
	var next State
	switch t.State {
	case Established:
		next = FinWait1
	case CloseWait:
		next = LastAck
	default:
		out, err := t.closeCall(now, out, full)
		return out, false, err
	}
	busy := t.SndUna != t.SndNxt
	if full && t.RcvNxt.Diff(t.rcvUser) != t.finBit() || t.SndNxt != t.sndEnd || t.sndRtx != t.SndNxt ||
		t.flags&(flagCloseCalled|flagRecovery|flagUrgPending|flagFinSent) != 0 ||
		(t.timers[0] != 0) != busy || busy && t.tkind[0] != TimerRetransmit && t.tkind[0] != TimerProbe {
		out, err := t.closeCall(now, out, full)
		return out, false, err
	}
	t.flags |= flagCloseCalled
	if full {
		t.flags |= flagReadShut
	}
	t.State = next
	// emitData and advanceSndNxt for the FIN, SND.NXT moved first:
	// segment, given the sequence number, reads neither it nor these
	// flags, and seq then need not be kept across the call.
	seq := t.SndNxt
	t.SndNxt, t.sndRtx = seq.Add(1), seq.Add(1)
	t.flags |= flagFinSent | flagFinAlone
	out = t.stopDelayedACK(out)
	ms := msOf(now)
	t.lastSend = ms
	var a *Action
	out, a = push(out, ActSend)
	t.segment(a, seq, FlagFIN, now)
	if !busy {
		if t.sentFromIdle(ms, now) {
			return out, true, nil
		}
		return t.armIdleTimers(now, out), true, nil
	}
	// The rest of advanceSndNxt and sendData: RTT timing if none runs,
	// the flight noted, and a tail loss probe counted from the FIN, the
	// latest new data (RFC 8985 section 7.2); the retransmission timer
	// runs on.
	if t.flags&flagRttTiming == 0 {
		t.flags |= flagRttTiming
		t.rttSeq = t.SndNxt
		t.rttStart = usOf(now)
	}
	t.noteSSFlight()
	if t.tkind[0] == TimerProbe {
		out = t.arm(out, TimerProbe, now, t.pto())
	}
	return out, true, nil
}

// inOrderFIN is the whole Step for the peer's FIN with no text, at
// RCV.NXT, acknowledging nothing new, in ESTABLISHED or FIN-WAIT-2 with
// nothing of ours in flight or queued: segmentArrives, then arriveOther,
// whose checks all pass and whose ACK processing comes to the window
// update, then processText and processFIN, then output, which comes to the
// ACK of the FIN, done in line. Anything else it hands, having changed
// nothing, to the full path (arrive), and reports false: SACK blocks,
// recovery, the tail loss probe, a FIN whose ACK Config.DelayFINACK would
// hold. Step calls it for any segment with a FIN and no text, in any state
// but LISTEN, and only then: it does not check for text. TestInOrderFINMatchesFullPath
// and FuzzStep hold it to the full path.
//
// A segment at RCV.NXT passes the acceptability test, or, in a zero
// window, is let through by MUST-66's exception; with SEG.ACK = SND.UNA it
// is neither a duplicate ACK (it has a FIN) nor one to challenge.
func (t *TCB) inOrderFIN(now Time, out []Action, seg *Segment, more bool) ([]Action, bool) {
	switch t.State {
	case Established:
		// Then CLOSE-WAIT, where output would send what is queued.
		if t.SndNxt != t.sndEnd || t.sndRtx != t.SndNxt || t.flags&flagCloseCalled != 0 ||
			t.cfg.more&optDelayFINACK != 0 {
			return t.arrive(now, out, seg, more), false
		}
	case FinWait2:
		// Then TIME-WAIT, where output sends nothing but the ACK.
	default:
		return t.arrive(now, out, seg, more), false
	}
	if seg.Flags&^FlagPSH != FlagFIN|FlagACK || seg.Seq != t.RcvNxt ||
		seg.Ack != t.SndUna || !t.ours(seg) ||
		seg.Options.NumSACK != 0 || t.SndUna != t.SndNxt ||
		t.flags&(flagRecovery|flagProbe|flagProbeRtx|flagRtxMark) != 0 {
		return t.arrive(now, out, seg, more), false
	}
	if !t.tsFresh(seg) {
		return t.arrive(now, out, seg, more), false
	}
	t.lastRcv = now
	t.keepProbes = 0
	t.takeTSRecent(seg)
	// The window update rule.
	t.updateWindow(seg.Seq, seg.Ack, uint32(seg.Window)<<t.sndShift())
	// processFIN.
	t.flags &^= flagFinPending
	t.flags |= flagFinRcvd | flagAckNow
	t.RcvNxt = t.RcvNxt.Add(1)
	if t.rcvAdv.LessThan(t.RcvNxt) {
		t.rcvAdv = t.RcvNxt
	}
	// The note, then output: with nothing to send, resend or time, the
	// ACK of the FIN (sendACK); TIME-WAIT's timers are stopped already.
	switch {
	case t.State == Established:
		t.State = CloseWait
	case t.cfg.more&optTimerActions == 0:
		t.quietTimeWait(now) // toTimeWait
	default:
		out = t.toTimeWait(now, notify(out, NotePeerClosed))
		if more {
			return out, true
		}
		return t.sendACK(out, t.SndNxt, now), true
	}
	if !more && t.timers[slotDelayedACK] == 0 && len(out)+2 <= cap(out) {
		// The note and the ACK go into the room out has: no append, so
		// nothing live is kept across a call that might grow out.
		acts := (*[2]Action)(out[len(out) : len(out)+2])
		acts[0] = Action{}
		acts[1] = Action{}
		acts[0].Kind, acts[0].Note = ActNotify, NotePeerClosed
		acts[1].Kind = ActSend
		t.segment(&acts[1], t.SndNxt, 0, now)
		return out[:len(out)+2], true
	}
	out = notify(out, NotePeerClosed)
	if more {
		return out, true
	}
	return t.sendACK(out, t.SndNxt, now), true
}

// tickDelayedACK is the whole Step for a Tick at which only the
// delayed-ACK timer is due, in ESTABLISHED, CLOSE-WAIT or FIN-WAIT-2 with
// nothing for output to send or resend: tick, then output, which comes to
// the owed ACK, done in line. Step calls it only when the delayed-ACK
// timer is due. Anything else it hands, having changed nothing, to the
// full path (tickAll), and reports false. TestTickDelayedACKMatchesFullPath and FuzzStep hold it to the full
// path.
func (t *TCB) tickDelayedACK(now Time, out []Action) ([]Action, bool) {
	if d := t.timers[0]; d != 0 && d <= now {
		return t.tickAll(now, out), false
	}
	if d := t.timers[2]; d != 0 && d <= now {
		return t.tickAll(now, out), false
	}
	switch t.State {
	case Established, CloseWait:
		// output's sendData has nothing to do; with data in flight, only
		// checks that the retransmission timer (or the tail loss probe in
		// its place) runs.
		if t.sndRtx != t.SndNxt || t.SndNxt != t.sndEnd || t.flags&flagCloseCalled != 0 ||
			t.SndNxt != t.SndUna && (t.timers[0] == 0 || t.tkind[0] != TimerRetransmit && t.tkind[0] != TimerProbe) {
			return t.tickAll(now, out), false
		}
	case FinWait2:
	default:
		return t.tickAll(now, out), false
	}
	// The timer fires (stopped without an action, as tick does), and the
	// ACK goes (sendACK, the timer already stopped).
	t.timers[slotDelayedACK] = 0
	var a *Action
	out, a = push(out, ActSend)
	t.segment(a, t.SndNxt, 0, now)
	return out, true
}

// handshakeACK is the whole Step for the ACK that completes a handshake
// in SYN-RECEIVED, at RCV.NXT, acknowledging our SYN alone, with no text,
// FIN or URG, when nothing waits to be sent or made readable and our
// SYN-ACK went once: segmentArrives, arriveOther, whose checks such a
// segment passes (SYN-RECEIVED skips PAWS and SACK), ackAdvance for the
// SYN and enterEstablished, done in line, then output, which has at most
// an ACK to send or delay. Anything else it hands, having changed
// nothing, to the full path (arrive), and reports false: a CLOSE or SEND
// queued, urgent data, keep-alive, text or a FIN held from the SYN. Step
// calls it for any segment with no text or FIN in SYN-RECEIVED, and only
// then: it checks neither the text nor the state. TestHandshakeACKMatchesFullPath and FuzzStep
// hold it to the full path.
func (t *TCB) handshakeACK(now Time, out []Action, seg *Segment, more bool) ([]Action, bool) {
	ack := t.Iss.Add(1)
	if seg.Flags&^FlagPSH != FlagACK ||
		seg.Seq != t.RcvNxt || seg.Ack != ack || t.SndUna != t.Iss || t.SndNxt != ack || t.sndEnd != ack ||
		ack.LessThan(t.sndRtx) || !t.ours(seg) || t.retries != 0 ||
		t.flags&(flagCloseCalled|flagFinPending|flagProbe|flagProbeRtx|flagUrgPending) != 0 ||
		t.ooo[0].Left != t.ooo[0].Right || t.sacked[0].Left != t.sacked[0].Right || t.cfg.opts&optKeepalive != 0 {
		return t.arrive(now, out, seg, more), false
	}
	t.lastRcv = now
	t.keepProbes = 0
	t.noteTSRecent(seg, seg.Seq, seg.Options.Has(OptTimestamps))
	wnd := uint32(seg.Window) << t.sndShift()
	t.SndWnd = wnd
	t.MaxSndWnd = max(t.MaxSndWnd, wnd)
	t.SndWl1, t.SndWl2 = seg.Seq, ack

	out = t.establishOnSYNAck(seg, ack, now, out)
	if more {
		return out, true
	}
	// output, with nothing to send and nothing in flight.
	if t.ackDue() {
		out = t.ackIfOwed(now, out)
	}
	return out, true
}

// establishOnSYNAck is ackAdvance for an ACK (of seg) of our SYN alone,
// with nothing else sent, retries at zero, no probe, urgent data or
// scoreboard, then enterEstablished with nothing held from the SYN, no
// CLOSE queued and no keep-alive: what handshakeACK and synACK share.
func (t *TCB) establishOnSYNAck(seg *Segment, ack Seq, now Time, out []Action) []Action {
	// ackAdvance for the SYN: no data acknowledged, nothing left in
	// flight. An echo of a TSval we never sent gives no sample.
	us := noSample // the RTT sample in µs
	if tsecr := t.echo(seg); tsecr != 0 {
		if d := t.tsVal(now) - tsecr; !t.staleEcho(int32(d)) {
			us = uint64(d) * 1000
		}
	}
	t.SndUna, t.sndRtx = ack, ack
	if t.flags&flagRttTiming != 0 && t.rttSeq.LessThanEq(ack) {
		t.flags &^= flagRttTiming
		if us == noSample {
			us = uint64(max(usOf(now)-t.rttStart, 1))
		}
	}
	if us != noSample {
		if t.flags&flagHaveRtt != 0 {
			t.rttSampleUs(us)
		} else {
			// rttSampleUs for a first sample, as the handshake's is,
			// written out: the call would spill what is live across it.
			// The differential tests hold the copy to rttSampleUs.
			r := min(max(us, 1), 1<<31)
			t.flags |= flagHaveRtt
			t.srtt, t.rttvar = uint32(r), uint32(r/2)
			lo := t.cfg.minRTO.us()
			rto := r + max(1000, 4*(r/2))
			if t.cfg.more&optMinRTOVar != 0 {
				rto = r + max(1000, 4*(r/2), lo)
			}
			rto = max(rto, lo)
			if rto > uint64(minMaxRTO/time.Microsecond) {
				rto = min(rto, t.cfg.maxRTO.us())
			}
			t.rto = uint32(rto)
		}
	}
	if t.cfg.more&optTimerActions != 0 {
		out = t.stopFlightTimersReported(out)
	} else {
		t.clearFlightSlots()
	}

	// enterEstablished, with nothing held from the SYN.
	t.State = Established
	t.flags &^= flagPassive
	t.recover = t.Iss
	if t.cfg.more&optQuickStart != 0 {
		t.quickAcks = maxQuickAcks
	}
	t.cwnd = t.iw()
	if t.flags&flagSynRetx != 0 {
		t.cwnd = t.effMSS()
		t.rto = max(t.rto, 3_000_000)
		if t.flags&flagHaveRtt == 0 {
			t.rto = 3_000_000
		}
	}
	// The edge advertised before the note, so that nothing of t is kept
	// across the note's append.
	if t.RcvNxt.GreaterThan(t.rcvAdv) {
		t.rcvAdv = t.RcvNxt
	}
	return notify(out, NoteConnected)
}

// synACK is the whole Step for the SYN-ACK that answers our SYN in
// SYN-SENT, acknowledging our SYN alone, with no text, FIN or URG, when
// nothing waits to be sent and our SYN went once: segmentArrives and
// arriveSynSent (peerSYN, ackAdvance for the SYN, enterEstablished), done
// in line, then output, which comes to the ACK. Anything else it hands,
// having changed nothing, to the full path (arrive), and reports false: a
// CLOSE or SEND queued, keep-alive, the SYN resent. Step calls it for any
// segment with no text or FIN in SYN-SENT, and only then: it checks
// neither the text nor the state. TestSynACKMatchesFullPath and FuzzStep hold it to the
// full path.
func (t *TCB) synACK(now Time, out []Action, seg *Segment, more bool) ([]Action, bool) {
	ack := t.Iss.Add(1)
	if seg.Flags&^FlagPSH != FlagSYN|FlagACK ||
		seg.Ack != ack || t.SndUna != t.Iss || t.SndNxt != ack || t.sndEnd != ack || ack.LessThan(t.sndRtx) ||
		!t.ours(seg) || t.retries != 0 ||
		t.flags&(flagCloseCalled|flagFinPending|flagProbe|flagProbeRtx|flagUrgPending) != 0 ||
		t.ooo[0].Left != t.ooo[0].Right || t.sacked[0].Left != t.sacked[0].Right || t.cfg.opts&optKeepalive != 0 {
		return t.arrive(now, out, seg, more), false
	}
	t.lastRcv = now
	t.peerSYN(seg) // SND.WL2 is SEG.ACK
	if !seg.Options.Has(OptWindowScale) {
		t.shifts = 0 // scaling needs both SYNs (RFC 7323 section 2.2)
	}
	out = t.establishOnSYNAck(seg, ack, now, out)
	t.flags |= flagAckNow
	if more {
		return out, true
	}
	// output, with nothing to send and nothing in flight: sendACK.
	out = t.stopDelayedACK(out)
	var a *Action
	out, a = push(out, ActSend)
	t.segment(a, t.SndNxt, 0, now)
	return out, true
}

// receiveIdle is the whole Step for a RECEIVE in ESTABLISHED or
// CLOSE-WAIT when output has nothing to send or resend: receive, then
// output, which comes to the ACK owed (a window update among them), done
// in line. Anything else it hands, having changed nothing, to the full
// path (receive), and reports false: more than is readable, data or a FIN
// waiting to go.
// TestReceiveIdleMatchesFullPath and FuzzStep hold it to the full path.
func (t *TCB) receiveIdle(now Time, out []Action, n uint32) ([]Action, bool, error) {
	if t.State != Established && t.State != CloseWait || n > t.RcvNxt.Diff(t.rcvUser)-t.finBit() ||
		t.sndRtx != t.SndNxt || t.SndNxt != t.sndEnd || t.flags&flagCloseCalled != 0 ||
		t.SndNxt != t.SndUna && (t.timers[0] == 0 || t.tkind[0] != TimerRetransmit && t.tkind[0] != TimerProbe) {
		out, err := t.receive(now, out, n)
		return out, false, err
	}
	t.rcvUser = t.rcvUser.Add(n)
	if !t.rcvUser.LessThan(t.rcvUp) {
		t.flags &^= flagUrgSignaled
	}
	if t.flags&flagFinRcvd == 0 && t.windowMayOpen() && t.windowUpdateDue() {
		t.flags |= flagAckNow
	}
	if t.ackDue() {
		out = t.ackIfOwed(now, out)
	}
	return out, true, nil
}

// tsFresh reports whether seg passes the timestamp checks the shortcuts
// rely on: timestamps off, or a TSval no older than TS.Recent (RFC 7323
// sections 3.2 and 5.3).
func (t *TCB) tsFresh(seg *Segment) bool {
	return t.flags&flagTS == 0 || seg.Options.Has(OptTimestamps) && int32(seg.Options.TSVal-t.tsRecent) >= 0
}

// takeTSRecent records seg's TSval as TS.Recent when seg starts at or
// before the RCV.NXT our last ACK carried (RFC 7323 section 4.3), for a
// segment already known acceptable.
func (t *TCB) takeTSRecent(seg *Segment) {
	if t.flags&flagTS != 0 && seg.Seq.LessThanEq(t.lastAckSent) {
		t.tsRecent = seg.Options.TSVal
	}
}

// ours reports whether seg's ports are this connection's: SEG.DST our
// port and SEG.SRC the peer's. The two comparisons are one, of the two
// ports as a 32-bit word each side (the peer's port low, as in Segment).
func (t *TCB) ours(seg *Segment) bool {
	return uint32(seg.SrcPort)|uint32(seg.DstPort)<<16 == bits.RotateLeft32(uint32(t.LocalPort)|uint32(t.RemotePort)<<16, 16)
}
