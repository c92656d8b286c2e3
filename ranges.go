package tcpfsm

// seqRange is the half-open sequence range [Left, Right). An empty range
// (Left == Right) marks an unused slot.
type seqRange struct {
	Left, Right Seq
}

// rangeSet is a small sorted set of disjoint, non-adjacent sequence
// ranges, kept in a fixed array with no allocation and no count: used
// slots come first, unused ones are empty. The receive side holds the
// out-of-order data the host keeps beyond RCV.NXT (RFC 9293 SHLD-31) in
// three; a segment that would need a fourth is dropped (and counted), and
// the peer retransmits it. Three is also the most SACK blocks that fit
// beside timestamps (RFC 2018 section 3). The send side's SACK scoreboard
// keeps two.
type rangeSet [3]seqRange

// sackBoard holds the ranges the peer has SACKed beyond SND.UNA.
type sackBoard [2]seqRange

// count returns how many slots of r are in use.
func count(r []seqRange) int {
	n := 0
	for n < len(r) && r[n].Left != r[n].Right {
		n++
	}
	return n
}

// overlap returns the part of [l, h) that the first range of r it
// overlaps already covers, and reports whether there is one; sequence
// numbers compare from base, below them all.
func overlap(r []seqRange, base, l, h Seq) (seqRange, bool) {
	for _, x := range r[:count(r)] {
		lo := max(x.Left.Diff(base), l.Diff(base))
		hi := min(x.Right.Diff(base), h.Diff(base))
		if lo < hi {
			return seqRange{base.Add(lo), base.Add(hi)}, true
		}
	}
	return seqRange{}, false
}

// contains reports whether one range of r holds all of [l, h).
func contains(r []seqRange, base, l, h Seq) bool {
	for _, x := range r[:count(r)] {
		if x.Left.Diff(base) <= l.Diff(base) && h.Diff(base) <= x.Right.Diff(base) {
			return true
		}
	}
	return false
}

// addRange inserts [l, h) into r, merging with neighbours it touches or
// overlaps, and returns the index of the range that now holds it. It
// reports false if r is full and the range touches none of them. Ranges
// are compared relative to base (RCV.NXT or SND.UNA), so order is exact
// within a window.
func addRange(r []seqRange, base, l, h Seq) (int, bool) {
	if !l.LessThan(h) {
		return 0, true
	}
	n := count(r)
	lo, hi := l.Diff(base), h.Diff(base)
	// Find the first range whose right edge reaches lo.
	i := 0
	for i < n && r[i].Right.Diff(base) < lo {
		i++
	}
	// Merge every range starting at or before hi.
	j := i
	for j < n && r[j].Left.Diff(base) <= hi {
		lo = min(lo, r[j].Left.Diff(base))
		hi = max(hi, r[j].Right.Diff(base))
		j++
	}
	merged := seqRange{base.Add(lo), base.Add(hi)}
	if i == j { // no overlap: insert at i
		if n == len(r) {
			return 0, false
		}
		copy(r[i+1:n+1], r[i:n])
		r[i] = merged
		return i, true
	}
	r[i] = merged
	copy(r[i+1:], r[j:n])
	clear(r[n-(j-i-1) : n])
	return i, true
}

// dropFirst removes the first k ranges.
func dropFirst(r []seqRange, k int) {
	if k > 0 {
		n := count(r)
		copy(r, r[k:n])
		clear(r[n-k : n])
	}
}

// popThrough removes the ranges that start at or before nxt and returns the
// furthest right edge among them (or nxt if none), and how many it removed.
func popThrough(r []seqRange, nxt Seq) (Seq, int) {
	end := nxt
	n := count(r)
	k := 0
	for k < n && r[k].Left.LessThanEq(end) {
		end = MaxSeq(end, r[k].Right)
		k++
	}
	dropFirst(r, k)
	return end, k
}

// trimBelow forgets everything below una: whole ranges are dropped, a
// range that straddles una starts at una.
func trimBelow(r []seqRange, una Seq) {
	n := count(r)
	k := 0
	for k < n && r[k].Right.LessThanEq(una) {
		k++
	}
	dropFirst(r, k)
	if r[0].Left != r[0].Right && r[0].Left.LessThan(una) {
		r[0].Left = una
	}
}

// covering returns the right edge of the range holding seq, if any.
func covering(r []seqRange, seq Seq) (Seq, bool) {
	for _, x := range r[:count(r)] {
		if seq.InRange(x.Left, x.Right) {
			return x.Right, true
		}
	}
	return 0, false
}

// highest returns the right edge of the last range, or def if empty.
func highest(r []seqRange, def Seq) Seq {
	if n := count(r); n > 0 {
		return r[n-1].Right
	}
	return def
}
