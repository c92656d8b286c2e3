// Package ip parses and builds IPv4 (RFC 791) and IPv6 (RFC 8200)
// packets, UDP datagrams (RFC 768) and ICMP (RFC 792) and ICMPv6
// (RFC 4443) messages, for a userspace network stack that moves whole IP
// packets, as a TUN device or a WireGuard tunnel does. It does no I/O and
// keeps no state; nothing in it allocates, so a stack can call it for
// every packet.
//
// Parse reads an IP header: it checks the IPv4 header checksum, skips
// IPv4 options, walks IPv6 extension headers to the upper-layer
// protocol, and reports fragments (RFC 791 section 2.3, RFC 8200 section
// 4.5), which a stack counts and drops. PutIPv4 and PutIPv6 write
// headers; ParseUDP and PutUDP, ParseICMP and PutICMP, Quote (the packet
// an ICMP error quotes) and PathMTU (RFC 1191, RFC 8201) do the rest.
package ip

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"
)

// Protocol numbers (RFC 791 section 3.1 "Protocol", RFC 8200 section 3
// "Next Header"; IANA "Assigned Internet Protocol Numbers").
const (
	ProtoHopByHop  = 0  // IPv6 Hop-by-Hop Options (RFC 8200 section 4.3)
	ProtoICMP      = 1  // ICMP (RFC 792)
	ProtoTCP       = 6  // TCP (RFC 9293)
	ProtoUDP       = 17 // UDP (RFC 768)
	ProtoRouting   = 43 // IPv6 Routing header (RFC 8200 section 4.4)
	ProtoFragment  = 44 // IPv6 Fragment header (RFC 8200 section 4.5)
	ProtoESP       = 50 // Encapsulating Security Payload (RFC 4303)
	ProtoAH        = 51 // Authentication Header (RFC 4302)
	ProtoICMPv6    = 58 // ICMPv6 (RFC 4443)
	ProtoNoNext    = 59 // IPv6 No Next Header (RFC 8200 section 4.7)
	ProtoDestOpts  = 60 // IPv6 Destination Options (RFC 8200 section 4.6)
	IPv4HeaderLen  = 20 // an IPv4 header without options (RFC 791 section 3.1)
	IPv6HeaderLen  = 40 // the IPv6 fixed header (RFC 8200 section 3)
	UDPHeaderLen   = 8  // RFC 768
	ICMPHeaderLen  = 8  // type, code, checksum and 4 bytes (RFC 792, RFC 4443 section 2.1)
	IPv6MinimumMTU = 1280
)

// MaxExtensionHeaders bounds the IPv6 extension headers Parse walks
// before it gives up on a packet (RFC 8200 section 4.1 allows any
// number; RFC 7112 and RFC 9098 discuss bounding the chain).
const MaxExtensionHeaders = 8

// Errors of the parsers. Each names what is wrong; none is ever a panic.
var (
	ErrShort        = errors.New("ip: packet too short")
	ErrVersion      = errors.New("ip: not IPv4 or IPv6")
	ErrHeaderLen    = errors.New("ip: bad header length")
	ErrTotalLen     = errors.New("ip: total length exceeds the packet")
	ErrChecksum     = errors.New("ip: bad checksum")
	ErrExtHeaders   = errors.New("ip: IPv6 extension header chain too long or truncated")
	ErrAddress      = errors.New("ip: addresses must both be IPv4 or both IPv6")
	ErrBufferSmall  = errors.New("ip: buffer too small")
	ErrTooLarge     = errors.New("ip: payload too large")
	ErrNotError     = errors.New("ip: ICMP message is not an error")
	ErrQuoteTooThin = errors.New("ip: ICMP error quotes too little of the packet")
)

// Packet is a parsed IP packet: what the layers above need of its
// header, and its upper-layer payload.
type Packet struct {
	Version  uint8 // 4 or 6
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol: IPv4's Protocol field, or for
	// IPv6 the Next Header after the last extension header walked.
	Proto uint8
	// TTL is IPv4's Time to Live or IPv6's Hop Limit.
	TTL uint8
	// TOS is IPv4's Type of Service or IPv6's Traffic Class.
	TOS uint8
	// FlowLabel is IPv6's Flow Label (RFC 6437).
	FlowLabel uint32
	// HeaderLen is where the upper-layer payload starts: the IPv4 header
	// with its options, or the IPv6 header with its extension headers.
	HeaderLen int
	// Payload is the upper-layer payload, cut to the packet's total
	// length (trailing link padding is dropped). It aliases the input.
	Payload []byte
	// Fragment: this is a fragment, not a whole packet: IPv4 with More
	// Fragments set or a nonzero offset, or IPv6 with a Fragment header
	// (RFC 8200 section 4.5; an atomic fragment, offset 0 and M clear,
	// is whole and not reported, RFC 6946).
	Fragment bool
	// DontFragment is IPv4's DF bit (RFC 791 section 3.1, RFC 1191).
	DontFragment bool
	// ID is the IPv4 Identification or the IPv6 Fragment header's.
	ID uint32
	// FragOffset is the fragment's offset in bytes.
	FragOffset int
}

// Parse reads the IP packet b into p. It checks the version, the header
// length, the total length and the IPv4 header checksum (RFC 791 section
// 3.1, RFC 1071), skips IPv4 options, and walks IPv6 extension headers
// (RFC 8200 section 4) up to MaxExtensionHeaders. It does not allocate.
func Parse(b []byte, p *Packet) error {
	*p = Packet{}
	if len(b) < 1 {
		return ErrShort
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b, p)
	case 6:
		return parse6(b, p)
	}
	return ErrVersion
}

func parse4(b []byte, p *Packet) error {
	if len(b) < IPv4HeaderLen {
		return ErrShort
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < IPv4HeaderLen || ihl > len(b) {
		return ErrHeaderLen
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total < ihl {
		return ErrHeaderLen
	}
	if total > len(b) {
		return ErrTotalLen
	}
	if Checksum(b[:ihl], 0) != 0 {
		return ErrChecksum
	}
	frag := binary.BigEndian.Uint16(b[6:])
	*p = Packet{
		Version: 4, Proto: b[9], TTL: b[8], TOS: b[1], HeaderLen: ihl,
		Src:          netip.AddrFrom4([4]byte(b[12:16])),
		Dst:          netip.AddrFrom4([4]byte(b[16:20])),
		Payload:      b[ihl:total],
		ID:           uint32(binary.BigEndian.Uint16(b[4:])),
		DontFragment: frag&0x4000 != 0,
		FragOffset:   int(frag&0x1fff) * 8,
		Fragment:     frag&0x2000 != 0 || frag&0x1fff != 0,
	}
	return nil
}

func parse6(b []byte, p *Packet) error {
	if len(b) < IPv6HeaderLen {
		return ErrShort
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	if IPv6HeaderLen+plen > len(b) {
		// A zero Payload Length with a Jumbo Payload option (RFC 2675)
		// is not supported: the tunnels this serves carry at most 64 KiB.
		return ErrTotalLen
	}
	b = b[:IPv6HeaderLen+plen]
	*p = Packet{
		Version: 6, TTL: b[7], TOS: uint8(binary.BigEndian.Uint16(b[0:]) >> 4),
		FlowLabel: binary.BigEndian.Uint32(b[0:]) & 0xfffff,
		Src:       netip.AddrFrom16([16]byte(b[8:24])),
		Dst:       netip.AddrFrom16([16]byte(b[24:40])),
	}
	next, off := b[6], IPv6HeaderLen
	for i := 0; ; i++ {
		if i > MaxExtensionHeaders {
			return ErrExtHeaders
		}
		var n int
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts:
			if off+2 > len(b) {
				return ErrExtHeaders
			}
			n = (int(b[off+1]) + 1) * 8
		case ProtoAH:
			if off+2 > len(b) {
				return ErrExtHeaders
			}
			n = (int(b[off+1]) + 2) * 4 // RFC 4302 section 2.2
		case ProtoFragment:
			n = 8
			if off+n > len(b) {
				return ErrExtHeaders
			}
			fo := binary.BigEndian.Uint16(b[off+2:])
			p.ID = binary.BigEndian.Uint32(b[off+4:])
			p.FragOffset = int(fo>>3) * 8
			p.Fragment = fo&1 != 0 || fo>>3 != 0
		default:
			p.Proto, p.HeaderLen, p.Payload = next, off, b[off:]
			return nil
		}
		if off+n > len(b) {
			return ErrExtHeaders
		}
		next, off = b[off], off+n
	}
}

// HeaderLenFor is the length of the header PutIPv4 or PutIPv6 writes for
// a packet to dst: 20 for IPv4, 40 for IPv6.
func HeaderLenFor(dst netip.Addr) int {
	if dst.Unmap().Is4() {
		return IPv4HeaderLen
	}
	return IPv6HeaderLen
}

// Header says what PutHeader writes: the fields of an IPv4 header
// without options (RFC 791 section 3.1) or of the IPv6 fixed header
// without extension headers (RFC 8200 section 3).
type Header struct {
	Src, Dst     netip.Addr
	Proto        uint8
	TTL          uint8 // TTL or Hop Limit; 0 means 64 (RFC 1700, RFC 8200 section 3)
	TOS          uint8
	FlowLabel    uint32 // IPv6 Flow Label (RFC 6437), low 20 bits
	ID           uint16 // IPv4 Identification (RFC 6864: any value when DF is set)
	DontFragment bool   // IPv4 DF (RFC 1191 section 3); IPv6 routers never fragment
}

// PutHeader writes h into buf for a payload of payloadLen bytes, which
// follow the header in buf, with the IPv4 header checksum computed. It
// returns the header's length (HeaderLenFor(h.Dst)).
func PutHeader(buf []byte, h *Header, payloadLen int) (int, error) {
	src, dst := h.Src.Unmap(), h.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return 0, ErrAddress
	}
	ttl := h.TTL
	if ttl == 0 {
		ttl = 64
	}
	if src.Is4() {
		if payloadLen < 0 || payloadLen > 65535-IPv4HeaderLen {
			return 0, ErrTooLarge
		}
		if len(buf) < IPv4HeaderLen {
			return 0, ErrBufferSmall
		}
		b := buf[:IPv4HeaderLen]
		b[0], b[1] = 0x45, h.TOS
		binary.BigEndian.PutUint16(b[2:], uint16(IPv4HeaderLen+payloadLen))
		binary.BigEndian.PutUint16(b[4:], h.ID)
		var frag uint16
		if h.DontFragment {
			frag = 0x4000
		}
		binary.BigEndian.PutUint16(b[6:], frag)
		b[8], b[9], b[10], b[11] = ttl, h.Proto, 0, 0
		s4, d4 := src.As4(), dst.As4()
		copy(b[12:16], s4[:])
		copy(b[16:20], d4[:])
		binary.BigEndian.PutUint16(b[10:], Checksum(b, 0))
		return IPv4HeaderLen, nil
	}
	if payloadLen < 0 || payloadLen > 65535 {
		return 0, ErrTooLarge
	}
	if len(buf) < IPv6HeaderLen {
		return 0, ErrBufferSmall
	}
	b := buf[:IPv6HeaderLen]
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(h.TOS)<<20|h.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6], b[7] = h.Proto, ttl
	s16, d16 := src.As16(), dst.As16()
	copy(b[8:24], s16[:])
	copy(b[24:40], d16[:])
	return IPv6HeaderLen, nil
}

// Checksum returns the Internet checksum (RFC 1071) of b added to the
// partial sum initial (a PseudoHeaderSum, or 0): the value to store in a
// zeroed checksum field, or 0 over data that holds a correct one.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, uint64(initial)))
}

// PseudoHeaderSum is the unfolded one's-complement sum of the pseudo
// header of RFC 768 and RFC 9293 section 3.1 (IPv4) or RFC 8200 section
// 8.1 (IPv6) for an upper-layer packet of length bytes, to pass to
// Checksum. Two IPv4 or IPv4-mapped addresses count as IPv4; otherwise
// both go in their 16-byte form (an IPv6 packet may carry a mapped
// address), and an invalid one as zeros.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var acc uint64
	if s4, d4 := src.Unmap(), dst.Unmap(); s4.Is4() && d4.Is4() {
		s, d := s4.As4(), d4.As4()
		acc = uint64(binary.BigEndian.Uint16(s[0:])) + uint64(binary.BigEndian.Uint16(s[2:])) +
			uint64(binary.BigEndian.Uint16(d[0:])) + uint64(binary.BigEndian.Uint16(d[2:]))
	} else {
		s, d := src.As16(), dst.As16()
		for i := 0; i < 16; i += 2 {
			acc += uint64(binary.BigEndian.Uint16(s[i:])) + uint64(binary.BigEndian.Uint16(d[i:]))
		}
	}
	acc += uint64(proto) + uint64(uint32(length)>>16) + uint64(uint32(length)&0xffff)
	return uint32(fold(acc))
}

// sum adds b as big-endian 16-bit words to acc, 8 bytes at a time.
func sum(b []byte, acc uint64) uint64 {
	var carry uint64
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc, carry = bits.Add64(acc, v, carry)
		b = b[8:]
	}
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry // acc is 0 here if the last add carried out
	// Fold the 64-bit lane sum to 32 bits before the tail so it cannot overflow.
	acc = acc>>32 + acc&0xffffffff
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
