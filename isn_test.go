package tcpfsm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestISNClockDriven(t *testing.T) {
	// MUST-8 and RFC 9293 3.4.1: same tuple, clock advanced by d: the ISN
	// moves by d/4 µs.
	g := NewISNGeneratorWithKey([16]byte{1, 2, 3})
	l := netip.MustParseAddrPort("192.0.2.1:40000")
	r := netip.MustParseAddrPort("192.0.2.2:80")
	a := g.ISN(l, r, at(10))
	b := g.ISN(l, r, at(11))
	require.Equal(t, uint32(250000), b.Diff(a))
	require.Greater(t, b.Sub(a), int32(0))
	require.Equal(t, a, g.ISN(l, r, at(10)), "same tuple and clock, same ISN")
	require.Equal(t, uint32(1), g.ISN(l, r, at(10).Add(4*time.Microsecond)).Diff(a))
}

func TestISNKeyedPerTuple(t *testing.T) {
	// SHLD-1, MUST-9: unrelated across tuples and secrets; ports p and
	// p+1 do not differ by a constant.
	g := NewISNGeneratorWithKey([16]byte{9})
	h := NewISNGeneratorWithKey([16]byte{8})
	r := netip.MustParseAddrPort("[2001:db8::2]:443")
	diffs := map[uint32]int{}
	for p := uint16(30000); p < 31000; p++ {
		a := g.ISN(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), p), r, 0)
		b := g.ISN(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), p+1), r, 0)
		diffs[b.Diff(a)]++
	}
	for d, n := range diffs {
		require.Less(t, n, 5, "difference %d repeats %d times in 1000", d, n)
	}
	l := netip.MustParseAddrPort("[2001:db8::1]:5000")
	require.NotEqual(t, g.ISN(l, r, 0), h.ISN(l, r, 0), "a different secret gives a different ISN")
	require.NotEqual(t, NewISNGenerator().ISN(l, r, 0), NewISNGenerator().ISN(l, r, 0))
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = g.ISN(l, r, 5) }))
}
