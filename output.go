package tcpfsm

import "time"

// Clock helpers: the TCB keeps short times as 32-bit counts. Times are
// never negative (see Time), so the divisions are unsigned, which costs
// fewer instructions than signed ones.

func msOf(now Time) uint32 { return uint32(uint64(now) / uint64(time.Millisecond)) }
func usOf(now Time) uint32 { return uint32(uint64(now) / uint64(time.Microsecond)) }

// sinceMs is the time from a 32-bit millisecond stamp to now (exact for
// spans below 49 days).
func sinceMs(now Time, stamp uint32) time.Duration {
	return time.Duration(msOf(now)-stamp) * time.Millisecond
}

// tsVal is our timestamp clock: milliseconds, offset by the ISS so that
// each connection starts at an unrelated value (RFC 7323 section 5.4).
func (t *TCB) tsVal(now Time) uint32 { return t.tsValMs(msOf(now)) }

// tsValMs is tsVal with the clock already read, in milliseconds.
func (t *TCB) tsValMs(ms uint32) uint32 { return ms + uint32(t.Iss) }

func (t *TCB) rcvShift() uint8 { return t.shifts & 0x0f }
func (t *TCB) sndShift() uint8 { return t.shifts >> 4 }

// effMSS is the payload of a full-sized segment: the send MSS less the
// timestamp option's 12 bytes when timestamps are on (RFC 9293 MUST-16).
func (t *TCB) effMSS() uint32 {
	m := uint32(t.sndMSS)
	if t.flags&flagTS != 0 {
		m -= 12
	}
	return max(m, 1)
}

// iw is the initial window (RFC 5681 section 3.1, or RFC 6928).
func (t *TCB) iw() uint32 {
	smss := t.effMSS()
	if t.cfg.opts&optIW10 != 0 {
		return min(10*smss, max(2*smss, 14600))
	}
	switch {
	case smss > 2190:
		return 2 * smss
	case smss > 1095:
		return 3 * smss
	}
	return 4 * smss
}

// sendSYN sends our SYN (in SYN-SENT) or SYN-ACK (in SYN-RECEIVED),
// <SEQ=ISS><CTL=SYN> or <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>, with our MSS
// (RFC 9293 MUST-14) and the options we offer, or in a SYN-ACK those the
// peer offered too (RFC 7323 sections 2.2 and 3.2, RFC 2018 section 2).
// It starts the retransmission timer if it is not running (MUST-22).
func (t *TCB) sendSYN(now Time, out []Action) []Action {
	o := &t.cfg
	ms := msOf(now)
	out, a := push(out, ActSend)
	a.DataSeq = t.Iss
	s := &a.Header
	s.SrcPort, s.DstPort, s.Flags = t.LocalPort, t.RemotePort, FlagSYN
	s.Window = uint16(min(o.rcvBuf, 0xffff)) // never scaled (RFC 7323 section 2.2)
	s.MSS = o.mss
	// The options gathered in a local, and the settings and flags read
	// once: stores through s would otherwise have them read again.
	opts, offer, fl := OptMSS, o.opts, t.flags
	active := t.State == SynSent
	if offer&optWS != 0 && (active || fl&flagPeerWS != 0) {
		opts |= OptWindowScale
		s.WindowScale = o.wscale()
	}
	if offer&optSACK != 0 && (active || fl&flagSACK != 0) {
		opts |= OptSACKPermitted
	}
	if offer&optTS != 0 && (active || fl&flagTS != 0) {
		opts |= OptTimestamps
		s.TSVal = t.tsValMs(ms)
	}
	s.Options = opts
	if !active {
		s.Flags |= FlagACK
		s.Ack = t.RcvNxt
		s.TSEcr = t.tsRecent
		t.lastAckSent = t.RcvNxt
		t.flags &^= flagAckNow | flagAckDelayed
	}
	if t.flags&(flagSynRetx|flagRttTiming) == 0 {
		t.flags |= flagRttTiming
		t.rttSeq = t.Iss.Add(1)
		t.rttStart = usOf(now)
	}
	// The handshake starts the ACK clock: data sent within an RTO of it
	// follows no idle period (RFC 5681 section 4.1), as Linux's send
	// time set when the connection completes also says.
	t.lastSend = ms
	if t.timers[slotOf(TimerRetransmit)] == 0 && t.plainLossTimer() && t.cfg.userTimeout == 0 {
		// startRetransmitMs with no timer running and none to report or
		// add: the loss timer is set in line, which spares the call.
		t.rtxStart = ms
		t.setTimer(TimerRetransmit, now.Add(t.rtoDur()))
		return out
	}
	return t.startRetransmitMs(now, ms, out)
}

// startRetransmit starts the retransmission timer (and the user timeout)
// if it is not running (RFC 6298 section 5.1).
func (t *TCB) startRetransmit(now Time, out []Action) []Action {
	return t.startRetransmitMs(now, msOf(now), out)
}

// startRetransmitMs is startRetransmit with the clock already read, in
// milliseconds as well.
func (t *TCB) startRetransmitMs(now Time, ms uint32, out []Action) []Action {
	if t.running(TimerRetransmit) || t.running(TimerProbe) {
		return out
	}
	t.rtxStart = ms
	if t.plainLossTimer() { // armLossTimer
		t.setTimer(TimerRetransmit, now.Add(t.rtoDur()))
	} else {
		out = t.armProbeOrRTO(now, out)
	}
	if t.cfg.userTimeout != 0 && !t.running(TimerUser) {
		out = t.arm(out, TimerUser, now, t.cfg.userTimeout.dur())
	}
	return out
}

// output sends what the state allows: retransmissions, then new data
// within the send and congestion windows, then our FIN, and an ACK if one
// is owed and nothing else carried it, or starts the delayed-ACK timer.
func (t *TCB) output(now Time, out []Action) []Action {
	switch t.State {
	case Closed, Listen, SynSent:
		return out
	case Established, CloseWait, FinWait1, Closing, LastAck:
		if t.sndRtx != t.SndNxt || t.SndNxt != t.sndEnd || t.flags&flagCloseCalled != 0 {
			out = t.sendData(now, out)
		} else if t.SndNxt != t.SndUna {
			// Nothing to send: sendData would only make sure the timer
			// runs for what is in flight.
			out = t.startRetransmit(now, out)
		}
	}
	if t.ackDue() {
		out = t.ackIfOwed(now, out)
	}
	return out
}

// ackDue reports whether ackIfOwed has something to do, small enough to
// inline into the shortcuts, which then save its call: an ACK owed now,
// or one owed later with the delayed-ACK timer not running yet.
func (t *TCB) ackDue() bool {
	return t.flags&flagAckNow != 0 || t.flags&flagAckDelayed != 0 && !t.running(TimerDelayedACK)
}

// ackIfOwed sends the ACK owed now, or starts the delayed-ACK timer for
// one owed later (RFC 9293 section 3.8.6.3), when nothing else carried it.
func (t *TCB) ackIfOwed(now Time, out []Action) []Action {
	switch {
	case t.flags&flagAckNow != 0:
		out = t.sendACK(out, t.SndNxt, now)
	case t.flags&flagAckDelayed != 0 && !t.running(TimerDelayedACK):
		if t.cfg.more&optTimerActions == 0 {
			t.setTimer(TimerDelayedACK, now.Add(t.cfg.delAck.dur())) // arm, with nothing to report
		} else {
			out = t.arm(out, TimerDelayedACK, now, t.cfg.delAck.dur())
		}
	}
	return out
}

// segment fills a (a zero ActSend) with a segment from us with
// SEQ=seq, ACK=RCV.NXT and the window and options every synchronized
// segment carries: timestamps once agreed, and SACK blocks while data is
// held out of order (RFC 2018 section 4), which SegmentOf adds.
//
// The window field announces a right edge, which it records. The edge
// never moves left (SHLD-14) and moves right only by at least
// swsThreshold (receiver SWS avoidance). The scaled field is rounded up,
// never down, so the peer's view of the edge never moves left either (RFC
// 7323 section 2.3). The window is worked out here rather than in a
// function of its own: segment then calls nothing, which saves every
// segment a call and the spills around it.
func (t *TCB) segment(a *Action, seq Seq, f Flags, now Time) {
	fl, nxt := t.flags, t.RcvNxt
	a.DataSeq = seq
	s := &a.Header
	s.SrcPort, s.DstPort = t.LocalPort, t.RemotePort
	s.Ack, s.Flags = nxt, f|FlagACK
	if fl&flagTS != 0 {
		s.Options = OptTimestamps
		s.TSVal = t.tsVal(now)
		s.TSEcr = t.tsRecent
	}
	if fl&flagSACK != 0 && t.ooo[0].Left != t.ooo[0].Right {
		s.SACK = true
	}
	if fl&flagUrgPending != 0 && seq.LessThan(t.sndUp) {
		s.Flags |= FlagURG
		s.Urgent = uint16(min(t.sndUp.Diff(seq), 0xffff))
	}
	t.lastAckSent = nxt
	t.flags = fl &^ (flagAckNow | flagAckDelayed)

	// The window: rightEdge, with the loads shared.
	sh := t.rcvShift()
	adv := t.rcvAdv
	buf := t.cfg.rcvBuf
	bufEnd := t.rcvUser.Add(buf)
	if fl&flagFinRcvd != 0 {
		bufEnd++ // finBit
	}
	sws := t.swsThreshold()
	// The edge moves only to a right edge at least sws past it, and the
	// right edge is never past the buffer's end: with the end less than
	// sws past the edge (as when nothing was read since the last
	// segment), the edge stays, and the right edge need not be worked
	// out. (That takes the two within 2^31 of each other, which a
	// buffer below 2^31 bytes makes sure of.)
	if bufEnd.Diff(adv) < sws && int32(buf) >= 0 {
		if w := adv.Diff(nxt); int32(w) > 0 && w>>sh<<sh == w && w>>sh <= 0xffff {
			// The edge as it was, a whole number of units of the scale
			// past RCV.NXT within the field, and not past the buffer's
			// end, which is less than sws past it: what the rule below
			// comes to then.
			s.Window = uint16(w >> sh)
			return
		}
	} else if sh == 0 {
		// The rule below with no scale: no rounding, and the field is
		// the window.
		right := bufEnd
		if lim := nxt.Add(0xffff); lim.LessThan(right) {
			right = lim
		}
		if right.GreaterThan(adv) && right.Diff(adv) >= sws {
			if right.GreaterThan(nxt) {
				t.rcvAdv = right
				s.Window = uint16(right.Diff(nxt))
				return
			}
			adv = right
		}
	} else {
		round := uint32(1)<<sh - 1
		right := bufEnd.Add(-min(round, buf))
		if lim := nxt.Add(0xffff << sh); lim.LessThan(right) {
			right = lim
		}
		if right.GreaterThan(adv) && right.Diff(adv) >= sws {
			if right.GreaterThan(nxt) {
				// The edge moves to right, rounded up to the scale: right
				// is at most nxt+0xffff<<sh, so the field fits, and it
				// keeps 1<<sh - 1 bytes of the buffer for the rounding,
				// so the rounded edge stays inside the buffer (the
				// checks below).
				field := (right.Diff(nxt) + round) >> sh
				t.rcvAdv = nxt.Add(field << sh)
				s.Window = uint16(field)
				return
			}
			adv = right
		}
	}
	w := adv.Diff(nxt)
	if !nxt.LessThan(adv) {
		w = 0
	}
	round := uint32(1)<<sh - 1
	field := min((w+round)>>sh, 0xffff)
	// Rounding up must not promise more than the buffer holds: repeated
	// from a moving RCV.NXT it would creep past it.
	if e := nxt.Add(field << sh); e.GreaterThan(bufEnd) {
		field = bufEnd.Diff(nxt) >> sh
	}
	if e := nxt.Add(field << sh); e.GreaterThan(adv) {
		adv = e
	}
	t.rcvAdv = adv
	s.Window = uint16(field)
}

// SegmentOf returns the segment the ActSend a describes, without payload
// (RFC 9293 section 3.1): a.Segment, and if a.Header.SACK is set, after
// a's D-SACK block, the SACK blocks of t's out-of-order data: the block
// holding the latest segment first, then the others (RFC 2018 section 4),
// as many as the option space holds beside the D-SACK block (RFC 2883
// section 4). t is the TCB whose Step appended a, not stepped since: the
// blocks are those of its state now. If a.Header.SACK is not set, t is
// not read.
func (t *TCB) SegmentOf(a *Action) (s Segment) {
	a.fill(&s)
	if a.Header.SACK {
		s.Options.NumSACK = uint8(len(t.sackBlocks(a, s.Options.SACK[:0])))
	}
	return s
}

// HeaderLen returns the length of the header, options included, that
// AppendSegment writes for the ActSend a (RFC 9293 section 3.1): 20 to 60
// bytes. Like SegmentOf, it reads t only if a.Header.SACK is set.
func (t *TCB) HeaderLen(a *Action) int {
	n := 0
	if a.Header.SACK || a.Header.DSACK.Left != a.Header.DSACK.Right {
		var blocks [MaxSACKBlocks]SACKBlock
		n = len(t.sackBlocks(a, blocks[:0]))
	}
	return HeaderLen + a.Header.Options.encodedLen(n)
}

// AppendSegment appends to b the ActSend a encoded with payload as its
// text: the segment SegmentOf returns, in the layout Segment.AppendTo
// writes (RFC 9293 section 3.1). payload is the a.DataLen bytes of the
// send stream from a.DataSeq on; a host that copies them itself passes
// nil and appends them after the header. The checksum field is zero:
// SetChecksum on the whole segment fills it in. Like SegmentOf, it reads
// t only if a.Header.SACK is set, and then before t is stepped again. It
// does not allocate when b has room.
func (t *TCB) AppendSegment(b []byte, a *Action, payload []byte) []byte {
	h := &a.Header
	var sack []SACKBlock
	var blocks [MaxSACKBlocks]SACKBlock
	if h.SACK || h.DSACK.Left != h.DSACK.Right {
		sack = t.sackBlocks(a, blocks[:0])
	}
	optLen := h.Options.encodedLen(len(sack))
	seq := a.DataSeq
	b = append(b,
		byte(h.SrcPort>>8), byte(h.SrcPort),
		byte(h.DstPort>>8), byte(h.DstPort),
		byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq),
		byte(h.Ack>>24), byte(h.Ack>>16), byte(h.Ack>>8), byte(h.Ack),
		byte((HeaderLen+optLen)/4)<<4, byte(h.Flags),
		byte(h.Window>>8), byte(h.Window),
		0, 0,
		byte(h.Urgent>>8), byte(h.Urgent),
	)
	if h.Options != 0 || len(sack) > 0 {
		b = appendOptions(b, h.Options, h.MSS, h.WindowScale, h.TSVal, h.TSEcr, sack)
	}
	return append(b, payload...)
}

// sackBlocks appends to dst, which has room for MaxSACKBlocks, the SACK
// blocks of a's segment: its D-SACK block, then if a.Header.SACK is set
// those of the out-of-order data, the one holding the latest segment
// first; after a D-SACK block, only as many as leave it room.
func (t *TCB) sackBlocks(a *Action, dst []SACKBlock) []SACKBlock {
	h := &a.Header
	if h.DSACK.Left != h.DSACK.Right {
		dst = append(dst, h.DSACK)
	}
	if !h.SACK {
		return dst
	}
	n := count(t.ooo[:])
	room := min(n, cap(dst)-len(dst))
	if len(dst) > 0 {
		room = min(n, h.Options.sackRoom()-len(dst))
	}
	if room <= 0 {
		return dst
	}
	last := int(t.oooLast)
	if last < n {
		dst = append(dst, SACKBlock(t.ooo[last]))
		room--
	}
	for i := 0; i < n && room > 0; i++ {
		if i != last {
			dst = append(dst, SACKBlock(t.ooo[i]))
			room--
		}
	}
	return dst
}

// sendACK sends <SEQ=seq><ACK=RCV.NXT><CTL=ACK> (RFC 9293 section 3.3.2:
// seq is SND.NXT except for keep-alive and window probes).
func (t *TCB) sendACK(out []Action, seq Seq, now Time) []Action {
	out = t.stopDelayedACK(out)
	out, a := push(out, ActSend)
	t.segment(a, seq, 0, now)
	return out
}

// sendDSACK sends an ACK whose first SACK block is d, a duplicate the peer
// sent (RFC 2883 section 4), before the usual blocks; the last of those
// makes way if the option space has no room (SegmentOf).
func (t *TCB) sendDSACK(out []Action, d SACKBlock, now Time) []Action {
	out = t.sendACK(out, t.SndNxt, now)
	out[len(out)-1].Header.DSACK = d
	return out
}

// emitData sends n bytes of the stream from seq, with FIN if fin, PSH on
// the segment that empties the queue (RFC 9293 MUST-61), and ACK=RCV.NXT.
func (t *TCB) emitData(out []Action, seq Seq, n uint32, fin bool, now Time) []Action {
	var f Flags
	if n > 0 && seq.Add(n) == t.sndEnd {
		f |= FlagPSH
	}
	if fin {
		f |= FlagFIN
	}
	out = t.stopDelayedACK(out)
	t.lastSend = msOf(now)
	if t.flags&flagRecovery != 0 && t.prrOn() {
		t.prrSent(n)
	}
	out, a := push(out, ActSend)
	a.DataLen = n
	t.segment(a, seq, f, now)
	return out
}

// sendLimit is the right edge of what may be in flight: SND.UNA plus the
// smaller of the send window and the congestion window, which limited
// transmit opens by one segment per duplicate ACK (RFC 3042).
// In recovery with PRR, prrLimit takes its place.
func (t *TCB) sendLimit() Seq {
	cw := t.cwnd
	if t.flags&flagRecovery == 0 && t.dupAcks > 0 && t.dupAcks < 3 {
		cw += uint32(t.dupAcks) * t.effMSS()
	}
	return t.SndUna.Add(min(t.SndWnd, cw))
}

// sendData segments the queued data (RFC 9293 section 3.10.2): first what
// the retransmission timer asked to resend, then new data, never past
// sendLimit (section 3.8.6), then the FIN after the last byte (section
// 3.10.4). Small segments wait as Nagle (SHLD-7) and sender silly-window
// avoidance (MUST-38) say, and the persist timer makes sure nothing waits
// forever (MUST-60, MUST-36).
func (t *TCB) sendData(now Time, out []Action) []Action {
	if t.sndRtx == t.SndNxt && t.SndNxt == t.sndEnd && t.flags&flagCloseCalled == 0 {
		// Nothing to resend, nothing queued, no FIN due: only make sure
		// the timer runs for what is in flight (what the full path below
		// comes to in this case).
		if t.SndNxt != t.SndUna {
			return t.startRetransmit(now, out)
		}
		return out
	}
	mss := t.effMSS()
	limit := t.sendLimit()
	if t.flags&flagRecovery != 0 && t.prrOn() {
		limit = t.prrLimit()
	}
	room := func(seq Seq) uint32 {
		if seq.LessThan(limit) {
			return limit.Diff(seq)
		}
		return 0
	}

	// Go-back-N retransmission after a timeout, from sndRtx up to SND.NXT.
	for t.flags&flagRecovery == 0 && t.sndRtx.LessThan(t.SndNxt) {
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
		out = t.emitData(out, seq, n, fin, now)
		t.sndRtx = seq.Add(n + b2u(fin))
	}

	// Restart after idle: the window the ACK clock no longer backs shrinks
	// to the restart window before transmission begins (RFC 5681 section
	// 4.1), not while a closed peer window holds the data back. With
	// Config.NoRestartAfterIdle the window stays, and CUBIC's curve moves
	// on by the idle time: a flow that sent nothing earns no growth (RFC
	// 9438 section 5.8).
	if t.SndUna == t.SndNxt && t.SndNxt.LessThan(t.sndEnd) && t.SndWnd > 0 &&
		sinceMs(now, t.lastSend) > t.rtoDur() {
		switch {
		case t.cfg.more&optNoIdleRestart == 0:
			t.cwnd = min(t.cwnd, t.iw())
			if t.cwnd < t.ssthresh {
				t.cubicEpoch = 0 // slow start again: a new round (cc.go)
			}
			limit = t.sendLimit()
		case t.cubicEpoch != 0 && t.cwnd >= t.ssthresh && t.cfg.opts&optCUBIC != 0 && t.flags&flagRecovery == 0:
			t.cubicEpoch = min(t.cubicEpoch+(msOf(now)-t.lastSend), msOf(now))
		}
	}

	// New data.
	held := false
	sent := t.SndNxt
	if t.SndUna == t.SndNxt && t.SndNxt.LessThan(t.sndEnd) && t.running(TimerPersist) && room(t.SndNxt) > 0 {
		t.retries = 0 // the window opened: probing is over
	}
	for t.SndNxt.LessThan(t.sndEnd) {
		queued := t.sndEnd.Diff(t.SndNxt)
		n := min(mss, queued, room(t.SndNxt))
		if n == 0 {
			held = true
			break
		}
		if n < mss {
			if !t.smallOK(n, queued) {
				held = true
				break
			}
			t.flags |= flagSmallSent
		}
		fin := t.flags&flagCloseCalled != 0 && n == queued
		out = t.emitData(out, t.SndNxt, n, fin, now)
		t.advanceSndNxt(now, n, fin)
	}

	// Our FIN alone, once every byte has been sent.
	if t.flags&(flagCloseCalled|flagFinSent) == flagCloseCalled && t.SndNxt == t.sndEnd {
		out = t.emitData(out, t.SndNxt, 0, true, now)
		t.advanceSndNxt(now, 0, true)
		t.flags |= flagFinAlone
	}

	if t.SndNxt != sent {
		t.noteSSFlight()
	}
	if t.SndNxt != t.SndUna {
		if t.SndNxt != sent && t.running(TimerProbe) {
			// The PTO counts from the latest new data (RFC 8985 section 7.2).
			out = t.arm(out, TimerProbe, now, t.pto())
		}
		return t.startRetransmit(now, out)
	}
	if held && !t.running(TimerPersist) {
		// Nothing in flight to bring an ACK: probe the window, or send
		// what silly-window avoidance held, when the persist timer fires.
		out = t.arm(out, TimerPersist, now, t.persistDur())
	}
	return out
}

// smallOK decides whether a segment of n < MSS bytes may go now, with
// queued bytes waiting. All of the queue fitting is Nagle's case: send
// unless a small segment is still unacknowledged (Minshall's refinement
// of RFC 9293 SHLD-7, as Linux does), or anyway if Nagle is off or on
// the way to our FIN (MUST-17). Only part of it fitting is sender SWS
// avoidance's case: send if it is at least half the largest window the
// peer ever offered (MUST-38).
func (t *TCB) smallOK(n, queued uint32) bool {
	if t.SndUna == t.SndNxt {
		t.flags &^= flagSmallSent
	}
	if n == queued {
		// Minshall's variant: only an unacknowledged small segment holds
		// another one back, not full-sized ones.
		return t.flags&flagSmallSent == 0 || t.cfg.opts&optNoDelay != 0 || t.flags&flagCloseCalled != 0
	}
	return n >= t.MaxSndWnd/2 && (t.SndUna == t.SndNxt || t.cfg.opts&optNoDelay != 0)
}

// persistDur is the persist interval: the RTO, doubled for each probe
// already sent, up to the largest RTO (RFC 9293 SHLD-29, SHLD-30).
func (t *TCB) persistDur() time.Duration {
	d := t.rtoDur()
	for range t.retries {
		d *= 2
		if d >= t.cfg.maxRTO.dur() {
			return t.cfg.maxRTO.dur()
		}
	}
	return d
}

// onPersist fires the persist timer: a window probe while the window is
// too small for anything, or else the segment silly-window avoidance held
// (the override of RFC 9293 MUST-38). Probes back off but never give up
// while the peer answers (MUST-37).
func (t *TCB) onPersist(now Time, out []Action) []Action {
	if !t.SndNxt.LessThan(t.sndEnd) || t.SndUna != t.SndNxt {
		return out
	}
	if n := min(t.effMSS(), t.sndEnd.Diff(t.SndNxt), t.SndWnd); n > 0 {
		fin := t.flags&flagCloseCalled != 0 && n == t.sndEnd.Diff(t.SndNxt)
		out = t.emitData(out, t.SndNxt, n, fin, now)
		t.advanceSndNxt(now, n, fin)
		return t.startRetransmit(now, out)
	}
	// <SEQ=SND.NXT-1><ACK=RCV.NXT>: old, so the peer answers with its window.
	out = t.sendACK(out, t.SndNxt.Add(^uint32(0)), now)
	if t.retries < 30 {
		t.retries++
	}
	return t.arm(out, TimerPersist, now, t.persistDur())
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
	nxt := t.SndNxt.Add(n + b2u(fin))
	if t.sndRtx == t.SndNxt {
		t.sndRtx = nxt // nothing waits to be resent
	}
	t.SndNxt = nxt
	if fin {
		t.flags |= flagFinSent
	}
	if t.flags&flagRttTiming == 0 {
		t.flags |= flagRttTiming
		t.rttSeq = t.SndNxt
		t.rttStart = usOf(now)
	}
}

// rightEdge is the furthest right edge the receive buffer allows. With
// window scaling, the window field is rounded up (RFC 7323 section 2.3),
// so the edge leaves room for that rounding inside the buffer.
func (t *TCB) rightEdge() Seq {
	sh, buf := t.rcvShift(), t.cfg.rcvBuf
	return MinSeq(t.rcvUser.Add(t.finBit()+buf-min(1<<sh-1, buf)), t.RcvNxt.Add(0xffff<<sh))
}

// swsThreshold is how far the right edge must be able to move before it
// moves: min(RCV.BUFF/2, MSS) (RFC 9293 MUST-39).
func (t *TCB) swsThreshold() uint32 { return min(t.cfg.rcvBuf/2, uint32(t.cfg.mss)) }

// windowMayOpen is false when windowUpdateDue is sure to be: the buffer's
// end is less than the SWS threshold past the edge advertised, and the
// right edge is never past the buffer's end (as in segment, that takes a
// buffer below 2^31 bytes). Small enough to inline, it spares the common
// case, a read of less than the threshold, windowUpdateDue's call.
func (t *TCB) windowMayOpen() bool {
	buf := t.cfg.rcvBuf
	return t.rcvUser.Add(buf+t.finBit()).Diff(t.rcvAdv) >= t.swsThreshold() || int32(buf) < 0
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
	for s := range numSlots {
		d := t.timers[s]
		if d == 0 || d > now {
			continue
		}
		t.timers[s] = 0
		switch t.tkind[s] {
		case TimerRetransmit:
			out = t.onRetransmitTimeout(now, out)
		case TimerPersist:
			out = t.onPersist(now, out)
		case TimerProbe:
			out = t.onProbeTimeout(now, out)
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
// RFC 9293 MUST-20 to MUST-23). With the window closed the retransmission
// is a window probe, and the connection lives as long as the peer answers
// (MUST-35, MUST-37).
func (t *TCB) onRetransmitTimeout(now Time, out []Action) []Action {
	if t.SndUna == t.SndNxt {
		return out
	}
	t.retries++
	t.flags &^= flagProbe | flagProbeRtx // the timeout takes over from the probe
	syn := t.State == SynSent || t.State == SynReceived
	zeroWnd := !syn && t.SndWnd == 0 && t.flags&flagFinSent == 0
	var giveUp bool
	switch {
	case syn && t.cfg.synRetries > 0:
		giveUp = t.retries > t.cfg.synRetries
	case syn:
		giveUp = sinceMs(now, t.rtxStart) >= t.cfg.synR2.dur()
	case zeroWnd:
		// Probes the peer answers never time out (MUST-37); R2 counts
		// from the last answer once one goes unanswered.
		answered := t.lastRcv >= now-Time(t.rtoDur())
		giveUp = !answered && now.Sub(t.lastRcv) >= t.cfg.r2.dur()
	default:
		giveUp = sinceMs(now, t.rtxStart) >= t.cfg.r2.dur()
	}
	if giveUp {
		if t.State != SynSent && t.cfg.opts&optNoResetOnGiveUp == 0 {
			out = t.emitRST(out, t.SndNxt, now)
		}
		return t.toClosed(out, NoteTimedOut)
	}
	if t.retries == t.cfg.r1 && !zeroWnd {
		out = notify(out, NoteStalled)
		if t.cfg.opts&optForgetRTT != 0 {
			// RFC 6298 section 5: the next sample re-initialises them.
			t.flags &^= flagHaveRtt
			t.srtt, t.rttvar = 0, 0
		}
	}
	t.rto = min(2*t.rto, uint32(t.cfg.maxRTO.dur()/time.Microsecond))
	t.flags &^= flagRttTiming // Karn's algorithm
	keep := t.rtxStart        // R2 counts from the first transmission
	if syn {
		t.flags |= flagSynRetx
		t.timers[slotOf(TimerRetransmit)] = 0
		out = t.sendSYN(now, out)
		t.rtxStart = keep
		return out
	}
	t.onLoss(true)
	t.sacked = sackBoard{} // RFC 2018 section 5: start again from the left edge
	t.sndRtx = t.SndUna
	if zeroWnd {
		out = t.sendACK(out, t.SndUna.Add(^uint32(0)), now)
		keep = msOf(now) // R2 for the data restarts when the window opens
	} else {
		out = t.sendData(now, out)
	}
	t.rtxStart = keep
	return t.arm(out, TimerRetransmit, now, t.rtoDur())
}

// rtoDur is the current RTO.
func (t *TCB) rtoDur() time.Duration { return time.Duration(t.rto) * time.Microsecond }

// rttSample updates SRTT, RTTVAR and RTO from one measurement (RFC 6298
// section 2), with a clock granularity G of 1 ms.
func (t *TCB) rttSample(d time.Duration) { t.rttSampleUs(uint64(max(d/time.Microsecond, 0))) }

// rttSampleUs is rttSample for a measurement of us microseconds.
func (t *TCB) rttSampleUs(us uint64) {
	// In 64 bits: 7*SRTT and 3*RTTVAR exceed 32 bits for samples past
	// about ten minutes, possible when MaxRTO is raised.
	r := min(max(us, 1), 1<<31)
	srtt, rttvar := r, r/2
	if t.flags&flagHaveRtt == 0 {
		t.flags |= flagHaveRtt
	} else {
		srtt, rttvar = uint64(t.srtt), uint64(t.rttvar)
		delta := srtt - r
		if r > srtt {
			delta = r - srtt
		}
		rttvar = (3*rttvar + delta) / 4
		srtt = (7*srtt + r) / 8
	}
	t.srtt, t.rttvar = uint32(srtt), uint32(rttvar)
	const g = 1000 // µs
	lo := t.cfg.minRTO.us()
	rto := srtt + max(g, 4*rttvar)
	if t.cfg.more&optMinRTOVar != 0 {
		rto = srtt + max(g, 4*rttvar, lo)
	}
	rto = max(rto, lo)
	if rto > uint64(minMaxRTO/time.Microsecond) {
		rto = min(rto, t.cfg.maxRTO.us())
	}
	t.rto = uint32(rto)
}

// staleEcho reports whether a timestamp echo ms milliseconds old is one of
// a TSval we never sent: from the future (ahead of our clock), or older
// than any unacknowledged segment can be (beyond MaxRTO, the longest a
// segment waits before it is sent again).
func (t *TCB) staleEcho(ms int32) bool {
	return ms < 0 || ms > int32(minMaxRTO/time.Millisecond) && uint64(ms)*1000 > t.cfg.maxRTO.us()
}

// onKeepalive sends a keep-alive probe <SEQ=SND.NXT-1><ACK=RCV.NXT> when
// the connection has been idle, and gives up after the configured count
// of unanswered probes (RFC 9293 section 3.8.4, MUST-26, MUST-29, SHLD-12).
func (t *TCB) onKeepalive(now Time, out []Action) []Action {
	if t.cfg.opts&optKeepalive == 0 || !t.State.IsSynchronized() || t.State == TimeWait {
		return out
	}
	idle := t.cfg.keepIdle.dur()
	if t.SndUna != t.SndNxt || t.unsent() > 0 {
		return t.arm(out, TimerKeepalive, now, idle)
	}
	if t.keepProbes == 0 && now.Sub(t.lastRcv) < idle {
		return t.arm(out, TimerKeepalive, t.lastRcv, idle)
	}
	if t.keepProbes >= t.cfg.keepCount {
		out = t.emitRST(out, t.SndNxt, now)
		return t.toClosed(out, NoteTimedOut)
	}
	t.keepProbes++
	out = t.sendACK(out, t.SndNxt.Add(^uint32(0)), now)
	return t.arm(out, TimerKeepalive, now, t.cfg.keepIntvl.dur())
}
