package tcpstack

import (
	"encoding/binary"
	"slices"

	"github.com/tcpfsm/tcpfsm"
)

// twTable holds a Stack's TIME-WAIT records (RFC 9293 section 3.10.7.4):
// those of IPv4 connections in one part, keyed by their 12 bytes of
// addresses and ports, and the others in another, keyed by the whole
// tuple, so an IPv4 record takes 56 bytes where a tuple-keyed one takes
// 80.
type twTable struct {
	v4 twPart[key4]
	v6 twPart[tuple]
}

// key4 is an IPv4 connection's key: its addresses' 4 bytes and its ports.
type key4 struct {
	local, remote [4]byte
	lport, rport  uint16
}

// key4Of returns the key4 of k, an IPv4 key.
func key4Of(k *tuple) key4 {
	return key4{local: [4]byte(k.local[12:]), remote: [4]byte(k.remote[12:]), lport: k.lport, rport: k.rport}
}

// tuple returns the tuple k stands for.
func (k *key4) tuple() tuple {
	t := tuple{lport: k.lport, rport: k.rport, v4: true}
	t.local[10], t.local[11], t.remote[10], t.remote[11] = 0xff, 0xff, 0xff, 0xff // IPv4-mapped
	copy(t.local[12:], k.local[:])
	copy(t.remote[12:], k.remote[:])
	return t
}

// twHash is the hash of a key4: the tuple's, as connTable.hash gives it.
func (k key4) twHash(t *connTable) uint64 {
	le := binary.LittleEndian
	return t.hash4(uint64(le.Uint32(k.local[:]))|uint64(le.Uint32(k.remote[:]))<<32, ports(k.lport, k.rport))
}

// twHash is the hash of a tuple.
func (k tuple) twHash(t *connTable) uint64 { return t.hash(&k) }

// twKey is what a twPart keys its records by.
type twKey interface {
	comparable
	twHash(*connTable) uint64
}

// init sets the table that hashes the keys (a concrete call, so keys
// looked up stay on the stack).
func (t *twTable) init(keys *connTable) { t.v4.keys, t.v6.keys = keys, keys }

func (t *twTable) len() int { return t.v4.n + t.v6.n }

// get returns k's record.
func (t *twTable) get(k *tuple) (tcpfsm.TimeWaitRecord, bool) {
	if k.v4 {
		k4 := key4Of(k)
		return t.v4.get(&k4)
	}
	return t.v6.get(k)
}

// put adds or replaces k's record and queues its deadline.
func (t *twTable) put(k tuple, r tcpfsm.TimeWaitRecord) {
	if k.v4 {
		t.v4.put(key4Of(&k), r)
		return
	}
	t.v6.put(k, r)
}

// del removes k's record.
func (t *twTable) del(k *tuple) {
	if k.v4 {
		k4 := key4Of(k)
		t.v4.del(&k4)
		return
	}
	t.v6.del(k)
}

// next returns the earliest deadline.
func (t *twTable) next() (tcpfsm.Time, bool) {
	if t.v6.n == 0 {
		return t.v4.next()
	}
	d4, ok4 := t.v4.next()
	d6, ok6 := t.v6.next()
	if !ok4 || ok6 && d6 < d4 {
		return d6, ok6
	}
	return d4, true
}

// expire deletes every record whose deadline is at or before now.
func (t *twTable) expire(now tcpfsm.Time) {
	if t.v4.n > 0 {
		t.v4.expire(now)
	}
	if t.v6.n > 0 {
		t.v6.expire(now)
	}
}

// each calls yield for every record held, until it returns false.
func (t *twTable) each(yield func(k *tuple, r *tcpfsm.TimeWaitRecord) bool) bool {
	return t.v4.each(func(k *key4, r *tcpfsm.TimeWaitRecord) bool {
		kt := k.tuple()
		return yield(&kt, r)
	}) && t.v6.each(yield)
}

// twPart holds TIME-WAIT records keyed by K in flat slices with no
// pointers, so the garbage collector never scans them and the memory
// goes back as they expire, which a Go map does not do:
//
//   - slots holds the records; a record keeps its slot while it lives, so
//     the expiry queue can name it by index. Freed slots are reused.
//   - index is an open-addressing table (linear probing, at most half
//     full) from the key's hash to slot+1, 0 for empty.
//   - queue lists (deadline, slot) in the order the records expire. A
//     record whose deadline moves is queued again, and its older entry
//     goes stale: an entry is live while its slot holds a record with
//     that deadline.
//
// An IPv4 record costs about 90 bytes: its slot (56), its share of the
// index (at most 8) and its queue entry (16), with the slack of growing
// slices. When the records fall to an eighth of the slots, the part is
// rebuilt at its new size.
type twPart[K twKey] struct {
	slots []twSlot[K]
	free  []uint32
	index []uint32
	queue fifo[twEntry]
	n     int
	keys  *connTable
}

// twSlot is one record with its key.
type twSlot[K twKey] struct {
	key  K
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

// find returns the slot of k's record and its place in the index, or
// ok false with the place where it would go.
func (t *twPart[K]) find(k *K) (slot uint32, pos int, ok bool) {
	if len(t.index) == 0 {
		return 0, 0, false
	}
	mask := len(t.index) - 1
	for i := int((*k).twHash(t.keys)) & mask; ; i = (i + 1) & mask {
		v := t.index[i]
		if v == 0 {
			return 0, i, false
		}
		if t.slots[v-1].key == *k {
			return v - 1, i, true
		}
	}
}

// get returns k's record.
func (t *twPart[K]) get(k *K) (tcpfsm.TimeWaitRecord, bool) {
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
func (t *twPart[K]) put(k K, r tcpfsm.TimeWaitRecord) {
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
		t.slots = append(t.slots, twSlot[K]{})
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
func (t *twPart[K]) enqueue(e twEntry) {
	q := &t.queue
	q.push(e)
	for i := len(q.q) - 1; i > q.head && q.q[i-1].at > q.q[i].at; i-- {
		q.q[i-1], q.q[i] = q.q[i], q.q[i-1]
	}
}

// del removes k's record.
func (t *twPart[K]) del(k *K) {
	s, pos, ok := t.find(k)
	if !ok {
		return
	}
	t.removeAt(s, pos)
}

// removeAt frees slot s, found at pos in the index, closing the gap in
// its probe run (backward-shift deletion) so lookups need no tombstones.
func (t *twPart[K]) removeAt(s uint32, pos int) {
	t.slots[s] = twSlot[K]{}
	t.free = append(t.free, s)
	t.n--
	mask := len(t.index) - 1
	hole := pos
	for i := (pos + 1) & mask; t.index[i] != 0; i = (i + 1) & mask {
		home := int(t.slots[t.index[i]-1].key.twHash(t.keys)) & mask
		// Move the entry into the hole if its home is not between the
		// hole and it (cyclically).
		if (i-home)&mask >= (i-hole)&mask {
			t.index[hole] = t.index[i]
			hole = i
		}
	}
	t.index[hole] = 0
	if t.n == 0 && len(t.index) > minTWIndex {
		*t = twPart[K]{keys: t.keys} // all gone: give everything back
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
func (t *twPart[K]) live(e twEntry) bool {
	return int(e.slot) < len(t.slots) && t.slots[e.slot].used && t.slots[e.slot].rec.Deadline() == e.at
}

// next returns the earliest deadline, dropping stale entries first.
func (t *twPart[K]) next() (tcpfsm.Time, bool) {
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
func (t *twPart[K]) expire(now tcpfsm.Time) {
	for t.queue.len() > 0 && t.queue.front().at <= now {
		e := t.queue.pop()
		if t.live(e) {
			t.del(&t.slots[e.slot].key)
		}
	}
}

// resize rebuilds the index with size places (a power of two).
func (t *twPart[K]) resize(size int) {
	t.index = make([]uint32, size)
	mask := size - 1
	for s := range t.slots {
		if !t.slots[s].used {
			continue
		}
		i := int(t.slots[s].key.twHash(t.keys)) & mask
		for t.index[i] != 0 {
			i = (i + 1) & mask
		}
		t.index[i] = uint32(s) + 1
	}
}

// compact moves the records to the front of new, smaller slices in
// deadline order, and rebuilds the index and the queue for them.
func (t *twPart[K]) compact() {
	slots := make([]twSlot[K], 0, t.n)
	for _, s := range t.slots {
		if s.used {
			slots = append(slots, s)
		}
	}
	slices.SortFunc(slots, func(a, b twSlot[K]) int {
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
func (t *twPart[K]) each(yield func(k *K, r *tcpfsm.TimeWaitRecord) bool) bool {
	for i := range t.slots {
		if sl := &t.slots[i]; sl.used && !yield(&sl.key, &sl.rec) {
			return false
		}
	}
	return true
}
