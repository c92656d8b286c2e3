package tcpstack

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// connTable is a Stack's connection table: endpoints found by their
// tuple. Its slots hold only endpoint pointers, since each endpoint
// carries its own key, so an entry costs 11 to 22 bytes where a Go
// map[tuple]*Endpoint costs about 117 at a million entries (48-byte slots,
// control bytes, growth headroom); this is most of what brings an idle
// connection under 512 bytes.
//
// It is extendible hashing over fixed segments: the top bits of an
// entry's hash pick a segment through a directory, and within the segment
// an open-addressing table with linear probing holds it. A segment that
// reaches 3/4 full splits in two by one more hash bit, doubling the
// directory when it has no bit left; two buddy segments that fall to 3/8
// together merge. Growth and shrinkage are thus a segment at a time (about
// 800 entries moved, tens of microseconds) instead of a whole-table
// rehash, which at a million connections would stall the stack for tens
// of milliseconds.
//
// The hash is keyed with a random seed per table, so a peer that picks
// addresses and ports cannot aim its connections at one segment or probe
// chain.
type connTable struct {
	dir   []*connSeg // 1<<depth entries: hash>>(64-depth) indexes it
	depth uint8      // global depth: hash bits the directory uses
	n     int        // endpoints held
	seed  [5]uint64
}

// segSlots is the number of slots in a segment.
const segSlots = 1024

// A segment splits above splitAt entries; buddies merge at mergeAt or
// fewer together.
const (
	splitAt = segSlots * 3 / 4
	mergeAt = segSlots * 3 / 8
)

// connSeg is one segment: the entries whose hashes share its top depth
// bits.
type connSeg struct {
	depth uint8 // local depth
	n     int
	slots [segSlots]*Endpoint
}

// newConnTable returns an empty table with a fresh random seed.
func newConnTable() connTable {
	t := connTable{dir: []*connSeg{{}}}
	var h maphash.Hash // randomly seeded
	for i := range t.seed {
		// Odd, so no seed word can zero a product.
		h.WriteByte(byte(i))
		t.seed[i] = h.Sum64() | 1
	}
	return t
}

// len returns the number of endpoints held.
func (t *connTable) len() int { return t.n }

// hash mixes the 37 bytes of k (12 for an IPv4 key) in the
// folded-multiply style of wyhash: each pair of key words is combined
// with seed words and multiplied to 128 bits, whose halves are folded
// together.
func (t *connTable) hash(k *tuple) uint64 {
	if k.v4 {
		// An IPv4 key's addresses are their last 4 bytes (the rest is
		// the IPv4-mapped prefix, the same in every IPv4 key), so the
		// key is 12 bytes.
		le := binary.LittleEndian
		return t.hash4(uint64(le.Uint32(k.local[12:]))|uint64(le.Uint32(k.remote[12:]))<<32, ports(k.lport, k.rport))
	}
	a := binary.LittleEndian.Uint64(k.local[:8])
	b := binary.LittleEndian.Uint64(k.local[8:])
	c := binary.LittleEndian.Uint64(k.remote[:8])
	d := binary.LittleEndian.Uint64(k.remote[8:])
	e := uint64(k.lport) | uint64(k.rport)<<16
	h := mix(a^t.seed[0], b^t.seed[1]) ^ mix(c^t.seed[2], d^t.seed[3])
	return mix(h^t.seed[4], e^t.seed[0])
}

// hash4 is hash for an IPv4 key, given as its 12 bytes in two words:
// the addresses, local in the low half, and the ports packed by ports (pp):
// one pair of words, folded twice.
func (t *connTable) hash4(addrs, pp uint64) uint64 {
	return mix(mix(addrs^t.seed[0], pp^t.seed[1])^t.seed[4], pp^t.seed[2])
}

// ports packs an IPv4 key's ports for hash4, with a bit that sets it
// apart from an IPv6 key's.
func ports(lport, rport uint16) uint64 { return uint64(lport) | uint64(rport)<<16 | 1<<32 }

// equal reports whether k and o name the same connection: == on tuples,
// in word-sized loads and the ports first (they tell most connections
// apart), where == calls the runtime's generated equality.
func (k *tuple) equal(o *tuple) bool {
	le := binary.LittleEndian
	return k.rport == o.rport && k.lport == o.lport &&
		le.Uint64(k.remote[8:]) == le.Uint64(o.remote[8:]) && le.Uint64(k.remote[:8]) == le.Uint64(o.remote[:8]) &&
		le.Uint64(k.local[8:]) == le.Uint64(o.local[8:]) && le.Uint64(k.local[:8]) == le.Uint64(o.local[:8]) &&
		k.v4 == o.v4
}

// mix multiplies x and y to 128 bits and xors the halves.
func mix(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

// seg returns the segment for hash h.
func (t *connTable) seg(h uint64) *connSeg {
	return t.dir[h>>(64-t.depth)]
}

// get returns the endpoint with key k, or nil.
func (t *connTable) get(k *tuple) *Endpoint {
	h := t.hash(k)
	s := t.seg(h)
	for i := h; ; i++ {
		e := s.slots[i%segSlots]
		if e == nil || e.key.equal(k) {
			return e
		}
	}
}

// put adds e under e.key, which the table must not hold yet.
func (t *connTable) put(e *Endpoint) {
	h := t.hash(&e.key)
	s := t.seg(h)
	for s.n >= splitAt {
		t.split(s, h)
		s = t.seg(h)
	}
	s.insert(h, e)
	t.n++
}

// insert places e, whose hash is h, in the first free slot of its chain.
func (s *connSeg) insert(h uint64, e *Endpoint) {
	i := h % segSlots
	for s.slots[i] != nil {
		i = (i + 1) % segSlots
	}
	s.slots[i] = e
	s.n++
}

// span returns the range of directory indexes that point to the segment
// of depth d holding hash h.
func (t *connTable) span(h uint64, d uint8) (lo, hi int) {
	w := 1 << (t.depth - d)
	lo = int(h>>(64-t.depth)) &^ (w - 1)
	return lo, lo + w
}

// split divides s, the segment of hash h, in two by the next hash bit.
func (t *connTable) split(s *connSeg, h uint64) {
	if s.depth == t.depth {
		dir := make([]*connSeg, 2*len(t.dir))
		for i, x := range t.dir {
			dir[2*i], dir[2*i+1] = x, x
		}
		t.dir = dir
		t.depth++
	}
	d := s.depth + 1
	halves := [2]*connSeg{{depth: d}, {depth: d}}
	for _, e := range s.slots {
		if e != nil {
			eh := t.hash(&e.key)
			halves[eh>>(64-d)&1].insert(eh, e)
		}
	}
	// s's directory entries: the first half has the new bit 0.
	lo, hi := t.span(h, s.depth)
	mid := (lo + hi) / 2
	for i := lo; i < hi; i++ {
		t.dir[i] = halves[0]
		if i >= mid {
			t.dir[i] = halves[1]
		}
	}
}

// del removes e; it does nothing if the table does not hold e. The
// entries after it in its chain move back to fill the gap (Knuth's
// algorithm R), so no tombstones build up.
func (t *connTable) del(e *Endpoint) {
	h := t.hash(&e.key)
	s := t.seg(h)
	i := h % segSlots
	for s.slots[i] != e {
		if s.slots[i] == nil {
			return // the end of its chain: not here
		}
		i = (i + 1) % segSlots
	}
	s.slots[i] = nil
	s.n--
	t.n--
	for j := (i + 1) % segSlots; s.slots[j] != nil; j = (j + 1) % segSlots {
		// The entry at j may move to the gap at i unless its home slot
		// lies cyclically in (i, j]: then i is before its chain starts.
		home := t.hash(&s.slots[j].key) % segSlots
		if (j-home)%segSlots >= (j-i)%segSlots {
			s.slots[i], s.slots[j] = s.slots[j], nil
			i = j
		}
	}
	t.merge(s, h)
}

// merge joins s, the segment of hash h, with its buddy (the segment that
// differs in the last bit of s's depth) when the two have the same depth
// and hold few enough entries together; then the merged segment with its
// own buddy, and so on.
func (t *connTable) merge(s *connSeg, h uint64) {
	for s.depth > 0 {
		lo, hi := t.span(h, s.depth)
		w := hi - lo
		b := lo ^ w // the buddy's first directory index
		buddy := t.dir[b]
		if buddy.depth != s.depth || s.n+buddy.n > mergeAt {
			return
		}
		m := &connSeg{depth: s.depth - 1}
		for _, x := range [2]*connSeg{s, buddy} {
			for _, e := range x.slots {
				if e != nil {
					m.insert(t.hash(&e.key), e)
				}
			}
		}
		for i := min(lo, b); i < min(lo, b)+2*w; i++ {
			t.dir[i] = m
		}
		s = m
	}
}

// each calls yield for every endpoint held, until it returns false. The
// table must not change meanwhile.
func (t *connTable) each(yield func(*Endpoint) bool) bool {
	for i := 0; i < len(t.dir); i += 1 << (t.depth - t.dir[i].depth) {
		for _, e := range t.dir[i].slots {
			if e != nil && !yield(e) {
				return false
			}
		}
	}
	return true
}
