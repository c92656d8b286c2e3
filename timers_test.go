package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestManualClock(t *testing.T) {
	var c ManualClock
	require.Equal(t, Time(0), c.Now())
	c.Advance(time.Second)
	c.Advance(-time.Hour) // ignored
	require.Equal(t, at(1), c.Now())
	c.Set(at(0.5)) // never backwards
	require.Equal(t, at(1), c.Now())
	c.Set(at(2))
	require.Equal(t, at(2), c.Now())
	require.Equal(t, time.Second, at(2).Sub(at(1)))
	require.True(t, at(1).Before(at(2)))
	require.Equal(t, "1.5s", at(1.5).String())
	var _ Clock = &c
	s := NewSystemClock()
	require.GreaterOrEqual(t, s.Now(), Time(0))
}

func TestDataRetransmissionBackoff(t *testing.T) {
	// RFC6298 5.4-5.6, MUST-19: 1, 2, 4, 8 s; RFC5681 3.1 eq.4.
	c := established(t, Config{})
	c.tcb.SndWnd = 100_000
	c.user(Send(1000))
	c.sent("P. seq=101 len=1000")
	c.timer(TimerRetransmit, at(1))
	for _, sec := range []float64{1, 3, 7, 15} {
		c.advanceTo(at(sec))
		c.sent("P. seq=101 len=1000")
	}
	c.timer(TimerRetransmit, at(31))
	require.Equal(t, uint32(2*1460), c.tcb.ssthresh)
	require.Equal(t, uint32(1460), c.tcb.cwnd)
	c.peer(pkt(".", 301, 1101))
	c.timer(TimerRetransmit, 0)
}

func TestTimerStartedOnceNotRestartedBySend(t *testing.T) {
	// RFC6298 5.1 and 5.3.
	c := established(t, Config{NoDelay: true, TimerActions: true})
	c.user(Send(100))
	c.advanceTo(at(0.05))
	c.user(Send(100))
	c.timer(TimerRetransmit, at(1))
	c.advanceTo(at(0.1)) // an RTT sample of 100 ms keeps the RTO at its 1 s floor
	c.peer(pkt(".", 301, 201))
	c.timer(TimerRetransmit, at(1.1))
	c.peer(pkt(".", 301, 301))
	c.timer(TimerRetransmit, 0)
	stops := 0
	for _, a := range c.take(ActTimer) {
		if a.Timer == TimerRetransmit && a.Deadline == 0 {
			stops++
		}
	}
	require.Equal(t, 1, stops, "RFC6298 5.2: a timer-stop action")
}

func TestR1StalledAndR2GiveUp(t *testing.T) {
	// MUST-20 (R1, R2), SHLD-10/11, MUST-21, MUST-12.
	c := established(t, Config{R2: 20 * time.Second})
	c.user(Send(10))
	c.clear()
	c.advanceTo(at(7)) // third retransmission
	c.notes(NoteStalled)
	c.state(Established)
	c.advanceTo(at(15))
	c.state(Established)
	c.clear()
	c.advanceTo(at(31)) // 31 s after first send >= 20 s
	c.sent("R. seq=111 ack=301")
	c.state(Closed)
	c.notes(NoteTimedOut)

	// Default: no abort before 100 s.
	c = established(t, Config{})
	c.user(Send(10))
	c.advanceTo(at(100))
	c.state(Established)
	c.advanceTo(at(1000))
	c.state(Closed)

	// Without the RST.
	c = established(t, Config{R2: 5 * time.Second, NoResetOnGiveUp: true})
	c.user(Send(10))
	c.clear()
	c.advanceTo(at(7))
	c.sent("P. seq=101 len=10", "P. seq=101 len=10")
	c.state(Closed)
}

func TestUserTimeout(t *testing.T) {
	// RFC9293 3.10.8 (user timeout).
	c := established(t, Config{UserTimeout: 30 * time.Second})
	c.user(Send(10))
	c.clear()
	c.advanceTo(at(30) - 1)
	c.state(Established)
	c.advanceTo(at(30))
	c.state(Closed)
	c.notes(NoteStalled, NoteUserTimeout)
}

func TestKeepalive(t *testing.T) {
	// MUST-24..29, SHLD-12.
	c := established(t, Config{})
	c.advance(10 * time.Hour)
	c.nothing() // off by default (MUST-25)

	c = established(t, Config{Keepalive: true, KeepaliveInterval: time.Minute, KeepaliveCount: 3})
	c.advanceTo(at(7200) - 1)
	c.nothing()
	c.advanceTo(at(7200))
	c.sent(". seq=100 ack=301") // SEQ=SND.NXT-1, no data
	c.peer(pkt(".", 301, 101))  // answered
	c.advanceTo(at(7200 + 60))
	c.nothing()
	c.advanceTo(at(7200 + 7200))
	c.sent(". seq=100 ack=301")
	// Unanswered: more probes, then the connection is dead (MUST-29).
	c.advanceTo(at(14400 + 60))
	c.sent(". seq=100 ack=301")
	c.state(Established)
	c.advanceTo(at(14400 + 120))
	c.sent(". seq=100 ack=301")
	c.advanceTo(at(14400 + 180))
	c.sent("R. seq=101 ack=301")
	c.state(Closed)
	c.notes(NoteTimedOut)
}

func TestKeepaliveNotWhileDataOutstanding(t *testing.T) {
	// MUST-26.
	c := established(t, Config{Keepalive: true, KeepaliveIdle: time.Minute, R2: time.Hour})
	c.user(Send(10))
	c.clear()
	c.advanceTo(at(60))
	for _, a := range c.takeSent() {
		require.NotEqual(t, Seq(100), a.Seg.Seq, "no keep-alive with data outstanding")
	}
}

func TestRTTEstimator(t *testing.T) {
	// RFC6298 2.2, 2.3, 2.4, 4.
	var tcb TCB
	tcb.cfg = defaultSettings
	tcb.cfg.minRTO = 0
	tcb.rttSample(100 * time.Millisecond)
	require.Equal(t, uint32(100_000), tcb.srtt)
	require.Equal(t, uint32(50_000), tcb.rttvar)
	require.Equal(t, uint32(300_000), tcb.rto)
	tcb.rttSample(200 * time.Millisecond)
	require.Equal(t, uint32(62_500), tcb.rttvar)
	require.Equal(t, uint32(112_500), tcb.srtt)

	tcb = TCB{cfg: defaultSettings}
	for range 50 {
		tcb.rttSample(10 * time.Millisecond)
	}
	require.Equal(t, uint32(1_000_000), tcb.rto, "rounded up to the 1 s minimum")
	tcb.cfg.minRTO = 0
	for range 100 {
		tcb.rttSample(10 * time.Millisecond)
	}
	require.Zero(t, tcb.rttvar)
	require.Equal(t, uint32(10_000+1_000), tcb.rto, "RTTVAR 0: SRTT+G")
}

func TestMinRTOOnVariance(t *testing.T) {
	// Config.MinRTOOnVariance: the floor applies to 4*RTTVAR, so a steady
	// 100 ms path gets SRTT + MinRTO, as Linux's estimator gives; RFC
	// 6298 section 2.4's floor applies to the sum.
	for _, tc := range []struct {
		onVar bool
		rto   time.Duration
	}{{false, 200 * time.Millisecond}, {true, 300 * time.Millisecond}} {
		tcb, err := NewTCB(Config{MinRTO: 200 * time.Millisecond, MinRTOOnVariance: tc.onVar})
		require.NoError(t, err)
		for range 100 {
			tcb.rttSample(100 * time.Millisecond)
		}
		require.Equal(t, tc.rto, tcb.rtoDur(), "MinRTOOnVariance %v", tc.onVar)
	}
}

func TestKarn(t *testing.T) {
	// MUST-18: no sample from a retransmitted segment.
	c := established(t, Config{})
	srtt := c.tcb.srtt // from the handshake
	c.user(Send(10))
	c.advanceTo(at(1))
	c.peer(pkt(".", 301, 111))
	require.Equal(t, srtt, c.tcb.srtt, "no sample from the retransmitted segment")
	c.user(Send(10))
	c.advanceTo(at(1.2))
	c.peer(pkt(".", 301, 121))
	require.NotEqual(t, srtt, c.tcb.srtt, "a fresh segment gives a sample")
}

func TestMaxRTOCap(t *testing.T) {
	// RFC6298 2.5.
	c := established(t, Config{R2: time.Hour})
	c.user(Send(10))
	for range 12 {
		d, _ := c.tcb.NextDeadline()
		c.advanceTo(d)
	}
	require.Equal(t, uint32(60_000_000), c.tcb.rto)
	var cfg Config
	cfg.MaxRTO = 30 * time.Second
	require.ErrorIs(t, cfg.Validate(), ErrConfigMaxRTO)
	cfg = Config{SynR2: time.Minute}
	require.ErrorIs(t, cfg.Validate(), ErrConfigSynR2)
	cfg = Config{R1: 300}
	require.ErrorIs(t, cfg.Validate(), ErrConfigRange)
	cfg = Config{MSL: -1}
	require.ErrorIs(t, cfg.Validate(), ErrConfigRange)
	cfg = Config{MSS: 10}
	require.ErrorIs(t, cfg.Validate(), ErrConfigRange)
	_, err := NewTCB(Config{MaxRTO: time.Second})
	require.Error(t, err)
}

func TestNextDeadline(t *testing.T) {
	var tcb TCB
	_, ok := tcb.NextDeadline()
	require.False(t, ok)
	tcb.timers[TimerKeepalive] = 50
	tcb.timers[TimerRetransmit] = 70
	d, ok := tcb.NextDeadline()
	require.True(t, ok)
	require.Equal(t, Time(50), d)
	_, ok = tcb.Deadline(numTimers)
	require.False(t, ok)
	require.Equal(t, "delayed-ack", TimerDelayedACK.String())
	require.Equal(t, "timer(9)", TimerKind(9).String())

	// Against a scan of the slots, for every mix of stopped and running
	// slots, the earliest in each place, and the extreme deadlines.
	values := []Time{0, 1, 2, 50, 1 << 40, 1<<63 - 1}
	for _, a := range values {
		for _, b := range values {
			for _, c := range values {
				tcb.timers = [numSlots]Time{a, b, c}
				var want Time
				for _, d := range tcb.timers {
					if d != 0 && (want == 0 || d < want) {
						want = d
					}
				}
				d, ok := tcb.NextDeadline()
				require.Equal(t, want != 0, ok, "%v", tcb.timers)
				require.Equal(t, want, d, "%v", tcb.timers)
			}
		}
	}
}

func TestKeepAlivePerConnection(t *testing.T) {
	// MUST-24: keep-alives turned on and off per connection, with the idle
	// time counted from the last segment received.
	c := established(t, Config{})
	c.advanceTo(at(30))
	c.user(SetKeepAlive(time.Minute))
	// The settings are those of a Config asking for the same, down to
	// the bits derived from them (noteACKWork).
	compiled := func(cfg Config) settings {
		s, err := cfg.compile()
		require.NoError(t, err)
		return s
	}
	require.Equal(t, compiled(Config{Keepalive: true, KeepaliveIdle: time.Minute}), c.tcb.cfg)
	c.timer(TimerKeepalive, at(60))
	c.advanceTo(at(60))
	c.sent(". seq=100 ack=301")
	c.peer(pkt(".", 301, 101))
	c.user(SetKeepAlive(0))
	require.Equal(t, compiled(Config{KeepaliveIdle: time.Minute}), c.tcb.cfg)
	c.advance(10 * time.Hour)
	c.nothing()
	// While data is outstanding the user timeout keeps the slot; the
	// keep-alive starts once everything is acknowledged (MUST-26).
	c = established(t, Config{UserTimeout: time.Hour})
	c.user(Send(10))
	c.clear()
	c.user(SetKeepAlive(time.Minute))
	require.Equal(t, compiled(Config{UserTimeout: time.Hour, Keepalive: true, KeepaliveIdle: time.Minute}), c.tcb.cfg)
	_, running := c.tcb.Deadline(TimerKeepalive)
	require.False(t, running)
	c.peer(pkt(".", 301, 111))
	c.timer(TimerKeepalive, c.now.Add(time.Minute))
	require.Equal(t, uint32(32767), SetKeepAlive(100*time.Hour).N)
	require.Equal(t, uint32(1), SetKeepAlive(time.Millisecond).N)
}

func TestTimerActionsOnlyWhenAsked(t *testing.T) {
	// Without Config.TimerActions, Step reports no timer changes; the
	// deadlines are still kept, and NextDeadline says the next one.
	c := established(t, Config{})
	c.user(Send(100))
	require.Empty(t, c.take(ActTimer))
	d, ok := c.tcb.NextDeadline()
	require.True(t, ok)
	c.timer(TimerRetransmit, d)
	c = established(t, Config{TimerActions: true})
	c.user(Send(100))
	a := c.take(ActTimer)
	require.Len(t, a, 1)
	require.Equal(t, TimerRetransmit, a[0].Timer)
	require.Equal(t, d, a[0].Deadline)
}

// TestTimerActionsChangeOnlyTheActions steps two copies of a connection
// through the same random events, one with Config.TimerActions and one
// without: the TCBs must stay equal apart from that setting, the actions
// equal apart from ActTimer, and the ActTimer actions, carried out on a
// table of deadlines from which a Tick takes those that fired, must give
// the TCB's own deadlines.
func TestTimerActionsChangeOnlyTheActions(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{TailLossProbe: rapid.Bool().Draw(rt, "tlp"), PRR: rapid.Bool().Draw(rt, "prr"),
			FinWait2Timeout: time.Duration(rapid.SampledFrom([]int{0, 0, 30}).Draw(rt, "fw2")) * time.Second,
			UserTimeout:     time.Duration(rapid.SampledFrom([]int{0, 0, 20}).Draw(rt, "uto")) * time.Second,
			Keepalive:       rapid.Bool().Draw(rt, "keepalive")}
		var c *conn
		if rapid.IntRange(0, 3).Draw(rt, "opts") == 0 {
			c = negotiated(rt, cfg, wsopt(7), tsopt(5000, 100), sackOK())
		} else {
			f := fixtures[rapid.IntRange(0, len(fixtures)-1).Draw(rt, "fixture")]
			c = f.make(rt, cfg)
		}
		quiet := c.tcb
		loud := quiet
		loud.cfg.more |= optTimerActions
		// The deadlines the host learns from loud's ActTimer actions,
		// starting from the ones it has.
		var known [numTimers]Time
		for k := range TimerKind(numTimers) {
			known[k], _ = loud.Deadline(k)
		}
		now := c.now
		for range rapid.IntRange(1, 60).Draw(rt, "steps") {
			var seg Segment
			ev := drawEvent(rt, &quiet, &seg)
			if ev.Kind == EvTick {
				if d, ok := quiet.NextDeadline(); ok && rapid.Bool().Draw(rt, "jump") {
					now = max(now, d)
				} else {
					now = now.Add(time.Duration(rapid.IntRange(0, 5000).Draw(rt, "ms")) * time.Millisecond)
				}
			}
			if ev.Kind == EvTick {
				// A host's timer that fires is gone, as a time.Timer
				// is: the TCB reports only what it arms again.
				for k := range known {
					if known[k] != 0 && known[k] <= now {
						known[k] = 0
					}
				}
			}
			outQ, errQ := quiet.Step(ev, now, nil)
			outL, errL := loud.Step(ev, now, nil)
			require.Equal(rt, errQ, errL)
			var others []Action
			for _, a := range outL {
				if a.Kind != ActTimer {
					others = append(others, a)
					continue
				}
				known[a.Timer] = a.Deadline // zero: stopped
			}
			require.Equal(rt, outQ, others, "after %v", ev.Kind)
			same := loud
			same.cfg.more &^= optTimerActions
			require.Equal(rt, quiet, same, "after %v", ev.Kind)
			for k := range TimerKind(numTimers) {
				d, _ := loud.Deadline(k)
				require.Equal(rt, d, known[k], "timer %v after %v", k, ev.Kind)
			}
		}
	})
}

func TestRTTSampleCappedAtMaxRTO(t *testing.T) {
	// RFC 6298 section 2.5: the RTO computed from a first sample R is
	// R + 4*R/2 = 3R, then held to [MinRTO, MaxRTO].
	for _, tc := range []struct {
		maxRTO time.Duration
		sample time.Duration
		want   time.Duration
	}{
		{0, 10 * time.Second, 30 * time.Second},
		{0, 20 * time.Second, 60 * time.Second},
		{0, 25 * time.Second, 60 * time.Second},
		{90 * time.Second, 25 * time.Second, 75 * time.Second},
		{90 * time.Second, 40 * time.Second, 90 * time.Second},
		{0, 100 * time.Millisecond, time.Second}, // MinRTO
	} {
		c := established(t, Config{MaxRTO: tc.maxRTO})
		c.tcb.flags &^= flagHaveRtt // the next sample is the first
		c.tcb.rttSampleUs(uint64(tc.sample / time.Microsecond))
		require.Equal(t, uint32(tc.want/time.Microsecond), c.tcb.rto, "MaxRTO %v, sample %v", tc.maxRTO, tc.sample)
	}
}

func TestRTTSampleLongRTTs(t *testing.T) {
	// RFC 6298 section 2, computed in 64 bits: samples of many minutes,
	// possible with a raised MaxRTO, give SRTT, RTTVAR and RTO exactly.
	c := established(t, Config{MaxRTO: 9 * time.Hour})
	c.tcb.flags &^= flagHaveRtt // the next sample is the first
	var srtt, rttvar int64
	first := true
	const maxSample = int64(1 << 31) // µs, the longest sample kept
	for i, s := range []time.Duration{
		700 * time.Second, 1200 * time.Second, 1200 * time.Second,
		time.Microsecond, 2200 * time.Second, time.Microsecond, 2200 * time.Second,
		time.Microsecond, 2200 * time.Second, 1500 * time.Second, 10 * time.Millisecond,
	} {
		r := min(int64(s/time.Microsecond), maxSample)
		if first {
			srtt, rttvar, first = r, r/2, false
		} else {
			delta := srtt - r
			if delta < 0 {
				delta = -delta
			}
			rttvar = (3*rttvar + delta) / 4
			srtt = (7*srtt + r) / 8
		}
		rto := srtt + max(1000, 4*rttvar)
		rto = max(rto, int64(time.Second/time.Microsecond))
		rto = min(rto, int64(9*time.Hour/time.Microsecond))
		c.tcb.rttSampleUs(uint64(s / time.Microsecond))
		require.Equal(t, uint32(srtt), c.tcb.srtt, "SRTT after sample %d (%v)", i, s)
		require.Equal(t, uint32(rttvar), c.tcb.rttvar, "RTTVAR after sample %d (%v)", i, s)
		require.Equal(t, uint32(rto), c.tcb.rto, "RTO after sample %d (%v)", i, s)
	}
}

func TestZeroTCBKeepsSettingEvents(t *testing.T) {
	// The zero TCB is a CLOSED connection with the default Config: the
	// settings events stepped on it before Open or Listen hold as they do
	// on one NewTCB made.
	now := Time(0).Add(time.Second)
	for _, start := range []Event{Open(1000, 80, 100), ListenOn(80)} {
		for _, setting := range [][]Event{
			{SetNoDelay(true)},
			{SetKeepAlive(5 * time.Second)},
			{SetNoDelay(true), SetKeepAlive(7 * time.Second)},
			{SetKeepAlive(5 * time.Second), SetKeepAlive(0), SetNoDelay(true), SetNoDelay(false)},
		} {
			var zero TCB
			made, err := NewTCB(Config{})
			require.NoError(t, err)
			for _, ev := range append(setting, start) {
				outZ, errZ := zero.Step(ev, now, nil)
				outM, errM := made.Step(ev, now, nil)
				require.Equal(t, errM, errZ, "%v", ev.Kind)
				require.Equal(t, outM, outZ, "%v", ev.Kind)
			}
			require.Equal(t, made, zero, "settings %v, then %v", setting, start.Kind)
		}
	}
}
