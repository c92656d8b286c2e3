package tcpfsm

import "time"

// sendSYN sends our SYN (in SYN-SENT) or SYN-ACK (in SYN-RECEIVED),
// <SEQ=ISS><CTL=SYN> or <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>, with our MSS
// (RFC 9293 MUST-14), and starts the retransmission timer if it is not
// running (MUST-22).
func (t *TCB) sendSYN(now Time, out []Action) []Action {
	s := Segment{
		SrcPort: t.LocalPort, DstPort: t.RemotePort,
		Seq: t.Iss, Flags: FlagSYN,
		Window:  uint16(min(t.cfg.rcvBuf, 0xffff)),
		Options: Options{Present: OptMSS, MSS: t.cfg.mss},
	}
	if t.State == SynReceived {
		s.Flags |= FlagACK
		s.Ack = t.RcvNxt
		s.Window = t.advertise()
		t.flags &^= flagAckNow
	}
	out = append(out, Action{Kind: ActSend, Seg: s})
	return t.startRetransmit(now, out)
}

// startRetransmit starts the retransmission timer (and the user timeout)
// if it is not running (RFC 6298 section 5.1).
func (t *TCB) startRetransmit(now Time, out []Action) []Action {
	if t.timers[TimerRetransmit] != 0 {
		return out
	}
	t.rtxStart = now
	out = t.arm(out, TimerRetransmit, now, t.rtoDur())
	if t.cfg.userTimeout != 0 && t.timers[TimerUser] == 0 {
		out = t.arm(out, TimerUser, now, msDur(t.cfg.userTimeout))
	}
	return out
}

// output sends what the state allows: retransmissions, then new data
// within the send and congestion windows, then our FIN, and a bare ACK if
// one is owed and nothing else carried it.
func (t *TCB) output(now Time, out []Action) []Action {
	switch t.State {
	case Closed, Listen, SynSent:
		return out
	case Established, CloseWait, FinWait1, Closing, LastAck:
		out = t.sendData(now, out)
	}
	if t.flags&flagAckNow != 0 {
		out = t.sendACK(out, t.SndNxt)
	}
	return out
}

// sendACK sends <SEQ=seq><ACK=RCV.NXT><CTL=ACK> (RFC 9293 section 3.3.2:
// seq is SND.NXT except for keep-alive probes).
func (t *TCB) sendACK(out []Action, seq Seq) []Action {
	t.flags &^= flagAckNow
	return append(out, Action{Kind: ActSend, Seg: Segment{
		SrcPort: t.LocalPort, DstPort: t.RemotePort,
		Seq: seq, Ack: t.RcvNxt, Flags: FlagACK, Window: t.advertise(),
	}})
}

// sendData segments the queued data (RFC 9293 section 3.10.2): first what
// is being retransmitted, then new data, never past SND.UNA plus the
// smaller of SND.WND and cwnd (section 3.8.6), then the FIN after the last
// byte (section 3.10.4).
func (t *TCB) sendData(now Time, out []Action) []Action {
	mss := uint32(t.sndMSS)
	limit := t.SndUna.Add(min(t.SndWnd, t.cwnd))
	room := func(seq Seq) uint32 {
		if seq.LessThan(limit) {
			return limit.Diff(seq)
		}
		return 0
	}

	// Retransmission from sndRtx up to SND.NXT.
	for t.sndRtx.LessThan(t.SndNxt) {
		seq := t.sndRtx
		var n uint32
		if seq.LessThan(t.sndEnd) {
			n = min(mss, MinSeq(t.sndEnd, t.SndNxt).Diff(seq), room(seq))
			if n == 0 {
				return t.startRetransmit(now, out)
			}
		}
		fin := t.flags&flagFinSent != 0 && seq.Add(n) == t.sndEnd
		if n == 0 && !fin {
			t.sndRtx = t.SndNxt
			break
		}
		out = t.emitData(out, seq, n, fin)
		t.sndRtx = seq.Add(n + b2u(fin))
	}

	// New data.
	for t.SndNxt.LessThan(t.sndEnd) {
		n := min(mss, t.sndEnd.Diff(t.SndNxt), room(t.SndNxt))
		if n == 0 {
			break
		}
		fin := t.flags&flagCloseCalled != 0 && t.SndNxt.Add(n) == t.sndEnd
		out = t.emitData(out, t.SndNxt, n, fin)
		t.advanceSndNxt(now, n, fin)
	}

	// Our FIN alone, once every byte has been sent.
	if t.flags&(flagCloseCalled|flagFinSent) == flagCloseCalled && t.SndNxt == t.sndEnd {
		out = t.emitData(out, t.SndNxt, 0, true)
		t.advanceSndNxt(now, 0, true)
	}

	if t.SndNxt != t.SndUna {
		out = t.startRetransmit(now, out)
	}
	return out
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// advanceSndNxt moves SND.NXT over newly sent data (and FIN), and starts an
// RTT measurement if none is running (RFC 6298 section 3).
func (t *TCB) advanceSndNxt(now Time, n uint32, fin bool) {
	t.SndNxt = t.SndNxt.Add(n + b2u(fin))
	t.sndRtx = t.SndNxt
	if fin {
		t.flags |= flagFinSent
	}
	if t.flags&flagRttTiming == 0 {
		t.flags |= flagRttTiming
		t.rttSeq = t.SndNxt
		t.rttStart = now
	}
}

// emitData sends n bytes of the stream from seq, with FIN if fin, PSH on
// the segment that empties the queue (RFC 9293 MUST-61), and ACK=RCV.NXT.
func (t *TCB) emitData(out []Action, seq Seq, n uint32, fin bool) []Action {
	f := FlagACK
	if n > 0 && seq.Add(n) == t.sndEnd {
		f |= FlagPSH
	}
	if fin {
		f |= FlagFIN
	}
	t.flags &^= flagAckNow
	return append(out, Action{Kind: ActSend, DataSeq: seq, DataLen: n, Seg: Segment{
		SrcPort: t.LocalPort, DstPort: t.RemotePort,
		Seq: seq, Ack: t.RcvNxt, Flags: f, Window: t.advertise(),
	}})
}

// rightEdge is the furthest right edge the receive buffer allows.
func (t *TCB) rightEdge() Seq {
	return MinSeq(t.rcvUser.Add(t.finBit()+t.cfg.rcvBuf), t.RcvNxt.Add(0xffff))
}

// swsThreshold is how far the right edge must be able to move before it
// moves: min(RCV.BUFF/2, MSS) (RFC 9293 MUST-39).
func (t *TCB) swsThreshold() uint32 { return min(t.cfg.rcvBuf/2, uint32(t.cfg.mss)) }

// advertise returns the window field for an outgoing segment and records
// the right edge it announces. The edge never moves left (SHLD-14) and
// moves right only by at least swsThreshold (receiver SWS avoidance).
func (t *TCB) advertise() uint16 {
	right := t.rightEdge()
	if right.GreaterThan(t.rcvAdv) && right.Diff(t.rcvAdv) >= t.swsThreshold() {
		t.rcvAdv = right
	}
	return uint16(min(t.RcvWnd(), 0xffff))
}

// windowUpdateDue reports whether reading has freed enough buffer to be
// worth a window update: the edge can move by the SWS threshold and the
// window at least doubles (RFC 9293 section 3.8.6.2.2).
func (t *TCB) windowUpdateDue() bool {
	right := t.rightEdge()
	if !right.GreaterThan(t.rcvAdv) || right.Diff(t.rcvAdv) < t.swsThreshold() {
		return false
	}
	return right.Diff(t.RcvNxt) >= 2*t.RcvWnd()
}

// tick fires every timer that is due (RFC 9293 section 3.10.8).
func (t *TCB) tick(now Time, out []Action) []Action {
	for k := range numTimers {
		d := t.timers[k]
		if d == 0 || d > now {
			continue
		}
		t.timers[k] = 0
		switch k {
		case TimerRetransmit:
			out = t.onRetransmitTimeout(now, out)
		case TimerClose:
			switch t.State {
			case TimeWait:
				out = t.toClosed(out, NoteClosed)
			case FinWait2:
				out = t.toClosed(out, NoteTimedOut)
			}
		case TimerKeepalive:
			out = t.onKeepalive(now, out)
		case TimerUser:
			out = t.toClosed(out, NoteUserTimeout)
		case TimerDelayedACK:
			t.flags |= flagAckNow
		}
		if t.State == Closed {
			return out
		}
	}
	return t.output(now, out)
}

// onRetransmitTimeout retransmits the earliest unacknowledged segment,
// backs the RTO off, and gives up after R2 (RFC 6298 section 5.4-5.6,
// RFC 9293 MUST-20 to MUST-23).
func (t *TCB) onRetransmitTimeout(now Time, out []Action) []Action {
	if t.SndUna == t.SndNxt {
		return out
	}
	t.retries++
	syn := t.State == SynSent || t.State == SynReceived
	var giveUp bool
	switch {
	case syn && t.cfg.synRetries > 0:
		giveUp = t.retries > t.cfg.synRetries
	case syn:
		giveUp = now.Sub(t.rtxStart) >= msDur(t.cfg.synR2)
	default:
		giveUp = now.Sub(t.rtxStart) >= msDur(t.cfg.r2)
	}
	if giveUp {
		if t.State != SynSent && t.cfg.opts&optNoResetOnGiveUp == 0 {
			out = t.emitRST(out, t.SndNxt)
		}
		return t.toClosed(out, NoteTimedOut)
	}
	if t.retries == t.cfg.r1 {
		out = notify(out, NoteStalled)
	}
	t.rto = min(2*t.rto, t.cfg.maxRTO*1000)
	t.flags &^= flagRttTiming // Karn's algorithm
	keep := t.rtxStart        // R2 counts from the first transmission
	if syn {
		t.flags |= flagSynRetx
		t.timers[TimerRetransmit] = 0
		out = t.sendSYN(now, out)
		t.rtxStart = keep
		return out
	}
	// RFC 5681 section 3.1, equation 4.
	smss := uint32(t.sndMSS)
	t.ssthresh = max(t.SndNxt.Diff(t.SndUna)/2, 2*smss)
	t.cwnd = smss
	t.sndRtx = t.SndUna
	out = t.sendData(now, out)
	t.rtxStart = keep
	return t.arm(out, TimerRetransmit, now, t.rtoDur())
}

// rtoDur is the current RTO.
func (t *TCB) rtoDur() time.Duration { return time.Duration(t.rto) * time.Microsecond }

// rttSample updates SRTT, RTTVAR and RTO from one measurement (RFC 6298
// section 2), with a clock granularity G of 1 ms.
func (t *TCB) rttSample(d time.Duration) {
	r := uint32(min(max(d/time.Microsecond, 1), 1<<31))
	if t.flags&flagHaveRtt == 0 {
		t.flags |= flagHaveRtt
		t.srtt = r
		t.rttvar = r / 2
	} else {
		delta := t.srtt - r
		if r > t.srtt {
			delta = r - t.srtt
		}
		t.rttvar = (3*t.rttvar + delta) / 4
		t.srtt = (7*t.srtt + r) / 8
	}
	const g = 1000 // µs
	rto := uint64(t.srtt) + uint64(max(g, 4*t.rttvar))
	t.rto = uint32(min(max(rto, uint64(t.cfg.minRTO)*1000), uint64(t.cfg.maxRTO)*1000))
}

// growCwnd opens the congestion window for newly acknowledged bytes: slow
// start with appropriate byte counting, then congestion avoidance
// (RFC 5681 section 3.1).
func (t *TCB) growCwnd(acked uint32) {
	smss := uint32(t.sndMSS)
	if t.cwnd < t.ssthresh {
		t.cwnd += min(acked, smss)
	} else {
		t.cwnd += max(1, smss*smss/t.cwnd)
	}
	t.cwnd = min(t.cwnd, maxQueued)
}

// onKeepalive sends a keep-alive probe <SEQ=SND.NXT-1><ACK=RCV.NXT> when
// the connection has been idle, and gives up after the configured count
// of unanswered probes (RFC 9293 section 3.8.4, MUST-26, MUST-29, SHLD-12).
func (t *TCB) onKeepalive(now Time, out []Action) []Action {
	if t.cfg.opts&optKeepalive == 0 || !t.State.IsSynchronized() || t.State == TimeWait {
		return out
	}
	idle := msDur(t.cfg.keepIdle)
	if t.SndUna != t.SndNxt || t.unsent() > 0 {
		return t.arm(out, TimerKeepalive, now, idle)
	}
	if t.keepProbes == 0 && now.Sub(t.lastRcv) < idle {
		return t.arm(out, TimerKeepalive, t.lastRcv, idle)
	}
	if t.keepProbes >= t.cfg.keepCount {
		out = t.emitRST(out, t.SndNxt)
		return t.toClosed(out, NoteTimedOut)
	}
	t.keepProbes++
	out = t.sendACK(out, t.SndNxt.Add(^uint32(0)))
	return t.arm(out, TimerKeepalive, now, msDur(t.cfg.keepIntvl))
}
