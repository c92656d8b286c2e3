package tcpfsm

import "math"

// Congestion control (RFC 5681, RFC 6582, RFC 3042, RFC 9438). The window
// arithmetic lives here; sendData and the ACK processing call it. Both
// algorithms share loss detection and recovery; they differ in how the
// window grows in congestion avoidance and how far it falls on a loss.

// growCwnd opens the congestion window for newly acknowledged bytes: slow
// start with appropriate byte counting (at most SMSS per ACK, or
// Config.SlowStartLimit's L), then
// congestion avoidance (RFC 5681 section 3.1) or CUBIC's curve (RFC 9438
// section 4).
func (t *TCB) growCwnd(acked uint32, now Time) {
	smss := t.effMSS()
	switch {
	case t.cwnd < t.ssthresh:
		switch {
		case t.cfg.more&optSlowStartAll != 0:
			// As Linux: only while the window is used, at least half of it
			// in flight before this ACK or at the round's fullest (its
			// cwnd-limited test, tcp_is_cwnd_limited; RFC 7661 section
			// 4.3 keeps an unused window from growing the same way).
			if flight := t.SndNxt.Diff(t.SndUna) + acked; t.cwnd < 2*max(flight, t.ssRoundFlight()) {
				t.cwnd += acked
			}
		case t.cfg.more&optSlowStart2 != 0:
			t.cwnd += min(acked, 2*smss)
		default:
			t.cwnd += min(acked, smss)
		}
		if t.cwnd >= t.ssthresh {
			t.cubicEpoch = 0 // slow start's round record ends; CUBIC's epoch starts afresh
			if t.ssthresh == maxQueued {
				t.cubicWMax = 0 // no loss yet: HyStart's record (hystart.go), no W_max
			}
		}
	case t.cfg.opts&optCUBIC != 0:
		t.cubicGrow(acked, now)
	default:
		t.cwnd += max(1, smss*smss/t.cwnd)
	}
	t.cwnd = min(t.cwnd, maxQueued)
}

// Slow start with Config.SlowStartLimit < 0 keeps the largest flight of
// the current round in cubicEpoch, which CUBIC uses only in congestion
// avoidance and PRR only in recovery; growCwnd, onLoss and the restart
// after idle clear it when slow start begins or ends.

// ssRoundFlight is the largest flight since everything sent was last
// acknowledged, in slow start with Config.SlowStartLimit < 0.
func (t *TCB) ssRoundFlight() uint32 {
	if !t.ssRoundKept() {
		return 0
	}
	return t.cubicEpoch
}

// ssRoundKept reports whether cubicEpoch holds slow start's round record:
// Linux's slow start, out of recovery, below ssthresh.
func (t *TCB) ssRoundKept() bool {
	return t.cfg.more&optSlowStartAll != 0 && t.flags&flagRecovery == 0 && t.cwnd < t.ssthresh
}

// noteSSFlight records the flight after sending, in slow start with
// Config.SlowStartLimit < 0, and forgets it once everything sent is
// acknowledged: the round is over.
func (t *TCB) noteSSFlight() {
	if !t.ssRoundKept() {
		return
	}
	t.cubicEpoch = max(t.cubicEpoch, t.SndNxt.Diff(t.SndUna))
	if t.SndUna == t.SndNxt {
		t.cubicEpoch = 0
	}
}

// CUBIC constants (RFC 9438 section 4.1).
const (
	cubicC    = 0.4
	cubicBeta = 0.7
)

// cubicGrow is CUBIC's congestion avoidance: the window follows
// W_cubic(t) = C*(t-K)^3 + W_max, and never grows slower than the
// Reno-friendly estimate W_est (RFC 9438 sections 4.2 to 4.4).
func (t *TCB) cubicGrow(acked uint32, now Time) {
	smss := float64(t.effMSS())
	if t.cubicEpoch == 0 {
		t.cubicEpoch = max(msOf(now), 1)
		if t.cubicWMax < t.cwnd {
			t.cubicWMax = t.cwnd // no loss yet: the plateau is here
		}
	}
	wmax := float64(t.cubicWMax) / smss
	cw := float64(t.cwnd) / smss
	// cwnd_epoch, the window congestion avoidance began with: ssthresh,
	// beta*W_max after a loss; W_max itself when slow start ended without
	// one (HyStart), so K = 0 and W_est starts there (RFC 9438 sections
	// 4.2, 4.3 and 4.10).
	w0 := min(float64(t.ssthresh)/smss, wmax)
	k := math.Cbrt((wmax - w0) / cubicC)
	rtt := float64(max(t.srtt, 1000)) / 1e6
	el := sinceMs(now, t.cubicEpoch).Seconds()
	target := cubicC*math.Pow(el+rtt-k, 3) + wmax
	target = min(max(target, cw), 1.5*cw)
	west := w0 + 3*(1-cubicBeta)/(1+cubicBeta)*(el/rtt)
	target = max(target, west)
	inc := (target - cw) / cw * float64(acked)
	if inc < 1 {
		inc = 1
	}
	t.cwnd = uint32(min(float64(t.cwnd)+inc, maxQueued))
}

// onLoss reduces the window for a loss: ssthresh = max(FlightSize/2,
// 2*SMSS) (RFC 5681 equation 4), or beta*cwnd for CUBIC (RFC 9438 section
// 4.6). On a timeout the window restarts at one segment and recovery ends
// (RFC 6582 section 3.2 step 4).
func (t *TCB) onLoss(timeout bool) {
	smss := t.effMSS()
	flight := t.SndNxt.Diff(t.SndUna)
	t.cubicWMax = t.cwnd // W_max for CUBIC; RecoverFS for PRR
	t.cubicEpoch = 0
	if t.cfg.opts&optCUBIC != 0 {
		t.ssthresh = max(uint32(float64(t.cwnd)*cubicBeta), 2*smss)
	} else if !timeout || t.retries <= 1 {
		// A repeated timeout of the same segment keeps ssthresh (RFC 5681
		// section 3.1, SHOULD).
		t.ssthresh = max(flight/2, 2*smss)
	}
	if timeout {
		t.cwnd = smss
		t.flags &^= flagRecovery | flagRtxMark
		t.dupAcks = 0
		t.recover = t.SndNxt.Add(^uint32(0))
	}
}

// onDupAck handles a duplicate ACK (RFC 5681 section 3.2, RFC 6582 section
// 3.2, RFC 3042): the first two let one new segment each out (limited
// transmit, in sendLimit), the third starts fast retransmit and recovery,
// later ones inflate the window. With SACK, each one in recovery may
// retransmit the next hole.
func (t *TCB) onDupAck(now Time, out []Action) []Action {
	if t.dupAcks < 255 {
		t.dupAcks++
	}
	smss := t.effMSS()
	switch {
	case t.flags&flagRecovery != 0:
		if t.prrOn() {
			return out // prrACK paces recovery
		}
		t.cwnd += smss
		if count(t.sacked[:]) > 0 {
			return t.retransmitHole(now, out) // SACK shows the next hole
		}
		return out
	case t.dupAcks == t.dupThresh(smss) && t.SndUna.GreaterThan(t.recover):
		t.onLoss(false)
		t.recover = t.SndNxt.Add(^uint32(0))
		t.cwnd = t.ssthresh + 3*smss
		t.flags |= flagRecovery
		t.flags &^= flagProbe | flagProbeRtx // recovery takes over from a probe; mark is free
		t.sndRtx = t.SndUna
		if t.prrOn() {
			return out // prrACK sends the fast retransmit
		}
		return t.retransmitHole(now, out)
	}
	return out
}

// dupThresh is the number of duplicate ACKs that starts fast retransmit:
// 3 (RFC 5681 section 3.2), or with EarlyRetransmit one less than the
// outstanding segments when fewer than four are outstanding and no new
// data may be sent (RFC 5827 section 3.1, the segment-based variant).
func (t *TCB) dupThresh(smss uint32) uint8 {
	if t.cfg.opts&optEarlyRetransmit == 0 {
		return 3
	}
	flight := t.SndNxt.Diff(t.SndUna)
	unsent := t.sndEnd.Diff(t.SndNxt)
	if t.sndEnd.LessThan(t.SndNxt) {
		unsent = 0 // only our FIN is past sndEnd
	}
	canSend := unsent > 0 && t.SndUna.Add(t.SndWnd).GreaterThan(t.SndNxt)
	oseg := (flight + smss - 1) / smss
	if flight >= 4*smss || canSend || oseg < 2 {
		return 3
	}
	return uint8(oseg - 1)
}

// onRecoveryAck handles a new ACK during fast recovery: a full ACK (past
// recover) ends it, a partial ACK retransmits the next unacknowledged
// segment and deflates the window (RFC 6582 section 3.2 step 3).
func (t *TCB) onRecoveryAck(acked uint32, now Time, out []Action) []Action {
	smss := t.effMSS()
	if t.SndUna.GreaterThan(t.recover) {
		flight := t.SndNxt.Diff(t.SndUna)
		t.cwnd = min(t.ssthresh, max(flight, smss)+smss)
		if t.prrOn() {
			t.cwnd = t.ssthresh // RFC 6937 section 3.1
			t.cubicEpoch = 0    // the PRR counts
		}
		t.flags &^= flagRecovery | flagRtxMark
		t.dupAcks = 0
		t.sndRtx = t.SndNxt
		return out
	}
	if t.prrOn() {
		return out // prrACK paces recovery
	}
	if acked >= t.cwnd {
		t.cwnd = smss
	} else {
		t.cwnd -= acked
	}
	if acked >= smss {
		t.cwnd += smss
	}
	if t.sndRtx.LessThan(t.SndUna) {
		t.sndRtx = t.SndUna
	}
	return t.retransmitHole(now, out)
}

// retransmitHole retransmits one segment's worth of the first data at or
// after sndRtx that the peer has not SACKed, below the highest SACKed
// byte (RFC 2018 section 4's scoreboard); without SACK information, the
// segment at sndRtx. sndRtx then moves past it.
func (t *TCB) retransmitHole(now Time, out []Action) []Action {
	seq := MaxSeq(t.sndRtx, t.SndUna)
	for {
		right, sacked := covering(t.sacked[:], seq)
		if !sacked {
			break
		}
		seq = right
	}
	end := MinSeq(t.sndEnd, t.SndNxt)
	if count(t.sacked[:]) > 0 && seq != t.SndUna {
		end = MinSeq(end, highest(t.sacked[:], end))
	}
	if !seq.LessThan(end) {
		// Only a FIN may be left to resend.
		if t.flags&flagFinSent != 0 && seq == t.sndEnd && t.SndNxt == t.sndEnd.Add(1) {
			out = t.emitData(out, seq, 0, true, now)
			t.sndRtx = t.SndNxt
		}
		return out
	}
	n := min(t.effMSS(), end.Diff(seq))
	if next, ok := t.nextSacked(seq); ok && next.LessThan(seq.Add(n)) {
		n = next.Diff(seq)
	}
	fin := t.flags&flagFinSent != 0 && seq.Add(n) == t.sndEnd
	out = t.emitData(out, seq, n, fin, now)
	t.sndRtx = seq.Add(n + b2u(fin))
	t.flags &^= flagRttTiming // Karn
	if t.flags&(flagRecovery|flagProbe) == flagRecovery {
		// Data from SND.NXT on goes out after this retransmission, and
		// after every earlier one of this recovery, SND.UNA's included.
		t.flags |= flagRtxMark
		t.mark = t.SndNxt
	}
	return out
}

// lostRetransmit resends the segment at SND.UNA when, while SND.UNA is
// still missing after its retransmission in this recovery, the peer SACKs
// data sent after that retransmission: a full segment of new data sent
// after the latest retransmission, or (rtxSACKed) data that this recovery
// retransmitted later, as holes are resent in sequence order from SND.UNA
// on. SND.UNA's retransmission was lost too. It is RACK's rule (RFC 8985
// section 6.2, with no reordering window in recovery) with the order of
// sending standing for send times, as Linux's lost-retransmit detection
// does. Without it only the RTO repairs a lost retransmission. One
// recovery, one window reduction: resending does not reduce it again
// (RFC 6675).
func (t *TCB) lostRetransmit(rtxSACKed bool, now Time, out []Action) []Action {
	if t.flags&flagRecovery == 0 {
		t.flags &^= flagRtxMark
		return out
	}
	if !t.SndUna.LessThan(t.sndRtx) {
		return out // SND.UNA not yet resent
	}
	if hi := highest(t.sacked[:], t.SndUna); !rtxSACKed && (!hi.GreaterThan(t.mark) || hi.Diff(t.mark) < t.effMSS()) {
		return out // nothing sent later has arrived
	}
	t.sndRtx = t.SndUna
	return t.retransmitHole(now, out) // and marks it again
}

// nextSacked returns the left edge of the first SACKed range after seq.
func (t *TCB) nextSacked(seq Seq) (Seq, bool) {
	for _, r := range t.sacked[:count(t.sacked[:])] {
		if seq.LessThan(r.Left) {
			return r.Left, true
		}
	}
	return 0, false
}
