package tcpfsm

import (
	"crypto/rand"
	"encoding/binary"
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
	var buf [36]byte
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	var in []byte
	if la.Is4() && ra.Is4() {
		l4, r4 := la.As4(), ra.As4()
		copy(buf[0:4], l4[:])
		copy(buf[4:8], r4[:])
		binary.BigEndian.PutUint16(buf[8:], local.Port())
		binary.BigEndian.PutUint16(buf[10:], remote.Port())
		in = buf[:12]
	} else {
		l16, r16 := la.As16(), ra.As16()
		copy(buf[0:16], l16[:])
		copy(buf[16:32], r16[:])
		binary.BigEndian.PutUint16(buf[32:], local.Port())
		binary.BigEndian.PutUint16(buf[34:], remote.Port())
		in = buf[:]
	}
	f := uint32(siphash.Sum64(g.k0, g.k1, in))
	m := uint32(int64(now) / 4000) // 4 µs ticks
	return Seq(m + f)
}
