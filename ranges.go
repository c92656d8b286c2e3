package tcpfsm

// maxRanges is how many disjoint out-of-order ranges a TCB remembers. A
// segment that would need a fifth range is dropped (and counted); the peer
// retransmits it.
const maxRanges = 4

// seqRange is the half-open sequence range [Left, Right).
type seqRange struct {
	Left, Right Seq
}

// rangeSet is a small sorted set of disjoint, non-adjacent sequence ranges
// with no allocation: the out-of-order data the host holds beyond RCV.NXT
// (RFC 9293 SHLD-31).
type rangeSet struct {
	r [maxRanges]seqRange
	n uint8
}

// add inserts [l, r), merging with neighbours it touches or overlaps. It
// reports false if the set is full and the range touches none of them.
// Ranges are compared relative to base (RCV.NXT), so order is exact within
// a window.
func (s *rangeSet) add(base, l, r Seq) bool {
	if !l.LessThan(r) {
		return true
	}
	lo, hi := l.Diff(base), r.Diff(base)
	// Find the first range whose right edge reaches lo.
	i := 0
	for i < int(s.n) && s.r[i].Right.Diff(base) < lo {
		i++
	}
	// Merge every range starting at or before hi.
	j := i
	for j < int(s.n) && s.r[j].Left.Diff(base) <= hi {
		if d := s.r[j].Left.Diff(base); d < lo {
			lo = d
		}
		if d := s.r[j].Right.Diff(base); d > hi {
			hi = d
		}
		j++
	}
	merged := seqRange{base.Add(lo), base.Add(hi)}
	if i == j { // no overlap: insert at i
		if s.n == maxRanges {
			return false
		}
		copy(s.r[i+1:s.n+1], s.r[i:s.n])
		s.r[i] = merged
		s.n++
		return true
	}
	s.r[i] = merged
	copy(s.r[i+1:], s.r[j:s.n])
	s.n -= uint8(j - i - 1)
	clear(s.r[s.n:])
	return true
}

// popThrough removes the ranges that start at or before nxt and returns the
// furthest right edge among them (or nxt if none).
func (s *rangeSet) popThrough(nxt Seq) Seq {
	end := nxt
	k := 0
	for k < int(s.n) && s.r[k].Left.LessThanEq(end) {
		end = MaxSeq(end, s.r[k].Right)
		k++
	}
	if k > 0 {
		copy(s.r[:], s.r[k:s.n])
		s.n -= uint8(k)
		clear(s.r[s.n:])
	}
	return end
}

// ranges returns the ranges held, in sequence order.
func (s *rangeSet) ranges() []seqRange { return s.r[:s.n] }
