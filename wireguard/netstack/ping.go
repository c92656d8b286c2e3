package netstack

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
)

// PingAddr is the address of a ping socket: an IP address, network
// "ping4" or "ping6" (RFC 792, RFC 4443 section 4).
type PingAddr struct{ addr netip.Addr }

// String returns the address.
func (a PingAddr) String() string { return a.addr.String() }

// Network returns "ping4" or "ping6", or "ping" for no address.
func (a PingAddr) Network() string {
	switch {
	case a.addr.Is4():
		return "ping4"
	case a.addr.Is6():
		return "ping6"
	}
	return "ping"
}

// Addr returns the address.
func (a PingAddr) Addr() netip.Addr { return a.addr }

// PingAddrFromAddr returns a *PingAddr for addr.
func PingAddrFromAddr(addr netip.Addr) *PingAddr { return &PingAddr{addr} }

// PingConn sends ICMP echo requests and reads echo replies (RFC 792,
// RFC 4443 sections 4.1 and 4.2). Writes take a whole ICMP echo message,
// header first, as wireguard-go's does; reads return the reply from its
// ICMP header on. Sockets share the replies: one reads each.
type PingConn struct {
	t      *netTun
	laddr  PingAddr
	raddr  PingAddr
	rwake  chan struct{}
	rdl    time.Time
	closed bool
}

var errPing = errors.New("ping: not an ICMP echo request of the socket's family")

// DialPingAddr opens a ping socket from laddr to raddr; either may be
// invalid (not both).
func (n *Net) DialPingAddr(laddr, raddr netip.Addr) (*PingConn, error) {
	t := (*netTun)(n)
	if !laddr.IsValid() && !raddr.IsValid() {
		return nil, errors.New("ping dial: invalid address")
	}
	v6 := laddr.Is6() || raddr.Is6()
	if !laddr.IsValid() {
		laddr = netip.IPv4Unspecified()
		if v6 {
			laddr = netip.IPv6Unspecified()
		}
	}
	pc := &PingConn{t: t, laddr: PingAddr{laddr}, raddr: PingAddr{raddr}, rwake: make(chan struct{}, 1)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	t.pings[pc] = struct{}{}
	t.ip.WatchEcho(true)
	return pc, nil
}

// ListenPingAddr opens an unconnected ping socket on laddr.
func (n *Net) ListenPingAddr(laddr netip.Addr) (*PingConn, error) {
	return n.DialPingAddr(laddr, netip.Addr{})
}

// DialPing is DialPingAddr for *PingAddr values; either may be nil.
func (n *Net) DialPing(laddr, raddr *PingAddr) (*PingConn, error) {
	var la, ra netip.Addr
	if laddr != nil {
		la = laddr.addr
	}
	if raddr != nil {
		ra = raddr.addr
	}
	return n.DialPingAddr(la, ra)
}

// ListenPing is ListenPingAddr for a *PingAddr, which may be nil.
func (n *Net) ListenPing(laddr *PingAddr) (*PingConn, error) {
	var la netip.Addr
	if laddr != nil {
		la = laddr.addr
	}
	return n.ListenPingAddr(la)
}

// LocalAddr returns the socket's address.
func (pc *PingConn) LocalAddr() net.Addr { return pc.laddr }

// RemoteAddr returns the connected address.
func (pc *PingConn) RemoteAddr() net.Addr { return pc.raddr }

// Close closes the socket.
func (pc *PingConn) Close() error {
	t := pc.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if pc.closed {
		return net.ErrClosed
	}
	pc.closed = true
	delete(t.pings, pc)
	t.ip.WatchEcho(false)
	signal(pc.rwake)
	return nil
}

// WriteTo sends the ICMP echo request p (RFC 792 type 8, RFC 4443 type
// 128, with its header) to addr, a *PingAddr or *net.IPAddr.
func (pc *PingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	var to netip.Addr
	switch v := addr.(type) {
	case *PingAddr:
		to = v.addr
	case PingAddr:
		to = v.addr
	case *net.IPAddr:
		to, _ = netip.AddrFromSlice(v.IP)
		to = to.Unmap()
	default:
		return 0, errors.New("ping write: wrong net.Addr type")
	}
	if to.Is4() != pc.laddr.addr.Is4() || len(p) < 8 {
		return 0, errPing
	}
	if to.Is4() && p[0] != 8 || to.Is6() && p[0] != 128 {
		return 0, errPing
	}
	t := pc.t
	t.mu.Lock()
	if pc.closed || t.closed {
		t.mu.Unlock()
		return 0, net.ErrClosed
	}
	src := pc.laddr.addr
	if src.IsUnspecified() {
		src = netip.Addr{}
	}
	err := t.ip.SendEcho(src, to, binary.BigEndian.Uint16(p[4:]), binary.BigEndian.Uint16(p[6:]), p[8:])
	t.mu.Unlock()
	if err != nil {
		return 0, err
	}
	signal(t.outWake)
	return len(p), nil
}

// Write sends p to the connected address.
func (pc *PingConn) Write(p []byte) (int, error) { return pc.WriteTo(p, &pc.raddr) }

// ReadFrom reads the next echo reply into p and returns its sender.
func (pc *PingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	t := pc.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if pc.closed || t.closed {
			return 0, nil, net.ErrClosed
		}
		if n, from, ok := t.ip.RecvEcho(p); ok {
			return n, &PingAddr{from}, nil
		}
		if !pc.rdl.IsZero() && !time.Now().Before(pc.rdl) {
			return 0, nil, os.ErrDeadlineExceeded
		}
		t.waitLocked(pc.rwake, pc.rdl)
	}
}

// Read reads the next echo reply into p.
func (pc *PingConn) Read(p []byte) (int, error) {
	n, _, err := pc.ReadFrom(p)
	return n, err
}

// SetDeadline sets the read deadline (writes never block).
func (pc *PingConn) SetDeadline(d time.Time) error { return pc.SetReadDeadline(d) }

// SetReadDeadline sets when reads fail with os.ErrDeadlineExceeded.
func (pc *PingConn) SetReadDeadline(d time.Time) error {
	pc.t.mu.Lock()
	pc.rdl = d
	pc.t.mu.Unlock()
	signal(pc.rwake)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (pc *PingConn) SetWriteDeadline(time.Time) error { return nil }
