package tcpfsm

// segmentArrives processes one arriving segment in the order of checks of
// RFC 9293 section 3.10.7. Output (data, FIN, the owed ACK) follows in
// Step unless more segments of the batch are coming.
func (t *TCB) segmentArrives(seg *Segment, iss Seq, now Time, out []Action) []Action {
	if t.State != Closed && t.State != Listen &&
		(seg.DstPort != t.LocalPort || seg.SrcPort != t.RemotePort) {
		return drop(out, DropNotOurs)
	}
	switch t.State {
	case Closed:
		return t.arriveClosed(seg, out)
	case Listen:
		if seg.DstPort != t.LocalPort {
			return drop(out, DropNotOurs)
		}
		return t.arriveListen(seg, iss, now, out)
	case SynSent:
		t.lastRcv = now
		return t.arriveSynSent(seg, now, out)
	}
	t.lastRcv = now
	t.keepProbes = 0
	return t.arriveOther(seg, now, out)
}

// arriveClosed: RFC 9293 section 3.10.7.1.
func (t *TCB) arriveClosed(seg *Segment, out []Action) []Action {
	if r, ok := ResetFor(seg); ok {
		out = append(out, Action{Kind: ActSend, Seg: r})
	}
	return drop(out, DropClosed)
}

// emitRST sends <SEQ=seq><CTL=RST> to the peer.
func (t *TCB) emitRST(out []Action, seq Seq) []Action {
	return append(out, Action{Kind: ActSend, Seg: Segment{
		SrcPort: t.LocalPort, DstPort: t.RemotePort, Seq: seq, Flags: FlagRST,
	}})
}

// replyRST answers seg with <SEQ=SEG.ACK><CTL=RST>.
func replyRST(out []Action, seg *Segment) []Action {
	return append(out, Action{Kind: ActSend, Seg: Segment{
		SrcPort: seg.DstPort, DstPort: seg.SrcPort, Seq: seg.Ack, Flags: FlagRST,
	}})
}

// arriveListen: RFC 9293 section 3.10.7.2.
func (t *TCB) arriveListen(seg *Segment, iss Seq, now Time, out []Action) []Action {
	switch {
	case seg.Flags&FlagRST != 0:
		return drop(out, DropListenNotSYN)
	case seg.Flags&FlagACK != 0:
		out = replyRST(out, seg)
		return drop(out, DropListenNotSYN)
	case seg.Flags&FlagSYN == 0:
		return drop(out, DropListenNotSYN)
	}
	t.RemotePort = seg.SrcPort
	t.initSend(iss)
	t.flags |= flagPassive
	t.lastRcv = now
	t.peerSYN(seg)
	t.State = SynReceived
	out = t.sendSYN(now, out)
	// Data and FIN on the SYN wait for ESTABLISHED (RFC 9293 section
	// 3.10.7.3): the host keeps the bytes, the TCB their range.
	return t.queueText(seg, seg.Seq.Add(1), out)
}

// peerSYN records what a SYN tells: IRS, RCV.NXT, the peer's MSS and
// window (RFC 9293 sections 3.10.7.2 and 3.10.7.3, MUST-15).
func (t *TCB) peerSYN(seg *Segment) {
	t.Irs = seg.Seq
	t.RcvNxt = seg.Seq.Add(1)
	t.rcvUser = t.RcvNxt
	t.rcvAdv = t.RcvNxt.Add(min(t.cfg.rcvBuf, 0xffff))
	peer := t.defaultPeerMSS()
	if seg.Options.Has(OptMSS) && seg.Options.MSS > 0 {
		peer = seg.Options.MSS
	}
	t.sndMSS = min(peer, t.cfg.mss)
	// The SYN's window is never scaled (RFC 7323 section 2.2).
	t.SndWnd = uint32(seg.Window)
	t.MaxSndWnd = t.SndWnd
	t.SndWl1 = seg.Seq
	t.SndWl2 = seg.Ack
}

// defaultPeerMSS is the send MSS assumed without an MSS option (MUST-15).
func (t *TCB) defaultPeerMSS() uint16 {
	if t.cfg.opts&optIPv6 != 0 {
		return 1220
	}
	return 536
}

// arriveSynSent: RFC 9293 section 3.10.7.3.
func (t *TCB) arriveSynSent(seg *Segment, now Time, out []Action) []Action {
	ackOK := false
	if seg.Flags&FlagACK != 0 {
		if seg.Ack.LessThanEq(t.Iss) || seg.Ack.GreaterThan(t.SndNxt) {
			if seg.Flags&FlagRST == 0 {
				out = replyRST(out, seg)
			}
			return drop(out, DropSynSentBadACK)
		}
		ackOK = t.SndUna.LessThan(seg.Ack)
	}
	if seg.Flags&FlagRST != 0 {
		if ackOK {
			return t.toClosed(out, NoteRefused)
		}
		return drop(out, DropSynSentNoSYN)
	}
	if seg.Flags&FlagSYN == 0 {
		return drop(out, DropSynSentNoSYN)
	}
	t.peerSYN(seg)
	if !ackOK {
		// Simultaneous open (RFC 9293 section 3.5 figure 7, MUST-10).
		t.State = SynReceived
		out = t.sendSYN(now, out)
		return t.queueText(seg, seg.Seq.Add(1), out)
	}
	t.SndWl2 = seg.Ack
	out = t.ackAdvance(seg.Ack, now, out)
	out = t.enterEstablished(now, out)
	t.flags |= flagAckNow
	// Text and FIN on the SYN-ACK: the sixth step onward.
	return t.processText(seg, seg.Seq.Add(1), now, out)
}

// enterEstablished moves SYN-SENT or SYN-RECEIVED to ESTABLISHED, with the
// initial congestion window (RFC 5681 section 3.1, RFC 6298 section 5.7).
func (t *TCB) enterEstablished(now Time, out []Action) []Action {
	t.State = Established
	t.flags &^= flagPassive
	smss := uint32(t.sndMSS)
	switch {
	case t.flags&flagSynRetx != 0:
		t.cwnd = smss // the SYN or SYN-ACK was lost: IW is one segment
		if t.rto < 3_000_000 {
			t.rto = 3_000_000
		}
	case smss > 2190:
		t.cwnd = 2 * smss
	case smss > 1095:
		t.cwnd = 3 * smss
	default:
		t.cwnd = 4 * smss
	}
	if t.cfg.opts&optKeepalive != 0 {
		out = t.arm(out, TimerKeepalive, now, msDur(t.cfg.keepIdle))
	}
	out = notify(out, NoteConnected)
	if t.flags&flagCloseCalled != 0 {
		t.State = FinWait1 // CLOSE was queued in SYN-RECEIVED
	}
	// Data queued on the SYN becomes readable now.
	return t.advanceRcv(t.RcvNxt, now, out)
}

// acceptable is the segment acceptability test of RFC 9293 section
// 3.10.7.4, table 6.
func (t *TCB) acceptable(seq Seq, segLen uint32) bool {
	wnd := t.RcvWnd()
	switch {
	case segLen == 0 && wnd == 0:
		return seq == t.RcvNxt
	case segLen == 0:
		return seq.InWindow(t.RcvNxt, wnd)
	case wnd == 0:
		return false
	}
	return seq.InWindow(t.RcvNxt, wnd) || seq.Add(segLen-1).InWindow(t.RcvNxt, wnd)
}

// arriveOther: RFC 9293 section 3.10.7.4, for SYN-RECEIVED and the
// synchronized states.
func (t *TCB) arriveOther(seg *Segment, now Time, out []Action) []Action {
	f := seg.Flags
	seq := seg.Seq

	// A SYN in SYN-RECEIVED that repeats the peer's SYN: our SYN-ACK was
	// lost, so send it again at once (as Linux does) rather than wait for
	// the retransmission timer.
	if t.State == SynReceived && f&(FlagSYN|FlagRST) == FlagSYN && seq == t.Irs {
		if f&FlagACK == 0 {
			return t.sendSYN(now, out)
		}
		// A SYN-ACK in simultaneous open: trim the SYN off its front
		// (RFC 9293 section 3.10.7.4, first step) and go on.
		f &^= FlagSYN
		seq = seq.Add(1)
	}

	// A SYN in TIME-WAIT may open a new incarnation (RFC 9293 MAY-2,
	// RFC 6191), or gets a challenge ACK (RFC 5961 section 4).
	if t.State == TimeWait && f&(FlagSYN|FlagACK|FlagRST) == FlagSYN {
		if t.cfg.opts&optTimeWaitChallenge == 0 && seq.GreaterThan(t.RcvNxt) {
			return t.toClosed(out, NoteReopen)
		}
		return t.challengeACK(now, drop(out, DropSYNSynchronized))
	}

	// Second, the RST bit, before the window test so that a RST with data
	// is judged by its sequence number alone (RFC 5961 section 3.2, SHLD-2).
	if f&FlagRST != 0 {
		return t.arriveRST(seq, now, out)
	}

	// Fourth (taken early, as RFC 5961 section 4.2 says "irrespective of
	// the sequence number"): a SYN in a synchronized state.
	if f&FlagSYN != 0 {
		if t.State == SynReceived && t.flags&flagPassive != 0 && t.acceptable(seq, seg.Len()) {
			return t.toListen(out)
		}
		return t.challengeACK(now, drop(out, DropSYNSynchronized))
	}

	// First, the sequence number.
	segLen := uint32(len(seg.Payload))
	if f&FlagFIN != 0 {
		segLen++
	}
	if !t.acceptable(seq, segLen) {
		// A zero window still takes the ACK of a segment at RCV.NXT
		// (RFC 9293 section 3.10.7.4, MUST-66).
		if !(t.RcvWnd() == 0 && seq == t.RcvNxt) {
			if t.State == TimeWait && f&FlagFIN != 0 && seq.Add(segLen) == t.RcvNxt {
				// The peer's FIN again: ACK it and restart 2*MSL.
				out = t.arm(out, TimerClose, now, 2*msDur(t.cfg.msl))
			}
			t.flags |= flagAckNow
			return drop(out, DropUnacceptable)
		}
	}

	// Fifth, the ACK field.
	if f&FlagACK == 0 {
		return drop(out, DropNoACK)
	}
	if t.State == SynReceived {
		if !(t.SndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(t.SndNxt)) {
			out = replyRST(out, seg)
			return drop(out, DropBadACK)
		}
		t.SndWnd = uint32(seg.Window)
		t.MaxSndWnd = max(t.MaxSndWnd, t.SndWnd)
		t.SndWl1, t.SndWl2 = seq, seg.Ack
		out = t.ackAdvance(seg.Ack, now, out)
		out = t.enterEstablished(now, out)
	} else {
		// RFC 5961 section 5.2: SND.UNA-MAX.SND.WND =< SEG.ACK =< SND.NXT.
		if seg.Ack.GreaterThan(t.SndNxt) {
			t.flags |= flagAckNow
			return drop(out, DropBadACK)
		}
		if seg.Ack.LessThan(t.SndUna.Add(-t.MaxSndWnd)) {
			return t.challengeACK(now, drop(out, DropBadACK))
		}
		if t.SndUna.LessThan(seg.Ack) {
			out = t.ackAdvance(seg.Ack, now, out)
		}
		// Window update (RFC 9293 section 3.10.7.4, WL1/WL2 rule).
		if t.SndUna.LessThanEq(seg.Ack) &&
			(t.SndWl1.LessThan(seq) || (t.SndWl1 == seq && t.SndWl2.LessThanEq(seg.Ack))) {
			t.SndWnd = uint32(seg.Window)
			t.MaxSndWnd = max(t.MaxSndWnd, t.SndWnd)
			t.SndWl1, t.SndWl2 = seq, seg.Ack
		}
	}

	switch t.State {
	case FinWait1:
		if t.finAcked() {
			out = t.enterFinWait2(now, out)
		}
	case Closing:
		if !t.finAcked() {
			return out
		}
		return t.toTimeWait(now, out)
	case LastAck:
		if t.finAcked() {
			return t.toClosed(out, NoteClosed)
		}
		return out
	}

	// Sixth (URG) is reported by the data-transfer layer; seventh and eighth.
	s := *seg
	s.Flags = f
	return t.processText(&s, seq, now, out)
}

// enterFinWait2: our FIN is acknowledged; the close is done but the TCB
// stays for the peer's data (RFC 9293 section 3.10.7.4).
func (t *TCB) enterFinWait2(now Time, out []Action) []Action {
	t.State = FinWait2
	out = t.stop(out, TimerRetransmit)
	out = t.stop(out, TimerUser)
	if t.cfg.fw2 != 0 {
		out = t.arm(out, TimerClose, now, msDur(t.cfg.fw2))
	}
	return notify(out, NoteCloseDone)
}

// arriveRST applies the three RST checks of RFC 5961 section 3.2 and the
// per-state reset rules of RFC 9293 section 3.10.7.4.
func (t *TCB) arriveRST(seq Seq, now Time, out []Action) []Action {
	if seq != t.RcvNxt {
		if wnd := t.RcvWnd(); wnd > 0 && seq.InWindow(t.RcvNxt, wnd) {
			return t.challengeACK(now, drop(out, DropRSTNotExact))
		}
		return drop(out, DropUnacceptable)
	}
	switch t.State {
	case SynReceived:
		if t.flags&flagPassive != 0 {
			return t.toListen(out)
		}
		return t.toClosed(out, NoteRefused)
	case TimeWait:
		if t.cfg.opts&optTimeWaitRST == 0 {
			return drop(out, DropTimeWaitRST) // RFC 1337 section 3
		}
	}
	return t.toClosed(out, NoteReset)
}

// challengeACK owes a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>,
// at most ChallengeACKLimit per second per connection (RFC 5961 section 7).
func (t *TCB) challengeACK(now Time, out []Action) []Action {
	if now.Sub(t.chStart) >= 1e9 || now < t.chStart {
		t.chStart = now
		t.chCount = 0
	}
	if t.chCount >= t.cfg.chLimit {
		return drop(out, DropRateLimited)
	}
	t.chCount++
	t.flags |= flagAckNow
	return out
}

// ackAdvance moves SND.UNA to ack (a new ACK): completed sends are
// reported, the RTT is sampled, the congestion window grows, and the
// retransmission timer restarts or stops (RFC 6298 section 5).
func (t *TCB) ackAdvance(ack Seq, now Time, out []Action) []Action {
	acked := ack.Diff(t.SndUna)
	data := acked
	if t.SndUna == t.Iss && t.State <= SynReceived {
		data-- // the SYN
	}
	if t.flags&flagFinSent != 0 && ack == t.sndEnd.Add(1) {
		data-- // the FIN
	}
	t.SndUna = ack
	if t.sndRtx.LessThan(ack) {
		t.sndRtx = ack
	}
	t.retries = 0
	if t.flags&flagRttTiming != 0 && t.rttSeq.LessThanEq(ack) {
		t.flags &^= flagRttTiming
		t.rttSample(now.Sub(t.rttStart))
	}
	if t.State.IsSynchronized() && data > 0 {
		t.growCwnd(data)
	}
	if t.SndUna == t.SndNxt {
		out = t.stop(out, TimerRetransmit)
		out = t.stop(out, TimerUser)
	} else {
		t.rtxStart = now
		out = t.arm(out, TimerRetransmit, now, t.rtoDur())
		if t.cfg.userTimeout != 0 {
			out = t.arm(out, TimerUser, now, msDur(t.cfg.userTimeout))
		}
	}
	if data > 0 {
		out = append(out, Action{Kind: ActNotify, Note: NoteSendAcked, N: data})
	}
	return out
}

// queueText records the data and FIN of a segment that arrives before
// ESTABLISHED (a SYN with data): the host keeps the bytes, and they become
// readable when the connection is established (RFC 9293 section 3.10.7.3).
func (t *TCB) queueText(seg *Segment, start Seq, out []Action) []Action {
	n := uint32(len(seg.Payload))
	wnd := t.RcvWnd()
	take := min(n, wnd)
	if take > 0 {
		if !t.ooo.add(t.RcvNxt, start, start.Add(take)) {
			return drop(out, DropOutOfOrderFull)
		}
		out = append(out, Action{Kind: ActAccept, DataSeq: start, DataLen: take})
	}
	if seg.Flags&FlagFIN != 0 && take == n {
		t.finSeq = start.Add(n)
		t.flags |= flagFinPending
	}
	return out
}

// processText is the seventh and eighth steps of RFC 9293 section
// 3.10.7.4: the segment text from sequence number start, then the FIN.
func (t *TCB) processText(seg *Segment, start Seq, now Time, out []Action) []Action {
	n := uint32(len(seg.Payload))
	fin := seg.Flags&FlagFIN != 0
	if n == 0 && !fin {
		return out
	}
	switch t.State {
	case Established, FinWait1, FinWait2:
	default:
		// The peer's FIN already arrived: later text is ignored; a
		// repeated FIN only needs its ACK (sent by the window test).
		if n > 0 {
			out = drop(out, DropAfterFIN)
		}
		return out
	}
	if n > 0 {
		// Trim to [RCV.NXT, RCV.NXT+RCV.WND).
		lo := start
		off := uint32(0)
		if lo.LessThan(t.RcvNxt) {
			off = t.RcvNxt.Diff(lo)
			lo = t.RcvNxt
		}
		end := start.Add(n)
		right := t.RcvNxt.Add(t.RcvWnd())
		if right.LessThan(end) {
			end = right
			fin = false // the FIN lies beyond the window
		}
		if lo.LessThan(end) {
			take := end.Diff(lo)
			if lo == t.RcvNxt {
				out = append(out, Action{Kind: ActAccept, DataSeq: lo, DataLen: take, Offset: off})
				from := t.RcvNxt
				t.RcvNxt = end
				if t.ooo.n > 0 {
					t.flags |= flagAckNow // a hole filled: ACK at once (RFC 5681 section 4.2)
				}
				out = t.advanceRcv(from, now, out)
			} else if t.ooo.add(t.RcvNxt, lo, end) {
				out = append(out, Action{Kind: ActAccept, DataSeq: lo, DataLen: take, Offset: off})
			} else {
				fin = false
				out = drop(out, DropOutOfOrderFull)
			}
		}
		t.flags |= flagAckNow
	}
	if fin {
		finSeq := start.Add(n)
		if finSeq == t.RcvNxt {
			return t.processFIN(now, out)
		}
		if t.RcvNxt.LessThan(finSeq) {
			t.finSeq = finSeq
			t.flags |= flagFinPending
			t.flags |= flagAckNow
		}
	}
	return out
}

// advanceRcv moves RCV.NXT over out-of-order data that now joins it,
// reports readable data if RCV.NXT moved past from, and processes a FIN
// that was waiting for the gap to fill.
func (t *TCB) advanceRcv(from Seq, now Time, out []Action) []Action {
	t.RcvNxt = t.ooo.popThrough(t.RcvNxt)
	if t.RcvNxt != from {
		out = notify(out, NoteReadable)
	}
	if t.RcvNxt.GreaterThan(t.rcvAdv) {
		t.rcvAdv = t.RcvNxt
	}
	if t.flags&flagFinPending != 0 && t.finSeq == t.RcvNxt && t.State.IsSynchronized() {
		return t.processFIN(now, out)
	}
	return out
}

// processFIN is the eighth step of RFC 9293 section 3.10.7.4.
func (t *TCB) processFIN(now Time, out []Action) []Action {
	t.flags &^= flagFinPending
	t.flags |= flagFinRcvd | flagAckNow
	t.RcvNxt = t.RcvNxt.Add(1)
	if t.rcvAdv.LessThan(t.RcvNxt) {
		t.rcvAdv = t.RcvNxt
	}
	out = notify(out, NotePeerClosed)
	switch t.State {
	case Established:
		t.State = CloseWait
	case FinWait1:
		if t.finAcked() {
			return t.toTimeWait(now, out)
		}
		t.State = Closing
	case FinWait2:
		return t.toTimeWait(now, out)
	}
	return out
}
