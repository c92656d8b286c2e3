package tcpstack

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tcpfsm/tcpfsm"
)

// entries returns every entry the wheel holds, live or stale.
func (w *wheel) entries() []timerEntry {
	var all []timerEntry
	for lvl := range w.slots {
		for i := range w.slots[lvl] {
			all = append(all, w.slots[lvl][i]...)
		}
	}
	return all
}

// check reports whether the occupied bits match the slots, the count
// matches the entries, and every entry sits where place would put it.
func (w *wheel) check(t *testing.T) {
	t.Helper()
	n := 0
	for lvl := range w.slots {
		for i, b := range w.slots[lvl] {
			n += len(b)
			require.Equal(t, len(b) > 0, w.occupied[lvl]&(1<<i) != 0, "level %d slot %d: occupied bit", lvl, i)
			for _, x := range b {
				tk := max(tickOf(x.at), w.cur)
				if x.live() {
					require.GreaterOrEqual(t, tk, w.cur)
				}
				if tk < w.cur {
					continue // a stale entry of a tick passed in its slot's span
				}
				wl := 0
				if d := uint64(tk ^ w.cur); d != 0 {
					wl = (63 - bits.LeadingZeros64(d)) / wheelBits
				}
				if x.live() && tickOf(x.at) >= w.cur {
					require.Equal(t, wl, lvl, "entry at %v (tick %d, cur %d)", x.at, tk, w.cur)
				}
			}
		}
	}
	require.Equal(t, n, w.n, "entry count")
}

// wheelModel drives a wheel as a Stack does, against a map of each
// endpoint's deadline.
type wheelModel struct {
	w     wheel
	eps   []*Endpoint
	armed int
	now   tcpfsm.Time
	fired map[*Endpoint]tcpfsm.Time
}

func newWheelModel(n int) *wheelModel {
	m := &wheelModel{fired: map[*Endpoint]tcpfsm.Time{}}
	for range n {
		m.eps = append(m.eps, &Endpoint{bits: epOwned})
	}
	return m
}

// set gives e the deadline at, or none if at is 0.
func (m *wheelModel) set(e *Endpoint, at tcpfsm.Time) {
	switch {
	case at == e.timerAt:
	case at == 0:
		m.armed--
		m.w.stop(e.timerAt, m.armed)
		e.timerAt = 0
	default:
		if e.timerAt == 0 {
			m.armed++
		} else {
			m.w.stop(e.timerAt, m.armed-1)
		}
		e.timerAt = at
		m.w.sweep(m.armed)
		m.w.place(timerEntry{at: at, ep: e})
		m.w.track(at, m.armed)
	}
}

// want returns the earliest deadline of the model.
func (m *wheelModel) want() (tcpfsm.Time, bool) {
	var d tcpfsm.Time
	ok := false
	for _, e := range m.eps {
		if e.timerAt != 0 && (!ok || e.timerAt < d) {
			d, ok = e.timerAt, true
		}
	}
	return d, ok
}

func TestWheelMatchesModel(t *testing.T) {
	// Random deadlines from the past to days ahead, moved, stopped and
	// fired, and some armed again as they fire: nextDeadline is always
	// the exact earliest, and expire fires exactly the deadlines due,
	// once each.
	spans := []time.Duration{time.Microsecond, time.Millisecond, 70 * time.Millisecond,
		5 * time.Second, 5 * time.Minute, 6 * time.Hour, 30 * 24 * time.Hour}
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 1))
		m := newWheelModel(1 + r.IntN(300))
		m.now = tcpfsm.Time(r.Int64N(int64(time.Hour)))
		m.w.cur = tickOf(m.now) - r.Int64N(5000) // a wheel that has not ticked for a while
		for step := range 3000 {
			e := m.eps[r.IntN(len(m.eps))]
			switch op := r.IntN(10); {
			case op < 5:
				span := spans[r.IntN(len(spans))]
				at := m.now.Add(time.Duration(r.Int64N(int64(span))) - span/20)
				m.set(e, max(at, 1))
			case op < 6:
				m.set(e, 0)
			case op < 7:
				e.bits &^= epOwned // gone from the table
				if e.timerAt != 0 {
					m.armed--
					m.w.stop(e.timerAt, m.armed)
					e.timerAt = 0
				}
				e.bits |= epOwned // a new connection in its place
			default:
				want, ok := m.want()
				got, gotOK := m.w.nextDeadline(m.armed)
				require.Equal(t, ok, gotOK, "seed %d step %d", seed, step)
				require.Equal(t, want, got, "seed %d step %d", seed, step)
				if !ok {
					continue
				}
				// Sleep until the deadline, or wake early, or late.
				switch r.IntN(3) {
				case 0:
					m.now = max(m.now, got)
				case 1:
					m.now = max(m.now, got-tcpfsm.Time(r.Int64N(int64(time.Millisecond))))
				default:
					m.now = max(m.now, got+tcpfsm.Time(r.Int64N(int64(spans[r.IntN(len(spans))]))))
				}
				due := map[*Endpoint]tcpfsm.Time{}
				for _, e := range m.eps {
					if e.timerAt != 0 && e.timerAt <= m.now {
						due[e] = e.timerAt
					}
				}
				clear(m.fired)
				m.w.expire(m.now, func(x timerEntry) {
					_, again := m.fired[x.ep]
					require.False(t, again, "fired twice")
					require.LessOrEqual(t, x.at, m.now, "fired early")
					m.fired[x.ep] = x.at
					x.ep.timerAt = 0
					m.armed--
					if r.IntN(2) == 0 {
						// Armed again for later, as a retransmission
						// timer is: arming may sweep stale entries.
						m.set(x.ep, m.now.Add(time.Duration(1+r.Int64N(int64(time.Hour)))))
					}
				})
				require.Equal(t, due, m.fired, "seed %d step %d: fired", seed, step)
				if d, ok := m.w.nextDeadline(m.armed); ok {
					require.Greater(t, d, m.now)
				}
			}
			if step%100 == 0 {
				m.w.check(t)
			}
		}
		m.w.check(t)
	}
}

func TestWheelFiresWhatFiringArms(t *testing.T) {
	// A timer that, when it fires, arms another one already due fires it in
	// the same expire; one armed for later waits.
	m := newWheelModel(3)
	a, b, c := m.eps[0], m.eps[1], m.eps[2]
	m.now = tcpfsm.Time(time.Second)
	m.set(a, m.now.Add(time.Millisecond))
	m.now = m.now.Add(2 * time.Millisecond)
	var order []*Endpoint
	m.w.expire(m.now, func(x timerEntry) {
		order = append(order, x.ep)
		x.ep.timerAt = 0
		m.armed--
		if x.ep == a {
			m.set(b, m.now)                       // due now
			m.set(c, m.now.Add(time.Microsecond)) // in this tick, not due
		}
	})
	require.Equal(t, []*Endpoint{a, b}, order)
	d, ok := m.w.nextDeadline(m.armed)
	require.True(t, ok)
	require.Equal(t, m.now.Add(time.Microsecond), d)
}

func TestWheelSweepsStaleEntries(t *testing.T) {
	// Connections whose deadlines move leave stale entries; once they
	// outnumber the live ones they are swept, and a slot mostly emptied
	// gives its memory back.
	m := newWheelModel(20000)
	for round := range 5 {
		for i, e := range m.eps {
			m.set(e, tcpfsm.Time(time.Second)+tcpfsm.Time(round*100000+i))
		}
		require.LessOrEqual(t, m.w.n, 2*m.armed+64+1, "stale entries swept")
	}
	for _, e := range m.eps[1:] {
		m.set(e, 0)
	}
	m.set(m.eps[0], m.eps[0].timerAt+1) // the next arm sweeps
	require.Equal(t, 1, m.w.n, "only the live entry left")
	d, ok := m.w.nextDeadline(m.armed)
	require.True(t, ok)
	require.Equal(t, m.eps[0].timerAt, d)
	total := 0
	for lvl := range m.w.slots {
		for _, b := range m.w.slots[lvl] {
			total += cap(b)
		}
	}
	for _, b := range m.w.free {
		total += cap(b)
	}
	require.LessOrEqual(t, total, maxKept, "the slots' memory given back")
	m.w.check(t)
}

func TestWheelAllocatesNothing(t *testing.T) {
	// Arming, moving, stopping, finding the next deadline and firing, once
	// the slots have grown, allocate nothing.
	m := newWheelModel(64)
	fire := func(x timerEntry) {
		x.ep.timerAt = 0
		m.armed--
	}
	round := func() {
		for i, e := range m.eps {
			m.set(e, m.now.Add(time.Duration(i%8)*time.Millisecond+time.Second))
			m.set(e, m.now.Add(time.Duration(i%8)*time.Millisecond+200*time.Millisecond))
			if i%4 == 0 {
				m.set(e, 0)
			}
		}
		for {
			d, ok := m.w.nextDeadline(m.armed)
			if !ok {
				break
			}
			m.now = d
			m.w.expire(m.now, fire)
		}
	}
	for range 10 {
		round()
	}
	require.Zero(t, testing.AllocsPerRun(100, round))
}

// BenchmarkWheel moves one connection's deadline per op (an RTO restarted
// by an ACK), among n connections with deadlines, and every 64 ops moves
// the clock 100 µs, fires what is due and re-arms it, and asks for the
// next deadline: the cost per op should not grow with n.
func BenchmarkWheel(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			m := newWheelModel(n)
			r := rand.New(rand.NewPCG(1, 2))
			rto := func() time.Duration { return 200*time.Millisecond + time.Duration(r.Int64N(int64(time.Second))) }
			for _, e := range m.eps {
				m.set(e, m.now.Add(rto()))
			}
			fire := func(x timerEntry) {
				m.armed--
				x.ep.timerAt = 0
				m.set(x.ep, m.now.Add(rto()))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m.set(m.eps[i%n], m.now.Add(rto()))
				if i%64 == 63 {
					m.now = m.now.Add(100 * time.Microsecond)
					m.w.expire(m.now, fire)
					m.w.nextDeadline(m.armed)
				}
			}
		})
	}
}

func TestWheelArmingWhileExpiringLosesNothing(t *testing.T) {
	// A hundred deadlines due in one tick, and enough stale entries that
	// the next arming sweeps: each fire arms its endpoint again for later,
	// as a retransmission timer is, and every one of the hundred still
	// fires, once.
	m := newWheelModel(200)
	due, other := m.eps[:100], m.eps[100:]
	m.now = tcpfsm.Time(time.Second)
	at := m.now.Add(5 * time.Millisecond)
	for _, e := range due {
		m.set(e, at)
	}
	for _, e := range other {
		m.set(e, m.now.Add(time.Hour))
	}
	for _, e := range other {
		m.set(e, m.now.Add(2*time.Hour))
	}
	for _, e := range other {
		m.set(e, 0)
	}
	require.GreaterOrEqual(t, m.w.n, 2*m.armed+64, "the next arming sweeps")
	m.now = at
	fired := map[*Endpoint]int{}
	m.w.expire(m.now, func(x timerEntry) {
		fired[x.ep]++
		x.ep.timerAt = 0
		m.armed--
		m.set(x.ep, m.now.Add(time.Minute))
	})
	for i, e := range due {
		require.Equal(t, 1, fired[e], "deadline %d fired %d times", i, fired[e])
	}
	m.w.check(t)
}
