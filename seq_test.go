package tcpfsm

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// model64 is the reference for Seq: a position on an unbounded line, of
// which Seq keeps the low 32 bits. The signed distance of two positions,
// reduced into [-2^31, 2^31), is what every Seq comparison must agree with.
func model64Dist(a, b uint64) int64 {
	d := int64(a - b) // exact for |a-b| < 2^63
	d = ((d+(1<<31))%(1<<32)+(1<<32))%(1<<32) - (1 << 31)
	return d
}

func TestSeqAgreesWith64BitModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := rapid.Uint64().Draw(t, "base")
		// Offsets around 2^31 and around the wrap are drawn often.
		off := rapid.OneOf(
			rapid.Int64Range(-(1<<31), 1<<31),
			rapid.SampledFrom([]int64{0, 1, -1, 1<<31 - 1, -(1 << 31), 1 << 31, -(1<<31 - 1)}),
		).Draw(t, "off")
		a64 := base
		b64 := base + uint64(off)
		a, b := Seq(a64), Seq(b64)
		d := model64Dist(a64, b64)

		require.Equal(t, d, int64(a.Sub(b)), "Sub")
		require.Equal(t, uint32(a64-b64), a.Diff(b), "Diff")
		require.Equal(t, d < 0, a.LessThan(b), "LessThan")
		require.Equal(t, d <= 0, a.LessThanEq(b), "LessThanEq")
		require.Equal(t, d > 0, a.GreaterThan(b), "GreaterThan")
		require.Equal(t, d >= 0, a.GreaterThanEq(b), "GreaterThanEq")
		n := rapid.Uint32().Draw(t, "n")
		require.Equal(t, Seq(uint32(a64+uint64(n))), a.Add(n), "Add")
	})
}

func TestSeqExactHalfCircle(t *testing.T) {
	// RFC 1982 leaves pairs 2^31 apart undefined; Seq reads the distance as
	// -2^31 both ways, and says so in its doc comment.
	a, b := Seq(5), Seq(5+1<<31)
	require.Equal(t, int32(math.MinInt32), a.Sub(b))
	require.Equal(t, int32(math.MinInt32), b.Sub(a))
	require.True(t, a.LessThan(b))
	require.True(t, b.LessThan(a))
}

func TestSeqRangeAndWindowAgreeWithModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := rapid.Uint64().Draw(t, "start")
		size := rapid.OneOf(rapid.Uint32Range(0, 16), rapid.Uint32()).Draw(t, "size")
		off := rapid.OneOf(
			rapid.Int64Range(-20, 20),
			rapid.Int64Range(int64(size)-20, int64(size)+20),
			rapid.Int64Range(-(1<<32), 1<<32),
		).Draw(t, "off")
		s := Seq(start + uint64(off))
		// In the model the window is [start, start+size) on the line; s is
		// any position congruent to start+off, so reduce off into [0, 2^32).
		red := ((off % (1 << 32)) + (1 << 32)) % (1 << 32)
		want := red < int64(size)
		require.Equal(t, want, s.InWindow(Seq(start), size), "InWindow")
		require.Equal(t, want, s.InRange(Seq(start), Seq(start+uint64(size))), "InRange")
	})
}

func TestSeqAcrossTheWrap(t *testing.T) {
	// conformance: RFC9293 3.4 — comparisons mod 2^32 near the wrap.
	iss := Seq(0xFFFFFF00)
	end := iss.Add(0x200)
	require.Equal(t, Seq(0x00000100), end)
	require.True(t, iss.LessThan(end))
	require.True(t, end.GreaterThan(iss))
	require.Equal(t, uint32(0x200), end.Diff(iss))
	require.True(t, Seq(0).InRange(iss, end))
	require.True(t, Seq(0xFFFFFFFF).InWindow(iss, 0x200))
	require.False(t, end.InWindow(iss, 0x200))
	require.Equal(t, end, MaxSeq(iss, end))
	require.Equal(t, iss, MinSeq(iss, end))
	require.Equal(t, end, MaxSeq(end, iss))
	require.Equal(t, iss, MinSeq(end, iss))
}
