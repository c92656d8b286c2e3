package tcpfsm

import "time"

// Step applies one event at time now to a copy of t and returns the new
// TCB and the actions, appended to out. It is the pure form of (*TCB).Step:
// t itself is not changed, and the same (t, ev, now) always gives the same
// result.
func Step(t TCB, ev Event, now Time, out []Action) (TCB, []Action, error) {
	out, err := t.Step(ev, now, out)
	return t, out, err
}

// Step applies one event at time now: a user call, an arriving segment, or
// time passing (RFC 9293 section 3.10). It updates t in place and appends
// the resulting actions (segments to send, data to accept, notes for the
// user, timer changes, drops) to out, returning the extended slice.
//
// Step does no I/O, reads no clock, draws no random numbers and keeps no
// reference to ev.Seg. It allocates nothing when out has room. A user call
// that the current state does not allow returns a CallError and leaves t
// and out unchanged. Segments are never errors: a segment that fails a
// check is dropped with an ActDrop action, and any reply the RFC calls for
// (RST, ACK) is sent.
//
// Host call order: Step every user call and every arriving segment as it
// happens, and Step a Tick whenever the clock reaches NextDeadline. Perform
// the actions in the order given.
func (t *TCB) Step(ev Event, now Time, out []Action) ([]Action, error) {
	// Each shortcut takes the full path itself for what it declines, so
	// Step keeps nothing across the call; whether it took the event
	// itself, which it reports, is for the differential tests.
	if ev.Kind == EvSegment && ev.Seg != nil {
		seg := ev.Seg
		switch {
		case len(seg.Payload) != 0:
			if t.State == Established {
				out, _ = t.inOrderData(now, out, seg, ev.More)
				return out, nil
			}
		case seg.Flags&FlagFIN != 0:
			if t.State != Listen {
				out, _ = t.inOrderFIN(now, out, seg, ev.More)
				return out, nil
			}
		case t.State.sendsData(): // the states where our data or FIN may be in flight
			out, _ = t.pureACK(now, out, seg, ev.More)
			return out, nil
		case t.State == SynReceived:
			out, _ = t.handshakeACK(now, out, seg, ev.More)
			return out, nil
		case t.State == SynSent:
			out, _ = t.synACK(now, out, seg, ev.More)
			return out, nil
		}
		if t.State == Listen {
			return t.arriveListen(seg, ev.ISS, now, out), nil // and no output
		}
		return t.arrive(now, out, seg, ev.More), nil
	}
	var err error
	switch ev.Kind {
	case EvOpen:
		return t.open(ev.LocalPort, ev.RemotePort, ev.ISS, now, out)
	case EvListen:
		return t.listen(ev.LocalPort, out)
	case EvSend:
		out, _, err = t.sendIdle(now, out, ev.N, ev.Urgent)
		return out, err
	case EvReceive:
		out, _, err = t.receiveIdle(now, out, ev.N)
		return out, err
	case EvClose:
		out, _, err = t.closeIdle(now, out, ev.Full)
		return out, err
	case EvAbort:
		return t.abort(now, out)
	case EvSegment:
		return out, ErrBadEvent // with no segment
	case EvTick:
		// tickDelayedACK is for the delayed-ACK timer due; most ticks
		// that find it not due are for another timer.
		if d := t.timers[slotDelayedACK]; d != 0 && d <= now {
			out, _ = t.tickDelayedACK(now, out)
			return out, nil
		}
		return t.tickAll(now, out), nil
	case EvFlush:
		return t.output(now, out), nil
	case EvNoDelay:
		t.fill()
		t.cfg.opts &^= optNoDelay
		if ev.N != 0 {
			t.cfg.opts |= optNoDelay
		}
		if !t.State.IsSynchronized() {
			return out, nil
		}
		return t.output(now, out), nil // data Nagle held may go now
	case EvKeepAlive:
		t.fill()
		t.cfg.opts &^= optKeepalive
		t.keepProbes = 0
		if ev.N == 0 {
			t.cfg.noteACKWork()
			return t.stop(out, TimerKeepalive), nil
		}
		t.cfg.opts |= optKeepalive
		t.cfg.noteACKWork()
		t.cfg.keepIdle = toDur16(time.Duration(min(ev.N, 32767)) * time.Second)
		if !t.State.IsSynchronized() || t.State == TimeWait || t.running(TimerUser) {
			return out, nil // armed once the connection is open and idle
		}
		return t.arm(out, TimerKeepalive, t.lastRcv, t.cfg.keepIdle.dur()), nil
	case EvReoffer:
		return t.output(now, t.reoffer(ev.Seq, ev.N, now, out)), nil
	case EvPathMTU:
		if t.State == Closed || t.State == Listen {
			return out, ErrConnectionDoesNotExist
		}
		mss := uint16(max(min(ev.N, uint32(t.sndMSS)), 64))
		if mss < t.sndMSS && t.flags&flagRecovery == 0 && t.sndRtx == t.SndNxt && t.SndUna != t.SndNxt {
			// The larger segments in flight were dropped on the way: send
			// them again now in the new size rather than wait for the RTO
			// (RFC 1191 section 6.5, RFC 8201 section 5.4; as Linux's
			// tcp_simple_retransmit). The window is not reduced: this is
			// no congestion.
			t.sndRtx = t.SndUna
		}
		t.sndMSS = mss
		return t.output(now, out), nil
	}
	return out, ErrBadEvent
}

// arrive is Step's full path for a segment in any state but LISTEN:
// segmentArrives, then output unless more input follows. The segment
// shortcuts take it for what they decline.
func (t *TCB) arrive(now Time, out []Action, seg *Segment, more bool) []Action {
	out = t.segmentArrives(seg, 0, now, out)
	if !more {
		out = t.output(now, out)
	}
	return out
}

// tickAll is Step's full path for a Tick, which tickDelayedACK takes for
// what it declines: tick, or, when the Tick ends TIME-WAIT, that end
// alone.
func (t *TCB) tickAll(now Time, out []Action) []Action {
	if t.timeWaitEnds(now) {
		// tick, which fires slot 0 first: the connection is deleted and
		// tick goes no further. The timer is gone, not reported stopped.
		t.timers[0] = 0
		return t.toClosed(out, NoteClosed)
	}
	return t.tick(now, out)
}

// closeCall is Step's full path for a CLOSE, which closeIdle takes for
// what it declines: closeFull when the user reads no more, close
// otherwise.
func (t *TCB) closeCall(now Time, out []Action, full bool) ([]Action, error) {
	if full {
		return t.closeFull(now, out)
	}
	return t.close(now, out)
}

// timeWaitEnds reports whether a Tick at now ends TIME-WAIT: the close
// timer, in slot 0, is due (RFC 9293 MUST-13). TestTimeWaitEndMatchesTick
// holds Step's shortcut for it to tick.
func (t *TCB) timeWaitEnds(now Time) bool {
	return t.State == TimeWait && t.timers[0] != 0 && t.timers[0] <= now && t.tkind[0] == TimerClose
}

// reset clears every connection variable, keeping the settings.
func (t *TCB) reset() { t.resetThrough(nil) }

// resetThrough is reset for a caller that returns out after it: out
// passes through in its registers, so the caller keeps nothing across the
// call. The variables are zeroed field by field, in the order of the TCB,
// so that the compiler joins neighbouring fields into wide stores: *t =
// TCB{} with the settings put back zeroes all 256 bytes in a loop and
// copies the settings out and in again. TestResetClearsAll holds it to
// clearing everything.
func (t *TCB) resetThrough(out []Action) []Action {
	if t.cfg.opts&optSet == 0 {
		t.cfg = defaultSettings
	}
	t.Iss, t.SndUna, t.SndNxt, t.SndWnd = 0, 0, 0, 0
	t.SndWl1, t.SndWl2, t.MaxSndWnd, t.Irs = 0, 0, 0, 0
	t.RcvNxt, t.sndEnd, t.sndRtx, t.rcvUser = 0, 0, 0, 0
	t.rcvAdv, t.finSeq, t.lastAckSent, t.tsRecent = 0, 0, 0, 0
	t.recover, t.rcvUp, t.sndUp, t.rttSeq = 0, 0, 0, 0
	t.srtt, t.rttvar, t.rto, t.cwnd = 0, 0, 0, 0
	t.ssthresh, t.cubicWMax, t.cubicEpoch, t.rtxStart = 0, 0, 0, 0
	t.rttStart, t.lastSend = 0, 0
	t.ooo[0], t.ooo[1], t.ooo[2] = seqRange{}, seqRange{}, seqRange{}
	t.sacked[0], t.sacked[1] = seqRange{}, seqRange{}
	t.timers[0], t.timers[1], t.timers[2] = 0, 0, 0
	t.lastRcv = 0
	t.tkind[0], t.tkind[1], t.tkind[2] = 0, 0, 0
	t.State, t.retries, t.chCount, t.chSec, t.keepProbes = 0, 0, 0, 0, 0
	t.dupAcks, t.shifts, t.oooLast, t.quickAcks = 0, 0, 0, 0
	t.flags = 0
	t.sndMSS, t.LocalPort, t.RemotePort, t.rcvMSS = 0, 0, 0, 0
	t.mark = 0
	return out
}

// fill gives the zero TCB the default settings, for an event that changes
// one of them: reset would otherwise replace the change with the defaults.
func (t *TCB) fill() {
	if t.cfg.opts&optSet == 0 {
		t.cfg = defaultSettings
	}
}

// fresh is reset for a TCB in CLOSED or LISTEN, about to open. Such a TCB
// holds no connection variables already, apart from LISTEN's State and
// LocalPort, which the caller sets anew: every way into CLOSED or LISTEN
// resets it, and nothing in those states sets a variable (checkInvariants
// holds every test to it). Only the zero TCB still needs its settings.
func (t *TCB) fresh() {
	if t.cfg.opts&optSet == 0 {
		t.reset()
	}
}

// open handles an active OPEN (RFC 9293 section 3.10.1) from port local
// to port remote with ISS iss. It takes the event's fields rather than
// the event, which keeps Step's frame small.
func (t *TCB) open(local, remote uint16, iss Seq, now Time, out []Action) ([]Action, error) {
	switch t.State {
	case Closed, Listen:
	default:
		return out, ErrConnectionExists
	}
	if remote == 0 {
		return out, ErrRemoteUnspecified
	}
	if t.State == Listen && local == 0 {
		local = t.LocalPort
	}
	t.fresh()
	t.LocalPort, t.RemotePort = local, remote
	t.initSend(iss)
	t.sndMSS = t.defaultPeerMSS() // until the peer's SYN tells (peerSYN)
	t.State = SynSent
	out = t.sendSYN(now, out)
	return out, nil
}

// initSend sets the send variables for a new ISS, but for the send MSS,
// which the peer's SYN sets (peerSYN).
func (t *TCB) initSend(iss Seq) {
	t.Iss = iss
	t.SndUna = iss
	t.SndNxt = iss.Add(1)
	t.sndEnd = t.SndNxt
	t.sndRtx = t.SndNxt
	t.rto = uint32(t.cfg.initRTO.us())
	t.ssthresh = maxQueued
	t.recover = iss
}

// listen handles a passive OPEN on port local.
func (t *TCB) listen(local uint16, out []Action) ([]Action, error) {
	if t.State != Closed {
		return out, ErrConnectionExists
	}
	t.fresh()
	t.LocalPort = local
	t.State = Listen
	return out, nil
}

// send handles SEND (RFC 9293 section 3.10.2): it queues n bytes, urgent
// ones moving SND.UP past them.
func (t *TCB) send(now Time, out []Action, n uint32, urgent bool) ([]Action, error) {
	switch t.State {
	case Closed:
		return out, ErrConnectionDoesNotExist
	case Listen:
		return out, ErrRemoteUnspecified
	case SynSent, SynReceived, Established, CloseWait:
		if t.flags&flagCloseCalled != 0 {
			return out, ErrConnectionClosing
		}
	default:
		return out, ErrConnectionClosing
	}
	if uint64(t.sndEnd.Diff(t.SndUna))+uint64(n) > maxQueued {
		return out, ErrInsufficientResources
	}
	t.sndEnd = t.sndEnd.Add(n)
	if urgent && n > 0 {
		t.sndUp = t.sndEnd
		t.flags |= flagUrgPending
	}
	return t.output(now, out), nil
}

// receive handles the user consuming n received bytes (RFC 9293 section
// 3.10.3): the window they occupied is free again.
func (t *TCB) receive(now Time, out []Action, n uint32) ([]Action, error) {
	switch t.State {
	case Closed:
		return out, ErrConnectionDoesNotExist
	case Listen, SynSent:
		if n == 0 {
			return out, nil
		}
		return out, ErrInsufficientResources
	}
	avail := t.RcvNxt.Diff(t.rcvUser) - t.finBit()
	if n > avail {
		if t.flags&flagFinRcvd != 0 {
			return out, ErrConnectionClosing
		}
		return out, ErrInsufficientResources
	}
	t.rcvUser = t.rcvUser.Add(n)
	if !t.rcvUser.LessThan(t.rcvUp) {
		t.flags &^= flagUrgSignaled // past the urgent data: a new run may be signalled
	}
	// Announce the opened window once it can move by enough (RFC 9293
	// section 3.8.6.2.2 and MUST-39).
	if t.State.IsSynchronized() && t.flags&flagFinRcvd == 0 && t.windowMayOpen() && t.windowUpdateDue() {
		t.flags |= flagAckNow
	}
	return t.output(now, out), nil
}

// close handles CLOSE (RFC 9293 section 3.10.4).
func (t *TCB) close(now Time, out []Action) ([]Action, error) {
	switch t.State {
	case Closed:
		return out, ErrConnectionDoesNotExist
	case Listen, SynSent:
		out = t.toClosed(out, NoteClosed)
		return out, nil
	case SynReceived:
		// The FIN waits until the handshake completes (see CONFORMANCE.md).
		if t.flags&flagCloseCalled != 0 {
			return out, ErrConnectionClosing
		}
		t.flags |= flagCloseCalled
		return out, nil
	case Established:
		t.flags |= flagCloseCalled
		t.State = FinWait1
	case CloseWait:
		t.flags |= flagCloseCalled
		t.State = LastAck
	default:
		return out, ErrConnectionClosing
	}
	return t.output(now, out), nil
}

// closeFull handles a CLOSE after which the user reads no more (RFC 9293
// SHLD-3): with received data unread it resets the connection, since that
// data is lost; otherwise it closes as CLOSE does and remembers that any
// new data arriving later is lost too (processText resets then). After
// our FIN is queued already it only does the latter.
func (t *TCB) closeFull(now Time, out []Action) ([]Action, error) {
	switch {
	case t.State == Closed:
		return out, ErrConnectionDoesNotExist
	case t.State.IsSynchronized() && t.RcvNxt.Diff(t.rcvUser)-t.finBit() > 0:
		return t.abort(now, out)
	case t.flags&flagCloseCalled != 0:
		t.flags |= flagReadShut
		if t.State == FinWait2 && !t.running(TimerClose) {
			out = t.armFinWait2(now, out)
		}
		return out, nil
	}
	out, err := t.close(now, out)
	if err == nil && t.State != Closed {
		t.flags |= flagReadShut
	}
	return out, err
}

// abort handles ABORT (RFC 9293 section 3.10.5).
func (t *TCB) abort(now Time, out []Action) ([]Action, error) {
	switch t.State {
	case Closed:
		return out, ErrConnectionDoesNotExist
	case SynReceived, Established, FinWait1, FinWait2, CloseWait:
		out = t.emitRST(out, t.SndNxt, now)
	}
	return t.toClosed(out, NoteAborted), nil
}

// toClosed deletes the connection: timers stopped, one final note.
func (t *TCB) toClosed(out []Action, note Note) []Action {
	if t.cfg.more&optTimerActions != 0 {
		out = t.stopAll(out) // reported; reset stops them either way
	}
	return t.resetThrough(notify(out, note))
}

// toListen returns a passively opened connection to LISTEN (RFC 9293
// section 3.10.7.4): the queues are flushed and the user is not told.
func (t *TCB) toListen(out []Action) []Action {
	out = t.stopAll(out)
	port := t.LocalPort
	t.reset()
	t.LocalPort = port
	t.State = Listen
	return out
}

// toTimeWait enters TIME-WAIT: other timers off, 2*MSL on (RFC 9293 MUST-13).
func (t *TCB) toTimeWait(now Time, out []Action) []Action {
	t.State = TimeWait
	if t.cfg.more&optTimerActions != 0 {
		out = t.stopAll(out)
		return t.arm(out, TimerClose, now, 2*t.cfg.msl.dur())
	}
	t.quietTimeWait(now)
	return out
}

// quietTimeWait is toTimeWait without Config.TimerActions, small enough
// to inline: with nothing to report, the close timer takes slot 0 and the
// others stop.
func (t *TCB) quietTimeWait(now Time) {
	t.State = TimeWait
	t.timers[slotDelayedACK], t.timers[2] = 0, 0
	t.setTimer(TimerClose, now.Add(2*t.cfg.msl.dur()))
}

// push appends a zero Action to out and returns it for filling in: the
// action is built in place rather than copied in.
func push(out []Action, k ActionKind) ([]Action, *Action) {
	out = append(out, Action{})
	a := &out[len(out)-1]
	a.Kind = k
	return out, a
}

// notify appends a note.
func notify(out []Action, n Note) []Action {
	out, a := push(out, ActNotify)
	a.Note = n
	return out
}

// drop appends a drop.
func drop(out []Action, r DropReason) []Action {
	out, a := push(out, ActDrop)
	a.Drop = r
	return out
}

// ResetFor returns the RST that answers seg when no connection exists
// (RFC 9293 section 3.10.7.1): <SEQ=SEG.ACK><CTL=RST> if seg has ACK,
// else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. It returns false if seg
// is itself a RST, which is never answered.
func ResetFor(seg *Segment) (Segment, bool) {
	if seg.Flags&FlagRST != 0 {
		return Segment{}, false
	}
	r := Segment{SrcPort: seg.DstPort, DstPort: seg.SrcPort}
	if seg.Flags&FlagACK != 0 {
		r.Seq = seg.Ack
		r.Flags = FlagRST
	} else {
		r.Ack = seg.End()
		r.Flags = FlagRST | FlagACK
	}
	return r, true
}
