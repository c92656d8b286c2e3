// Package host runs a tcpfsm.Stack over any packet link and gives the
// application net.Conn and net.Listener: the goroutines, the real clock
// and the blocking calls that tcpfsm itself leaves out. A Link moves TCP
// segments with their IP addresses; package overudp carries them in UDP
// datagrams, and a TUN device carries them as IP packets to the kernel.
package host

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Link moves TCP segments. ReadSegment blocks until one arrives and
// returns its length and addresses; it returns an error once the link is
// closed. WriteSegment sends one. Both carry the TCP segment from its
// header on, its checksum computed over src and dst.
type Link interface {
	ReadSegment(buf []byte) (n int, src, dst netip.Addr, err error)
	WriteSegment(tcp []byte, src, dst netip.Addr) error
	Close() error
}

// ErrClosed is returned after the Host or a Listener was closed.
var ErrClosed = errors.New("host: closed")

// Host runs a Stack over a Link.
type Host struct {
	link  Link
	clock *tcpfsm.SystemClock

	mu     sync.Mutex
	cond   *sync.Cond
	stack  *tcpfsm.Stack
	timer  *time.Timer
	out    []byte
	closed bool
	done   chan struct{}
}

// New starts a host on link. It reads the link until Close.
func New(link Link, cfg tcpfsm.StackConfig) (*Host, error) {
	s, err := tcpfsm.NewStack(cfg)
	if err != nil {
		return nil, err
	}
	h := &Host{link: link, clock: tcpfsm.NewSystemClock(), stack: s, out: make([]byte, 65536), done: make(chan struct{})}
	h.cond = sync.NewCond(&h.mu)
	h.timer = time.AfterFunc(time.Hour, h.onTimer)
	go h.readLoop()
	return h, nil
}

// Close stops the host and closes the link. Connections end without a goodbye.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.timer.Stop()
	h.cond.Broadcast()
	h.mu.Unlock()
	err := h.link.Close()
	<-h.done
	return err
}

// Stats returns the stack's counters.
func (h *Host) Stats() tcpfsm.StackStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stack.Stats()
}

func (h *Host) readLoop() {
	defer close(h.done)
	buf := make([]byte, 65536)
	for {
		n, src, dst, err := h.link.ReadSegment(buf)
		if err != nil {
			h.mu.Lock()
			closed := h.closed
			h.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		h.mu.Lock()
		_ = h.stack.Input(buf[:n], src, dst, h.clock.Now())
		h.flushLocked()
		h.mu.Unlock()
	}
}

func (h *Host) onTimer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.stack.Tick(h.clock.Now())
	h.flushLocked()
}

// flushLocked sends what the stack has to send, wakes every waiter, and
// sets the timer for the next deadline.
func (h *Host) flushLocked() {
	now := h.clock.Now()
	for {
		n, src, dst := h.stack.Output(h.out, now)
		if n == 0 {
			break
		}
		_ = h.link.WriteSegment(h.out[:n], src, dst)
	}
	if d, ok := h.stack.NextDeadline(); ok {
		h.timer.Reset(max(d.Sub(now), time.Millisecond))
	}
	h.cond.Broadcast()
}

// wait blocks until woken or the deadline passes; it reports false on
// timeout or close.
func (h *Host) wait(deadline time.Time) bool {
	if h.closed {
		return false
	}
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		tm := time.AfterFunc(d, func() {
			h.mu.Lock()
			h.cond.Broadcast()
			h.mu.Unlock()
		})
		defer tm.Stop()
	}
	h.cond.Wait()
	return !h.closed
}

// Listener is a net.Listener for one TCP port of the host.
type Listener struct {
	h      *Host
	ln     *tcpfsm.Listener
	addr   net.Addr
	closed bool
	wrap   func(*tcpfsm.Endpoint) net.Addr
}

// Listen accepts connections to port. addr is what Addr reports.
func (h *Host) Listen(port uint16, addr net.Addr) (*Listener, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ln, err := h.stack.Listen(port)
	if err != nil {
		return nil, err
	}
	return &Listener{h: h, ln: ln, addr: addr}, nil
}

// SetRemoteAddr sets how accepted connections report their peer.
func (l *Listener) SetRemoteAddr(f func(*tcpfsm.Endpoint) net.Addr) { l.wrap = f }

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if l.closed {
			return nil, ErrClosed
		}
		if e, ok := l.ln.Accept(); ok {
			c := &Conn{h: h, e: e, local: l.addr}
			if l.wrap != nil {
				c.remote = l.wrap(e)
			} else {
				c.remote = tcpAddr(e.RemoteAddr())
			}
			return c, nil
		}
		if h.closed || !h.wait(time.Time{}) {
			return nil, ErrClosed
		}
	}
}

// Close stops listening.
func (l *Listener) Close() error {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	l.closed = true
	l.ln.Close()
	l.h.cond.Broadcast()
	return nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

func tcpAddr(a netip.AddrPort) net.Addr { return net.TCPAddrFromAddrPort(a) }

// Dial opens a connection from local to remote and waits for the
// handshake, the context, or a failure.
func (h *Host) Dial(ctx context.Context, local netip.Addr, remote netip.AddrPort, remoteAddr net.Addr) (*Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	e, err := h.stack.Dial(local, remote, h.clock.Now())
	if err != nil {
		return nil, err
	}
	h.flushLocked()
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		h.cond.Broadcast()
		h.mu.Unlock()
	})
	defer stop()
	if remoteAddr == nil {
		remoteAddr = tcpAddr(remote)
	}
	for !e.Connected() {
		if err := e.Err(); err != nil {
			return nil, &net.OpError{Op: "dial", Net: remoteAddr.Network(), Addr: remoteAddr, Err: err}
		}
		if ctx.Err() != nil {
			_ = e.Abort(h.clock.Now())
			h.flushLocked()
			return nil, ctx.Err()
		}
		if !h.wait(time.Time{}) {
			return nil, ErrClosed
		}
	}
	return &Conn{h: h, e: e, local: tcpAddr(e.LocalAddr()), remote: remoteAddr}, nil
}

// Conn is a TCP connection of a Host. It implements net.Conn and CloseWrite.
type Conn struct {
	h             *Host
	e             *tcpfsm.Endpoint
	rdl, wdl      time.Time
	local, remote net.Addr
	closed        bool
}

// Read reads received bytes; it returns io.EOF after the peer closed.
func (c *Conn) Read(p []byte) (int, error) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if c.closed {
			return 0, net.ErrClosed
		}
		n, err := c.e.Read(p, h.clock.Now())
		if n > 0 || (err != nil && !errors.Is(err, tcpfsm.ErrWouldBlock)) {
			h.flushLocked()
			if errors.Is(err, io.EOF) && n > 0 {
				err = nil
			}
			return n, mapErr(err)
		}
		if len(p) == 0 {
			return 0, nil
		}
		if !h.wait(c.rdl) {
			if h.closed {
				return 0, ErrClosed
			}
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write sends all of p, waiting for room in the send buffer.
func (c *Conn) Write(p []byte) (int, error) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	sent := 0
	for sent < len(p) {
		if c.closed {
			return sent, net.ErrClosed
		}
		n, err := c.e.Write(p[sent:], h.clock.Now())
		sent += n
		if n > 0 {
			h.flushLocked()
			continue
		}
		if err != nil && !errors.Is(err, tcpfsm.ErrWouldBlock) {
			return sent, mapErr(err)
		}
		if !h.wait(c.wdl) {
			if h.closed {
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
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	err := c.e.Close(c.h.clock.Now())
	c.h.flushLocked()
	if errors.Is(err, tcpfsm.ErrConnectionDoesNotExist) {
		return nil
	}
	return err
}

// CloseWrite closes the sending half: the peer reads EOF, and this side
// can still read.
func (c *Conn) CloseWrite() error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	err := c.e.CloseWrite(c.h.clock.Now())
	c.h.flushLocked()
	return mapErr(err)
}

// Abort resets the connection.
func (c *Conn) Abort() error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.closed = true
	err := c.e.Abort(c.h.clock.Now())
	c.h.flushLocked()
	return err
}

// TCB returns a copy of the connection's state (RFC 9293 section 3.3.1),
// taken under the host's lock, so it is safe while other goroutines read
// and write the connection.
func (c *Conn) TCB() tcpfsm.TCB {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return c.e.TCB()
}

// Endpoint returns the connection's Endpoint, for its state and counters.
// Use it only while holding no other call on the connection.
func (c *Conn) Endpoint() *tcpfsm.Endpoint { return c.e }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(d time.Time) error {
	_ = c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

// SetReadDeadline sets when a blocked Read gives up.
func (c *Conn) SetReadDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.rdl = d
	c.h.cond.Broadcast()
	c.h.mu.Unlock()
	return nil
}

// SetWriteDeadline sets when a blocked Write gives up.
func (c *Conn) SetWriteDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.wdl = d
	c.h.cond.Broadcast()
	c.h.mu.Unlock()
	return nil
}
