package tcpfsm

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// refChecksum is RFC 1071's algorithm written the slow, obvious way: sum
// big-endian 16-bit words with end-around carry, then complement.
func refChecksum(src, dst netip.Addr, tcp []byte) uint16 {
	var ph []byte
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() {
		ph = append(ph, src.AsSlice()...)
		ph = append(ph, dst.AsSlice()...)
		ph = append(ph, 0, ProtocolTCP)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(tcp)))
	} else {
		ph = append(ph, src.AsSlice()...)
		ph = append(ph, dst.AsSlice()...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(tcp)))
		ph = append(ph, 0, 0, 0, ProtocolTCP)
	}
	data := append(ph, tcp...)
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	var sum uint32
	for i := 0; i < len(data); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(data[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return ^uint16(sum)
}

func genAddrPair(t *rapid.T) (netip.Addr, netip.Addr) {
	if rapid.Bool().Draw(t, "v6") {
		return netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "src"))),
			netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "dst")))
	}
	return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "src"))),
		netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "dst")))
}

func TestChecksumAgreesWithReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst := genAddrPair(t)
		// The length is drawn first: rapid draws long slices too
		// rarely to reach sumWide's blocks.
		n := rapid.IntRange(0, 4*wideBlock+100).Draw(t, "length")
		b := rapid.SliceOfN(rapid.Byte(), n, n).Draw(t, "bytes")
		require.Equal(t, refChecksum(src, dst, b), Checksum(src, dst, b))
	})
}

func TestChecksumInsertedVerifies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst := genAddrPair(t)
		s := genSegment(t)
		b := s.AppendTo(nil)
		require.NoError(t, SetChecksum(b, src, dst))
		require.True(t, VerifyChecksum(b, src, dst))
		require.Equal(t, uint16(0), Checksum(src, dst, b))
		// Any single-bit error is caught by a ones'-complement sum.
		i := rapid.IntRange(0, len(b)-1).Draw(t, "byte")
		bit := rapid.IntRange(0, 7).Draw(t, "bit")
		b[i] ^= 1 << bit
		require.False(t, VerifyChecksum(b, src, dst), "flipped bit %d of byte %d", bit, i)
	})
}

func TestChecksumAddressErrors(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	b := make([]byte, HeaderLen)
	require.ErrorIs(t, SetChecksum(b, v4, v6), ErrAddress)
	require.ErrorIs(t, SetChecksum(b, netip.Addr{}, v4), ErrAddress)
	require.ErrorIs(t, SetChecksum(b[:10], v4, v4), ErrTruncated)
	require.False(t, VerifyChecksum(b, v4, v6))
	// An IPv4-mapped IPv6 address counts as IPv4.
	mapped := netip.AddrFrom16(v4.As16())
	require.NoError(t, SetChecksum(b, mapped, v4))
	require.True(t, VerifyChecksum(b, v4, v4))
}

func TestChecksumEveryLengthAndAlignment(t *testing.T) {
	// Every length across several 80-byte blocks and the tail's 8-, 4-, 2-
	// and 1-byte steps, and around the wide sum's blocks, at every offset from an 8-byte boundary, and a few
	// long ones; with bytes of 0xff every add carries.
	v4s, v4d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	v6s, v6d := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ffff::2")
	for _, fill := range []func(i int) byte{
		func(i int) byte { return byte(i*7 + i>>8) },
		func(int) byte { return 0xff },
		func(int) byte { return 0 },
	} {
		buf := make([]byte, 70008)
		for i := range buf {
			buf[i] = fill(i)
		}
		lengths := []int{65535, 65536, 65537, 70000}
		for n := range 400 {
			lengths = append(lengths, n)
		}
		// sumWide's blocks: one just short of and just past its 4
		// bytes of look-ahead, and two and three with the last block
		// moved back 4 bytes (a length of 0 to 3 mod wideBlock) or not.
		for _, k := range []int{1, 2, 3} {
			for n := k*wideBlock - 2; n <= k*wideBlock+10; n++ {
				lengths = append(lengths, n)
			}
		}
		for _, n := range lengths {
			for off := range 8 {
				b := buf[off : off+n]
				if n <= 0xffff { // the IPv4 pseudo-header's length has 16 bits
					require.Equal(t, refChecksum(v4s, v4d, b), Checksum(v4s, v4d, b), "IPv4, %d bytes at offset %d", n, off)
				}
				require.Equal(t, refChecksum(v6s, v6d, b), Checksum(v6s, v6d, b), "IPv6, %d bytes at offset %d", n, off)
			}
		}
	}
}

// FuzzChecksum holds Checksum to the reference for any bytes, offset and
// addresses.
func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint8(0), true)
	f.Add([]byte{0xff}, uint8(1), false)
	f.Add(make([]byte, 161), uint8(3), true)
	f.Fuzz(func(t *testing.T, b []byte, off uint8, v6 bool) {
		src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		if v6 {
			src, dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		}
		b = b[min(int(off), len(b)):]
		if got, want := Checksum(src, dst, b), refChecksum(src, dst, b); got != want {
			t.Fatalf("%d bytes: checksum %#04x, want %#04x", len(b), got, want)
		}
	})
}

func TestChecksumAllocatesNothing(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	b := make([]byte, 1480)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		_ = SetChecksum(b, src, dst)
		if !VerifyChecksum(b, src, dst) {
			panic("checksum")
		}
	}))
}

func BenchmarkChecksum(b *testing.B) {
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for _, size := range []struct {
		name string
		n    int
	}{{"1460B", 1460}, {"64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			buf := make([]byte, size.n)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			var sink uint16
			b.ResetTimer()
			for range b.N {
				sink += Checksum(src, dst, buf)
			}
			_ = sink
		})
	}
}
