package ipstack

import (
	"net/netip"

	"github.com/tcpfsm/tcpfsm/ip"
)

// UDPSocket is a UDP endpoint bound to a port (RFC 768): datagrams that
// arrive for it wait in a bounded queue for Recv, and Send queues
// datagrams for the Stack's Output.
type UDPSocket struct {
	s      *Stack
	local  netip.AddrPort // address unspecified: any of the stack's
	q      queue
	closed bool
	ready  bool // in s.ready
}

// BindUDP opens a UDP socket on local (RFC 768; RFC 1122 section 4.1.3).
// Port 0 picks a free ephemeral port (RFC 6335 section 6). An
// unspecified address takes datagrams to any of the stack's addresses;
// one port has at most one socket.
func (s *Stack) BindUDP(local netip.AddrPort) (*UDPSocket, error) {
	addr := local.Addr().Unmap().WithZone("")
	if addr.IsValid() && !addr.IsUnspecified() && !s.ours(addr) {
		return nil, ErrNoAddress
	}
	port := local.Port()
	if port == 0 {
		span := int(s.cfg.EphemeralHigh-s.cfg.EphemeralLow) + 1
		for range span {
			p := s.next
			if s.next == s.cfg.EphemeralHigh {
				s.next = s.cfg.EphemeralLow
			} else {
				s.next++
			}
			if _, used := s.udp[p]; !used {
				port = p
				break
			}
		}
		if port == 0 {
			return nil, ErrNoPorts
		}
	} else if _, used := s.udp[port]; used {
		return nil, ErrPortInUse
	}
	u := &UDPSocket{s: s, local: netip.AddrPortFrom(addr, port)}
	u.q.init(s.cfg.UDPQueue, s.cfg.MTU)
	s.udp[port] = u
	return u, nil
}

// LocalAddr returns the address and port the socket is bound to.
func (u *UDPSocket) LocalAddr() netip.AddrPort { return u.local }

// Close unbinds the socket; queued datagrams are dropped.
func (u *UDPSocket) Close() {
	if u.closed {
		return
	}
	u.closed = true
	if u.s.udp[u.local.Port()] == u {
		delete(u.s.udp, u.local.Port())
	}
	u.q = queue{}
}

// Pending returns the number of datagrams waiting for Recv.
func (u *UDPSocket) Pending() int { return u.q.len() }

// Recv copies the oldest queued datagram into p (cut to len(p), as
// recvfrom(2) does) and returns its length and sender; ok is false when
// none waits.
func (u *UDPSocket) Recv(p []byte) (n int, from netip.AddrPort, ok bool) {
	if u.q.len() == 0 {
		return 0, netip.AddrPort{}, false
	}
	n = copy(p, u.q.front())
	from = u.q.frontAddr()
	u.q.pop()
	return n, from, true
}

// Send queues the datagram p to dst from src for Output (RFC 768). An
// invalid src takes the socket's address, or the stack's address of
// dst's family. It fails when p does not fit the MTU (no fragmentation,
// RFC 8900) or the output queue is full.
func (u *UDPSocket) Send(p []byte, src netip.Addr, dst netip.AddrPort) error {
	s := u.s
	if u.closed {
		return ErrClosed
	}
	daddr := dst.Addr().Unmap().WithZone("")
	if !src.IsValid() || src.IsUnspecified() {
		src = u.local.Addr()
	}
	if !src.IsValid() || src.IsUnspecified() || src.Is4() != daddr.Is4() {
		var ok bool
		if src, ok = s.LocalFor(daddr); !ok {
			return ErrNoAddress
		}
	}
	hl := ip.HeaderLenFor(daddr)
	if hl+ip.UDPHeaderLen+len(p) > s.cfg.MTU {
		return ErrTooLarge
	}
	b := s.out.slot()
	if b == nil {
		s.stats.OutputDropped++
		return ErrQueueFull
	}
	copy(b[hl+ip.UDPHeaderLen:], p)
	n, err := ip.PutUDP(b[hl:], src, daddr, u.local.Port(), dst.Port(), len(p))
	if err == nil {
		err = s.header(b, src, daddr, ip.ProtoUDP, n)
	}
	if err != nil {
		return err
	}
	s.out.push(hl + n)
	s.stats.UDPOut++
	return nil
}

// inputUDP queues a datagram for its socket, or answers port
// unreachable (RFC 1122 section 4.1.3.1, RFC 792, RFC 4443 section 3.1).
func (s *Stack) inputUDP(p *ip.Packet, pkt []byte) error {
	var d ip.UDP
	if err := ip.ParseUDP(p.Payload, p.Src, p.Dst, &d); err != nil {
		s.stats.BadChecksum++
		return err
	}
	s.stats.UDPIn++
	u := s.udp[d.DstPort]
	if u == nil || (u.local.Addr().IsValid() && !u.local.Addr().IsUnspecified() && u.local.Addr() != p.Dst) {
		s.stats.UDPNoPort++
		if p.Version == 6 {
			s.sendError(p, pkt, ip.ICMPv6DestUnreachable, ip.ICMPv6CodePortUnreach, 0)
		} else {
			s.sendError(p, pkt, ip.ICMPv4DestUnreachable, ip.ICMPv4CodePortUnreach, 0)
		}
		return nil
	}
	b := u.q.slot()
	if b == nil {
		s.stats.UDPQueueFull++
		return ErrQueueFull
	}
	u.q.push(copy(b, d.Payload))
	u.q.setAddrPort(netip.AddrPortFrom(p.Src, d.SrcPort))
	if !u.ready {
		u.ready = true
		s.ready = append(s.ready, u)
	}
	return nil
}

// UDPReady appends to dst the sockets that received datagrams since the
// last call, each once, and forgets them: a host wakes only their
// readers.
func (s *Stack) UDPReady(dst []*UDPSocket) []*UDPSocket {
	for i, u := range s.ready {
		u.ready = false
		dst = append(dst, u)
		s.ready[i] = nil
	}
	s.ready = s.ready[:0]
	return dst
}
