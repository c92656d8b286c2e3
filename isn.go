package tcpfsm

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
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
func (g *ISNGenerator) ISN(local, remote netip.AddrPort, now Time) Seq {
	var buf [36]byte
	l16, r16 := local.Addr().As16(), remote.Addr().As16()
	copy(buf[0:16], l16[:])
	copy(buf[16:32], r16[:])
	binary.BigEndian.PutUint16(buf[32:], local.Port())
	binary.BigEndian.PutUint16(buf[34:], remote.Port())
	f := uint32(sipHash24(g.k0, g.k1, buf[:]))
	m := uint32(int64(now) / 4000) // 4 µs ticks
	return Seq(m + f)
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein, 2012).
func sipHash24(k0, k1 uint64, p []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(p)
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		round()
		round()
		v0 ^= m
		p = p[8:]
	}
	var last [8]byte
	copy(last[:], p)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	round()
	v0 ^= m
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
