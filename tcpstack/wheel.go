package tcpstack

import (
	"math/bits"

	"github.com/tcpfsm/tcpfsm"
)

// wheel keeps a Stack's connection deadlines in a hierarchical timing
// wheel (Varghese and Lauck's scheme 7, laid out as Linux's and tokio's
// timer wheels are): arming a deadline, stopping it and firing it each
// cost O(1), where a heap costs O(log n).
//
// Time is cut into ticks of 2^wheelTickShift nanoseconds (about 1 ms).
// Level l has 64 slots of 64^l ticks each; a deadline sits at the level of
// the highest 6-bit group in which its tick differs from the wheel's
// current tick cur, in the slot its tick has in that group. So every
// deadline at level l is later than every deadline at the levels below,
// and within a level the slots run in time order without wrapping: the
// earliest deadline is in the first occupied slot of the lowest occupied
// level, which a bit scan of one word per level finds. A slot of level 0
// holds deadlines of one tick; nextDeadline takes the least of them, so it
// is exact to the nanosecond. As cur reaches a slot of a higher level, its
// deadlines move down to the levels below (each deadline moves at most
// once per level, eight times in all).
//
// Stopping a deadline does not look for its entry: the endpoint's timerAt
// changes and the entry goes stale (timerEntry.live); stale entries move
// down with the live ones (telling them apart costs a load from the
// endpoint) and are dropped when their slot of level 0 is reached, or
// when nextDeadline finds a slot of nothing else, and all of them are
// swept once they outnumber the live ones, so the wheel stays within a
// constant factor of the armed connections.
type wheel struct {
	slots    [wheelLevels][wheelSlots][]timerEntry
	occupied [wheelLevels]uint64 // bit i: slots[l][i] is not empty
	cur      int64               // ticks before cur have fired; every entry's tick is cur or later
	n        int                 // entries held, live or stale
	later    []timerEntry        // entries of the current tick not due yet, during expire
	expiring bool                // in expire, whose slot sweepStale must not rearrange
	free     [][]timerEntry      // empty slices of emptied slots, for slots that fill
	kept     int                 // their capacity, in entries

	// The earliest live deadline, while known: arming updates it, and
	// stopping or firing the entry that holds it forgets it.
	min            tcpfsm.Time
	minOK, minKnow bool
}

const (
	wheelTickShift = 20 // a tick is 2^20 ns, about 1.05 ms
	wheelBits      = 6
	wheelSlots     = 1 << wheelBits
	// wheelLevels covers every tick of a non-negative tcpfsm.Time:
	// 8*6 = 48 bits >= 63-20.
	wheelLevels = 8
	// maxKept bounds the capacity, in entries, of the slices of emptied
	// slots kept for reuse, unless the wheel holds more entries than
	// that: then they may keep as many as it holds. So a steady load
	// allocates nothing, and a burst's memory goes back.
	maxKept = 4096
)

// timerEntry is a deadline of an endpoint.
type timerEntry struct {
	at tcpfsm.Time
	ep *Endpoint
}

// live reports whether the entry still stands for its endpoint's deadline.
func (t timerEntry) live() bool { return t.ep.is(epOwned) && t.ep.timerAt == t.at }

// levelOf[n] is the level of a tick whose highest bit differing from the
// current tick is bit n-1 (n = 0: none differs, level 0).
var levelOf = func() (l [65]uint8) {
	for n := 1; n < len(l); n++ {
		l[n] = uint8((n - 1) / wheelBits)
	}
	return l
}()

// tickOf returns the tick of time t.
func tickOf(t tcpfsm.Time) int64 { return max(int64(t), 0) >> wheelTickShift }

// place puts x in its slot for the current tick, and counts it. A
// deadline already past goes in the current tick's slot, to fire at the
// next expire.
func (w *wheel) place(x timerEntry) {
	w.n++
	t := max(tickOf(x.at), w.cur)
	lvl := int(levelOf[bits.Len64(uint64(t^w.cur))]) & (wheelLevels - 1)
	i := t >> (lvl * wheelBits) & (wheelSlots - 1)
	if w.occupied[lvl]&(1<<i) == 0 {
		w.occupied[lvl] |= 1 << i
		if k := len(w.free) - 1; k >= 0 { // an empty slot's slice is nil
			w.slots[lvl][i] = w.free[k]
			w.kept -= cap(w.free[k])
			w.free[k] = nil
			w.free = w.free[:k]
		}
	}
	w.slots[lvl][i] = append(w.slots[lvl][i], x)
}

// release empties slot i of level lvl, whose entries are cleared, and
// keeps its slice for reuse within the bound of maxKept.
func (w *wheel) release(lvl, i int) {
	w.occupied[lvl] &^= 1 << i
	b := w.slots[lvl][i][:0]
	w.slots[lvl][i] = nil
	if c := cap(b); c > 0 && w.kept+c <= max(maxKept, w.n) {
		w.free = append(w.free, b)
		w.kept += c
	}
}

// Arming an endpoint's deadline is place, then track (which inlines),
// with no function around the two: arming is the most frequent change a
// Stack makes to the wheel.

// track notes that a deadline at `at` was placed for an endpoint (whose
// timerAt is at), leaving armed live ones, this one included: the
// earliest, if known, may now be this one.
func (w *wheel) track(at tcpfsm.Time, armed int) {
	if armed == 1 || w.minKnow && (!w.minOK || at < w.min) {
		w.min, w.minOK, w.minKnow = at, true, true
	}
}

// stop notes that a deadline at `at` went stale (its endpoint's timerAt
// changed), leaving armed live ones; its entry stays until its slot is
// reached or swept.
func (w *wheel) stop(at tcpfsm.Time, armed int) {
	switch {
	case armed == 0:
		w.min, w.minOK, w.minKnow = 0, false, true
	case w.minOK && at == w.min:
		w.minKnow = false
	}
}

// first returns the first occupied slot: at the lowest occupied level,
// the lowest occupied index.
func (w *wheel) first() (lvl, i int, ok bool) {
	for lvl := range w.occupied {
		if o := w.occupied[lvl]; o != 0 {
			return lvl, bits.TrailingZeros64(o), true
		}
	}
	return 0, 0, false
}

// slotStart returns the first tick of slot i of level lvl, in the span
// of cur's slot one level up.
func (w *wheel) slotStart(lvl, i int) int64 {
	shift := lvl * wheelBits
	return w.cur&^(1<<(shift+wheelBits)-1) | int64(i)<<shift
}

// nextDeadline returns the earliest live deadline; armed counts the live
// ones. With none, the stale entries are left for sweep.
func (w *wheel) nextDeadline(armed int) (tcpfsm.Time, bool) {
	if armed == 0 {
		return 0, false
	}
	if !w.minKnow {
		w.findMin()
	}
	return w.min, w.minOK
}

// findMin finds the earliest live deadline, emptying the first slots if
// they hold only stale entries.
func (w *wheel) findMin() {
	for !w.minKnow {
		lvl, i, ok := w.first()
		if !ok {
			w.min, w.minOK, w.minKnow = 0, false, true
			break
		}
		b := w.slots[lvl][i]
		var m tcpfsm.Time
		found := false
		for _, x := range b {
			if x.live() && (!found || x.at < m) {
				m, found = x.at, true
			}
		}
		if !found {
			w.n -= len(b)
			clear(b)
			w.release(lvl, i)
			continue
		}
		w.min, w.minOK, w.minKnow = m, true, true
	}
}

// expire calls fire for every live entry due at now (at or before it)
// and moves the entries of the slots it passes down toward level 0. An
// entry fire arms is fired in the same call if it is due.
func (w *wheel) expire(now tcpfsm.Time, fire func(timerEntry)) {
	target := tickOf(now)
	w.minKnow = false
	w.expiring = true
	for {
		lvl, i, ok := w.first()
		if !ok {
			break
		}
		start := w.slotStart(lvl, i)
		if start > target {
			break
		}
		w.cur = max(w.cur, start)
		// By index: fire may append to this very slot (a deadline of
		// the current tick), and the loop then takes that entry too.
		slot := &w.slots[lvl][i]
		for j := 0; j < len(*slot); j++ {
			x := (*slot)[j]
			switch {
			case lvl > 0:
				// Down to a lower level, never this slot; stale or not,
				// as telling would cost a load from the endpoint.
				w.place(x)
			case !x.live():
			case x.at > now:
				w.later = append(w.later, x) // this tick, but not yet
			default:
				fire(x)
			}
		}
		w.n -= len(*slot)
		clear(*slot)
		w.release(lvl, i)
	}
	w.expiring = false
	w.cur = max(w.cur, target)
	for j, x := range w.later {
		w.place(x)
		w.later[j] = timerEntry{}
	}
	w.later = w.later[:0]
	if cap(w.later) > max(maxKept, w.n) {
		w.later = nil
	}
	w.minKnow = false // the earliest may have fired
}

// sweep drops every stale entry once they outnumber the live ones
// (armed), and gives back the memory of large slots that are mostly
// unused. Small enough to inline: most calls find too few to sweep. Not
// while expire walks a slot: a fire that arms a deadline would have the
// slot compacted under the walk, which would then skip entries and clear
// live ones it had not reached; the next arming after expire sweeps.
func (w *wheel) sweep(armed int) {
	if w.n >= 2*armed+64 && !w.expiring {
		w.sweepStale()
	}
}

// sweepStale is sweep when the stale entries are many.
func (w *wheel) sweepStale() {
	w.n = 0
	for lvl := range w.occupied {
		for o := w.occupied[lvl]; o != 0; o &= o - 1 {
			i := bits.TrailingZeros64(o)
			b := w.slots[lvl][i]
			live := b[:0]
			for _, x := range b {
				if x.live() {
					live = append(live, x)
				}
			}
			clear(b[len(live):])
			if len(live) > 0 && cap(live) > 4*len(live)+maxKept/8 {
				live = append([]timerEntry(nil), live...)
			}
			w.slots[lvl][i] = live
			w.n += len(live)
			if len(live) == 0 {
				w.release(lvl, i)
			}
		}
	}
}
