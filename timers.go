package tcpfsm

import (
	"strconv"
	"time"
)

// Time is a point on the host's monotonic timeline, in nanoseconds from an
// epoch the host chooses. The state machine never reads a clock: the host
// reads its Clock and passes now into Step (RFC 9293 section 3.8). Times
// must not decrease from one Step to the next, and must not be negative.
type Time int64

// Add returns t+d.
func (t Time) Add(d time.Duration) Time { return t + Time(d) }

// Sub returns the duration t-u.
func (t Time) Sub(u Time) time.Duration { return time.Duration(t - u) }

// Before reports whether t is before u.
func (t Time) Before(u Time) bool { return t < u }

// String prints the time as a duration since the epoch, such as "1.5s".
func (t Time) String() string { return time.Duration(t).String() }

// TimerKind names one of the timers a TCB keeps (RFC 9293 section 3.8,
// RFC 1122 section 4.2.3).
type TimerKind uint8

// The timers. Timers that never run at the same time share a slot in the
// TCB, so at most three deadlines are held: retransmission, probe,
// persist and close; delayed ACK; keep-alive and user timeout.
const (
	// TimerRetransmit is the retransmission timer (RFC 6298): SYN, SYN-ACK,
	// data and FIN retransmission.
	TimerRetransmit TimerKind = iota
	// TimerClose is the TIME-WAIT 2*MSL timer (RFC 9293 MUST-13) in
	// TIME-WAIT, and the optional FIN-WAIT-2 timeout in FIN-WAIT-2.
	TimerClose
	// TimerKeepalive is the keep-alive idle and probe timer (RFC 9293 section 3.8.4).
	TimerKeepalive
	// TimerUser is the user timeout (RFC 9293 section 3.10.8, RFC 5482).
	TimerUser
	// TimerDelayedACK holds a delayed acknowledgment (RFC 9293 section 3.8.6.3).
	TimerDelayedACK
	// TimerPersist probes a zero window, and sends what the sender's
	// silly-window avoidance held back (RFC 9293 sections 3.8.6.1, 3.8.6.2.1).
	TimerPersist
	// TimerProbe is the tail loss probe timeout, PTO (RFC 8985 section
	// 7.2), with Config.TailLossProbe. It stands in for the
	// retransmission timer while it runs.
	TimerProbe
	numTimers
)

// numSlots is how many deadlines a TCB holds.
const numSlots = 3

// slotOf returns the slot a timer kind uses. The map is a constant, two
// bits a kind, so that for a constant kind the slot is one too.
func slotOf(k TimerKind) int { return int(timerSlots>>(2*(k&7))) & 3 }

// timerSlots maps each timer kind (and the unused values up to 7) to its
// slot, two bits a kind from the lowest.
const timerSlots = 0<<(2*TimerRetransmit) | 0<<(2*TimerPersist) | 0<<(2*TimerClose) | 0<<(2*TimerProbe) |
	slotDelayedACK<<(2*TimerDelayedACK) | 2<<(2*TimerKeepalive) | 2<<(2*TimerUser) | 2<<(2*7)

// slotDelayedACK is the delayed-ACK timer's slot, which it has to itself.
const slotDelayedACK = 1

var timerNames = [numTimers]string{"retransmit", "close", "keepalive", "user", "delayed-ack", "persist", "probe"}

// Millis returns t in milliseconds, modulo 2^32: the clock TCP
// timestamps count (RFC 7323 section 5.4); a TSval is this plus the
// connection's offset.
func (t Time) Millis() uint32 { return msOf(t) }

// String returns the timer's name, such as "retransmit".
func (k TimerKind) String() string {
	if k < numTimers {
		return timerNames[k]
	}
	return "timer(" + strconv.Itoa(int(k)) + ")"
}

// NextDeadline returns the earliest deadline of the TCB's running timers
// and true, or false if none is running. The host calls Step with a Tick
// event once its clock reaches that time.
func (t *TCB) NextDeadline() (Time, bool) {
	// A running timer's deadline is at least 1 (arm), and a stopped one
	// is 0, which less one wraps to the largest uint64: the least of the
	// three, less one, is the earliest running deadline less one, or the
	// largest uint64 (0 again once one is added back) if none runs.
	// Branch-free and small enough to inline: hosts call it after every
	// step.
	m := min(uint64(t.timers[0])-1, uint64(t.timers[1])-1, uint64(t.timers[2])-1) + 1
	return Time(m), m != 0
}

// NextDeadline reads exactly numSlots == 3 slots.
var _ [numSlots - 3]struct{}
var _ [3 - numSlots]struct{}

// Deadline returns the deadline of timer k and whether it is running.
func (t *TCB) Deadline(k TimerKind) (Time, bool) {
	if !t.running(k) {
		return 0, false
	}
	return t.timers[slotOf(k)], true
}

// running reports whether timer k is running.
func (t *TCB) running(k TimerKind) bool {
	s := slotOf(k)
	return t.timers[s] != 0 && t.tkind[s] == k
}

// arm sets timer k to fire at now+d and reports the change as an action.
// A timer of another kind in the same slot is stopped.
func (t *TCB) arm(out []Action, k TimerKind, now Time, d time.Duration) []Action {
	if t.cfg.more&optTimerActions != 0 {
		return t.armReported(out, k, max(now.Add(d), 1))
	}
	t.setTimer(k, now.Add(d))
	return out
}

// setTimer is arm without Config.TimerActions, when there is nothing to
// report: it sets timer k to fire at at, in place of whatever held its
// slot.
func (t *TCB) setTimer(k TimerKind, at Time) {
	s := slotOf(k)
	t.timers[s], t.tkind[s] = max(at, 1), k // zero means stopped
}

// armReported is arm with Config.TimerActions, for a deadline at (never
// zero, which means stopped): it reports what changes.
func (t *TCB) armReported(out []Action, k TimerKind, at Time) []Action {
	s := slotOf(k)
	if t.timers[s] == at && t.tkind[s] == k {
		return out
	}
	if t.timers[s] != 0 && t.tkind[s] != k {
		out = t.stop(out, t.tkind[s])
	}
	t.timers[s], t.tkind[s] = at, k
	out, a := push(out, ActTimer)
	a.Timer, a.Deadline = k, at
	return out
}

// stop stops timer k, reporting it if it was running.
func (t *TCB) stop(out []Action, k TimerKind) []Action {
	if !t.running(k) {
		return out // small enough to inline: most stops find the timer stopped
	}
	return t.stopRunning(out, k)
}

// stopFlightTimers stops the timers that guard data in flight, once
// nothing is: the retransmission timer or the probe timeout (slot 0) and
// the user timeout (slot 2). It is stop for each, with the slots known;
// without Config.TimerActions there is nothing to report, and it clears
// the slots.
func (t *TCB) stopFlightTimers(out []Action) []Action {
	if t.cfg.more&optTimerActions != 0 {
		return t.stopFlightTimersReported(out)
	}
	t.clearFlightSlots()
	return out
}

// clearFlightSlots is stopFlightTimers without Config.TimerActions, small
// enough to inline into the hot paths, which test the setting themselves.
func (t *TCB) clearFlightSlots() {
	if k := t.tkind[0]; k == TimerRetransmit || k == TimerProbe {
		t.timers[0] = 0
	}
	if t.tkind[2] == TimerUser {
		t.timers[2] = 0
	}
}

// stopFlightTimersReported is stopFlightTimers with Config.TimerActions.
func (t *TCB) stopFlightTimersReported(out []Action) []Action {
	if k := t.tkind[0]; t.timers[0] != 0 && (k == TimerRetransmit || k == TimerProbe) {
		out = t.stopRunning(out, k)
	}
	if t.timers[2] != 0 && t.tkind[2] == TimerUser {
		out = t.stopRunning(out, TimerUser)
	}
	return out
}

// stopDelayedACK is stop(out, TimerDelayedACK), small enough to inline
// into the ACK paths, which nearly always find the timer stopped.
func (t *TCB) stopDelayedACK(out []Action) []Action {
	if t.timers[slotDelayedACK] == 0 {
		return out
	}
	return t.stopRunning(out, TimerDelayedACK)
}

// stopRunning stops timer k, which is running.
func (t *TCB) stopRunning(out []Action, k TimerKind) []Action {
	t.timers[slotOf(k)] = 0
	if t.cfg.more&optTimerActions == 0 {
		return out
	}
	out, a := push(out, ActTimer)
	a.Timer = k
	return out
}

// stopAll stops every timer.
func (t *TCB) stopAll(out []Action) []Action {
	for s := range numSlots {
		if t.timers[s] != 0 {
			out = t.stop(out, t.tkind[s])
		}
	}
	return out
}
