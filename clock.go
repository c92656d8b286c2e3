package tcpfsm

import "time"

// Clock gives the host's current time. The state machine does not call it;
// hosts do, and pass the result to Step. Tests use a ManualClock.
type Clock interface {
	Now() Time
}

// ManualClock is a Clock that moves only when told to: the clock of tests
// and simulations. The zero value reads 0.
type ManualClock struct {
	now Time
}

// Now returns the clock's time.
func (c *ManualClock) Now() Time { return c.now }

// Advance moves the clock forward by d; a negative d is ignored, so the
// clock never goes back.
func (c *ManualClock) Advance(d time.Duration) {
	if d > 0 {
		c.now += Time(d)
	}
}

// Set moves the clock to t if t is later than its time.
func (c *ManualClock) Set(t Time) {
	if t > c.now {
		c.now = t
	}
}

// SystemClock is a Clock backed by the Go runtime's monotonic clock, with
// its epoch at the moment it was made.
type SystemClock struct {
	start time.Time
}

// NewSystemClock returns a SystemClock whose epoch is now.
func NewSystemClock() *SystemClock { return &SystemClock{start: time.Now()} }

// Now returns the time since the clock was made.
func (c *SystemClock) Now() Time { return Time(time.Since(c.start)) }
