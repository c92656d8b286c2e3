package tcpstack

import (
	"slices"

	"github.com/tcpfsm/tcpfsm"
)

// twTable holds a Stack's TIME-WAIT records (RFC 9293 section 3.10.7.4)
// in flat slices with no pointers, so the garbage collector never scans
// them and the memory goes back as they expire, which a Go map does not
// do:
//
//   - slots holds the records; a record keeps its slot while it lives, so
//     the expiry queue can name it by index. Freed slots are reused.
//   - index is an open-addressing table (linear probing, at most half
//     full) from the 4-tuple's hash to slot+1, 0 for empty.
//   - queue lists (deadline, slot) in the order the records expire. A
//     record whose deadline moves is queued again, and its older entry
//     goes stale: an entry is live while its slot holds a record with
//     that deadline.
//
// A record costs about 90 bytes: its slot (64), its share of the index
// (at most 8) and its queue entry (16). When the records fall to an
// eighth of the slots, the table is rebuilt at its new size.
type twTable struct {
	slots []twSlot
	free  []uint32
	index []uint32
	queue fifo[twEntry]
	n     int
	keys  *connTable // hashes the 4-tuples (a concrete call, so keys looked up stay on the stack)
}

// twSlot is one record with its key.
type twSlot struct {
	key  tuple
	used bool
	rec  tcpfsm.TimeWaitRecord
}

// twEntry is a deadline in the expiry queue.
type twEntry struct {
	at   tcpfsm.Time
	slot uint32
}

// minTWIndex is the smallest index a table with records keeps.
const minTWIndex = 64

func (t *twTable) len() int { return t.n }

// find returns the slot of k's record and its place in the index, or
// ok false with the place where it would go.
func (t *twTable) find(k *tuple) (slot uint32, pos int, ok bool) {
	if len(t.index) == 0 {
		return 0, 0, false
	}
	mask := len(t.index) - 1
	for i := int(t.keys.hash(k)) & mask; ; i = (i + 1) & mask {
		v := t.index[i]
		if v == 0 {
			return 0, i, false
		}
		if t.slots[v-1].key.equal(k) {
			return v - 1, i, true
		}
	}
}

// get returns k's record.
func (t *twTable) get(k *tuple) (tcpfsm.TimeWaitRecord, bool) {
	if t.n == 0 {
		return tcpfsm.TimeWaitRecord{}, false // an empty table may keep its index: no need to hash
	}
	s, _, ok := t.find(k)
	if !ok {
		return tcpfsm.TimeWaitRecord{}, false
	}
	return t.slots[s].rec, true
}

// put adds or replaces k's record and queues its deadline.
func (t *twTable) put(k tuple, r tcpfsm.TimeWaitRecord) {
	s, pos, ok := t.find(&k)
	if ok {
		t.slots[s].rec = r
		t.enqueue(twEntry{at: r.Deadline(), slot: s})
		return
	}
	if 2*(t.n+1) > len(t.index) {
		t.resize(max(minTWIndex, 2*len(t.index)))
		_, pos, _ = t.find(&k)
	}
	if f := len(t.free); f > 0 {
		s, t.free = t.free[f-1], t.free[:f-1]
	} else {
		s = uint32(len(t.slots))
		t.slots = append(t.slots, twSlot{})
	}
	sl := &t.slots[s]
	sl.key, sl.used, sl.rec = k, true, r
	t.index[pos] = s + 1
	t.n++
	t.enqueue(twEntry{at: r.Deadline(), slot: s})
}

// enqueue adds e to the queue in deadline order. Records wait the same
// 2*MSL from a clock that never goes back, so they come almost in order
// and a FIFO does a heap's work; the rare one earlier than the last (a
// connection that entered TIME-WAIT while its output waited) is moved
// into place.
func (t *twTable) enqueue(e twEntry) {
	q := &t.queue
	q.push(e)
	for i := len(q.q) - 1; i > q.head && q.q[i-1].at > q.q[i].at; i-- {
		q.q[i-1], q.q[i] = q.q[i], q.q[i-1]
	}
}

// del removes k's record.
func (t *twTable) del(k *tuple) {
	s, pos, ok := t.find(k)
	if !ok {
		return
	}
	t.removeAt(s, pos)
}

// removeAt frees slot s, found at pos in the index, closing the gap in
// its probe run (backward-shift deletion) so lookups need no tombstones.
func (t *twTable) removeAt(s uint32, pos int) {
	t.slots[s] = twSlot{}
	t.free = append(t.free, s)
	t.n--
	mask := len(t.index) - 1
	hole := pos
	for i := (pos + 1) & mask; t.index[i] != 0; i = (i + 1) & mask {
		home := int(t.keys.hash(&t.slots[t.index[i]-1].key)) & mask
		// Move the entry into the hole if its home is not between the
		// hole and it (cyclically).
		if (i-home)&mask >= (i-hole)&mask {
			t.index[hole] = t.index[i]
			hole = i
		}
	}
	t.index[hole] = 0
	if t.n == 0 && len(t.index) > minTWIndex {
		*t = twTable{keys: t.keys} // all gone: give everything back
	} else if t.n == 0 {
		// All gone from a small table: keep its slices for the next ones.
		// (The index is all zeros: each removal clears its place.)
		t.slots, t.free = t.slots[:0], t.free[:0]
		t.queue.q, t.queue.head = t.queue.q[:0], 0
	} else if len(t.index) > minTWIndex && 8*t.n < len(t.slots) {
		t.compact()
	}
}

// live reports whether e is its record's current deadline.
func (t *twTable) live(e twEntry) bool {
	return int(e.slot) < len(t.slots) && t.slots[e.slot].used && t.slots[e.slot].rec.Deadline() == e.at
}

// next returns the earliest deadline, dropping stale entries first.
func (t *twTable) next() (tcpfsm.Time, bool) {
	if t.n == 0 {
		return 0, false // and the queue is empty (removeAt)
	}
	for t.queue.len() > 0 && !t.live(t.queue.front()) {
		t.queue.pop()
	}
	if t.queue.len() == 0 {
		return 0, false
	}
	return t.queue.front().at, true
}

// expire deletes every record whose deadline is at or before now.
func (t *twTable) expire(now tcpfsm.Time) {
	for t.queue.len() > 0 && t.queue.front().at <= now {
		e := t.queue.pop()
		if t.live(e) {
			t.del(&t.slots[e.slot].key)
		}
	}
}

// resize rebuilds the index with size places (a power of two).
func (t *twTable) resize(size int) {
	t.index = make([]uint32, size)
	mask := size - 1
	for s := range t.slots {
		if !t.slots[s].used {
			continue
		}
		i := int(t.keys.hash(&t.slots[s].key)) & mask
		for t.index[i] != 0 {
			i = (i + 1) & mask
		}
		t.index[i] = uint32(s) + 1
	}
}

// compact moves the records to the front of new, smaller slices in
// deadline order, and rebuilds the index and the queue for them.
func (t *twTable) compact() {
	slots := make([]twSlot, 0, t.n)
	for _, s := range t.slots {
		if s.used {
			slots = append(slots, s)
		}
	}
	slices.SortFunc(slots, func(a, b twSlot) int {
		switch {
		case a.rec.Deadline() < b.rec.Deadline():
			return -1
		case a.rec.Deadline() > b.rec.Deadline():
			return 1
		}
		return 0
	})
	t.slots, t.free = slots, nil
	t.queue = fifo[twEntry]{q: make([]twEntry, len(slots))}
	for i := range slots {
		t.queue.q[i] = twEntry{at: slots[i].rec.Deadline(), slot: uint32(i)}
	}
	size := minTWIndex
	for size < 2*t.n {
		size *= 2
	}
	t.resize(size)
}

// each calls yield for every record held, until it returns false.
func (t *twTable) each(yield func(k *tuple, r *tcpfsm.TimeWaitRecord) bool) bool {
	for i := range t.slots {
		if sl := &t.slots[i]; sl.used && !yield(&sl.key, &sl.rec) {
			return false
		}
	}
	return true
}
