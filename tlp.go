package tcpfsm

import "time"

// Tail loss probe (RFC 8985 section 7), opt-in with Config.TailLossProbe.
//
// When the last ACKs of a flight are lost, or the last segments, no
// duplicate ACKs come to start fast retransmit and the sender waits for
// the RTO. A probe timeout (PTO) of about two round trips stands in for
// the retransmission timer while data is in flight, restarted whenever
// new data goes out or an ACK acknowledges some; when it fires, one probe
// segment goes out and the RTO takes over again. No PTO is armed, and
// none fires a probe, during fast recovery.
//
// The probe is a new segment if there is one to send, else the highest
// segment sent so far again (RFC 8985 section 7.3). This TCB keeps no
// per-segment send times, so it has no full RACK; it applies RACK's rule
// (section 6.2) to the probe instead: a probe that the peer SACKs while
// data sent before it is still unacknowledged proves that data lost, as
// it went at least a PTO before a segment that arrived. Fast recovery
// starts at once (probeSACKed), so every hole of a lossy tail is resent
// within about a round trip. (If the probe is a retransmission whose
// original arrived first, the data before it was sent earlier still.)
//
// A retransmitted probe may repair a loss, or only duplicate a segment
// whose ACK was lost. The ACKs that follow tell which (RFC 8985 section
// 7.4): a D-SACK, or a duplicate ACK of the probe, says both copies
// arrived; an ACK beyond what was sent before the probe, without a
// D-SACK, says the probe repaired a loss, and the window falls as for
// one (probeAcked).

// ptoSlack is added to the probe timeout when more than one segment is
// in flight: the time an ACK the receiver sends at once may still take
// beyond the round trip (its scheduling, timer granularity), as Linux adds
// its TCP_TIMEOUT_MIN. RFC 8985 section 7.2 leaves it to the sender.
const ptoSlack = 2 * time.Millisecond

// probeEligible reports whether the PTO may guard the data in flight
// instead of the RTO (RFC 8985 section 7.2): the option is on, the peer
// SACKs, an RTT has been measured, no recovery, timeout or probe is under
// way, and the state is one that sends data or a FIN.
func (t *TCB) probeEligible() bool {
	return t.cfg.opts&optTLP != 0 &&
		t.flags&(flagSACK|flagHaveRtt|flagRecovery|flagProbe) == flagSACK|flagHaveRtt &&
		t.retries == 0 && t.State.sendsData()
}

// wcDelAckT is RFC 8985's WCDelAckT, the worst-case delayed-ACK time of
// the peer, at its recommended 200 ms (section 7.2). It is the peer's
// timer that holds the ACK back, so our own DelayedACK does not set it.
const wcDelAckT = 200 * time.Millisecond

// pto is the probe timeout: 2*SRTT, plus the peer's worst-case delayed
// ACK when one segment is in flight (its ACK may be held back), or
// ptoSlack when more are, and never later than the RTO (RFC 8985
// section 7.2).
func (t *TCB) pto() time.Duration {
	d := 2*time.Duration(t.srtt)*time.Microsecond + ptoSlack
	if t.SndNxt.Diff(t.SndUna) <= t.effMSS() {
		d += wcDelAckT - ptoSlack
	}
	return min(d, t.rtoDur())
}

// armLossTimer arms the timer that guards the data in flight: the PTO
// when a probe may be sent, else the retransmission timer. Without
// Config.TailLossProbe or Config.TimerActions, that is only setting slot
// 0.
func (t *TCB) armLossTimer(now Time, out []Action) []Action {
	if !t.plainLossTimer() {
		return t.armProbeOrRTO(now, out)
	}
	t.setTimer(TimerRetransmit, now.Add(t.rtoDur()))
	return out
}

// plainLossTimer reports whether armLossTimer comes to setting slot 0 to
// the RTO: the hot paths test it and set the slot themselves, which saves
// them the call.
func (t *TCB) plainLossTimer() bool {
	return t.cfg.opts&optTLP == 0 && t.cfg.more&optTimerActions == 0
}

// armProbeOrRTO is armLossTimer with either setting.
func (t *TCB) armProbeOrRTO(now Time, out []Action) []Action {
	k, d := TimerRetransmit, t.rtoDur()
	if t.probeEligible() {
		k, d = TimerProbe, t.pto()
	}
	return t.arm(out, k, now, d)
}

// onProbeTimeout sends the tail loss probe (RFC 8985 section 7.3): a new
// segment if there is unsent data and the peer's window has room for it
// (the congestion window does not hold a probe back), else the highest
// segment sent: the last MSS of data, with our FIN if it was sent with
// it, or the FIN alone if it went alone. The retransmission timer then
// guards the flight.
func (t *TCB) onProbeTimeout(now Time, out []Action) []Action {
	if t.SndUna == t.SndNxt {
		return out
	}
	if t.flags&flagRecovery != 0 {
		// Fast recovery began after the PTO was armed: no probe during
		// recovery (RFC 8985 section 7.2); the RTO guards the flight.
		return t.arm(out, TimerRetransmit, now, t.rtoDur())
	}
	mss := t.effMSS()
	inflight := t.SndNxt.Diff(t.SndUna)
	if t.SndNxt.LessThan(t.sndEnd) && t.SndWnd > inflight {
		queued := t.sndEnd.Diff(t.SndNxt)
		n := min(mss, queued, t.SndWnd-inflight)
		fin := t.flags&flagCloseCalled != 0 && n == queued
		if n < mss {
			t.flags |= flagSmallSent // Nagle's bookkeeping, as sendData keeps it
		}
		t.mark = t.SndNxt
		out = t.emitData(out, t.SndNxt, n, fin, now)
		t.advanceSndNxt(now, n, fin)
	} else {
		// The highest segment again, with our FIN if it was sent: the
		// FIN alone if it went alone, or once every byte is acknowledged.
		end := MinSeq(t.sndEnd, t.SndNxt)
		fin := t.flags&flagFinSent != 0
		var n uint32
		if t.SndUna.LessThan(end) && (!fin || t.flags&flagFinAlone == 0) {
			n = min(mss, end.Diff(t.SndUna))
		}
		out = t.emitData(out, end.Add(-n), n, fin, now)
		t.flags &^= flagRttTiming // Karn
		// TLPRxtOut and TLPHighRxt (RFC 8985 section 7.4.1): the ACKs
		// that follow tell whether this repaired a loss.
		t.mark = t.SndNxt
		t.flags |= flagProbeRtx
	}
	t.flags |= flagProbe
	return t.arm(out, TimerRetransmit, now, t.rtoDur())
}

// probeSACKed starts fast recovery when the peer SACKs the probe while
// data sent before it is unacknowledged: that data was sent at least a
// PTO earlier than a segment that arrived, so it is lost (RFC 8985
// section 6.2, for the probe). A probe of new data starts at mark; a
// resent one is the highest segment, whose last byte is below TLPHighRxt
// (mark) and, but for a FIN, SND.NXT; or our FIN, if it went alone.
func (t *TCB) probeSACKed(now Time, out []Action) []Action {
	if t.flags&(flagProbe|flagRecovery) != flagProbe {
		return out
	}
	probe := t.mark
	if t.flags&flagProbeRtx != 0 {
		probe = MinSeq(t.sndEnd, t.mark).Add(^uint32(0))
		if t.flags&(flagFinSent|flagFinAlone) == flagFinSent|flagFinAlone {
			probe = t.sndEnd // the FIN alone was resent
		}
	}
	if !t.SndUna.LessThan(probe) {
		return out
	}
	if _, ok := covering(t.sacked[:], probe); !ok {
		return out
	}
	t.flags &^= flagProbe | flagProbeRtx
	t.onLoss(false)
	t.recover = t.SndNxt.Add(^uint32(0))
	t.cwnd = t.ssthresh
	t.flags |= flagRecovery
	t.sndRtx = t.SndUna
	out = t.retransmitHole(now, out)
	return t.arm(out, TimerRetransmit, now, t.rtoDur())
}

// probeAcked ends a retransmitted probe's episode (RFC 8985 section
// 7.4.2) from an acceptable ACK, seg, once it reaches TLPHighRxt (mark);
// advanced says it acknowledged new data. A D-SACK means the original and
// the probe both arrived: no loss. Otherwise an ACK beyond TLPHighRxt
// means the probe repaired a loss, and the congestion window falls as on
// entering fast recovery, with no recovery to follow (the loss is
// repaired). A duplicate ACK of TLPHighRxt alone (nothing new
// acknowledged, SACKed, sent or offered) is the probe's own ACK: no loss.
// Anything else waits for the next ACK.
func (t *TCB) probeAcked(seg *Segment, advanced bool) {
	if seg.Ack.LessThan(t.mark) {
		return
	}
	switch {
	case t.flags&flagSACK != 0 && seg.Options.hasDSACK(seg.Ack):
	case seg.Ack.GreaterThan(t.mark):
		t.probeRepaired()
	case !advanced && seg.Options.NumSACK == 0 && len(seg.Payload) == 0 &&
		seg.Flags&FlagFIN == 0 && uint32(seg.Window)<<t.sndShift() == t.SndWnd:
	default:
		return
	}
	t.flags &^= flagProbe | flagProbeRtx
}

// probeRepaired is the congestion response to a loss a retransmitted
// probe repaired (RFC 8985 section 7.4.2): ssthresh as on entering fast
// recovery, and cwnd down to it. The flight the loss happened in is gone
// by the time the ACKs tell, so NewReno halves cwnd instead of
// FlightSize (RFC 5681 section 3.2 allows either measure of what was in
// flight; Linux's Reno does the same).
func (t *TCB) probeRepaired() {
	if t.cfg.opts&optCUBIC != 0 {
		t.onLoss(false)
	} else {
		t.ssthresh = max(t.cwnd/2, 2*t.effMSS())
	}
	t.cwnd = t.ssthresh
}
