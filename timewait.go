package tcpfsm

// twVerdict is what TIME-WAIT does with an arriving segment.
type twVerdict uint8

const (
	twDrop      twVerdict = iota // drop it, say nothing
	twAck                        // drop it and send an ACK (it was not acceptable)
	twAckFIN                     // the peer's FIN again: ACK it and restart 2*MSL
	twReopen                     // a SYN that may open a new incarnation: delete this one
	twChallenge                  // a SYN that may not: a challenge ACK (RFC 5961 section 4)
	twClose                      // a RST, with Config.TimeWaitRST: delete this one
)

// twView is what TIME-WAIT judges a segment by. A TCB in TIME-WAIT and a
// Stack's compact record both keep it, and both call judgeTimeWait, so a
// connection answers alike before and after the Stack compacts it.
type twView struct {
	sndNxt, rcvNxt Seq
	rcvWnd         uint32 // the window last advertised
	tsRecent       uint32
	ts             bool // timestamps in use
	unread         bool // the user has not read everything received yet
	opts           settingOpts
}

// judgeTimeWait judges a segment arriving in TIME-WAIT (RFC 9293 section
// 3.10.7.4): a SYN newer than the connection may open a new incarnation,
// by timestamp when both have them (RFC 6191, SHLD-4), else by sequence
// number (MAY-2), unless the user has yet to read what arrived before
// the FIN (deleting the connection would lose it), and gets a challenge
// ACK otherwise (RFC 5961 section 4); a RST in the window but not at RCV.NXT gets a challenge ACK (RFC
// 5961 section 3.2), and one at RCV.NXT is ignored (RFC 1337) unless
// Config.TimeWaitRST; a segment
// without the agreed timestamp is dropped (RFC 7323 section 3.2), one
// with an old one ACKed (PAWS, section 5.3); the peer's FIN again is
// ACKed and restarts 2*MSL; every other segment with ACK is ACKed (no
// sequence space is left after the FIN, so none is acceptable), except a
// bare ACK at RCV.NXT, a duplicate of the peer's last, which is dropped
// without a word, so two ends in TIME-WAIT never trade ACKs.
func judgeTimeWait(w *twView, seg *Segment) twVerdict {
	f := seg.Flags
	hasTS := seg.Options.Has(OptTimestamps)
	if f&(FlagSYN|FlagACK|FlagRST) == FlagSYN {
		newer := seg.Seq.GreaterThan(w.rcvNxt)
		if w.ts && hasTS {
			newer = int32(seg.Options.TSVal-w.tsRecent) > 0
		}
		if w.opts&optTimeWaitChallenge == 0 && newer && !w.unread {
			return twReopen
		}
		return twChallenge
	}
	if f&FlagRST != 0 {
		switch {
		case seg.Seq != w.rcvNxt && w.rcvWnd > 0 && seg.Seq.InWindow(w.rcvNxt, w.rcvWnd):
			return twChallenge // RFC 5961 section 3.2
		case seg.Seq != w.rcvNxt, w.opts&optTimeWaitRST == 0:
			return twDrop
		}
		return twClose
	}
	if w.ts {
		if !hasTS {
			return twDrop
		}
		if int32(seg.Options.TSVal-w.tsRecent) < 0 {
			return twAck
		}
	}
	if f&FlagSYN != 0 {
		return twChallenge
	}
	n := uint32(len(seg.Payload))
	segLen := n
	if f&FlagFIN != 0 {
		segLen++
	}
	if !acceptable(w.rcvNxt, w.rcvWnd, seg.Seq, segLen) && !(w.rcvWnd == 0 && seg.Seq == w.rcvNxt) {
		if f&FlagFIN != 0 && seg.Seq.Add(segLen) == w.rcvNxt {
			return twAckFIN
		}
		return twAck
	}
	if f&FlagACK == 0 {
		return twDrop
	}
	if segLen > 0 || seg.Seq != w.rcvNxt || seg.Ack.GreaterThan(w.sndNxt) {
		// After the peer's FIN no sequence space is left, so data, a
		// FIN, or a segment past RCV.NXT is not acceptable: ACK it, as
		// Linux and FreeBSD do.
		return twAck
	}
	return twDrop // a duplicate of the last ACK: nothing, so two ends in TIME-WAIT never trade ACKs
}

// TimeWaitRecord is a connection in TIME-WAIT reduced to what TIME-WAIT
// still does (RFC 9293 section 3.10.7.4): ACK a retransmitted FIN, judge a
// new SYN, answer other segments, and expire after 2*MSL. A host that
// keeps many connections (a Stack) can replace a TIME-WAIT TCB by this
// 40-byte value; it answers every segment as the TCB would, by the same
// rules (the TCB and the record share them).
type TimeWaitRecord struct {
	deadline       Time
	sndNxt, rcvNxt Seq
	iss            Seq // the timestamp clock's offset
	tsRecent       uint32
	rcvWnd         uint32 // the window last advertised
	ts             bool   // timestamps in use
	opts           settingOpts
	msl            dur16
	wnd            uint16 // the window field of its ACKs
}

// TimeWaitVerdict is what a TimeWaitRecord does with an arriving segment.
type TimeWaitVerdict uint8

// The verdicts of TimeWaitRecord.Input.
const (
	// TimeWaitDrop: drop the segment; nothing is sent.
	TimeWaitDrop TimeWaitVerdict = iota
	// TimeWaitReply: send the ACK Input wrote (for a retransmitted FIN,
	// the record's 2*MSL started again).
	TimeWaitReply
	// TimeWaitReopen: the segment is a SYN that may open a new incarnation
	// (RFC 6191, RFC 9293 MAY-2): forget the record and give the SYN to a
	// listener as new.
	TimeWaitReopen
	// TimeWaitClose: a RST ended the record (Config.TimeWaitRST): forget
	// it.
	TimeWaitClose
)

// TimeWaitRecord returns the connection as a TimeWaitRecord, and false if
// it is not in TIME-WAIT. Data the user has yet to read stays the host's:
// the record judges segments by sequence numbers alone.
func (t *TCB) TimeWaitRecord() (TimeWaitRecord, bool) {
	if t.State != TimeWait {
		return TimeWaitRecord{}, false
	}
	d, _ := t.Deadline(TimerClose)
	// The window an ACK would carry: segment moves the window's edge, so
	// it works on a copy and t stays as it is.
	c := *t
	var a Action
	c.segment(&a, c.SndNxt, 0, 0)
	return TimeWaitRecord{deadline: d, sndNxt: t.SndNxt, rcvNxt: t.RcvNxt, iss: t.Iss,
		tsRecent: t.tsRecent, rcvWnd: t.RcvWnd(), ts: t.flags&flagTS != 0,
		opts: t.cfg.opts, msl: t.cfg.msl, wnd: a.Header.Window}, true
}

// Deadline returns when the record expires: 2*MSL after the last FIN
// (RFC 9293 section 3.10.7.4).
func (r *TimeWaitRecord) Deadline() Time { return r.deadline }

// Input judges a segment that arrived for the record at now, as a TCB in
// TIME-WAIT would (RFC 9293 section 3.10.7.4, RFC 6191, RFC 5961, RFC
// 7323, RFC 1337). With TimeWaitReply it has written the ACK to send into
// reply; the record may have changed (its 2*MSL restarted), so keep it.
func (r *TimeWaitRecord) Input(seg *Segment, now Time, reply *Segment) TimeWaitVerdict {
	w := twView{sndNxt: r.sndNxt, rcvNxt: r.rcvNxt, rcvWnd: r.rcvWnd, tsRecent: r.tsRecent, ts: r.ts, opts: r.opts}
	switch judgeTimeWait(&w, seg) {
	case twDrop:
		return TimeWaitDrop
	case twReopen:
		return TimeWaitReopen
	case twClose:
		return TimeWaitClose
	case twAckFIN:
		r.deadline = now.Add(2 * r.msl.dur())
	}
	*reply = Segment{SrcPort: seg.DstPort, DstPort: seg.SrcPort, Seq: r.sndNxt, Ack: r.rcvNxt, Flags: FlagACK, Window: r.wnd}
	if r.ts {
		reply.Options = Options{Present: OptTimestamps, TSVal: msOf(now) + uint32(r.iss), TSEcr: r.tsRecent}
	}
	return TimeWaitReply
}
