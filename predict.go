package tcpfsm

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
		seg.Options.NumSACK != 0 || t.flags&(flagFinPending|flagRecovery) != 0 {
		return out, false
	}
	if t.flags&flagTS != 0 {
		if !seg.Options.Has(OptTimestamps) || int32(seg.Options.TSVal-t.tsRecent) < 0 {
			return out, false
		}
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
	if t.flags&flagTS != 0 && seg.Seq.LessThanEq(t.lastAckSent) {
		t.tsRecent = seg.Options.TSVal
	}
	if n == 0 {
		out = t.ackAdvance(seg.Ack, t.echo(seg), now, out)
	}
	// The window update rule (RFC 9293 section 3.10.7.4, WL1/WL2).
	if t.SndWl1.LessThan(seg.Seq) || (t.SndWl1 == seg.Seq && t.SndWl2.LessThanEq(seg.Ack)) {
		t.SndWnd = wnd
		t.MaxSndWnd = max(t.MaxSndWnd, wnd)
		t.SndWl1, t.SndWl2 = seg.Seq, seg.Ack
	}
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
