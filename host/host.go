// Package host runs a tcpstack.Stack over any packet link and gives the
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
	"github.com/tcpfsm/tcpfsm/tcpstack"
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

// BatchLink is a Link that can also read several segments at once, as
// many as have arrived: up to len(segs) of them, one after another in
// buf, the i-th at buf[segs[i].Off:segs[i].Off+segs[i].N] with its
// addresses in segs[i]. It reads the next one only while buf has room
// for the largest segment after the last. It blocks until at least one
// arrives and returns how many it read, without waiting for more. A Host
// reads a batch under one lock, so a burst of packets costs one wake-up
// and one flush, and a backlog in the link drains in one go.
type BatchLink interface {
	Link
	ReadSegments(buf []byte, segs []SegmentInfo) (int, error)
}

// LargeLink is a Link that can also write a large segment whole, for
// something below it (a TSO NIC, the kernel behind a TUN device with a
// virtio-net header) to cut into parts of segSize payload bytes, each
// with a copy of the header (see tcpstack.Endpoint.OutputLarge). A Host
// writes large segments to a LargeLink: one write for up to 64 KiB.
type LargeLink interface {
	Link
	// LargeSegments reports whether the link takes large segments.
	LargeSegments() bool
	WriteLargeSegment(tcp []byte, segSize int, src, dst netip.Addr) error
}

// largeMax is the largest segment a Host writes to a LargeLink, so that
// an IPv4 or IPv6 packet carrying it stays within 64 KiB.
const largeMax = 65535 - 60

// SegmentInfo is what BatchLink.ReadSegments says of one segment: where
// it is in the buffer, and its IP addresses.
type SegmentInfo struct {
	Off, N   int
	Src, Dst netip.Addr
}

// ErrClosed is returned after the Host or a Listener was closed.
var ErrClosed = errors.New("host: closed")

// Host runs a Stack over a Link.
//
// One mutex guards the Stack. Each connection and listener waits on
// channels of its own, and the Stack's readiness report (Stack.Ready)
// says which of them to wake after each packet, timer or call, so a
// packet for one connection wakes no other.
type Host struct {
	link  Link
	large LargeLink // link, if it takes large segments
	clock *tcpfsm.SystemClock

	mu        sync.Mutex
	stack     *tcpstack.Stack
	timer     *time.Timer
	out       []byte
	evs       []tcpstack.ReadyEvent
	queued    []packet      // segments the stack produced, in order, not yet written
	spare     [][]byte      // buffers of written segments, for reuse
	wake      chan struct{} // tells the writer goroutine that segments are queued
	conns     map[*tcpstack.Endpoint]*Conn
	listeners map[*tcpstack.Listener]*Listener
	closed    bool
	closing   chan struct{} // closed by Close: every waiter returns
	done      chan struct{}
}

// New starts a host on link. It reads the link until Close.
func New(link Link, cfg tcpstack.Config) (*Host, error) {
	cfg.Readiness = true
	s, err := tcpstack.New(cfg)
	if err != nil {
		return nil, err
	}
	h := &Host{link: link, clock: tcpfsm.NewSystemClock(), stack: s, out: make([]byte, 65536),
		conns: make(map[*tcpstack.Endpoint]*Conn), listeners: make(map[*tcpstack.Listener]*Listener),
		closing: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if ll, ok := link.(LargeLink); ok && ll.LargeSegments() {
		h.large = ll
	}
	h.timer = time.AfterFunc(time.Hour, h.onTimer)
	go h.readLoop()
	go h.writeLoop()
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
	close(h.closing)
	h.mu.Unlock()
	err := h.link.Close()
	<-h.done
	return err
}

// Stats returns the stack's counters.
func (h *Host) Stats() tcpstack.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stack.Stats()
}

// From a BatchLink the host reads up to readBatch segments into a
// readArena-byte buffer, and inputs them under one lock.
const (
	readBatch = 512
	readArena = 1 << 20
)

func (h *Host) readLoop() {
	defer close(h.done)
	bl, batched := h.link.(BatchLink)
	buf := make([]byte, 65536)
	segs := make([]SegmentInfo, 1)
	if batched {
		buf = make([]byte, readArena)
		segs = make([]SegmentInfo, readBatch)
	}
	for {
		var k int
		var err error
		if batched {
			k, err = bl.ReadSegments(buf, segs)
		} else {
			segs[0].N, segs[0].Src, segs[0].Dst, err = h.link.ReadSegment(buf)
			k = 1
		}
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
		now := h.clock.Now()
		for i := range segs[:k] {
			sg := &segs[i]
			_ = h.stack.Input(buf[sg.Off:sg.Off+sg.N], sg.Src, sg.Dst, now)
		}
		h.flushLocked()
		h.mu.Unlock()
	}
}

func (h *Host) onTimer() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.stack.Tick(h.clock.Now())
	h.flushLocked()
	h.mu.Unlock()
}

// packet is a segment waiting to be written to the link.
type packet struct {
	b        []byte
	src, dst netip.Addr
	segSize  int // for a large segment, its parts' payload size
}

// writeLoop writes the segments the stack produces, in order, in a
// goroutine of its own: no connection's goroutine, nor the reader, waits
// for the link's writes, and a burst of segments queued meanwhile goes
// out in one pass.
func (h *Host) writeLoop() {
	var batch []packet
	for {
		select {
		case <-h.wake:
		case <-h.closing:
			return
		}
		h.mu.Lock()
		batch, h.queued = h.queued, batch[:0]
		h.mu.Unlock()
		for i := range batch {
			p := &batch[i]
			if p.segSize > 0 {
				_ = h.large.WriteLargeSegment(p.b, p.segSize, p.src, p.dst)
			} else {
				_ = h.link.WriteSegment(p.b, p.src, p.dst)
			}
		}
		h.mu.Lock()
		for i := range batch {
			if len(h.spare) < maxSpare && cap(batch[i].b) <= maxSpareSize {
				h.spare = append(h.spare, batch[i].b[:0])
			}
			batch[i] = packet{}
		}
		h.mu.Unlock()
		if cap(batch) > maxBatchKeep {
			batch = nil // a burst's long queue is not kept
		}
	}
}

// The host keeps for reuse at most maxSpare segment buffers of at most
// maxSpareSize bytes, and a write queue of at most maxBatchKeep entries.
const (
	maxSpare     = 64
	maxSpareSize = 2048
	maxBatchKeep = 1024
)

// flushLocked queues what the stack has to send for the writer
// goroutine, sets the timer for the next deadline, and wakes the
// connections and listeners whose readiness changed.
func (h *Host) flushLocked() {
	now := h.clock.Now()
	for {
		var n, segSize int
		var src, dst netip.Addr
		if h.large != nil {
			n, segSize, src, dst = h.stack.OutputLarge(h.out[:largeMax], now)
		} else {
			n, src, dst = h.stack.Output(h.out, now)
		}
		if n == 0 {
			break
		}
		var b []byte
		if k := len(h.spare); k > 0 && n <= maxSpareSize {
			b, h.spare = h.spare[k-1], h.spare[:k-1]
		}
		h.queued = append(h.queued, packet{b: append(b, h.out[:n]...), src: src, dst: dst, segSize: segSize})
	}
	if len(h.queued) > 0 {
		wake(h.wake)
	}
	if d, ok := h.stack.NextDeadline(); ok {
		h.timer.Reset(max(d.Sub(now), time.Millisecond))
	}
	h.evs = h.stack.Ready(h.evs[:0])
	for i := range h.evs {
		ev := &h.evs[i]
		if ev.Listener != nil {
			if l := h.listeners[ev.Listener]; l != nil {
				wake(l.wake)
			}
			continue
		}
		c := h.conns[ev.Endpoint]
		if c == nil {
			continue // not accepted yet: Accept finds its state as it is
		}
		if ev.Changed&(tcpstack.ReadyRead|tcpstack.ReadyClosed) != 0 {
			wake(c.rwake)
		}
		if ev.Changed&(tcpstack.ReadyWrite|tcpstack.ReadyClosed) != 0 {
			wake(c.wwake)
		}
		if ev.Changed&tcpstack.ReadyClosed != 0 && c.closed {
			delete(h.conns, c.e) // closed by the application and let go of by the stack
		}
	}
	clear(h.evs)
}

// wake signals a waiter's channel without blocking: a signal already
// pending is enough.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitLocked releases h.mu until ch is signaled, deadline passes or the
// host closes, and takes it again. The caller checks its condition again
// afterwards: a wake-up says only that something changed.
func (h *Host) waitLocked(ch chan struct{}, deadline time.Time) {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	h.mu.Unlock()
	select {
	case <-ch:
	case <-expired:
	case <-h.closing:
	}
	h.mu.Lock()
}

// passed reports whether deadline is set and has passed.
func passed(deadline time.Time) bool { return !deadline.IsZero() && !time.Now().Before(deadline) }

// Listener is a net.Listener for one TCP port of the host.
type Listener struct {
	h      *Host
	ln     *tcpstack.Listener
	addr   net.Addr
	closed bool
	wrap   func(*tcpstack.Endpoint) net.Addr
	wake   chan struct{}
}

// Listen accepts connections to port. addr is what Addr reports.
func (h *Host) Listen(port uint16, addr net.Addr) (*Listener, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ln, err := h.stack.Listen(port)
	if err != nil {
		return nil, err
	}
	l := &Listener{h: h, ln: ln, addr: addr, wake: make(chan struct{}, 1)}
	h.listeners[ln] = l
	return l, nil
}

// SetRemoteAddr sets how accepted connections report their peer.
func (l *Listener) SetRemoteAddr(f func(*tcpstack.Endpoint) net.Addr) { l.wrap = f }

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if l.closed {
			return nil, ErrClosed
		}
		if h.closed {
			return nil, ErrClosed
		}
		if e, ok := l.ln.Accept(); ok {
			c := h.newConn(e, l.addr, nil)
			if l.wrap != nil {
				c.remote = l.wrap(e)
			} else {
				c.remote = tcpAddr(e.RemoteAddr())
			}
			return c, nil
		}
		h.waitLocked(l.wake, time.Time{})
	}
}

// Close stops listening.
func (l *Listener) Close() error {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	l.closed = true
	l.ln.Close()
	delete(l.h.listeners, l.ln)
	wake(l.wake)
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
	if remoteAddr == nil {
		remoteAddr = tcpAddr(remote)
	}
	c := h.newConn(e, tcpAddr(e.LocalAddr()), remoteAddr)
	h.flushLocked()
	stop := context.AfterFunc(ctx, func() { wake(c.wwake) })
	defer stop()
	for !e.Connected() {
		if err := e.Err(); err != nil {
			delete(h.conns, e)
			return nil, &net.OpError{Op: "dial", Net: remoteAddr.Network(), Addr: remoteAddr, Err: err}
		}
		if ctx.Err() != nil {
			_ = e.Abort(h.clock.Now())
			delete(h.conns, e)
			h.flushLocked()
			return nil, ctx.Err()
		}
		if h.closed {
			return nil, ErrClosed
		}
		h.waitLocked(c.wwake, time.Time{})
	}
	return c, nil
}

// newConn makes the Conn of e and registers it for wake-ups.
func (h *Host) newConn(e *tcpstack.Endpoint, local, remote net.Addr) *Conn {
	c := &Conn{h: h, e: e, local: local, remote: remote,
		rwake: make(chan struct{}, 1), wwake: make(chan struct{}, 1)}
	h.conns[e] = c
	return c
}

// Conn is a TCP connection of a Host. It implements net.Conn and CloseWrite.
type Conn struct {
	h             *Host
	e             *tcpstack.Endpoint
	rdl, wdl      time.Time
	local, remote net.Addr
	closed        bool
	rwake, wwake  chan struct{} // signaled when a blocked Read or Write may go on
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
		if n > 0 || (err != nil && !errors.Is(err, tcpstack.ErrWouldBlock)) {
			h.flushLocked()
			if errors.Is(err, io.EOF) && n > 0 {
				err = nil
			}
			return n, mapErr(err)
		}
		if len(p) == 0 {
			return 0, nil
		}
		if h.closed {
			return 0, ErrClosed
		}
		if passed(c.rdl) {
			return 0, os.ErrDeadlineExceeded
		}
		h.waitLocked(c.rwake, c.rdl)
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
		if err != nil && !errors.Is(err, tcpstack.ErrWouldBlock) {
			return sent, mapErr(err)
		}
		if h.closed {
			return sent, ErrClosed
		}
		if passed(c.wdl) {
			return sent, os.ErrDeadlineExceeded
		}
		h.waitLocked(c.wwake, c.wdl)
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
	c.release()
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
	c.release()
	return err
}

// release wakes the connection's waiters, which find it closed, and
// forgets it once the stack has let go of it too (flushLocked forgets it
// when that happens later).
func (c *Conn) release() {
	wake(c.rwake)
	wake(c.wwake)
	if st := c.e.State(); st == tcpfsm.Closed || st == tcpfsm.TimeWait {
		delete(c.h.conns, c.e)
	}
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
func (c *Conn) Endpoint() *tcpstack.Endpoint { return c.e }

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
	wake(c.rwake)
	c.h.mu.Unlock()
	return nil
}

// SetWriteDeadline sets when a blocked Write gives up.
func (c *Conn) SetWriteDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.wdl = d
	wake(c.wwake)
	c.h.mu.Unlock()
	return nil
}
