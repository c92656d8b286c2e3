// Package siphash is SipHash-2-4, the keyed hash behind the initial
// sequence numbers (RFC 6528) and the SYN cookies (RFC 4987) of tcpfsm.
package siphash

import (
	"encoding/binary"
	"math/bits"
)

// Sum64 is SipHash-2-4 (Aumasson and Bernstein, 2012) of p under the
// key (k0, k1).
func Sum64(k0, k1 uint64, p []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(p)
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		v0, v1, v2, v3 = Round(v0, v1, v2, v3)
		v0, v1, v2, v3 = Round(v0, v1, v2, v3)
		v0 ^= m
		p = p[8:]
	}
	var last [8]byte
	copy(last[:], p)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	v0 ^= m
	v2 ^= 0xff
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	v0, v1, v2, v3 = Round(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

// Round is one SipRound of SipHash's state, for callers that feed a
// message of known shape without building it in memory.
func Round(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
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
	return v0, v1, v2, v3
}
