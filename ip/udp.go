package ip

import (
	"encoding/binary"
	"net/netip"
)

// UDP is a parsed UDP datagram (RFC 768).
type UDP struct {
	SrcPort, DstPort uint16
	// Payload is the data, cut to the UDP Length field; it aliases the input.
	Payload []byte
}

// ParseUDP reads the UDP datagram b of a packet from src to dst into u,
// checking the Length field and the checksum over the pseudo-header
// (RFC 768). A zero checksum means none over IPv4 (RFC 768) and is an
// error over IPv6 (RFC 8200 section 8.1).
func ParseUDP(b []byte, src, dst netip.Addr, u *UDP) error {
	*u = UDP{}
	if len(b) < UDPHeaderLen {
		return ErrShort
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	if n < UDPHeaderLen {
		return ErrHeaderLen
	}
	if n > len(b) {
		return ErrTotalLen
	}
	b = b[:n]
	if binary.BigEndian.Uint16(b[6:]) == 0 {
		if !src.Unmap().Is4() {
			return ErrChecksum
		}
	} else if Checksum(b, PseudoHeaderSum(src, dst, ProtoUDP, n)) != 0 {
		return ErrChecksum
	}
	*u = UDP{SrcPort: binary.BigEndian.Uint16(b[0:]), DstPort: binary.BigEndian.Uint16(b[2:]), Payload: b[UDPHeaderLen:]}
	return nil
}

// PutUDP writes a UDP header into buf[:8] for the payload of payloadLen
// bytes already at buf[8:], with its checksum over the pseudo-header of
// src and dst (RFC 768; a computed zero is sent as 0xffff). It returns
// the datagram's length.
func PutUDP(buf []byte, src, dst netip.Addr, srcPort, dstPort uint16, payloadLen int) (int, error) {
	n := UDPHeaderLen + payloadLen
	if payloadLen < 0 || n > 65535 {
		return 0, ErrTooLarge
	}
	if len(buf) < n {
		return 0, ErrBufferSmall
	}
	if src.Unmap().Is4() != dst.Unmap().Is4() {
		return 0, ErrAddress
	}
	b := buf[:n]
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	b[6], b[7] = 0, 0
	c := Checksum(b, PseudoHeaderSum(src, dst, ProtoUDP, n))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return n, nil
}
