package tcpfsm

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"
)

// ProtocolTCP is the IP protocol number of TCP, carried in the pseudo-header.
const ProtocolTCP = 6

// ErrAddress is returned when the pseudo-header addresses are invalid or of
// different families (one IPv4, the other IPv6).
var ErrAddress = errors.New("tcpfsm: checksum: addresses must both be valid IPv4 or both IPv6")

// Checksum returns the Internet checksum (RFC 1071) of the TCP segment tcp
// together with its pseudo-header: src and dst, the protocol number 6 and the
// TCP length (RFC 9293 section 3.1 for IPv4, RFC 8200 section 8.1 for IPv6).
// IPv4-mapped IPv6 addresses are treated as IPv4.
//
// With the checksum field of tcp zeroed, the result is the value to store
// in it. Over a segment that already holds a correct checksum the result is
// zero. Checksum does not allocate.
func Checksum(src, dst netip.Addr, tcp []byte) uint16 {
	acc, _ := pseudoHeaderSum(src, dst, uint32(len(tcp)))
	return finish(sumBytes(tcp, acc))
}

// finish folds a sum and complements it into checksum-field order.
func finish(acc uint64) uint16 { return ^bits.ReverseBytes16(fold(acc)) }

// SetChecksum computes the checksum of the wire-format segment tcp with the
// pseudo-header for src and dst and stores it at bytes 16 and 17
// (RFC 9293 MUST-2). It fails on a buffer shorter than the header and on
// addresses that are invalid or of different families.
func SetChecksum(tcp []byte, src, dst netip.Addr) error {
	if len(tcp) < HeaderLen {
		return &ParseError{Err: ErrTruncated, Offset: len(tcp), Value: len(tcp), Limit: HeaderLen, reason: reasonShort}
	}
	acc, ok := pseudoHeaderSum(src, dst, uint32(len(tcp)))
	if !ok {
		return ErrAddress
	}
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], finish(sumBytes(tcp, acc)))
	return nil
}

// VerifyChecksum reports whether the wire-format segment tcp carries a
// correct checksum for the pseudo-header of src and dst (RFC 9293 MUST-3).
// It reports false for addresses that are invalid or of different families.
func VerifyChecksum(tcp []byte, src, dst netip.Addr) bool {
	if len(tcp) < HeaderLen {
		return false
	}
	acc, ok := pseudoHeaderSum(src, dst, uint32(len(tcp)))
	return ok && finish(sumBytes(tcp, acc)) == 0
}

// The sums below work in little-endian 16-bit lanes, which RFC 1071
// section 2(B) shows gives the byte-swapped big-endian sum; Checksum swaps
// the folded result back.

// pseudoHeaderSum sums the pseudo-header fields into a 64-bit accumulator,
// and reports whether src and dst are both valid and of one family (an
// IPv4-mapped IPv6 address counting as IPv4). Two plain IPv4 addresses,
// the common case, take the first test.
func pseudoHeaderSum(src, dst netip.Addr, length uint32) (uint64, bool) {
	var acc uint64
	ok := true
	if !src.Is4() || !dst.Is4() {
		ok = src.IsValid() && dst.IsValid()
		src, dst = src.Unmap(), dst.Unmap()
		ok = ok && src.Is4() == dst.Is4()
	}
	if src.Is4() && dst.Is4() {
		s, d := src.As4(), dst.As4()
		acc = uint64(binary.LittleEndian.Uint32(s[:])) + uint64(binary.LittleEndian.Uint32(d[:]))
	} else {
		s, d := src.As16(), dst.As16()
		var c uint64
		acc, c = bits.Add64(binary.LittleEndian.Uint64(s[:]), binary.LittleEndian.Uint64(s[8:]), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(d[:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(d[8:]), c)
		acc += c
	}
	// Upper-layer length (32 bits covers both families) and protocol, each
	// as big-endian 16-bit words seen through little-endian lanes.
	acc += uint64(bits.ReverseBytes16(uint16(length>>16))) + uint64(bits.ReverseBytes16(uint16(length)))
	acc += uint64(bits.ReverseBytes16(ProtocolTCP))
	return acc, ok
}

// sumBytes adds b to the ones'-complement accumulator acc in 64-bit lanes,
// carrying end-around: the blocks of wideBlock bytes in sumWide (segments
// of at least a block and 4 bytes), the 80-byte blocks of the rest in
// sum80, then what is left (under 80 bytes) in pieces of 64, 32, 16, 8, 4,
// 2 and 1 bytes, each at most once and each its own add-with-carry chain.
func sumBytes(b []byte, acc uint64) uint64 {
	for len(b) >= wideBlock+4 {
		s, n := sumWide(b)
		var c uint64
		acc, c = bits.Add64(acc, s, 0)
		acc += c
		b = b[n:]
	}
	if len(b) >= 80 {
		n := len(b) / 80 * 80
		acc = sum80(b[:n:n], acc)
		b = b[n:]
	}
	var c uint64
	if len(b) >= 64 {
		p := (*[64]byte)(b)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[0:]), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[24:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[32:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[40:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[48:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[56:]), c)
		acc += c // cannot carry out: acc < 2^64-1 after a carry
		b = b[64:]
	}
	if len(b) >= 32 {
		p := (*[32]byte)(b)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[0:]), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[24:]), c)
		acc += c
		b = b[32:]
	}
	if len(b) >= 16 {
		p := (*[16]byte)(b)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[0:]), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[8:]), c)
		acc += c
		b = b[16:]
	}
	c = 0
	if len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// A trailing odd byte is the high byte of a zero-padded big-endian
		// word: the low byte of a little-endian lane.
		acc, c = bits.Add64(acc, uint64(b[0]), c)
	}
	return acc + c // cannot carry out, as above
}

// fold reduces a 64-bit ones'-complement sum to 16 bits.
func fold(acc uint64) uint16 {
	acc = (acc & 0xffffffff) + (acc >> 32)
	acc = (acc & 0xffffffff) + (acc >> 32)
	acc = (acc & 0xffff) + (acc >> 16)
	acc = (acc & 0xffff) + (acc >> 16)
	acc = (acc & 0xffff) + (acc >> 16)
	return uint16(acc)
}

// sum80 adds b, whose length is a multiple of 80, to acc as sumBytes does.
// Each 80-byte block is one add-with-carry chain whose carry goes into the
// accumulator at once (SBBQ, SUBQ) rather than into a register the next
// block reads: per 8 bytes a load and an ADCQ (Go has no ADCQ with a
// memory operand), and per block 5 instructions more. The compiler loads
// every word of a chain before the chain, so a block is as many words as
// it finds registers for: the blocks go from the last down to offset 0,
// so one index is both the loop counter and the load offset, and nothing
// else lives in the loop but the base and the accumulator. An eleventh
// word, or anything else kept across the loop, spills.
func sum80(b []byte, acc uint64) uint64 {
	var c uint64
	for i := len(b) - 80; i >= 0; i -= 80 {
		p := (*[80]byte)(b[i:])
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[0:]), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[24:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[32:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[40:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[48:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[56:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[64:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(p[72:]), c)
		acc += c // cannot carry out: acc < 2^64-1 after a carry
	}
	return acc
}
