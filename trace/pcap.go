// Package trace records TCP segments as they cross a link and writes them
// out for people: as a pcap file that Wireshark and tcpdump open, and as a
// sequence diagram with each side's state, in text for terminals or in
// Mermaid for documents.
package trace

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// LinkTypeRaw is the pcap link type of raw IPv4 and IPv6 packets
// (LINKTYPE_RAW): each record starts with the IP header.
const LinkTypeRaw = 101

// PcapWriter writes TCP segments as raw IP packets to a classic pcap file
// (microsecond timestamps).
type PcapWriter struct {
	w     io.Writer
	buf   []byte
	epoch time.Time
	id    uint16
}

// NewPcapWriter writes the pcap file header to w. Times passed to
// WriteSegment are offsets from epoch.
func NewPcapWriter(w io.Writer, epoch time.Time) (*PcapWriter, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535) // snaplen
	binary.LittleEndian.PutUint32(h[20:], LinkTypeRaw)
	if _, err := w.Write(h[:]); err != nil {
		return nil, err
	}
	return &PcapWriter{w: w, epoch: epoch, buf: make([]byte, 0, 2048)}, nil
}

// ErrAddressFamily is returned for addresses that are not both IPv4 or both IPv6.
var ErrAddressFamily = errors.New("trace: addresses must both be IPv4 or both IPv6")

// WriteSegment writes one TCP segment (from its TCP header on), wrapped in
// an IPv4 or IPv6 header for src and dst, at time at.
func (p *PcapWriter) WriteSegment(at tcpfsm.Time, src, dst netip.Addr, tcp []byte) error {
	src, dst = src.Unmap(), dst.Unmap()
	b := p.buf[:0]
	switch {
	case src.Is4() && dst.Is4():
		p.id++
		total := 20 + len(tcp)
		b = append(b, 0x45, 0, byte(total>>8), byte(total), byte(p.id>>8), byte(p.id), 0x40, 0, 64, tcpfsm.ProtocolTCP, 0, 0)
		s, d := src.As4(), dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		binary.BigEndian.PutUint16(b[10:], ipv4Checksum(b[:20]))
	case src.Is6() && dst.Is6():
		b = append(b, 0x60, 0, 0, 0, byte(len(tcp)>>8), byte(len(tcp)), tcpfsm.ProtocolTCP, 64)
		s, d := src.As16(), dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	default:
		return ErrAddressFamily
	}
	b = append(b, tcp...)
	p.buf = b
	t := p.epoch.Add(time.Duration(at))
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(b)))
	if _, err := p.w.Write(h[:]); err != nil {
		return err
	}
	_, err := p.w.Write(b)
	return err
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Packet is one record read back from a pcap file.
type Packet struct {
	Time     time.Time
	Src, Dst netip.Addr
	TCP      []byte // the TCP segment, from its header on
}

// ReadPcap reads a classic pcap file of raw IP (link type 101) or
// Ethernet (link type 1) records and returns the TCP segments in it.
// Packets that are not TCP are skipped.
func ReadPcap(r io.Reader) ([]Packet, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		return nil, errors.New("trace: not a little-endian microsecond pcap file")
	}
	link := binary.LittleEndian.Uint32(data[20:])
	var out []Packet
	for p := data[24:]; len(p) > 0; {
		if len(p) < 16 {
			return out, errors.New("trace: truncated record header")
		}
		sec, usec := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
		n := int(binary.LittleEndian.Uint32(p[8:]))
		if len(p) < 16+n {
			return out, errors.New("trace: truncated record")
		}
		frame := p[16 : 16+n]
		p = p[16+n:]
		if link == 1 {
			if len(frame) < 14 {
				continue
			}
			frame = frame[14:]
		}
		pkt, ok := parseIP(frame)
		if !ok {
			continue
		}
		pkt.Time = time.Unix(int64(sec), int64(usec)*1000)
		out = append(out, pkt)
	}
	return out, nil
}

func parseIP(b []byte) (Packet, bool) {
	if len(b) < 1 {
		return Packet{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 || b[9] != tcpfsm.ProtocolTCP {
			return Packet{}, false
		}
		ihl, total := int(b[0]&0xf)*4, int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || total > len(b) || total < ihl {
			return Packet{}, false
		}
		return Packet{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])), TCP: b[ihl:total]}, true
	case 6:
		if len(b) < 40 || b[6] != tcpfsm.ProtocolTCP {
			return Packet{}, false
		}
		n := int(binary.BigEndian.Uint16(b[4:]))
		if 40+n > len(b) {
			return Packet{}, false
		}
		return Packet{Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40])), TCP: b[40 : 40+n]}, true
	}
	return Packet{}, false
}
