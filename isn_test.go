package tcpfsm

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tcpfsm/tcpfsm/internal/siphash"
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

func TestISNHashesTheTupleAsBytes(t *testing.T) {
	// F is SipHash-2-4 of the addresses and ports: 12 bytes for an IPv4
	// tuple (an IPv4-mapped one too), 36 for IPv6; M counts 4 µs ticks.
	g := NewISNGeneratorWithKey([16]byte{7, 6, 5, 4, 3, 2, 1})
	now := at(3)
	m := uint32(int64(now) / 4000)
	l4 := netip.MustParseAddrPort("192.0.2.1:40000")
	r4 := netip.MustParseAddrPort("198.51.100.2:80")
	v4 := []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0, 80}
	require.Equal(t, Seq(m+uint32(siphash.Sum64(g.k0, g.k1, v4))), g.ISN(l4, r4, now))
	mapped := func(a netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	}
	require.Equal(t, g.ISN(l4, r4, now), g.ISN(mapped(l4), mapped(r4), now), "IPv4-mapped addresses are IPv4")

	l6 := netip.MustParseAddrPort("[2001:db8::1]:40000")
	r6 := netip.MustParseAddrPort("[2001:db8::2]:80")
	v6 := make([]byte, 0, 36)
	v6 = append(v6, l6.Addr().AsSlice()...)
	v6 = append(v6, r6.Addr().AsSlice()...)
	v6 = append(v6, 0x9c, 0x40, 0, 80)
	require.Equal(t, Seq(m+uint32(siphash.Sum64(g.k0, g.k1, v6))), g.ISN(l6, r6, now))
}

func BenchmarkISN(b *testing.B) {
	g := NewISNGeneratorWithKey([16]byte{1})
	for _, tc := range []struct{ name, l, r string }{
		{"v4", "192.0.2.1:40000", "198.51.100.2:80"},
		{"v6", "[2001:db8::1]:40000", "[2001:db8::2]:80"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l, r := netip.MustParseAddrPort(tc.l), netip.MustParseAddrPort(tc.r)
			var sink Seq
			for i := range b.N {
				sink += g.ISN(l, r, Time(i))
			}
			_ = sink
		})
	}
}

func TestSip12IsSipHash(t *testing.T) {
	// sip12 equals SipHash-2-4 of the 12 bytes its words hold.
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		k0, k1, w0, w1 := r.Uint64(), r.Uint64(), r.Uint64(), r.Uint32()
		var b [12]byte
		binary.LittleEndian.PutUint64(b[:], w0)
		binary.LittleEndian.PutUint32(b[8:], w1)
		require.Equal(t, siphash.Sum64(k0, k1, b[:]), sip12(k0, k1, w0, w1))
	}
}
