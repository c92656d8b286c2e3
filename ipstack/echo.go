package ipstack

import (
	"net/netip"

	"github.com/tcpfsm/tcpfsm/ip"
)

// SendEcho queues an echo request from src to dst with identifier id,
// sequence number seq and data (RFC 792 "Echo or Echo Reply Message",
// RFC 4443 section 4.1). An invalid src takes the stack's address of
// dst's family.
func (s *Stack) SendEcho(src, dst netip.Addr, id, seq uint16, data []byte) error {
	dst = dst.Unmap().WithZone("")
	if !src.IsValid() || src.IsUnspecified() {
		var ok bool
		if src, ok = s.LocalFor(dst); !ok {
			return ErrNoAddress
		}
	}
	v6 := dst.Is6()
	if src.Unmap().Is6() != v6 {
		return ErrNoAddress
	}
	hl := ip.HeaderLenFor(dst)
	if hl+ip.ICMPHeaderLen+len(data) > s.cfg.MTU {
		return ErrTooLarge
	}
	b := s.out.slot()
	if b == nil {
		s.stats.OutputDropped++
		return ErrQueueFull
	}
	typ := uint8(ip.ICMPv4Echo)
	if v6 {
		typ = ip.ICMPv6EchoRequest
	}
	copy(b[hl+ip.ICMPHeaderLen:], data)
	n, err := ip.PutICMP(b[hl:], v6, src, dst, typ, 0, uint32(id)<<16|uint32(seq), len(data))
	if err == nil {
		err = s.header(b, src, dst, icmpProto(v6), n)
	}
	if err != nil {
		return err
	}
	s.out.push(hl + n)
	return nil
}

// WatchEcho starts (on) or stops keeping the echo replies that arrive,
// for RecvEcho; calls nest, one per pinging socket. While nobody watches
// replies are counted and dropped.
func (s *Stack) WatchEcho(on bool) {
	if on {
		s.echoN++
		return
	}
	if s.echoN > 0 {
		s.echoN--
	}
	if s.echoN == 0 {
		for s.echo.len() > 0 {
			s.echo.pop()
		}
	}
}

// RecvEcho copies the oldest kept echo reply into p, from its ICMP
// header on (RFC 792, RFC 4443 section 4.2), and returns its length and
// sender; ok is false when none waits.
func (s *Stack) RecvEcho(p []byte) (n int, from netip.Addr, ok bool) {
	if s.echo.len() == 0 {
		return 0, netip.Addr{}, false
	}
	n = copy(p, s.echo.front())
	from = s.echo.frontAddr().Addr()
	s.echo.pop()
	return n, from, true
}

// EchoPending returns the number of echo replies kept for RecvEcho.
func (s *Stack) EchoPending() int { return s.echo.len() }
