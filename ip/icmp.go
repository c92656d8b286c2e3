package ip

import (
	"encoding/binary"
	"net/netip"
)

// ICMP types and codes (RFC 792, RFC 1191 section 4, RFC 4443 sections
// 3 and 4).
const (
	ICMPv4EchoReply         = 0  // RFC 792
	ICMPv4DestUnreachable   = 3  // RFC 792
	ICMPv4Echo              = 8  // RFC 792
	ICMPv4TimeExceeded      = 11 // RFC 792
	ICMPv4CodeProtoUnreach  = 2  // RFC 792: protocol unreachable
	ICMPv4CodePortUnreach   = 3  // RFC 792: port unreachable
	ICMPv4CodeFragNeeded    = 4  // RFC 792, RFC 1191 section 4: fragmentation needed and DF set
	ICMPv6DestUnreachable   = 1  // RFC 4443 section 3.1
	ICMPv6PacketTooBig      = 2  // RFC 4443 section 3.2
	ICMPv6TimeExceeded      = 3  // RFC 4443 section 3.3
	ICMPv6ParamProblem      = 4  // RFC 4443 section 3.4
	ICMPv6EchoRequest       = 128
	ICMPv6EchoReply         = 129
	ICMPv6CodePortUnreach   = 4 // RFC 4443 section 3.1
	ICMPv6CodeNextHeader    = 1 // RFC 4443 section 3.4: unrecognized Next Header
	icmpv4ErrorQuoteMaximum = 576
)

// ICMP is a parsed ICMP or ICMPv6 message.
type ICMP struct {
	Type, Code uint8
	// Rest is the 4 bytes after the checksum: identifier and sequence
	// number of an echo (RFC 792, RFC 4443 section 4.1), the MTU of a
	// Packet Too Big (RFC 4443 section 3.2), the Next-Hop MTU in its low
	// 16 bits for fragmentation needed (RFC 1191 section 4).
	Rest uint32
	// Body follows: an echo's data, or the invoking packet an error
	// quotes. It aliases the input.
	Body []byte
}

// ParseICMP reads the ICMP message b of an IPv4 packet, or with v6 the
// ICMPv6 message b of an IPv6 packet from src to dst, into m, checking
// its checksum (RFC 792; RFC 4443 section 2.3, which covers the IPv6
// pseudo-header).
func ParseICMP(b []byte, v6 bool, src, dst netip.Addr, m *ICMP) error {
	*m = ICMP{}
	if len(b) < ICMPHeaderLen {
		return ErrShort
	}
	var acc uint32
	if v6 {
		acc = PseudoHeaderSum(src, dst, ProtoICMPv6, len(b))
	}
	if Checksum(b, acc) != 0 {
		return ErrChecksum
	}
	*m = ICMP{Type: b[0], Code: b[1], Rest: binary.BigEndian.Uint32(b[4:]), Body: b[ICMPHeaderLen:]}
	return nil
}

// IsError reports whether m is an error message, which quotes a packet
// and must not be answered with another error (RFC 1122 section 3.2.2,
// RFC 4443 section 2.4(e)).
func (m *ICMP) IsError(v6 bool) bool {
	if v6 {
		return m.Type < 128
	}
	switch m.Type {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// PutICMP writes an ICMP (or with v6, ICMPv6) header into buf[:8] for
// the body of bodyLen bytes already at buf[8:], and its checksum (with
// the IPv6 pseudo-header for src and dst). It returns the message's
// length (RFC 792, RFC 4443 section 2.1).
func PutICMP(buf []byte, v6 bool, src, dst netip.Addr, typ, code uint8, rest uint32, bodyLen int) (int, error) {
	n := ICMPHeaderLen + bodyLen
	if bodyLen < 0 || n > 65535 {
		return 0, ErrTooLarge
	}
	if len(buf) < n {
		return 0, ErrBufferSmall
	}
	b := buf[:n]
	b[0], b[1], b[2], b[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(b[4:], rest)
	var acc uint32
	if v6 {
		if src.Unmap().Is4() || dst.Unmap().Is4() {
			return 0, ErrAddress
		}
		acc = PseudoHeaderSum(src, dst, ProtoICMPv6, n)
	}
	binary.BigEndian.PutUint16(b[2:], Checksum(b, acc))
	return n, nil
}

// PutICMPError writes into buf a whole IP packet carrying an ICMP error
// of type typ and code about the packet invoking, from h.Src to h.Dst
// (h.Proto is set here). It quotes as much of invoking as keeps the
// packet within 576 bytes for IPv4 (RFC 1812 section 4.3.2.3) or 1280 for
// IPv6 (RFC 4443 section 2.4(c)) and within buf, and returns the packet's
// length.
func PutICMPError(buf []byte, h *Header, typ, code uint8, rest uint32, invoking []byte) (int, error) {
	v6 := !h.Dst.Unmap().Is4()
	limit := icmpv4ErrorQuoteMaximum
	h.Proto = ProtoICMP
	if v6 {
		limit = IPv6MinimumMTU
		h.Proto = ProtoICMPv6
	}
	limit = min(limit, len(buf))
	hl := HeaderLenFor(h.Dst)
	if limit < hl+ICMPHeaderLen {
		return 0, ErrBufferSmall
	}
	q := copy(buf[hl+ICMPHeaderLen:limit], invoking)
	n, err := PutICMP(buf[hl:], v6, h.Src, h.Dst, typ, code, rest, q)
	if err != nil {
		return 0, err
	}
	if _, err := PutHeader(buf, h, n); err != nil {
		return 0, err
	}
	return hl + n, nil
}

// Quote is what an ICMP error says of the packet that caused it: its
// addresses, protocol and ports, and for TCP the sequence number, from
// the IP header and first 8 bytes of upper-layer data that the error
// must carry (RFC 792; RFC 4443 section 2.4(c); RFC 5927 section 4.1).
type Quote struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	Seq              uint32 // TCP: the quoted segment's sequence number
	TotalLen         int    // IPv4: the quoted packet's Total Length, for RFC 1191 section 5
}

// ParseQuote reads the invoking packet an ICMP error's body quotes. The
// quote may be cut short after the first 8 bytes of the upper-layer
// header, so lengths are not checked against it, nor is any checksum.
func ParseQuote(body []byte, q *Quote) error {
	*q = Quote{}
	if len(body) < 1 {
		return ErrShort
	}
	var off int
	switch body[0] >> 4 {
	case 4:
		if len(body) < IPv4HeaderLen {
			return ErrShort
		}
		off = int(body[0]&0x0f) * 4
		if off < IPv4HeaderLen {
			return ErrHeaderLen
		}
		q.Src = netip.AddrFrom4([4]byte(body[12:16]))
		q.Dst = netip.AddrFrom4([4]byte(body[16:20]))
		q.Proto = body[9]
		q.TotalLen = int(binary.BigEndian.Uint16(body[2:]))
	case 6:
		if len(body) < IPv6HeaderLen {
			return ErrShort
		}
		q.Src = netip.AddrFrom16([16]byte(body[8:24]))
		q.Dst = netip.AddrFrom16([16]byte(body[24:40]))
		next, o := body[6], IPv6HeaderLen
		for i := 0; next == ProtoHopByHop || next == ProtoRouting || next == ProtoDestOpts || next == ProtoFragment; i++ {
			if i >= MaxExtensionHeaders || o+2 > len(body) {
				return ErrExtHeaders
			}
			n := (int(body[o+1]) + 1) * 8
			if next == ProtoFragment {
				n = 8
			}
			next, o = body[o], o+n
		}
		q.Proto, off = next, o
	default:
		return ErrVersion
	}
	if off+8 > len(body) {
		return ErrQuoteTooThin
	}
	t := body[off:]
	q.SrcPort = binary.BigEndian.Uint16(t[0:])
	q.DstPort = binary.BigEndian.Uint16(t[2:])
	if q.Proto == ProtoTCP {
		q.Seq = binary.BigEndian.Uint32(t[4:])
	}
	return nil
}

// plateaus are the MTU plateaus of RFC 1191 section 7, for a router that
// reports fragmentation needed with a zero Next-Hop MTU.
var plateaus = [...]int{32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68}

// PathMTU returns the path MTU that m reports, if m is an IPv4
// fragmentation-needed message (RFC 1191 section 4) or an ICMPv6 Packet
// Too Big (RFC 8201 section 4, RFC 4443 section 3.2). A zero Next-Hop
// MTU from an older IPv4 router is replaced by the largest plateau below
// quotedTotal, the quoted packet's length (RFC 1191 section 5).
func (m *ICMP) PathMTU(v6 bool, quotedTotal int) (int, bool) {
	if v6 {
		if m.Type != ICMPv6PacketTooBig {
			return 0, false
		}
		return int(min(m.Rest, 1<<20)), true
	}
	if m.Type != ICMPv4DestUnreachable || m.Code != ICMPv4CodeFragNeeded {
		return 0, false
	}
	if mtu := int(m.Rest & 0xffff); mtu != 0 {
		return mtu, true
	}
	for _, p := range plateaus {
		if p < quotedTotal {
			return p, true
		}
	}
	return 68, true
}
