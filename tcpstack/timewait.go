package tcpstack

import (
	"encoding/binary"

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

// put adds or replaces k's record (see twPart.put).
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

// next returns the deadline of the record that ends first.
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

// expire deletes the records that end at or before now (see
// twPart.expire).
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
//   - ring holds the records in the order they were put, which is the
//     order they expire in: every record waits the same 2*MSL from a clock
//     that never goes back, and a record whose 2*MSL restarts is put
//     again at the end. The first count places from head are in use; a
//     place whose record was deleted stays empty until the head passes
//     it. So the ring is also the expiry queue.
//   - index is an open-addressing table (linear probing, at most half
//     full) from the key's hash to the record's place+1, 0 for empty.
//
// An IPv4 record costs about 78 bytes (at 60,000): its place (56), its
// share of the index (at most 8), and the ring's room to grow. When the ring fills it
// is rebuilt with the records alone, at one and a half times their number;
// when the records fall to an eighth of it, at its new size.
//
// A record put out of order (with a deadline earlier than the one before
// it: a connection that entered TIME-WAIT while its output waited) ends
// when the one before it does, a little later than its own deadline;
// TIME-WAIT lasts at least 2*MSL (RFC 9293 MUST-13), not exactly.
type twPart[K twKey] struct {
	ring        []twSlot[K]
	head, count int
	index       []uint32
	n           int // records held
	keys        *connTable
}

// twSlot is one record with its key.
type twSlot[K twKey] struct {
	key  K
	used bool
	rec  tcpfsm.TimeWaitRecord
}

// minTWIndex is the smallest index, and minTWRing the smallest ring, a
// part with records keeps.
const (
	minTWIndex = 64
	minTWRing  = 32
)

// at returns the place of the i-th slot from head.
func (t *twPart[K]) at(i int) int {
	if i += t.head; i >= len(t.ring) {
		i -= len(t.ring)
	}
	return i
}

// find returns the place of k's record and its place in the index, or
// ok false with the index place where it would go.
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
		if t.ring[v-1].key == *k {
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
	return t.ring[s].rec, true
}

// put adds or replaces k's record. A record whose deadline moved goes to
// the end of the ring.
func (t *twPart[K]) put(k K, r tcpfsm.TimeWaitRecord) {
	s, pos, ok := t.find(&k)
	if ok {
		if t.ring[s].rec.Deadline() == r.Deadline() {
			t.ring[s].rec = r
			return
		}
		t.removeAt(s, pos)
		pos = -1
	}
	if t.count == len(t.ring) {
		t.rebuild(max(minTWRing, t.n+t.n/2+1))
		pos = -1
	}
	if 2*(t.n+1) > len(t.index) {
		t.resize(max(minTWIndex, 2*len(t.index)))
		pos = -1
	}
	if pos < 0 {
		_, pos, _ = t.find(&k)
	}
	s = uint32(t.at(t.count))
	t.ring[s] = twSlot[K]{key: k, used: true, rec: r}
	t.count++
	t.index[pos] = s + 1
	t.n++
}

// del removes k's record.
func (t *twPart[K]) del(k *K) {
	s, pos, ok := t.find(k)
	if !ok {
		return
	}
	t.removeAt(s, pos)
}

// removeAt empties place s, found at pos in the index, closing the gap in
// its probe run (backward-shift deletion) so lookups need no tombstones.
func (t *twPart[K]) removeAt(s uint32, pos int) {
	t.ring[s] = twSlot[K]{}
	t.n--
	mask := len(t.index) - 1
	hole := pos
	for i := (pos + 1) & mask; t.index[i] != 0; i = (i + 1) & mask {
		home := int(t.ring[t.index[i]-1].key.twHash(t.keys)) & mask
		// Move the entry into the hole if its home is not between the
		// hole and it (cyclically).
		if (i-home)&mask >= (i-hole)&mask {
			t.index[hole] = t.index[i]
			hole = i
		}
	}
	t.index[hole] = 0
	t.trim()
	if t.n == 0 && len(t.index) > minTWIndex {
		*t = twPart[K]{keys: t.keys} // all gone: give everything back
	} else if t.n == 0 {
		// All gone from a small part: keep its slices for the next ones.
		// (The index is all zeros: each removal clears its place.)
		t.head, t.count = 0, 0
	} else if len(t.ring) > minTWRing && 8*t.n < len(t.ring) {
		t.rebuild(max(minTWRing, t.n+t.n/2+1))
	}
}

// trim moves the head past the empty places at the front.
func (t *twPart[K]) trim() {
	for t.count > 0 && !t.ring[t.head].used {
		if t.head++; t.head == len(t.ring) {
			t.head = 0
		}
		t.count--
	}
}

// next returns the deadline of the record that ends first.
func (t *twPart[K]) next() (tcpfsm.Time, bool) {
	if t.n == 0 {
		return 0, false
	}
	return t.ring[t.head].rec.Deadline(), true // trim keeps a record at the head
}

// expire deletes the records at the front of the ring whose deadline is at
// or before now.
func (t *twPart[K]) expire(now tcpfsm.Time) {
	for t.n > 0 {
		sl := &t.ring[t.head]
		if sl.rec.Deadline() > now {
			return
		}
		t.del(&sl.key)
	}
}

// rebuild moves the records, in order, to the front of a new ring of size
// places, and rebuilds the index for them.
func (t *twPart[K]) rebuild(size int) {
	ring := make([]twSlot[K], size)
	k := 0
	for i := range t.count {
		if sl := &t.ring[t.at(i)]; sl.used {
			ring[k] = *sl
			k++
		}
	}
	t.ring, t.head, t.count = ring, 0, k
	idx := minTWIndex
	for idx < 2*t.n {
		idx *= 2
	}
	t.resize(idx)
}

// resize rebuilds the index with size places (a power of two).
func (t *twPart[K]) resize(size int) {
	t.index = make([]uint32, size)
	mask := size - 1
	for j := range t.count {
		s := t.at(j)
		if !t.ring[s].used {
			continue
		}
		i := int(t.ring[s].key.twHash(t.keys)) & mask
		for t.index[i] != 0 {
			i = (i + 1) & mask
		}
		t.index[i] = uint32(s) + 1
	}
}

// each calls yield for every record held, until it returns false.
func (t *twPart[K]) each(yield func(k *K, r *tcpfsm.TimeWaitRecord) bool) bool {
	for i := range t.count {
		if sl := &t.ring[t.at(i)]; sl.used && !yield(&sl.key, &sl.rec) {
			return false
		}
	}
	return true
}
