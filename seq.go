package tcpfsm

import "strconv"

// Seq is a 32-bit TCP sequence number (RFC 9293 section 3.4).
//
// Sequence numbers live on a circle of 2^32 values, so every comparison and
// sum is done modulo 2^32. Use the methods of Seq instead of comparing raw
// uint32 values: a.LessThan(b) is correct across the wrap where a < b is not.
//
// Comparisons follow RFC 1982 serial-number arithmetic as Linux's before()
// and after() do: a is before b when the signed 32-bit distance b - a is
// positive. Two numbers exactly 2^31 apart are undefined by RFC 1982; here
// their distance reads as -2^31 both ways, so each is before the other. TCP
// windows are at most 2^30 (RFC 7323 section 2.3), so a correct connection
// never compares such a pair.
//
// No method panics for any input.
type Seq uint32

// Add returns s + n modulo 2^32.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns the signed distance s - t, read as a 32-bit two's complement
// value: positive when s is after t, negative when s is before t.
func (s Seq) Sub(t Seq) int32 { return int32(uint32(s) - uint32(t)) }

// Diff returns the unsigned distance s - t modulo 2^32: how many sequence
// numbers one steps forward from t to reach s.
func (s Seq) Diff(t Seq) uint32 { return uint32(s) - uint32(t) }

// LessThan reports whether s comes before t (s < t in RFC 9293 notation).
func (s Seq) LessThan(t Seq) bool { return s.Sub(t) < 0 }

// LessThanEq reports whether s comes before t or equals it (s =< t).
func (s Seq) LessThanEq(t Seq) bool { return s.Sub(t) <= 0 }

// GreaterThan reports whether s comes after t (s > t).
func (s Seq) GreaterThan(t Seq) bool { return s.Sub(t) > 0 }

// GreaterThanEq reports whether s comes after t or equals it (s >= t).
func (s Seq) GreaterThanEq(t Seq) bool { return s.Sub(t) >= 0 }

// InRange reports whether a =< s < b, walking forward from a. An empty range
// (a == b) contains nothing. The range is read as the forward arc from a to
// b, so it may cover more than 2^31 numbers.
func (s Seq) InRange(a, b Seq) bool { return s.Diff(a) < b.Diff(a) }

// InWindow reports whether s lies in the window of size octets starting at
// start: start =< s < start+size (RFC 9293 section 3.10.7.4). A window of
// size 0 contains nothing.
func (s Seq) InWindow(start Seq, size uint32) bool { return s.Diff(start) < size }

// MaxSeq returns whichever of a and b comes later.
func MaxSeq(a, b Seq) Seq {
	if a.LessThan(b) {
		return b
	}
	return a
}

// MinSeq returns whichever of a and b comes earlier.
func MinSeq(a, b Seq) Seq {
	if a.LessThan(b) {
		return a
	}
	return b
}

// String returns the sequence number in decimal.
func (s Seq) String() string { return strconv.FormatUint(uint64(s), 10) }
