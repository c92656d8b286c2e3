package tcpfsm

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/tcpfsm/tcpfsm/internal/siphash"
)

// ISNGenerator chooses initial sequence numbers as RFC 6528 section 3 and
// RFC 9293 section 3.4.1 describe: ISN = M + F(localip, localport,
// remoteip, remoteport, secretkey), where M is a clock that ticks every 4
// microseconds (MUST-8) and F is a keyed pseudorandom function (SHLD-1),
// here SipHash-2-4 with a 128-bit secret.
//
// The host calls ISN and passes the result into Step (as Event.ISS): the
// state machine itself draws no random numbers. The secret cannot be read
// back (MUST-9). The zero value is not usable; use NewISNGenerator.
type ISNGenerator struct {
	k0, k1 uint64
}

// NewISNGenerator returns a generator keyed with 16 bytes from crypto/rand.
func NewISNGenerator() *ISNGenerator {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		panic("tcpfsm: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return NewISNGeneratorWithKey(key)
}

// NewISNGeneratorWithKey returns a generator with the given secret, for
// reproducible tests and simulations. Keep a production key secret.
func NewISNGeneratorWithKey(key [16]byte) *ISNGenerator {
	return &ISNGenerator{
		k0: binary.LittleEndian.Uint64(key[:8]),
		k1: binary.LittleEndian.Uint64(key[8:]),
	}
}

// ISN returns the initial sequence number for the connection between
// local and remote at time now. The same 4-tuple gives numbers that grow
// by one every 4 µs, so a new incarnation of a connection starts above
// the old one (RFC 9293 section 3.4.1); different 4-tuples are offset by
// unrelated amounts. It does not allocate.
//
// F hashes the addresses and ports as bytes: 4-byte addresses when both
// are IPv4 (or IPv4-mapped), 16-byte ones otherwise. SipHash takes the
// input's length into its last block, so the two forms never collide,
// and an IPv4 tuple's 12 bytes take 8 SipHash rounds where 36 take 14.
func (g *ISNGenerator) ISN(local, remote netip.AddrPort, now Time) Seq {
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	var f uint32
	if la.Is4() && ra.Is4() {
		l4, r4 := la.As4(), ra.As4()
		f = uint32(sip12(g.k0, g.k1,
			uint64(binary.LittleEndian.Uint32(l4[:]))|uint64(binary.LittleEndian.Uint32(r4[:]))<<32,
			uint32(bits.ReverseBytes16(local.Port()))|uint32(bits.ReverseBytes16(remote.Port()))<<16))
	} else {
		var buf [36]byte
		l16, r16 := la.As16(), ra.As16()
		copy(buf[0:16], l16[:])
		copy(buf[16:32], r16[:])
		binary.BigEndian.PutUint16(buf[32:], local.Port())
		binary.BigEndian.PutUint16(buf[34:], remote.Port())
		f = uint32(siphash.Sum64(g.k0, g.k1, buf[:]))
	}
	m := uint32(int64(now) / 4000) // 4 µs ticks
	return Seq(m + f)
}

// sip12 is SipHash-2-4 (siphash.Sum64) of a 12-byte message whose
// little-endian words are w0 (bytes 0 to 7) and w1 (bytes 8 to 11),
// without building the message in memory.
func sip12(k0, k1, w0 uint64, w1 uint32) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	last := uint64(w1) | 12<<56 // the length in the last block's top byte
	v3 ^= w0
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0 ^= w0
	v3 ^= last
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0 ^= last
	v2 ^= 0xff
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = siphash.Round(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}
