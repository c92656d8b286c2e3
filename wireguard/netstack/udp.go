package netstack

import (
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/tcpfsm/tcpfsm/ipstack"
)

// UDPConn is a UDP socket over the tunnel (RFC 768): a net.PacketConn,
// and a net.Conn once connected to a remote address by DialUDP.
type UDPConn struct {
	t      *netTun
	s      *ipstack.UDPSocket
	local  netip.AddrPort
	remote netip.AddrPort // valid if connected
	rwake  chan struct{}
	rdl    time.Time
	wdl    time.Time
	closed bool
}

// DialUDPAddrPort opens a UDP socket on laddr (port 0: an ephemeral
// port), connected to raddr if it is valid, as net.DialUDP does.
func (n *Net) DialUDPAddrPort(laddr, raddr netip.AddrPort) (*UDPConn, error) {
	t := (*netTun)(n)
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, &net.OpError{Op: "dial", Net: "udp", Err: net.ErrClosed}
	}
	s, err := t.ip.BindUDP(laddr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "udp", Source: net.UDPAddrFromAddrPort(laddr), Err: err}
	}
	c := &UDPConn{t: t, s: s, local: s.LocalAddr(), rwake: make(chan struct{}, 1)}
	if raddr.IsValid() {
		c.remote = raddr
		if src, ok := t.ip.LocalFor(raddr.Addr()); ok && !c.local.Addr().IsValid() {
			c.local = netip.AddrPortFrom(src, c.local.Port())
		}
	}
	t.udp[s] = c
	return c, nil
}

// ListenUDPAddrPort opens an unconnected UDP socket on laddr.
func (n *Net) ListenUDPAddrPort(laddr netip.AddrPort) (*UDPConn, error) {
	return n.DialUDPAddrPort(laddr, netip.AddrPort{})
}

// DialUDP is DialUDPAddrPort for *net.UDPAddr values; either may be nil.
func (n *Net) DialUDP(laddr, raddr *net.UDPAddr) (*UDPConn, error) {
	return n.DialUDPAddrPort(udpAddrPort(laddr), udpAddrPort(raddr))
}

// ListenUDP is ListenUDPAddrPort for a *net.UDPAddr, which may be nil.
func (n *Net) ListenUDP(laddr *net.UDPAddr) (*UDPConn, error) {
	return n.DialUDP(laddr, nil)
}

func udpAddrPort(a *net.UDPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

func (c *UDPConn) opErr(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
}

// ReadFrom reads the next datagram into p (cut to len(p)) and returns its
// sender. A connected socket drops datagrams from anyone else.
func (c *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.readFrom("read", p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *UDPConn) readFrom(op string, p []byte) (int, netip.AddrPort, error) {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if c.closed || t.closed {
			return 0, netip.AddrPort{}, c.opErr(op, nil, net.ErrClosed)
		}
		n, from, ok := c.s.Recv(p)
		if ok {
			if c.remote.IsValid() && from != c.remote {
				continue
			}
			return n, from, nil
		}
		if !c.rdl.IsZero() && !time.Now().Before(c.rdl) {
			return 0, netip.AddrPort{}, c.opErr(op, nil, os.ErrDeadlineExceeded)
		}
		t.waitLocked(c.rwake, c.rdl)
	}
}

// Read reads the next datagram of a connected socket.
func (c *UDPConn) Read(p []byte) (int, error) {
	n, _, err := c.readFrom("read", p)
	return n, err
}

// WriteTo sends p as one datagram to addr, a *net.UDPAddr.
func (c *UDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opErr("write", addr, net.InvalidAddrError("not a *net.UDPAddr"))
	}
	return c.writeTo(p, udpAddrPort(ua))
}

// WriteToUDPAddrPort sends p as one datagram to addr.
func (c *UDPConn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	return c.writeTo(p, addr)
}

func (c *UDPConn) writeTo(p []byte, to netip.AddrPort) (int, error) {
	t := c.t
	t.mu.Lock()
	if c.closed || t.closed {
		t.mu.Unlock()
		return 0, c.opErr("write", net.UDPAddrFromAddrPort(to), net.ErrClosed)
	}
	if !c.wdl.IsZero() && !time.Now().Before(c.wdl) {
		t.mu.Unlock()
		return 0, c.opErr("write", net.UDPAddrFromAddrPort(to), os.ErrDeadlineExceeded)
	}
	err := c.s.Send(p, c.local.Addr(), to)
	t.mu.Unlock()
	if err != nil {
		return 0, c.opErr("write", net.UDPAddrFromAddrPort(to), err)
	}
	signal(t.outWake)
	return len(p), nil
}

// Write sends p to the connected remote address.
func (c *UDPConn) Write(p []byte) (int, error) {
	if !c.remote.IsValid() {
		return 0, c.opErr("write", nil, net.ErrWriteToConnected)
	}
	return c.writeTo(p, c.remote)
}

// Close closes the socket; blocked reads return net.ErrClosed.
func (c *UDPConn) Close() error {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.closed {
		return c.opErr("close", nil, net.ErrClosed)
	}
	c.closed = true
	c.s.Close()
	delete(t.udp, c.s)
	signal(c.rwake)
	return nil
}

// LocalAddr returns the socket's address as a *net.UDPAddr.
func (c *UDPConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// RemoteAddr returns the connected address, or nil.
func (c *UDPConn) RemoteAddr() net.Addr {
	if !c.remote.IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(c.remote)
}

// SetDeadline sets the read and write deadlines.
func (c *UDPConn) SetDeadline(d time.Time) error {
	_ = c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

// SetReadDeadline sets when blocked and future reads fail with
// os.ErrDeadlineExceeded; zero means never.
func (c *UDPConn) SetReadDeadline(d time.Time) error {
	c.t.mu.Lock()
	c.rdl = d
	c.t.mu.Unlock()
	signal(c.rwake)
	return nil
}

// SetWriteDeadline sets when writes fail with os.ErrDeadlineExceeded.
func (c *UDPConn) SetWriteDeadline(d time.Time) error {
	c.t.mu.Lock()
	c.wdl = d
	c.t.mu.Unlock()
	return nil
}
