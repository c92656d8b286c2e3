package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DialContextTCPAddrPort connects to addr over the tunnel (RFC 9293
// section 3.10.1), from the device's address of addr's family.
func (n *Net) DialContextTCPAddrPort(ctx context.Context, addr netip.AddrPort) (*TCPConn, error) {
	return n.host.DialContextAddrPort(ctx, addr)
}

// DialContextTCP is DialContextTCPAddrPort for a *net.TCPAddr.
func (n *Net) DialContextTCP(ctx context.Context, addr *net.TCPAddr) (*TCPConn, error) {
	return n.DialContextTCPAddrPort(ctx, tcpAddrPort(addr))
}

// DialTCPAddrPort connects to addr (RFC 9293 section 3.10.1).
func (n *Net) DialTCPAddrPort(addr netip.AddrPort) (*TCPConn, error) {
	return n.DialContextTCPAddrPort(context.Background(), addr)
}

// DialTCP is DialTCPAddrPort for a *net.TCPAddr.
func (n *Net) DialTCP(addr *net.TCPAddr) (*TCPConn, error) {
	return n.DialContextTCPAddrPort(context.Background(), tcpAddrPort(addr))
}

// ListenTCPAddrPort listens on addr (RFC 9293 section 3.10.1): an
// invalid or unspecified address means all of the device's, port 0 an
// ephemeral port.
func (n *Net) ListenTCPAddrPort(addr netip.AddrPort) (*TCPListener, error) {
	return n.host.ListenAddrPort(addr)
}

// ListenTCP is ListenTCPAddrPort for a *net.TCPAddr, which may be nil.
func (n *Net) ListenTCP(addr *net.TCPAddr) (*TCPListener, error) {
	return n.ListenTCPAddrPort(tcpAddrPort(addr))
}

func tcpAddrPort(a *net.TCPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

var errNumericPort = errors.New("port must be numeric")

// DialContext connects to address on network ("tcp", "tcp4", "tcp6",
// "udp", "udp4", "udp6", "ping", "ping4", "ping6") over the tunnel, as
// net.Dialer.DialContext does: a host name is resolved through the
// tunnel (LookupContextHost) and its addresses tried in order.
func (n *Net) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, fam := network, byte(0)
	if k := len(network); k > 0 && (network[k-1] == '4' || network[k-1] == '6') {
		proto, fam = network[:k-1], network[k-1]
	}
	if proto != "tcp" && proto != "udp" && proto != "ping" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	hostname, port := address, 0
	if proto != "ping" {
		h, sport, err := net.SplitHostPort(address)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		p, err := strconv.Atoi(sport)
		if err != nil || p < 0 || p > 65535 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errNumericPort}
		}
		hostname, port = h, p
	}
	hostname = strings.TrimSuffix(strings.TrimPrefix(hostname, "["), "]")
	names, err := n.LookupContextHost(ctx, hostname)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var first error
	for _, s := range names {
		a, err := netip.ParseAddr(s)
		if err != nil || fam == '4' && !a.Is4() || fam == '6' && !a.Is6() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		ap := netip.AddrPortFrom(a, uint16(port))
		var c net.Conn
		switch proto {
		case "tcp":
			c, err = n.DialContextTCPAddrPort(ctx, ap)
		case "udp":
			c, err = n.DialUDPAddrPort(netip.AddrPort{}, ap)
		case "ping":
			c, err = n.DialPingAddr(netip.Addr{}, a)
		}
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = &net.OpError{Op: "dial", Net: network, Err: &net.AddrError{Err: "no suitable address", Addr: hostname}}
	}
	return nil, first
}

// Dial is DialContext with context.Background().
func (n *Net) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}
