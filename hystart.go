package tcpfsm

// HyStart's delay increase test (RFC 9406 section 4.2), in the form
// Linux's CUBIC runs it (Config.HyStart): in the initial slow start, once
// the window holds at least hsLowWindow segments, the least RTT sample
// of a round trip is compared, from the round's ninth ACK on, with the
// least sample of the connection; a rise of more than
// min(max(that/8, 4 ms), 16 ms) ends slow start: ssthresh = cwnd.
//
// Rounds. A round ends, as RFC 9406 section 4.2's and Linux's, when
// SND.UNA passes windowEnd, the SND.NXT of its start (Linux tests SND.UNA
// > windowEnd; the next round begins with the ACK that finds it so). The
// round is timed only while the test runs: the first ACK with a window of
// hsLowWindow segments starts the first one, as in Linux.
//
// Samples. With timestamps every ACK that acknowledges new data brings
// an RTT sample (RFC 7323 section 4). Without them the TCB times one
// segment at a time (RFC 6298 section 3), so a round has about one
// sample, where Linux, which keeps each segment's send time, has one per
// ACK. N_RTT_SAMPLE then counts the round's ACKs that
// acknowledge new data, each of which Linux would sample: the test runs
// on the same ACK as Linux's, on the least of the samples the round had.
// A round without a sample is not tested.
//
// State. The test runs only while ssthresh still has its initial value
// (maxQueued), before any loss, when two fields are free: cubicWMax,
// which holds W_max and RecoverFS only from the first loss on, and mark,
// which serves only a tail loss probe and recovery. mark holds windowEnd;
// cubicWMax holds, in milliseconds rounded up (0: no sample yet; at most
// hsMaxMs):
//
//	bits 0-3    ACKs counted in this round, up to hsMinSamples
//	bits 4-17   the least RTT sample of this round
//	bits 18-31  the least RTT sample of the connection
//
// No ACK counted yet, or a windowEnd outside [SND.UNA, SND.NXT], means
// no round is under way: the ACK starts one. While a tail loss probe is outstanding mark is the probe's,
// and the round goes on until the probe is answered.
//
// On leaving slow start the field is cleared: CUBIC then finds no W_max
// and takes the window as its plateau (RFC 9438 section 4.10).

const (
	hsLowWindow  = 16    // segments below which the test does not run (Linux's hystart_low_window)
	hsMinSamples = 8     // N_RTT_SAMPLE (RFC 9406 section 4.2)
	hsMinThresh  = 4     // MIN_RTT_THRESH in ms
	hsMaxThresh  = 16    // MAX_RTT_THRESH in ms
	hsDivisor    = 8     // MIN_RTT_DIVISOR
	hsMaxMs      = 16383 // the largest RTT the 14-bit fields hold, in ms
)

// hyStartOn reports whether the delay test runs: Config.HyStart, in the
// initial slow start, out of recovery.
func (t *TCB) hyStartOn() bool {
	return t.cfg.more&optHyStart != 0 && t.ssthresh == maxQueued && t.cwnd < t.ssthresh &&
		t.flags&flagRecovery == 0
}

// hyStartAck runs the delay test for an ACK of new data, before the
// window grows for it. rttUs is the ACK's RTT sample in microseconds (0:
// none).
func (t *TCB) hyStartAck(rttUs uint32) {
	if !t.hyStartOn() {
		return
	}
	s := t.cubicWMax
	n, round, conn := s&0xf, s>>4&hsMaxMs, s>>18
	ms := min((rttUs+999)/1000, hsMaxMs)
	if ms != 0 && (conn == 0 || ms < conn) {
		conn = ms
	}
	if t.cwnd >= hsLowWindow*t.effMSS() {
		over := n == 0 || t.mark.LessThan(t.SndUna) || t.SndNxt.LessThan(t.mark)
		if over && t.flags&(flagProbe|flagProbeRtx) == 0 {
			t.mark = t.SndNxt // a new round
			n, round = 0, 0
		}
		if ms != 0 && (round == 0 || ms < round) {
			round = ms
		}
		if n < hsMinSamples {
			n++
		} else if round != 0 && round > conn+min(max(conn/hsDivisor, hsMinThresh), hsMaxThresh) {
			t.ssthresh = t.cwnd
			t.cubicWMax = 0 // no W_max: no loss yet
			t.cubicEpoch = 0
			return
		}
	}
	t.cubicWMax = conn<<18 | round<<4 | n
}
