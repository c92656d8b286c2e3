// Package overudp carries TCP over UDP: a tcpstack.Stack whose segments
// travel in the datagrams of a net.PacketConn, exposed as net.Conn and
// net.Listener (by package host). Anything that speaks net.Conn, net/http
// included, runs over it.
//
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:9000")
//	tr, _ := overudp.New(pc, tcpstack.Config{})
//	ln, _ := tr.Listen(80)           // a net.Listener
//	http.Serve(ln, handler)
//
//	conn, _ := tr.DialContext(ctx, "tcp-over-udp", "127.0.0.1:9000/80") // a net.Conn
//	conn, _ := tr.DialContextAddrPort(ctx, serverUDPAddrPort, 80)       // the same, a *Conn
//
// Connections are host.Conn values, with their errors and optional
// methods (see package host); their addresses are *Addr values.
// Each datagram holds one TCP segment. The TCP checksum is computed over
// an all-zero pseudo-header (UDP carries the addresses and its own
// checksum); inside, each UDP peer gets a private IPv6 address so the
// stack can tell connections apart.
package overudp

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var (
	zero4      = netip.IPv4Unspecified()
	localAddr  = netip.MustParseAddr("fd01::1")
	peerPrefix = [12]byte{0xfd, 0x00}
)

// ErrClosed is the error, inside a *net.OpError, of calls made after the
// Transport was closed; errors.Is matches it against net.ErrClosed too.
var ErrClosed = host.ErrClosed

// Network is the network name of DialContext and of Addr.
const Network = "tcp-over-udp"

// Conn is a TCP connection over UDP (a net.Conn with CloseWrite).
type Conn = host.Conn

// Listener is a net.Listener for one TCP port of a Transport.
type Listener = host.Listener

// Transport runs a tcpstack.Stack over one net.PacketConn.
type Transport struct {
	h    *host.Host
	link *udpLink
}

// Options are the optional settings of NewWithOptions.
type Options struct {
	// Logger, if set, logs connection events (see host.Config.Logger).
	Logger *slog.Logger
}

// udpLink is the host.Link over a PacketConn.
type udpLink struct {
	pc    net.PacketConn
	mu    sync.Mutex
	peers map[netip.AddrPort]uint32
	byID  []netip.AddrPort
}

// New starts a transport on pc. It reads pc until Close.
func New(pc net.PacketConn, cfg tcpstack.Config) (*Transport, error) {
	return NewWithOptions(pc, cfg, Options{})
}

// NewWithOptions is New with opts.
func NewWithOptions(pc net.PacketConn, cfg tcpstack.Config, opts Options) (*Transport, error) {
	l := &udpLink{pc: pc, peers: map[netip.AddrPort]uint32{}, byID: []netip.AddrPort{{}}}
	h, err := host.New(l, host.Config{Stack: cfg, Addrs: []netip.Addr{localAddr}, Logger: opts.Logger, NetAddr: l.netAddr})
	if err != nil {
		return nil, err
	}
	return &Transport{h: h, link: l}, nil
}

// Close stops the transport and closes its PacketConn. Connections end
// without a goodbye.
func (t *Transport) Close() error { return t.h.Close() }

// Stats returns the stack's counters.
func (t *Transport) Stats() tcpstack.Stats { return t.h.Stats() }

// Host returns the host the transport runs.
func (t *Transport) Host() *host.Host { return t.h }

// Listen accepts connections to TCP port port; port 0 picks a free one.
// Its Addr is the PacketConn's UDP address with the port.
func (t *Transport) Listen(port uint16) (*Listener, error) {
	return t.h.ListenAddrPort(netip.AddrPortFrom(localAddr, port))
}

// DialContext connects to address on network "tcp-over-udp" (Network),
// with the signature of net.Dialer.DialContext: address is
// "udphost:udpport/tcpport", as Addr.String writes it, such as
// "127.0.0.1:9000/80"; udphost may be a name. Errors are those of
// host.Host.DialContext.
func (t *Transport) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != Network {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	udp, port, err := splitAddr(ctx, address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c, err := t.DialContextAddrPort(ctx, udp, port)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialContextAddrPort connects to TCP port port of the transport whose
// PacketConn is at the UDP address udp.
func (t *Transport) DialContextAddrPort(ctx context.Context, udp netip.AddrPort, port uint16) (*Conn, error) {
	return t.h.DialContextAddrPort(ctx, netip.AddrPortFrom(t.link.peerAddr(udp), port))
}

// splitAddr parses "udphost:udpport/tcpport".
func splitAddr(ctx context.Context, address string) (netip.AddrPort, uint16, error) {
	bad := func(why string) (netip.AddrPort, uint16, error) {
		return netip.AddrPort{}, 0, &net.AddrError{Err: why, Addr: address}
	}
	i := strings.LastIndexByte(address, '/')
	if i < 0 {
		return bad("missing TCP port: want udphost:udpport/tcpport")
	}
	port, err := strconv.ParseUint(address[i+1:], 10, 16)
	if err != nil {
		return bad("invalid TCP port")
	}
	if ap, err := netip.ParseAddrPort(address[:i]); err == nil {
		return ap, uint16(port), nil
	}
	host, service, err := net.SplitHostPort(address[:i])
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	udpPort, err := net.DefaultResolver.LookupPort(ctx, "udp", service)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if len(ips) == 0 {
		return bad("no address")
	}
	return netip.AddrPortFrom(ips[0], uint16(udpPort)), uint16(port), nil
}

// peerAddr returns the private address standing for a UDP peer. An
// IPv4 address and its IPv4-mapped IPv6 form (as a dual-stack socket
// reports it) are the same peer.
func (l *udpLink) peerAddr(u netip.AddrPort) netip.Addr {
	u = netip.AddrPortFrom(u.Addr().Unmap(), u.Port())
	l.mu.Lock()
	defer l.mu.Unlock()
	id, ok := l.peers[u]
	if !ok {
		id = uint32(len(l.byID))
		l.byID = append(l.byID, u)
		l.peers[u] = id
	}
	var a [16]byte
	copy(a[:], peerPrefix[:])
	binary.BigEndian.PutUint32(a[12:], id)
	return netip.AddrFrom16(a)
}

// udpOf returns the UDP peer a private address stands for.
func (l *udpLink) udpOf(a netip.Addr) (netip.AddrPort, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := a.As16()
	id := binary.BigEndian.Uint32(b[12:])
	if int(id) >= len(l.byID) || id == 0 {
		return netip.AddrPort{}, false
	}
	return l.byID[id], true
}

// netAddr reports a stack address as an *Addr: the PacketConn's own
// for the local address, the peer's for a private one.
func (l *udpLink) netAddr(a netip.AddrPort) net.Addr {
	if a.Addr() == localAddr {
		u, _ := l.pc.LocalAddr().(*net.UDPAddr)
		return &Addr{UDP: u, Port: a.Port()}
	}
	u, _ := l.udpOf(a.Addr())
	return &Addr{UDP: net.UDPAddrFromAddrPort(u), Port: a.Port()}
}

func (l *udpLink) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	for {
		n, from, err := l.pc.ReadFrom(buf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		seg := buf[:n]
		// The wire checksum uses the all-zero pseudo-header.
		if !tcpfsm.VerifyChecksum(seg, zero4, zero4) {
			continue
		}
		src := l.peerAddr(ua.AddrPort())
		_ = tcpfsm.SetChecksum(seg, src, localAddr)
		return n, src, localAddr, nil
	}
}

func (l *udpLink) WriteSegment(tcp []byte, _, dst netip.Addr) error {
	to, ok := l.udpOf(dst)
	if !ok {
		return nil
	}
	_ = tcpfsm.SetChecksum(tcp, zero4, zero4)
	_, err := l.pc.WriteTo(tcp, net.UDPAddrFromAddrPort(to))
	return err
}

func (l *udpLink) Close() error { return l.pc.Close() }

// Addr is the address of a TCP-over-UDP endpoint: a UDP address and a TCP port.
type Addr struct {
	UDP  *net.UDPAddr
	Port uint16
}

// Network returns "tcp-over-udp".
func (a *Addr) Network() string { return Network }

// String returns the UDP address and TCP port, such as "127.0.0.1:9000/80".
func (a *Addr) String() string {
	return a.UDP.String() + "/" + strconv.Itoa(int(a.Port))
}
