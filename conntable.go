package tcpfsm

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// connTable is a Stack's connection table: endpoints found by their
// tuple. It is an open-addressing hash table with linear probing whose
// slots hold only the endpoint pointers, since each endpoint carries its
// own key. With the load kept between 3/16 and 3/4, an entry costs 11 to
// 43 bytes, where a Go map[tuple]*Endpoint costs about 117 at a million
// entries (its 48-byte slots, control bytes and growth headroom); this is
// most of what brings an idle connection under 512 bytes (issue 5).
//
// The hash is keyed with a random seed per table, so a peer that picks
// addresses and ports cannot aim its connections at one probe chain.
// Growing or shrinking rehashes every entry at once: O(n), about 30 ms at
// a million connections on the reference machine, amortised over the n/2
// insertions or deletions that led to it.
type connTable struct {
	slots []*Endpoint // nil, or a power of two long
	n     int         // endpoints held
	seed  [5]uint64
}

// minSlots is the smallest table.
const minSlots = 16

// newConnTable returns an empty table with a fresh random seed.
func newConnTable() connTable {
	var t connTable
	s := maphash.MakeSeed()
	for i := range t.seed {
		// Odd, so no seed word can zero a product.
		t.seed[i] = maphash.Comparable(s, i) | 1
	}
	return t
}

// len returns the number of endpoints held.
func (t *connTable) len() int { return t.n }

// hash mixes the 37 bytes of k in the folded-multiply style of wyhash:
// each pair of key words is combined with seed words and multiplied to
// 128 bits, whose halves are folded together.
func (t *connTable) hash(k *tuple) uint64 {
	a := binary.LittleEndian.Uint64(k.local[:8])
	b := binary.LittleEndian.Uint64(k.local[8:])
	c := binary.LittleEndian.Uint64(k.remote[:8])
	d := binary.LittleEndian.Uint64(k.remote[8:])
	e := uint64(k.lport) | uint64(k.rport)<<16
	if k.v4 {
		e |= 1 << 32
	}
	h := mix(a^t.seed[0], b^t.seed[1]) ^ mix(c^t.seed[2], d^t.seed[3])
	return mix(h^t.seed[4], e^t.seed[0])
}

// mix multiplies x and y to 128 bits and xors the halves.
func mix(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

// get returns the endpoint with key k, or nil.
func (t *connTable) get(k *tuple) *Endpoint {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.hash(k) & mask; ; i = (i + 1) & mask {
		e := t.slots[i]
		if e == nil || e.key == *k {
			return e
		}
	}
}

// put adds e under e.key, which the table must not hold yet.
func (t *connTable) put(e *Endpoint) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(minSlots, 2*len(t.slots)))
	}
	t.insert(e)
	t.n++
}

// insert places e in the first free slot of its probe chain.
func (t *connTable) insert(e *Endpoint) {
	mask := uint64(len(t.slots) - 1)
	i := t.hash(&e.key) & mask
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = e
}

// del removes e, which the table must hold. The entries after it in its
// cluster move back to fill the gap (Knuth's algorithm R), so no
// tombstones build up.
func (t *connTable) del(e *Endpoint) {
	mask := uint64(len(t.slots) - 1)
	i := t.hash(&e.key) & mask
	for t.slots[i] != e {
		i = (i + 1) & mask
	}
	t.slots[i] = nil
	t.n--
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		// The entry at j may move to the gap at i unless its home slot
		// lies cyclically in (i, j]: then i is before its chain starts.
		home := t.hash(&t.slots[j].key) & mask
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i], t.slots[j] = t.slots[j], nil
			i = j
		}
	}
	if len(t.slots) > minSlots && t.n*16 < len(t.slots)*3 {
		t.resize(len(t.slots) / 2)
	}
}

// resize rehashes every entry into n slots.
func (t *connTable) resize(n int) {
	old := t.slots
	t.slots = make([]*Endpoint, n)
	for _, e := range old {
		if e != nil {
			t.insert(e)
		}
	}
}
