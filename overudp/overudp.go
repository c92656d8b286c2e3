// Package overudp carries TCP over UDP: a tcpfsm.Stack whose segments
// travel in the datagrams of a net.PacketConn, exposed as net.Conn and
// net.Listener. Anything that speaks net.Conn, net/http included, runs
// over it. This is a host in tcpfsm's sense: the one place with
// goroutines, a real clock and real I/O.
//
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:9000")
//	tr, _ := overudp.New(pc, tcpfsm.StackConfig{})
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
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

var (
	zero4      = netip.IPv4Unspecified()
	localAddr  = netip.MustParseAddr("fd01::1")
	peerPrefix = [12]byte{0xfd, 0x00}
)

// ErrClosed is returned after the Transport or the Listener was closed.
var ErrClosed = errors.New("overudp: closed")

// Transport runs a tcpfsm.Stack over one net.PacketConn.
type Transport struct {
	pc    net.PacketConn
	clock *tcpfsm.SystemClock

	mu     sync.Mutex
	cond   *sync.Cond
	stack  *tcpfsm.Stack
	peers  map[netip.AddrPort]uint32
	byID   []netip.AddrPort
	timer  *time.Timer
	out    []byte
	closed bool
	done   chan struct{}
}

// New starts a transport on pc. It reads pc until Close.
func New(pc net.PacketConn, cfg tcpfsm.StackConfig) (*Transport, error) {
	s, err := tcpfsm.NewStack(cfg)
	if err != nil {
		return nil, err
	}
	t := &Transport{pc: pc, clock: tcpfsm.NewSystemClock(), stack: s,
		peers: make(map[netip.AddrPort]uint32), byID: []netip.AddrPort{{}},
		out: make([]byte, 65536), done: make(chan struct{})}
	t.cond = sync.NewCond(&t.mu)
	t.timer = time.AfterFunc(time.Hour, t.onTimer)
	go t.readLoop()
	return t, nil
}

// Close stops the transport and closes pc. Connections end without a
// goodbye.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.timer.Stop()
	t.cond.Broadcast()
	t.mu.Unlock()
	err := t.pc.Close()
	<-t.done
	return err
}

// Stats returns the stack's counters.
func (t *Transport) Stats() tcpfsm.StackStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stack.Stats()
}

// peerAddr returns the private address standing for a UDP peer.
func (t *Transport) peerAddr(u netip.AddrPort) netip.Addr {
	id, ok := t.peers[u]
	if !ok {
		id = uint32(len(t.byID))
		t.byID = append(t.byID, u)
		t.peers[u] = id
	}
	var a [16]byte
	copy(a[:], peerPrefix[:])
	binary.BigEndian.PutUint32(a[12:], id)
	return netip.AddrFrom16(a)
}

// udpOf returns the UDP peer a private address stands for.
func (t *Transport) udpOf(a netip.Addr) (netip.AddrPort, bool) {
	b := a.As16()
	id := binary.BigEndian.Uint32(b[12:])
	if int(id) >= len(t.byID) || id == 0 {
		return netip.AddrPort{}, false
	}
	return t.byID[id], true
}

func (t *Transport) readLoop() {
	defer close(t.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := t.pc.ReadFrom(buf)
		if err != nil {
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
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
		t.mu.Lock()
		src := t.peerAddr(ua.AddrPort())
		_ = tcpfsm.SetChecksum(seg, src, localAddr)
		_ = t.stack.Input(seg, src, localAddr, t.clock.Now())
		t.flushLocked()
		t.mu.Unlock()
	}
}

func (t *Transport) onTimer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.stack.Tick(t.clock.Now())
	t.flushLocked()
}

// flushLocked sends what the stack has to send, wakes every waiter, and
// sets the timer for the next deadline.
func (t *Transport) flushLocked() {
	now := t.clock.Now()
	for {
		n, _, dst := t.stack.Output(t.out, now)
		if n == 0 {
			break
		}
		to, ok := t.udpOf(dst)
		if !ok {
			continue
		}
		_ = tcpfsm.SetChecksum(t.out[:n], zero4, zero4)
		_, _ = t.pc.WriteTo(t.out[:n], net.UDPAddrFromAddrPort(to))
	}
	if d, ok := t.stack.NextDeadline(); ok {
		t.timer.Reset(max(d.Sub(now), time.Millisecond))
	}
	t.cond.Broadcast()
}

// wait blocks until woken or the deadline passes; it reports false on
// timeout or close.
func (t *Transport) wait(deadline time.Time) bool {
	if t.closed {
		return false
	}
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		tm := time.AfterFunc(d, func() {
			t.mu.Lock()
			t.cond.Broadcast()
			t.mu.Unlock()
		})
		defer tm.Stop()
	}
	t.cond.Wait()
	return !t.closed
}

// Listener is a net.Listener for one TCP port of the transport.
type Listener struct {
	t      *Transport
	ln     *tcpfsm.Listener
	closed bool
}

// Listen accepts connections to port.
func (t *Transport) Listen(port uint16) (*Listener, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ln, err := t.stack.Listen(port)
	if err != nil {
		return nil, err
	}
	return &Listener{t: t, ln: ln}, nil
}

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	t := l.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if l.closed {
			return nil, ErrClosed
		}
		if e, ok := l.ln.Accept(); ok {
			return t.newConn(e), nil
		}
		if t.closed || !t.wait(time.Time{}) {
			return nil, ErrClosed
		}
	}
}

// Close stops listening.
func (l *Listener) Close() error {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	l.closed = true
	l.ln.Close()
	l.t.cond.Broadcast()
	return nil
}

// Addr returns the transport's local UDP address.
func (l *Listener) Addr() net.Addr { return l.t.pc.LocalAddr() }

// DialContext opens a connection to TCP port port of the transport
// listening at raddr.
func (t *Transport) DialContext(ctx context.Context, raddr *net.UDPAddr, port uint16) (*Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	remote := netip.AddrPortFrom(t.peerAddr(raddr.AddrPort()), port)
	e, err := t.stack.Dial(localAddr, remote, t.clock.Now())
	if err != nil {
		return nil, err
	}
	t.flushLocked()
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stop()
	for !e.Connected() {
		if err := e.Err(); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp-over-udp", Addr: raddr, Err: err}
		}
		if ctx.Err() != nil {
			_ = e.Abort(t.clock.Now())
			t.flushLocked()
			return nil, ctx.Err()
		}
		if !t.wait(time.Time{}) {
			return nil, ErrClosed
		}
	}
	return t.newConn(e), nil
}

// Conn is a TCP connection over UDP. It implements net.Conn and
// CloseWrite.
type Conn struct {
	t        *Transport
	e        *tcpfsm.Endpoint
	rdl, wdl time.Time
	remote   net.Addr
	closed   bool
}

func (t *Transport) newConn(e *tcpfsm.Endpoint) *Conn {
	c := &Conn{t: t, e: e}
	if u, ok := t.udpOf(e.RemoteAddr().Addr()); ok {
		c.remote = &Addr{UDP: net.UDPAddrFromAddrPort(u), Port: e.RemoteAddr().Port()}
	}
	return c
}

// Addr is the address of a TCP-over-UDP endpoint: a UDP address and a TCP port.
type Addr struct {
	UDP  *net.UDPAddr
	Port uint16
}

// Network returns "tcp-over-udp".
func (a *Addr) Network() string { return "tcp-over-udp" }

// String returns the UDP address and TCP port, such as "127.0.0.1:9000/80".
func (a *Addr) String() string { return a.UDP.String() + "/" + itoa(int(a.Port)) }

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Read reads received bytes; it returns io.EOF after the peer closed.
func (c *Conn) Read(p []byte) (int, error) {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if c.closed {
			return 0, net.ErrClosed
		}
		n, err := c.e.Read(p, t.clock.Now())
		if n > 0 || (err != nil && !errors.Is(err, tcpfsm.ErrWouldBlock)) {
			t.flushLocked()
			if errors.Is(err, io.EOF) && n > 0 {
				err = nil
			}
			return n, mapErr(err)
		}
		if len(p) == 0 {
			return 0, nil
		}
		if !t.wait(c.rdl) {
			if t.closed {
				return 0, ErrClosed
			}
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write sends all of p, waiting for room in the send buffer.
func (c *Conn) Write(p []byte) (int, error) {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	sent := 0
	for sent < len(p) {
		if c.closed {
			return sent, net.ErrClosed
		}
		n, err := c.e.Write(p[sent:], t.clock.Now())
		sent += n
		if n > 0 {
			t.flushLocked()
			continue
		}
		if err != nil && !errors.Is(err, tcpfsm.ErrWouldBlock) {
			return sent, mapErr(err)
		}
		if !t.wait(c.wdl) {
			if t.closed {
				return sent, ErrClosed
			}
			return sent, os.ErrDeadlineExceeded
		}
	}
	return sent, nil
}

func mapErr(err error) error {
	if errors.Is(err, tcpfsm.ErrConnectionClosing) || errors.Is(err, tcpfsm.ErrConnectionDoesNotExist) {
		return net.ErrClosed
	}
	return err
}

// Close closes the connection (both halves).
func (c *Conn) Close() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	err := c.e.Close(c.t.clock.Now())
	c.t.flushLocked()
	if errors.Is(err, tcpfsm.ErrConnectionDoesNotExist) {
		return nil
	}
	return err
}

// CloseWrite closes the sending half: the peer reads EOF, and this side
// can still read.
func (c *Conn) CloseWrite() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	err := c.e.CloseWrite(c.t.clock.Now())
	c.t.flushLocked()
	return mapErr(err)
}

// LocalAddr returns the transport's UDP address.
func (c *Conn) LocalAddr() net.Addr { return c.t.pc.LocalAddr() }

// RemoteAddr returns the peer's UDP address and TCP port.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(d time.Time) error {
	c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

// SetReadDeadline sets when a blocked Read gives up.
func (c *Conn) SetReadDeadline(d time.Time) error {
	c.t.mu.Lock()
	c.rdl = d
	c.t.cond.Broadcast()
	c.t.mu.Unlock()
	return nil
}

// SetWriteDeadline sets when a blocked Write gives up.
func (c *Conn) SetWriteDeadline(d time.Time) error {
	c.t.mu.Lock()
	c.wdl = d
	c.t.cond.Broadcast()
	c.t.mu.Unlock()
	return nil
}
