package tcpfsm

// Proportional Rate Reduction (RFC 6937), with Config.PRR and a peer that
// SACKs. In fast recovery the congestion window follows the data the
// peer reports delivered instead of RFC 5681's inflation: while the
// estimated flight (pipe, RFC 6675 section 4, with RACK's loss marking) is above ssthresh, sending
// falls in proportion to ssthresh/RecoverFS; below it, sending catches up
// towards ssthresh, by one segment more than was delivered on an ACK that
// advances SND.UNA and shows no further loss (the slow-start reduction
// bound as its revision and Linux apply it; otherwise the conservative
// bound, packet conservation). Recovery ends at ssthresh.
//
// The counts, prr_delivered and prr_out, are kept in segments, as Linux
// keeps them, in the 32 bits of cubicEpoch, which recovery does not use
// (CUBIC starts a new epoch after a loss). RecoverFS is the congestion
// window when recovery began, which onLoss leaves in cubicWMax.

// prrOn reports whether PRR governs this connection's recoveries.
func (t *TCB) prrOn() bool {
	return t.cfg.more&optPRR != 0 && t.flags&flagSACK != 0
}

// prrCounts returns prr_delivered and prr_out, in segments.
func (t *TCB) prrCounts() (delivered, sent uint32) {
	return t.cubicEpoch >> 16, t.cubicEpoch & 0xffff
}

// setPRRCounts stores prr_delivered and prr_out, saturating.
func (t *TCB) setPRRCounts(delivered, sent uint32) {
	t.cubicEpoch = min(delivered, 0xffff)<<16 | min(sent, 0xffff)
}

// segmentsOf is n bytes in segments of smss, a partial one counting whole.
func segmentsOf(n, smss uint32) uint32 { return (n + smss - 1) / smss }

// prrSent counts n bytes sent in recovery towards prr_out (a bare FIN
// counts as one segment).
func (t *TCB) prrSent(n uint32) {
	d, s := t.prrCounts()
	t.setPRRCounts(d, s+max(segmentsOf(n, t.effMSS()), 1))
}

// sackedBytes is the sum of the scoreboard's ranges.
func (t *TCB) sackedBytes() uint32 {
	var n uint32
	for _, r := range t.sacked[:count(t.sacked[:])] {
		n += r.Right.Diff(r.Left)
	}
	return n
}

// sackedIn is the part of the scoreboard within [l, h).
func (t *TCB) sackedIn(l, h Seq) uint32 {
	var n uint32
	for _, r := range t.sacked[:count(t.sacked[:])] {
		lo, hi := MaxSeq(r.Left, l), MinSeq(r.Right, h)
		if lo.LessThan(hi) {
			n += hi.Diff(lo)
		}
	}
	return n
}

// lostEnd is the edge below which every byte the peer has not SACKed
// counts as lost: the left edge of the highest SACKed range. Data is sent
// in sequence order, so each hole below it was sent no later than data
// that has arrived, and in recovery, with no reordering seen, RACK's
// reordering window is zero (RFC 8985 sections 6.2 and 6.2 step 4): such
// a hole is lost at once. SND.UNA when nothing is SACKed.
func (t *TCB) lostEnd() Seq {
	if n := count(t.sacked[:]); n > 0 {
		return t.sacked[n-1].Left
	}
	return t.SndUna
}

// lostUnsent is the lost data not yet retransmitted in this recovery: the
// bytes from sndRtx to lostEnd that the peer has not SACKed.
func (t *TCB) lostUnsent() uint32 {
	from, end := MaxSeq(t.sndRtx, t.SndUna), t.lostEnd()
	if !from.LessThan(end) {
		return 0
	}
	return end.Diff(from) - t.sackedIn(from, end)
}

// pipe estimates the bytes in flight (RFC 6675 section 4, SetPipe): what
// is outstanding, less what the peer SACKed and what is lost and not yet
// sent again. A retransmission stands for its lost original.
func (t *TCB) pipe() uint32 {
	return t.SndNxt.Diff(t.SndUna) - t.sackedBytes() - t.lostUnsent()
}

// prrMark is what PRR reads of the connection before an ACK is applied.
type prrMark struct {
	una, lostEnd    Seq
	sacked          uint32
	taken, recovery bool
}

func (t *TCB) prrBefore() prrMark {
	return prrMark{una: t.SndUna, lostEnd: t.lostEnd(), sacked: t.sackedBytes(), taken: true,
		recovery: t.flags&flagRecovery != 0}
}

// prrACK sets the congestion window after an ACK in fast recovery (RFC
// 6937 section 3.1) from b, the state before the ACK, and retransmits
// lost data as far as the window allows; new data follows in sendData.
// The ACK that starts recovery delivers nothing and sends the fast
// retransmit.
func (t *TCB) prrACK(b prrMark, now Time, out []Action) []Action {
	smss := t.effMSS()
	var delivered uint32
	if b.recovery {
		// Bytes SACKed earlier and now acknowledged were delivered then;
		// a range the full scoreboard forgot counts as nothing.
		if now, was := t.SndUna.Diff(b.una)+t.sackedBytes(), b.sacked; now > was {
			delivered = now - was
		}
	}
	pd, po := t.prrCounts()
	pd += segmentsOf(delivered, smss)
	pipe := t.pipe()
	var sndcnt uint32 // segments
	if pipe > t.ssthresh {
		rfs := uint64(max(t.cubicWMax, smss))
		due := uint32((uint64(pd)*uint64(t.ssthresh) + rfs - 1) / rfs)
		if due > po {
			sndcnt = due - po
		}
	} else {
		sndcnt = max(pd-min(pd, po), segmentsOf(delivered, smss))
		if t.SndUna != b.una && !b.lostEnd.LessThan(t.lostEnd()) {
			sndcnt++ // a safe ACK: recovery is making progress
		}
		sndcnt = min(sndcnt, (t.ssthresh-pipe)/smss)
	}
	if po == 0 && sndcnt == 0 {
		sndcnt = 1 // the fast retransmit
	}
	t.setPRRCounts(pd, po)
	t.cwnd = max(pipe+sndcnt*smss, smss)
	for range 64 {
		if t.cwnd <= t.pipe() {
			break
		}
		if _, sent := t.prrCounts(); sent != 0 && t.lostUnsent() == 0 {
			break
		}
		rtx := t.sndRtx
		out = t.retransmitHole(now, out)
		if t.sndRtx == rtx {
			break
		}
	}
	return out
}

// prrLimit is sendLimit in recovery: new data may go while the flight
// estimate is below the window.
func (t *TCB) prrLimit() Seq {
	room := uint32(0)
	if p := t.pipe(); t.cwnd > p {
		room = t.cwnd - p
	}
	return MinSeq(t.SndNxt.Add(room), t.SndUna.Add(t.SndWnd))
}
