// Package netstack is a drop-in for wireguard-go's tun/netstack built on
// tcpfsm instead of gVisor: CreateNetTUN returns a tun.Device that a
// wireguard-go device.Device reads and writes IP packets through, and a
// *Net whose methods have the names and parameters of wireguard-go's
// (DialContext, DialContextTCPAddrPort, DialTCP, ListenTCP, DialUDP,
// ListenUDP, LookupHost, DialPing, ...). A program switches by changing
// the import path.
//
// Inside, package ipstack parses and builds the IP packets (RFC 791,
// RFC 8200), answers ICMP echo (RFC 792, RFC 4443) and keeps UDP sockets
// (RFC 768); TCP segments go to a host.Host, whose tcpstack.Stack runs
// the connections (RFC 9293) and gives out net.Conn and net.Listener.
// Name resolution sends DNS queries (RFC 1035) through the tunnel to the
// configured servers.
package netstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/ipstack"
	"github.com/tcpfsm/tcpfsm/tcpstack"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// The device queues at most inQueue TCP segments for the TCP host before
// it drops (TCP retransmits them, RFC 9293 section 3.8.1), and at most
// outQueue segments from it before the host's writer waits.
const (
	inQueue  = 4096
	outQueue = 4096
)

// netTun is the device and the stack behind it. One mutex guards the
// IP stack and both segment queues; the TCP host has its own.
type netTun struct {
	mu       sync.Mutex
	ip       *ipstack.Stack
	clock    *tcpfsm.SystemClock
	in       segQueue // arrived TCP segments, for the host's reader
	out      segQueue // TCP segments the host wrote, for Read
	free     [][]byte // segment buffers for reuse
	readyUDP []*ipstack.UDPSocket
	udp      map[*ipstack.UDPSocket]*UDPConn
	pings    map[*PingConn]struct{}
	closed   bool

	inWake   chan struct{} // the host's reader waits on it
	outWake  chan struct{} // Read waits on it
	outRoom  chan struct{} // the host's writer waits on it for room in out
	done     chan struct{} // closed by Close
	events   chan tun.Event
	host     *host.Host
	mtu      int
	segMax   int
	dns      []netip.Addr
	hasV4    bool
	hasV6    bool
	addrs    []netip.Addr
	closeOne sync.Once
}

// Net is the userspace network behind a device made by CreateNetTUN: it
// dials and listens as package net does, over the tunnel.
type Net netTun

// TCPConn is a TCP connection over the tunnel; it behaves as a
// *net.TCPConn (RFC 9293 section 3.10).
type TCPConn = host.Conn

// TCPListener accepts TCP connections over the tunnel (RFC 9293 section
// 3.10.1).
type TCPListener = host.Listener

// CreateNetTUN returns a tun.Device for a wireguard-go device.Device and
// the *Net behind it, with the given local addresses (IPv4 and IPv6),
// DNS servers to resolve names through the tunnel (RFC 1035), and MTU
// (at least 1280, RFC 8200 section 5).
func CreateNetTUN(localAddresses, dnsServers []netip.Addr, mtu int) (tun.Device, *Net, error) {
	t := &netTun{
		clock:   tcpfsm.NewSystemClock(),
		udp:     make(map[*ipstack.UDPSocket]*UDPConn),
		pings:   make(map[*PingConn]struct{}),
		inWake:  make(chan struct{}, 1),
		outWake: make(chan struct{}, 1),
		outRoom: make(chan struct{}, 1),
		done:    make(chan struct{}),
		events:  make(chan tun.Event, 10),
		mtu:     mtu,
		dns:     append([]netip.Addr(nil), dnsServers...),
	}
	for _, a := range localAddresses {
		a = a.Unmap()
		t.addrs = append(t.addrs, a)
		t.hasV4 = t.hasV4 || a.Is4()
		t.hasV6 = t.hasV6 || a.Is6()
	}
	ips, err := ipstack.New(ipstack.Config{Addrs: t.addrs, TCP: (*tcpSide)(t), MTU: mtu})
	if err != nil {
		return nil, nil, err
	}
	t.ip = ips
	// The MSS leaves room for an IPv6 header, the larger (RFC 9293
	// section 3.7.1), so one value serves both families.
	mss := mtu - 40 - 20
	t.segMax = mss + 60
	var cfg tcpstack.Config
	cfg.Endpoint.MSS = uint16(mss)
	cfg.Endpoint.RecvBuffer = 4 << 20
	cfg.Endpoint.SendBuffer = 4 << 20
	h, err := host.New((*linkSide)(t), host.Config{Stack: cfg, Addrs: t.addrs})
	if err != nil {
		return nil, nil, err
	}
	t.host = h
	t.events <- tun.EventUp
	return t, (*Net)(t), nil
}

// Name returns "go", as wireguard-go's netstack does.
func (t *netTun) Name() (string, error) { return "go", nil }

// File returns nil: the device has no file descriptor.
func (t *netTun) File() *os.File { return nil }

// Events returns the device's events: EventUp once, then nothing until
// Close closes the channel.
func (t *netTun) Events() <-chan tun.Event { return t.events }

// MTU returns the MTU given to CreateNetTUN.
func (t *netTun) MTU() (int, error) { return t.mtu, nil }

// BatchSize is the most packets Read returns and Write takes at once:
// wireguard-go's ideal batch.
func (t *netTun) BatchSize() int { return conn.IdealBatchSize }

// Read writes the packets the stack has to send into bufs, each from
// offset on, and their lengths into sizes; it blocks until there is one.
func (t *netTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return 0, os.ErrClosed
		}
		now := t.clock.Now()
		had := t.out.len() >= outQueue
		n := 0
		for n < len(bufs) && n < len(sizes) {
			k := t.ip.Output(bufs[n][offset:], now)
			if k == 0 {
				break
			}
			sizes[n] = k
			n++
		}
		room := had && t.out.len() < outQueue
		t.mu.Unlock()
		if room {
			signal(t.outRoom)
		}
		if n > 0 {
			return n, nil
		}
		select {
		case <-t.outWake:
		case <-t.done:
		}
	}
}

// Write hands the packets in bufs, each from offset on, to the stack.
// Packets it cannot use are dropped and counted (Stats), as an
// interface drops them, so it always reports them all written.
func (t *netTun) Write(bufs [][]byte, offset int) (int, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return 0, os.ErrClosed
	}
	now := t.clock.Now()
	before := t.in.len()
	for _, b := range bufs {
		if len(b) > offset {
			_ = t.ip.Input(b[offset:], now)
		}
	}
	gotTCP := t.in.len() > before
	pending := t.ip.Pending()
	t.readyUDP = t.ip.UDPReady(t.readyUDP[:0])
	for _, u := range t.readyUDP {
		if c := t.udp[u]; c != nil {
			signal(c.rwake)
		}
	}
	clear(t.readyUDP)
	if t.ip.EchoPending() > 0 {
		for p := range t.pings {
			signal(p.rwake)
		}
	}
	t.mu.Unlock()
	if gotTCP {
		signal(t.inWake)
	}
	if pending {
		signal(t.outWake)
	}
	return len(bufs), nil
}

// Close closes the device and every connection over it.
func (t *netTun) Close() error {
	t.closeOne.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.done)
		_ = t.host.Close()
		close(t.events)
	})
	return nil
}

// Stats returns the IP layer's counters.
func (n *Net) Stats() ipstack.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ip.Stats()
}

// TCPStats returns the TCP layer's counters.
func (n *Net) TCPStats() tcpstack.Stats { return n.host.Stats() }

// signal wakes a waiter without blocking: one pending signal is enough.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// tcpSide is the device seen by the IP stack as its TCP layer: arriving
// segments queue for the host, and the host's segments queue for
// Output. Its methods run with t.mu held.
type tcpSide netTun

// Input queues an arriving segment for the host's reader (RFC 9293
// section 3.10.7); a full queue drops it.
func (s *tcpSide) Input(tcp []byte, src, dst netip.Addr, _ tcpfsm.Time) error {
	t := (*netTun)(s)
	if t.in.len() >= inQueue {
		return errQueueFull
	}
	t.in.push(t.copySeg(tcp), src, dst)
	return nil
}

// Output hands the IP stack the next segment the host wrote.
func (s *tcpSide) Output(buf []byte, _ tcpfsm.Time) (int, netip.Addr, netip.Addr) {
	t := (*netTun)(s)
	if t.out.len() == 0 {
		return 0, netip.Addr{}, netip.Addr{}
	}
	b, src, dst := t.out.pop()
	n := copy(buf, b)
	t.recycle(b)
	return n, src, dst
}

// PathMTU applies an ICMP "fragmentation needed" or "packet too big"
// message to the connection it quotes (RFC 1191, RFC 8201, checked as
// RFC 5927 asks). It runs with t.mu held and takes the host's lock,
// which the host never holds while it calls the device.
func (s *tcpSide) PathMTU(local, remote netip.AddrPort, seq tcpfsm.Seq, mtu int, _ tcpfsm.Time) error {
	t := (*netTun)(s)
	if t.host == nil {
		return errNoHost
	}
	return t.host.PathMTU(local, remote, seq, mtu)
}

var errNoHost = errors.New("netstack: no TCP host yet")

var errQueueFull = errors.New("netstack: TCP input queue full")

func (t *netTun) copySeg(p []byte) []byte {
	var b []byte
	if k := len(t.free); k > 0 {
		b, t.free = t.free[k-1], t.free[:k-1]
	}
	return append(b, p...)
}

// recycle keeps a segment buffer for reuse, up to maxFree of them.
func (t *netTun) recycle(b []byte) {
	if len(t.free) < maxFree {
		t.free = append(t.free, b[:0])
	}
}

const maxFree = 1024

// waitLocked releases t.mu until ch is signaled, deadline passes or the
// device closes, and takes it again. The caller checks its condition
// again afterwards.
func (t *netTun) waitLocked(ch chan struct{}, deadline time.Time) {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		tm := time.NewTimer(time.Until(deadline))
		defer tm.Stop()
		expired = tm.C
	}
	t.mu.Unlock()
	select {
	case <-ch:
	case <-expired:
	case <-t.done:
	}
	t.mu.Lock()
}

// linkSide is the device seen by the host as its host.Link.
type linkSide netTun

// ReadSegment returns one arriving TCP segment, waiting for it.
func (l *linkSide) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	var segs [1]host.SegmentInfo
	if _, err := l.ReadSegments(buf, segs[:]); err != nil {
		return 0, netip.Addr{}, netip.Addr{}, err
	}
	return segs[0].N, segs[0].Src, segs[0].Dst, nil
}

// ReadSegments returns the arrived TCP segments that fit, waiting for
// at least one (host.BatchLink).
func (l *linkSide) ReadSegments(buf []byte, segs []host.SegmentInfo) (int, error) {
	t := (*netTun)(l)
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return 0, net.ErrClosed
		}
		n, off := 0, 0
		for n < len(segs) && t.in.len() > 0 && len(t.in.front()) <= len(buf)-off {
			b, src, dst := t.in.pop()
			k := copy(buf[off:], b)
			segs[n] = host.SegmentInfo{Off: off, N: k, Src: src, Dst: dst}
			off += k
			n++
			t.recycle(b)
		}
		t.mu.Unlock()
		if n > 0 {
			return n, nil
		}
		select {
		case <-t.inWake:
		case <-t.done:
		}
	}
}

// WriteSegment queues a segment of the host's for Read, waiting while
// the queue is full.
func (l *linkSide) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	t := (*netTun)(l)
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return net.ErrClosed
		}
		if t.out.len() < outQueue {
			t.out.push(t.copySeg(tcp), src, dst)
			t.mu.Unlock()
			signal(t.outWake)
			return nil
		}
		t.mu.Unlock()
		select {
		case <-t.outRoom:
		case <-t.done:
		}
	}
}

// Close is the host's: the device closes it.
func (l *linkSide) Close() error { return nil }

// LocalAddrs returns the device's addresses (host.AddrLink).
func (l *linkSide) LocalAddrs() []netip.Addr { return l.addrs }

// segQueue is a FIFO of segments with their addresses.
type segQueue struct {
	q    []seg
	head int
}

type seg struct {
	b        []byte
	src, dst netip.Addr
}

func (q *segQueue) len() int      { return len(q.q) - q.head }
func (q *segQueue) front() []byte { return q.q[q.head].b }

func (q *segQueue) push(b []byte, src, dst netip.Addr) {
	if q.head > 0 && q.head >= len(q.q)/2 {
		// Slide the live entries down, so a queue that never empties
		// does not grow its slice forever.
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q, q.head = q.q[:n], 0
	}
	q.q = append(q.q, seg{b, src, dst})
}

func (q *segQueue) pop() ([]byte, netip.Addr, netip.Addr) {
	s := q.q[q.head]
	q.q[q.head] = seg{}
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	return s.b, s.src, s.dst
}
