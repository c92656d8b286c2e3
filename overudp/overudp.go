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
//	conn, _ := tr.DialContext(ctx, serverUDPAddr, 80) // a net.Conn
//
// Each datagram holds one TCP segment. The TCP checksum is computed over
// an all-zero pseudo-header (UDP carries the addresses and its own
// checksum); inside, each UDP peer gets a private IPv6 address so the
// stack can tell connections apart.
package overudp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
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

// ErrClosed is returned after the Transport or the Listener was closed.
var ErrClosed = host.ErrClosed

// Conn is a TCP connection over UDP (a net.Conn with CloseWrite).
type Conn = host.Conn

// Listener is a net.Listener for one TCP port of a Transport.
type Listener = host.Listener

// Transport runs a tcpstack.Stack over one net.PacketConn.
type Transport struct {
	*host.Host
	link *udpLink
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
	l := &udpLink{pc: pc, peers: map[netip.AddrPort]uint32{}, byID: []netip.AddrPort{{}}}
	h, err := host.New(l, cfg)
	if err != nil {
		return nil, err
	}
	return &Transport{Host: h, link: l}, nil
}

// Listen accepts connections to TCP port port.
func (t *Transport) Listen(port uint16) (*Listener, error) {
	ln, err := t.Host.Listen(port, t.link.pc.LocalAddr())
	if err != nil {
		return nil, err
	}
	ln.SetRemoteAddr(t.link.addrOf)
	return ln, nil
}

// DialContext opens a connection to TCP port port of the transport
// listening at raddr.
func (t *Transport) DialContext(ctx context.Context, raddr *net.UDPAddr, port uint16) (*Conn, error) {
	remote := netip.AddrPortFrom(t.link.peerAddr(raddr.AddrPort()), port)
	return t.Host.Dial(ctx, localAddr, remote, &Addr{UDP: raddr, Port: port})
}

// peerAddr returns the private address standing for a UDP peer.
func (l *udpLink) peerAddr(u netip.AddrPort) netip.Addr {
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

func (l *udpLink) addrOf(e *tcpstack.Endpoint) net.Addr {
	u, _ := l.udpOf(e.RemoteAddr().Addr())
	return &Addr{UDP: net.UDPAddrFromAddrPort(u), Port: e.RemoteAddr().Port()}
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
func (a *Addr) Network() string { return "tcp-over-udp" }

// String returns the UDP address and TCP port, such as "127.0.0.1:9000/80".
func (a *Addr) String() string {
	return a.UDP.String() + "/" + netip.AddrPortFrom(netip.IPv4Unspecified(), a.Port).String()[len("0.0.0.0:"):]
}
