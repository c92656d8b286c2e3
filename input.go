package tcpfsm

import "time"

// segmentArrives processes one arriving segment in the order of checks of
// RFC 9293 section 3.10.7. Output (data, FIN, the owed ACK) follows in
// Step unless more input is coming.
func (t *TCB) segmentArrives(seg *Segment, iss Seq, now Time, out []Action) []Action {
	if t.State != Closed && t.State != Listen &&
		(seg.DstPort != t.LocalPort || seg.SrcPort != t.RemotePort) {
		return drop(out, DropNotOurs)
	}
	switch t.State {
	case Closed:
		return t.arriveClosed(seg, out)
	case Listen:
		return t.arriveListen(seg, iss, now, out)
	case SynSent:
		t.lastRcv = now
		return t.arriveSynSent(seg, now, out)
	}
	idle := now.Sub(t.lastRcv)
	t.lastRcv = now
	t.keepProbes = 0
	if t.State == Established {
		if out, ok := t.predict(seg, now, out); ok {
			return out
		}
	}
	return t.arriveOther(seg, idle, now, out)
}

// arriveClosed: RFC 9293 section 3.10.7.1.
func (t *TCB) arriveClosed(seg *Segment, out []Action) []Action {
	if r, ok := ResetFor(seg); ok {
		out = append(out, Action{Kind: ActSend, DataSeq: r.Seq,
			Header: Header{SrcPort: r.SrcPort, DstPort: r.DstPort, Ack: r.Ack, Flags: r.Flags}})
	}
	return drop(out, DropClosed)
}

// emitRST sends <SEQ=seq><ACK=RCV.NXT><CTL=RST,ACK> to the peer, with
// timestamps if they are in use (RFC 7323 section 3.2 SHOULD). The ACK
// field is sent because the connection is synchronized ("once a
// connection is established, this is always sent", RFC 9293 section
// 3.1); a receiver checks a RST by its sequence number alone (RFC 5961
// section 3.2), and Linux and FreeBSD send the same RST,ACK when a
// connection is aborted.
func (t *TCB) emitRST(out []Action, seq Seq, now Time) []Action {
	out, a := push(out, ActSend)
	s := &a.Header
	s.SrcPort, s.DstPort, a.DataSeq, s.Flags, s.Ack = t.LocalPort, t.RemotePort, seq, FlagRST|FlagACK, t.RcvNxt
	if t.flags&flagTS != 0 {
		s.Options, s.TSVal, s.TSEcr = OptTimestamps, t.tsVal(now), t.tsRecent
	}
	return out
}

// replyRST answers seg with <SEQ=SEG.ACK><CTL=RST>.
func replyRST(out []Action, seg *Segment) []Action {
	out, a := push(out, ActSend)
	a.Header.SrcPort, a.Header.DstPort, a.DataSeq, a.Header.Flags = seg.DstPort, seg.SrcPort, seg.Ack, FlagRST
	return out
}

// arriveListen: RFC 9293 section 3.10.7.2. Output has nothing to do after
// it, so Step skips output in LISTEN: a segment refused leaves LISTEN as
// it was, and a SYN leaves SYN-RECEIVED owing no ACK, since its SYN-ACK
// carries it (sendSYN) and queueText owes none.
func (t *TCB) arriveListen(seg *Segment, iss Seq, now Time, out []Action) []Action {
	switch {
	case seg.DstPort != t.LocalPort:
		return drop(out, DropNotOurs)
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
	// Data and FIN on the SYN wait for ESTABLISHED (RFC 9293 section
	// 3.10.7.3): the host keeps the bytes, the TCB their range. Told
	// apart before sendSYN, so that a SYN with neither keeps nothing
	// across the call.
	if len(seg.Payload) == 0 && seg.Flags&FlagFIN == 0 {
		return t.sendSYN(now, out)
	}
	out = t.sendSYN(now, out)
	return t.queueText(seg, seg.Seq.Add(1), out)
}

// peerSYN records what a SYN tells: IRS, RCV.NXT, the peer's MSS and
// window (RFC 9293 sections 3.10.7.2 and 3.10.7.3, MUST-15), and which of
// the options we offer it offers too: window scale (RFC 7323 section 2.2),
// timestamps (section 3.2), SACK (RFC 2018 section 2).
func (t *TCB) peerSYN(seg *Segment) {
	t.Irs = seg.Seq
	t.RcvNxt = seg.Seq.Add(1)
	t.rcvUser = t.RcvNxt
	t.rcvUp = t.RcvNxt
	t.lastAckSent = t.RcvNxt
	t.rcvAdv = t.RcvNxt.Add(min(t.cfg.rcvBuf, 0xffff))
	peer := t.defaultPeerMSS()
	o := &seg.Options
	// The options and settings read once: the stores to t below would
	// otherwise have them read again.
	has, offer, fl := o.Present, t.cfg.opts, t.flags
	if has&OptMSS != 0 && o.MSS > 0 {
		peer = max(o.MSS, 64)
	}
	t.sndMSS = min(peer, t.cfg.mss)
	if has&OptWindowScale != 0 && offer&optWS != 0 {
		fl |= flagPeerWS
		t.shifts = min(o.WindowScale, 14)<<4 | t.cfg.wscale()
	}
	if has&OptTimestamps != 0 && offer&optTS != 0 {
		fl |= flagTS
		t.tsRecent = o.TSVal
	}
	if has&OptSACKPermitted != 0 && offer&optSACK != 0 {
		fl |= flagSACK
	}
	t.flags = fl
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
	if !seg.Options.Has(OptWindowScale) {
		t.shifts = 0 // scaling needs both SYNs (RFC 7323 section 2.2)
	}
	t.SndWl2 = seg.Ack
	out = t.ackAdvance(seg.Ack, t.echo(seg), now, out)
	out = t.enterEstablished(now, out)
	t.flags |= flagAckNow
	// Text and FIN on the SYN-ACK: the sixth step onward.
	return t.processText(seg, seg.Flags, seg.Seq.Add(1), now, out)
}

// echo returns the TSecr of seg for an RTT sample (RFC 7323 section 4),
// or 0 if timestamps are off or the segment has none.
func (t *TCB) echo(seg *Segment) uint32 {
	if t.flags&flagTS == 0 || !seg.Options.Has(OptTimestamps) || seg.Flags&FlagACK == 0 {
		return 0
	}
	return seg.Options.TSEcr
}

// enterEstablished moves SYN-SENT or SYN-RECEIVED to ESTABLISHED, with the
// initial congestion window (RFC 5681 section 3.1, RFC 6298 section 5.7).
func (t *TCB) enterEstablished(now Time, out []Action) []Action {
	t.State = Established
	t.flags &^= flagPassive
	t.recover = t.Iss // RFC 6582 section 3.2 step 1
	if t.cfg.more&optQuickStart != 0 {
		t.quickAcks = maxQuickAcks // Config.QuickACKAtStart
	}
	t.cwnd = t.iw()
	if t.flags&flagSynRetx != 0 {
		t.cwnd = t.effMSS() // the SYN or SYN-ACK was lost: IW is one segment
		t.rto = max(t.rto, 3_000_000)
		if t.flags&flagHaveRtt == 0 {
			t.rto = 3_000_000
		}
	}
	if t.cfg.opts&optKeepalive != 0 {
		out = t.arm(out, TimerKeepalive, now, t.cfg.keepIdle.dur())
	}
	out = notify(out, NoteConnected)
	if t.flags&flagCloseCalled != 0 {
		t.State = FinWait1 // CLOSE was queued in SYN-RECEIVED
	}
	// Data queued on the SYN becomes readable now, and is owed an ACK.
	from := t.RcvNxt
	out = t.advanceRcv(from, now, out)
	if t.RcvNxt != from && t.flags&flagAckNow == 0 {
		t.ackOwed()
	}
	return out
}

// twView returns what TIME-WAIT judges segments by (judgeTimeWait).
func (t *TCB) twView() twView {
	return twView{sndNxt: t.SndNxt, rcvNxt: t.RcvNxt, rcvWnd: t.RcvWnd(), tsRecent: t.tsRecent,
		ts: t.flags&flagTS != 0, unread: t.Unread() > 0, opts: t.cfg.opts}
}

// acceptable is the segment acceptability test of RFC 9293 section
// 3.10.7.4, table 6.
func (t *TCB) acceptable(seq Seq, segLen uint32) bool {
	return acceptable(t.RcvNxt, t.RcvWnd(), seq, segLen)
}

// acceptable is the test for a receive window of wnd from rcvNxt.
func acceptable(rcvNxt Seq, wnd uint32, seq Seq, segLen uint32) bool {
	switch {
	case segLen == 0 && wnd == 0:
		return seq == rcvNxt
	case segLen == 0:
		return seq.InWindow(rcvNxt, wnd)
	case wnd == 0:
		return false
	}
	return seq.InWindow(rcvNxt, wnd) || seq.Add(segLen-1).InWindow(rcvNxt, wnd)
}

// pawsIdle is how long a connection may be idle before TS.Recent is no
// longer trusted (RFC 7323 section 5.5: 24 days).
const pawsIdle = 24 * 24 * time.Hour

// arriveOther: RFC 9293 section 3.10.7.4, for SYN-RECEIVED and the
// synchronized states. idle is the time since the previous segment.
func (t *TCB) arriveOther(seg *Segment, idle time.Duration, now Time, out []Action) []Action {
	f := seg.Flags
	seq := seg.Seq
	hasTS := seg.Options.Has(OptTimestamps)

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

	// A SYN in TIME-WAIT may open a new incarnation if it is newer than
	// the old connection: by timestamp when both have them (RFC 6191,
	// SHLD-4), else by sequence number (MAY-2). Otherwise a challenge ACK
	// (RFC 5961 section 4).
	if t.State == TimeWait && f&(FlagSYN|FlagACK|FlagRST) == FlagSYN {
		if w := t.twView(); judgeTimeWait(&w, seg) == twReopen {
			return t.toClosed(out, NoteReopen)
		}
		return t.challengeACK(now, drop(out, DropSYNSynchronized))
	}

	// Timestamps (RFC 7323): a non-RST segment must carry them once agreed
	// (section 3.2), and one older than TS.Recent is a wrapped duplicate
	// (PAWS, section 5.3). Neither check touches a RST (section 5.2).
	if t.flags&flagTS != 0 && f&FlagRST == 0 && t.State != SynReceived {
		if !hasTS {
			return drop(out, DropNoTimestamp)
		}
		if int32(seg.Options.TSVal-t.tsRecent) < 0 {
			if idle <= pawsIdle {
				return t.invalidACK(seg, now, drop(out, DropPAWS))
			}
			t.tsRecent = seg.Options.TSVal // TS.Recent is too old to trust (section 5.5)
		}
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
				out = t.arm(out, TimerClose, now, 2*t.cfg.msl.dur())
			}
			out = drop(out, DropUnacceptable)
			if n := uint32(len(seg.Payload)); n > 0 && t.flags&flagSACK != 0 && seq.Add(n).LessThanEq(t.RcvNxt) {
				// Data we had already: the ACK reports it in a D-SACK
				// block, which tells the peer its retransmission was
				// needless (RFC 2883 section 4). It goes now, since the
				// block describes this segment alone.
				return t.sendDSACK(out, SACKBlock{seq, seq.Add(n)}, now)
			}
			return t.invalidACK(seg, now, out)
		}
	}

	if t.State == TimeWait {
		// No sequence space is left after the peer's FIN: data, a FIN or
		// a segment past RCV.NXT gets an ACK echoing TS.Recent as it was (judgeTimeWait, shared with
		// TimeWaitRecord), as in Linux and FreeBSD.
		if w := t.twView(); judgeTimeWait(&w, seg) == twAck {
			if segLen > 0 {
				t.flags |= flagAckNow
				return drop(out, DropAfterFIN)
			}
			return t.invalidACK(seg, now, drop(out, DropUnacceptable))
		}
	}

	// Fifth, the ACK field.
	if f&FlagACK == 0 {
		return drop(out, DropNoACK)
	}
	wnd := uint32(seg.Window) << t.sndShift()
	if t.State == SynReceived {
		if !(t.SndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(t.SndNxt)) {
			out = replyRST(out, seg)
			return drop(out, DropBadACK)
		}
		t.noteTSRecent(seg, seq, hasTS)
		t.SndWnd = wnd
		t.MaxSndWnd = max(t.MaxSndWnd, t.SndWnd)
		t.SndWl1, t.SndWl2 = seq, seg.Ack
		out = t.ackAdvance(seg.Ack, t.echo(seg), now, out)
		out = t.enterEstablished(now, out)
	} else {
		// RFC 5961 section 5.2: SND.UNA-MAX.SND.WND =< SEG.ACK =< SND.NXT.
		if seg.Ack.GreaterThan(t.SndNxt) {
			if t.cfg.more&optDropUnsentACK != 0 {
				return drop(out, DropBadACK)
			}
			return t.invalidACK(seg, now, drop(out, DropBadACK))
		}
		if seg.Ack.LessThan(t.SndUna.Add(-t.MaxSndWnd)) {
			return t.challengeACK(now, drop(out, DropBadACK))
		}
		t.noteTSRecent(seg, seq, hasTS)
		// A duplicate ACK as RFC 5681 section 2 defines it: the same
		// window as before; or, when it carries SACK blocks, as RFC 6675
		// section 2 does: SACK blocks that report data not SACKed before,
		// whatever the window.
		same := wnd == t.SndWnd
		var before prrMark // for PRR: the state before this ACK
		var rtxSACKed bool // for lostRetransmit
		if t.flags&flagSACK != 0 && (seg.Options.NumSACK > 0 || t.flags&flagRecovery != 0) {
			if t.cfg.more&optPRR != 0 {
				before = t.prrBefore()
			}
			if seg.Options.NumSACK > 0 {
				same, rtxSACKed = t.recordSACK(&seg.Options)
				// An ACK below SND.UNA left the peer before one already
				// taken: what it SACKs may be the originals.
				rtxSACKed = rtxSACKed && !seg.Ack.LessThan(t.SndUna)
			}
		}
		dup := t.SndUna != t.SndNxt && seg.Ack == t.SndUna && len(seg.Payload) == 0 &&
			f&FlagFIN == 0 && same
		advanced := t.SndUna.LessThan(seg.Ack)
		if advanced {
			out = t.ackAdvance(seg.Ack, t.echo(seg), now, out)
		} else if dup {
			out = t.onDupAck(now, out)
		}
		if t.flags&flagProbeRtx != 0 {
			t.probeAcked(seg, advanced)
		}
		if t.flags&flagProbe != 0 {
			out = t.probeSACKed(now, out)
		}
		if t.flags&flagRtxMark != 0 || rtxSACKed {
			out = t.lostRetransmit(rtxSACKed, now, out)
		}
		if before.taken && t.flags&flagRecovery != 0 {
			out = t.prrACK(before, now, out)
		}
		if t.SndUna.LessThanEq(seg.Ack) {
			t.updateWindow(seq, seg.Ack, wnd)
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

	// Sixth, the URG bit (RFC 9293 section 3.10.7.4, MUST-30 to MUST-33).
	if f&FlagURG != 0 {
		out = t.urgent(seq.Add(uint32(seg.Urgent)), out)
	}

	// Seventh and eighth: text and FIN.
	return t.processText(seg, f, seq, now, out)
}

// urgent records the peer's urgent pointer up (one past the urgent data,
// MUST-62) and tells the user once per run of urgent data (MUST-32).
func (t *TCB) urgent(up Seq, out []Action) []Action {
	switch t.State {
	case Established, FinWait1, FinWait2:
	default:
		return out // after the peer's FIN, URG is ignored
	}
	if t.rcvUp.LessThan(up) {
		t.rcvUp = up
	}
	if t.rcvUser.LessThan(t.rcvUp) && t.flags&flagUrgSignaled == 0 {
		t.flags |= flagUrgSignaled
		out = notify(out, NoteUrgent)
	}
	return out
}

// recordSACK adds the peer's SACK blocks that lie within (SND.UNA,
// SND.NXT] to the scoreboard (RFC 2018 section 4). Blocks that are old, or
// for data never sent, are ignored, and so is a block that touches none
// of the ranges of a full scoreboard (RFC 2018 section 8 lets a sender
// discard SACK information). Keeping the ranges it has rather than the
// newest block costs fewer needless retransmissions: in the simulator's
// lossy transfers (sim.TestPRRRetransmitsLess) replacing the lowest range
// with a higher block resent half as much again under NewReno. It
// reports whether a block held data the scoreboard did not, which makes
// the ACK a duplicate (RFC 6675 section 2) whether or not it was kept,
// and, in recovery, whether new data lies above SND.UNA and below sndRtx:
// data that this recovery retransmitted after SND.UNA (lostRetransmit).
func (t *TCB) recordSACK(o *Options) (news, afterRtx bool) {
	for _, b := range o.SACKBlocks() {
		l, r := MaxSeq(b.Left, t.SndUna), MinSeq(b.Right, t.SndNxt)
		if l.LessThan(r) && t.SndUna.LessThanEq(b.Left) && b.Right.LessThanEq(t.SndNxt) {
			if t.sackedIn(l, r) < r.Diff(l) {
				news = true
				// Only a block the scoreboard takes is known to be new:
				// one that a full scoreboard discards comes again.
				_, kept := addRange(t.sacked[:], t.SndUna, l, r)
				afterRtx = afterRtx || kept && t.SndUna.LessThan(l) && l.LessThan(t.sndRtx)
			}
		}
	}
	return news, afterRtx && t.flags&flagRecovery != 0
}

// enterFinWait2: our FIN is acknowledged; the close is done but the TCB
// stays for the peer's data (RFC 9293 section 3.10.7.4).
func (t *TCB) enterFinWait2(now Time, out []Action) []Action {
	t.State = FinWait2
	out = t.stopFlightTimers(out)
	out = t.armFinWait2(now, out)
	return notify(out, NoteCloseDone)
}

// armFinWait2 arms the FIN-WAIT-2 timeout: Config.FinWait2Timeout if set;
// else, once the user has closed with CloseFull, 2*MSL. Such a connection
// takes no more data (SHLD-3), so only the peer's FIN is awaited, and a
// peer that vanished (its RST lost) must not keep it for ever; one that
// closed only its sending side waits as long as the peer sends (MAY-1).
func (t *TCB) armFinWait2(now Time, out []Action) []Action {
	switch {
	case t.cfg.fw2 != 0:
		return t.arm(out, TimerClose, now, t.cfg.fw2.dur())
	case t.flags&flagReadShut != 0:
		return t.arm(out, TimerClose, now, 2*t.cfg.msl.dur())
	}
	return out
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

// updateWindow applies the window update rule (RFC 9293 section
// 3.10.7.4): a segment newer than the one that last set SND.WND (by
// SND.WL1, then SND.WL2) sets it to wnd, and MAX.SND.WND follows (RFC 5961
// section 5.2).
func (t *TCB) updateWindow(seq, ack Seq, wnd uint32) {
	if t.SndWl1.LessThan(seq) || (t.SndWl1 == seq && t.SndWl2.LessThanEq(ack)) {
		t.SndWnd = wnd
		t.MaxSndWnd = max(t.MaxSndWnd, wnd)
		t.SndWl1, t.SndWl2 = seq, ack
	}
}

// invalidACK owes the ACK that answers an unacceptable segment (RFC 9293
// section 3.10.7.4: a sequence number outside the window, an ACK of data
// not yet sent, a segment PAWS rejects, RFC 7323 section 5.3). When the
// segment carries no data, SYN or FIN, the answer counts against the
// challenge-ACK limit (RFC 5961 section 7's throttling): two ends that
// each find the other's ACKs unacceptable (one whose TS.Recent a forged
// segment pushed ahead, say, and one in TIME-WAIT) would otherwise answer
// ACK with ACK for as long as both live, as Linux limits with
// tcp_invalid_ratelimit. Data is always answered: it is not an ACK loop,
// and its sender may be retransmitting because our ACKs were lost.
func (t *TCB) invalidACK(seg *Segment, now Time, out []Action) []Action {
	if len(seg.Payload) == 0 && seg.Flags&(FlagSYN|FlagFIN) == 0 {
		return t.challengeACK(now, out)
	}
	t.flags |= flagAckNow
	return out
}

// challengeACK owes a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>,
// at most ChallengeACKLimit per second per connection (RFC 5961 section 7).
func (t *TCB) challengeACK(now Time, out []Action) []Action {
	if sec := uint8(now / Time(time.Second)); sec != t.chSec {
		t.chSec = sec
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
// reported, the RTT is sampled (from tsecr when timestamps give one,
// RFC 7323 section 4, else from the timed segment, Karn's rule), the
// congestion window grows or recovery goes on, and the retransmission
// timer restarts or stops (RFC 6298 section 5).
func (t *TCB) ackAdvance(ack Seq, tsecr uint32, now Time, out []Action) []Action {
	acked := ack.Diff(t.SndUna)
	data := acked
	if t.SndUna == t.Iss && t.State <= SynReceived {
		data-- // the SYN
	}
	if t.flags&flagFinSent != 0 && ack == t.sndEnd.Add(1) {
		data-- // the FIN
	}
	// An echo of a TSval we never sent gives no sample (RFC 7323 section
	// 4): one from the future (ahead of our clock), or one older than any
	// unacknowledged segment can be (beyond MaxRTO, the longest a segment
	// waits before it is sent again). The timed segment, if any, measures
	// instead.
	if tsecr != 0 {
		if t.staleEcho(int32(t.tsVal(now) - tsecr)) {
			tsecr = 0
		}
	}
	// A timestamp echo older than our last timeout's retransmission
	// measures the wait for the timeout too (the original arrived, its ACK
	// was lost): only echoes of segments sent since then give a sample.
	if tsecr != 0 && t.retries > 0 && t.running(TimerRetransmit) {
		lastRtx := t.timers[slotOf(TimerRetransmit)] - Time(t.rtoDur())
		if int32(tsecr-t.tsVal(lastRtx)) < 0 {
			tsecr = 0
		}
	}
	grow := data // what opens the congestion window
	if t.cfg.more&optSlowStartAll != 0 && t.cwnd < t.ssthresh && t.flags&flagRecovery == 0 {
		// As Linux counts delivery: bytes SACKed before, or announced by
		// a duplicate ACK without SACK, opened no window then and open
		// none now.
		if t.flags&flagSACK != 0 {
			grow -= min(grow, t.sackedIn(t.SndUna, ack))
		} else {
			grow -= min(grow, uint32(t.dupAcks)*t.effMSS())
		}
	}
	t.SndUna = ack
	if t.sndRtx.LessThan(ack) {
		t.sndRtx = ack
	}
	t.retries = 0
	if t.sacked[0].Left != t.sacked[0].Right {
		trimBelow(t.sacked[:], ack)
	}
	var rtt uint32 // this ACK's RTT sample in µs, for HyStart
	if t.flags&flagRttTiming != 0 && t.rttSeq.LessThanEq(ack) {
		t.flags &^= flagRttTiming
		if tsecr == 0 {
			rtt = max(usOf(now)-t.rttStart, 1)
			t.rttSampleUs(uint64(rtt))
		}
	}
	if tsecr != 0 {
		us := uint64(t.tsVal(now)-tsecr) * 1000
		rtt = uint32(min(max(us, 1), 1<<31))
		t.rttSampleUs(us)
	}
	if t.flags&flagUrgPending != 0 && !t.SndUna.LessThan(t.sndUp) {
		t.flags &^= flagUrgPending
	}
	if t.State.IsSynchronized() && data > 0 {
		if t.flags&flagRecovery != 0 {
			out = t.onRecoveryAck(acked, now, out)
		} else {
			t.dupAcks = 0
			if t.cfg.more&optHyStart != 0 {
				t.hyStartAck(rtt)
			}
			t.growCwnd(grow, now)
			if t.SndUna == t.SndNxt {
				t.noteSSFlight() // the round is over
			}
		}
	}
	if t.flags&(flagProbe|flagProbeRtx) == flagProbe && !ack.LessThan(t.mark) {
		t.flags &^= flagProbe // acknowledged up to the probe: it did its work
	}
	if t.SndUna == t.SndNxt {
		if t.flags&flagProbeRtx == 0 {
			t.flags &^= flagProbe
		}
		if t.timers[0] != 0 || t.timers[2] != 0 {
			out = t.stopFlightTimers(out)
		}
		if t.cfg.opts&optKeepalive != 0 && t.State.IsSynchronized() && !t.running(TimerKeepalive) {
			out = t.arm(out, TimerKeepalive, now, t.cfg.keepIdle.dur())
		}
	} else {
		t.rtxStart = msOf(now)
		out = t.armLossTimer(now, out)
		if t.cfg.userTimeout != 0 {
			out = t.arm(out, TimerUser, now, t.cfg.userTimeout.dur())
		}
	}
	if data > 0 {
		var a *Action
		out, a = push(out, ActNotify)
		a.Note, a.N = NoteSendAcked, data
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
		i, ok := addRange(t.ooo[:], t.RcvNxt, start, start.Add(take))
		if !ok {
			return drop(out, DropOutOfOrderFull)
		}
		t.oooLast = uint8(i)
		var a *Action
		out, a = push(out, ActAccept)
		a.DataSeq, a.DataLen = start, take
	}
	if seg.Flags&FlagFIN != 0 && take == n {
		t.finSeq = start.Add(n)
		t.flags |= flagFinPending
	}
	return out
}

// ackOwed notes that in-order data wants an ACK: at once every second
// full-sized segment (RFC 9293 SHLD-19, RFC 5681 section 4.2), with
// QuickACK, or while quickAcks lasts; else within the delayed-ACK time
// (SHLD-18, MUST-40).
func (t *TCB) ackOwed() {
	if t.cfg.opts&optQuickACK != 0 || t.quickAcks > 0 || t.RcvNxt.Diff(t.lastAckSent) >= 2*t.fullSize() {
		t.flags |= flagAckNow
		if t.quickAcks > 0 {
			t.quickAcks--
		}
	} else {
		t.flags |= flagAckDelayed
	}
}

// ackAtOnce is ackOwed's rule for data up to nxt with q quick ACKs left:
// whether the ACK goes at once. (ackOwed spells it out to stay within
// the inlining budget.)
func (t *TCB) ackAtOnce(nxt Seq, q uint8) bool {
	return t.cfg.opts&optQuickACK != 0 || q > 0 || nxt.Diff(t.lastAckSent) >= 2*t.fullSize()
}

// maxQuickAcks is how many in-order segments after out-of-order data are
// ACKed at once rather than every second one (as Linux's quick-ACK mode):
// a sender recovering from loss, often one segment at a time, is not held
// up by the delayed-ACK timer. RFC 5681 section 4.2 allows ACKing more
// often than every second segment.
const maxQuickAcks = 16

// fullSize is the peer's full-sized segment as the receiver sees it: the
// largest text received so far, at most our MSS less the timestamp option
// (a peer whose path or options make its segments smaller than our MSS
// still gets an ACK every second segment).
func (t *TCB) fullSize() uint32 {
	full := uint32(t.cfg.mss)
	if t.flags&flagTS != 0 {
		full -= 12
	}
	if t.rcvMSS != 0 {
		full = min(full, uint32(t.rcvMSS))
	}
	return full
}

// sawText records the length of a segment's text for fullSize.
func (t *TCB) sawText(n uint32) {
	if n > uint32(t.rcvMSS) {
		t.rcvMSS = uint16(min(n, 0xffff))
	}
}

// processText is the seventh and eighth steps of RFC 9293 section
// 3.10.7.4: the segment text from sequence number start, then the FIN if
// f has it.
func (t *TCB) processText(seg *Segment, f Flags, start Seq, now Time, out []Action) []Action {
	n := uint32(len(seg.Payload))
	fin := f&FlagFIN != 0
	if n == 0 && !fin {
		return out
	}
	t.sawText(n)
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
	var dsack SACKBlock // duplicate data, for the ACK to report
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
		if t.flags&flagReadShut != 0 && lo.LessThan(end) {
			// New data for a user who reads no more: it is lost, and
			// the RST says so (RFC 9293 SHLD-3).
			out, _ = t.abort(now, out)
			return out
		}
		switch {
		case !lo.LessThan(end):
			t.flags |= flagAckNow // nothing new (a zero window): say where we are
		case lo == t.RcvNxt:
			if off > 0 && t.flags&flagSACK != 0 {
				// Its head was here already: the ACK reports that part
				// in a D-SACK block, at once (RFC 2883 section 4).
				dsack = SACKBlock{start, lo}
			}
			var a *Action
			out, a = push(out, ActAccept)
			a.DataSeq, a.DataLen, a.Offset = lo, end.Diff(lo), off
			from := t.RcvNxt
			t.RcvNxt = end
			if count(t.ooo[:]) > 0 {
				t.flags |= flagAckNow // a hole filled: ACK at once (RFC 5681 section 4.2)
				t.quickAcks = maxQuickAcks
			} else {
				t.ackOwed()
			}
			out = t.advanceRcv(from, now, out)
		default:
			// Out of order: keep it, and ACK at once (RFC 5681 section 4.2).
			t.flags |= flagAckNow
			t.quickAcks = maxQuickAcks
			var held seqRange
			dup := false
			if t.flags&flagSACK != 0 {
				held, dup = overlap(t.ooo[:], t.RcvNxt, lo, end)
			}
			i, ok := addRange(t.ooo[:], t.RcvNxt, lo, end)
			if !ok {
				return drop(out, DropOutOfOrderFull)
			}
			t.oooLast = uint8(i)
			var a *Action
			out, a = push(out, ActAccept)
			a.DataSeq, a.DataLen, a.Offset = lo, end.Diff(lo), off
			if dup {
				// Some or all of it was held already: the ACK reports
				// that part in a D-SACK block, then the block holding it
				// (RFC 2883 section 4).
				dsack = SACKBlock(held)
			}
		}
	}
	if fin {
		finSeq := start.Add(n)
		if finSeq == t.RcvNxt {
			out = t.processFIN(now, out)
		} else if t.RcvNxt.LessThan(finSeq) {
			t.finSeq = finSeq
			t.flags |= flagFinPending | flagAckNow
		}
	}
	if dsack.Left != dsack.Right {
		return t.sendDSACK(out, dsack, now)
	}
	return out
}

// reoffer takes n bytes from seq again, which the host kept after a
// DropOutOfOrderFull (EvReoffer), as processText would take them, but
// with no duplicate ACK or D-SACK: nothing arrived. Bytes the connection
// has already, or that no longer fit the window, are forgotten; so are
// bytes for a user who reads no more (a retransmission of them resets the
// connection, RFC 9293 SHLD-3).
func (t *TCB) reoffer(seq Seq, n uint32, now Time, out []Action) []Action {
	switch t.State {
	case Established, FinWait1, FinWait2:
	default:
		return out
	}
	lo, end := seq, seq.Add(n)
	if lo.LessThan(t.RcvNxt) {
		lo = t.RcvNxt
	}
	if right := t.RcvNxt.Add(t.RcvWnd()); right.LessThan(end) {
		end = right
	}
	if !lo.LessThan(end) || t.flags&flagReadShut != 0 {
		return out
	}
	if lo != t.RcvNxt {
		if contains(t.ooo[:], t.RcvNxt, lo, end) {
			return out // held already
		}
		i, ok := addRange(t.ooo[:], t.RcvNxt, lo, end)
		if !ok {
			return drop(out, DropOutOfOrderFull)
		}
		t.oooLast = uint8(i)
		t.flags |= flagAckNow // its SACK block goes out at once
	}
	var a *Action
	out, a = push(out, ActAccept)
	a.DataSeq, a.DataLen, a.Offset = lo, end.Diff(lo), lo.Diff(seq)
	if lo != t.RcvNxt {
		return out
	}
	from := t.RcvNxt
	t.RcvNxt = end
	if count(t.ooo[:]) > 0 {
		t.flags |= flagAckNow // a hole filled (RFC 5681 section 4.2)
		t.quickAcks = maxQuickAcks
	} else {
		t.ackOwed()
	}
	return t.advanceRcv(from, now, out)
}

// advanceRcv moves RCV.NXT over out-of-order data that now joins it,
// reports readable data if RCV.NXT moved past from, and processes a FIN
// that was waiting for the gap to fill.
func (t *TCB) advanceRcv(from Seq, now Time, out []Action) []Action {
	var k int
	t.RcvNxt, k = popThrough(t.ooo[:], t.RcvNxt)
	if int(t.oooLast) >= k {
		t.oooLast -= uint8(k)
	} else {
		t.oooLast = uint8(len(t.ooo))
	}
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
	t.flags |= flagFinRcvd
	if t.State == Established && t.cfg.more&optDelayFINACK != 0 && t.flags&flagAckNow == 0 {
		t.flags |= flagAckDelayed // our FIN may carry it (Config.DelayFINACK)
	} else {
		t.flags |= flagAckNow
	}
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

// noteTSRecent keeps the segment's TSval as TS.Recent when the segment
// is the one the next ACK acknowledges (RFC 7323 section 4.3). It runs
// only once the ACK field has been found acceptable: a segment dropped for
// an ACK of data never sent, or far older than SND.UNA, leaves TS.Recent
// as it was, so that a forged segment cannot move it and have PAWS drop
// the peer's real ones.
func (t *TCB) noteTSRecent(seg *Segment, seq Seq, hasTS bool) {
	if t.flags&flagTS != 0 && hasTS && int32(seg.Options.TSVal-t.tsRecent) >= 0 && seq.LessThanEq(t.lastAckSent) {
		t.tsRecent = seg.Options.TSVal
	}
}
