// Package host runs a tcpstack.Stack over any packet link and gives the
// application net.Conn and net.Listener: the goroutines, the real clock
// and the blocking calls that tcpfsm itself leaves out. A Link moves TCP
// segments with their IP addresses; package overudp carries them in UDP
// datagrams, and a TUN device carries them as IP packets to the kernel.
//
// The API follows package net: Host.DialContext and Host.Listen take a
// network ("tcp", "tcp4", "tcp6") and an address string, as net.Dialer
// and net.ListenConfig do, and Host.DialContextAddrPort and
// Host.ListenAddrPort take a netip.AddrPort. A Conn behaves as a
// *net.TCPConn: its errors are *net.OpError values that errors.Is matches
// against the errno the kernel would give (syscall.ECONNRESET,
// ECONNREFUSED, ETIMEDOUT, EPIPE), against net.ErrClosed after a local
// Close and os.ErrDeadlineExceeded after a deadline, and against the
// tcpstack error behind them (tcpstack.ErrReset, ...); and it has
// CloseRead, CloseWrite, ReadFrom, WriteTo, SetNoDelay, SetKeepAlive,
// SetKeepAlivePeriod, SetLinger, SetReadBuffer and SetWriteBuffer.
package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
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

// outRoom is the room a Host gives the stack for one segment (Output
// asks for the MSS plus 60 bytes): the largest a link can carry.
const outRoom = 65536

// SegmentInfo is what BatchLink.ReadSegments says of one segment: where
// it is in the buffer, its IP addresses, and whether the link vouches
// for its checksum.
type SegmentInfo struct {
	Off, N   int
	Src, Dst netip.Addr
	// Verified says the link has checked the segment's checksum, or
	// that the segment came with checksum offload (its checksum field
	// holds only the pseudo-header's sum): the Host passes it to
	// tcpstack.Stack.InputVerified, which does not sum it, and which
	// takes a segment that a link coalesced beyond the MSS.
	Verified bool
}

// ErrClosed is the error, inside a *net.OpError, of calls made after the
// Host was closed. errors.Is matches it against net.ErrClosed too.
var ErrClosed = fmt.Errorf("host: closed: %w", net.ErrClosed)

// AddrLink is a Link that knows the host's own addresses, as Pipe's links
// do: New takes them when Config.Addrs is empty.
type AddrLink interface {
	Link
	LocalAddrs() []netip.Addr
}

// Config configures a Host.
type Config struct {
	// Stack configures the tcpstack.Stack (its Readiness is always on).
	Stack tcpstack.Config
	// Addrs are the host's own addresses: Dial takes its source address
	// from them (the first of the remote address's family), and Listen
	// refuses other specific addresses, as the kernel refuses to bind
	// one it does not have (EADDRNOTAVAIL). Empty: those of the link if
	// it is an AddrLink; without any, Dial fails with ENETUNREACH and
	// Listen takes any address.
	Addrs []netip.Addr
	// Logger, if set, logs connection events with the local and remote
	// addresses: at Debug level "tcp connection established" (a Dial),
	// "tcp connection accepted" and "tcp connection closed" (a normal
	// end); at Info "tcp dial failed" (refused, timed out, cancelled;
	// with err), "tcp connection reset", "tcp connection timed out" and
	// "tcp connection aborted". Nil: nothing is logged.
	Logger *slog.Logger
	// NetAddr says how LocalAddr, RemoteAddr, Listener.Addr and errors
	// report an address. Nil: as a *net.TCPAddr. (Package overudp reports
	// the UDP address a private address stands for.)
	NetAddr func(netip.AddrPort) net.Addr
}

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
	timerAt   tcpfsm.Time // when timer fires, by clock; 0 once it has fired
	evs       []tcpstack.ReadyEvent
	queued    []packet        // segments the stack produced, in order, not yet written
	arena     []byte          // the bytes of queued's segments, back to back
	full      bool            // the arena filled up: the stack may have more to send
	wake      chan struct{}   // tells the writer goroutine that segments are queued
	live      int             // Conns whose Endpoint the host still wakes (SetValue): for tests
	chans     []chan struct{} // wake-up channels to lend to waiting Reads and Writes
	listeners map[*tcpstack.Listener]*Listener
	closed    bool
	closing   chan struct{} // closed by Close: every waiter returns
	done      chan struct{}

	// Set by New and read-only after.
	addrs            []netip.Addr
	log              *slog.Logger
	netAddr          func(netip.AddrPort) net.Addr
	ephLow, ephHigh  uint16 // the ephemeral ports, for Listen on port 0
	keepaliveDefault bool   // the endpoints' configured keep-alive
}

// New starts a host on link. It reads the link until Close. It fails if
// link is nil or cfg.Stack is invalid.
func New(link Link, cfg Config) (*Host, error) {
	if link == nil {
		return nil, errors.New("host: nil Link")
	}
	sc := cfg.Stack
	sc.Readiness = true
	s, err := tcpstack.New(sc)
	if err != nil {
		return nil, err
	}
	h := &Host{link: link, clock: tcpfsm.NewSystemClock(), stack: s,
		listeners: make(map[*tcpstack.Listener]*Listener),
		closing:   make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		addrs: append([]netip.Addr(nil), cfg.Addrs...), log: cfg.Logger,
		ephLow: sc.EphemeralLow, ephHigh: sc.EphemeralHigh, keepaliveDefault: sc.Endpoint.Keepalive}
	if len(h.addrs) == 0 {
		if al, ok := link.(AddrLink); ok {
			h.addrs = append(h.addrs, al.LocalAddrs()...)
		}
	}
	for i, a := range h.addrs {
		h.addrs[i] = a.Unmap().WithZone("")
	}
	if f := cfg.NetAddr; f != nil {
		h.netAddr = func(a netip.AddrPort) net.Addr {
			if na := f(a); na != nil {
				return na
			}
			return net.TCPAddrFromAddrPort(a)
		}
	} else {
		h.netAddr = func(a netip.AddrPort) net.Addr { return net.TCPAddrFromAddrPort(a) }
	}
	if h.ephLow == 0 {
		h.ephLow = 49152
	}
	if h.ephHigh == 0 {
		h.ephHigh = 65535
	}
	if ll, ok := link.(LargeLink); ok && ll.LargeSegments() {
		h.large = ll
	}
	h.timerAt = h.clock.Now().Add(time.Hour)
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

// PathMTU applies an ICMP "fragmentation needed" or ICMPv6 "packet too
// big" message about the connection from local to remote, which quoted
// sequence number seq and reported mtu (RFC 1191, RFC 8201; checked as
// tcpstack.Stack.PathMTU does, RFC 5927). A host whose link carries IP
// (a TUN device, a tunnel) calls it from its ICMP handling. It takes the
// host's lock and never calls the link, so a link may call it while
// holding its own.
func (h *Host) PathMTU(local, remote netip.AddrPort, seq tcpfsm.Seq, mtu int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return net.ErrClosed
	}
	err := h.stack.PathMTU(local, remote, seq, mtu, h.clock.Now())
	h.flushLocked()
	return err
}

// Stats returns the stack's counters. SegmentsOut counts too the pure
// ACKs that a later ACK of their connection replaced before the link
// wrote them.
func (h *Host) Stats() tcpstack.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stack.Stats()
}

// Conns returns how many connections the stack holds: every state but
// TIME-WAIT, whose connections it keeps as compact records instead
// (RFC 9293 section 3.3.2), and including the half-open ones that
// HalfOpen counts. A connection the application closed counts until its
// close completes.
func (h *Host) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stack.Conns()
}

// HalfOpen returns how many connections are in SYN-RECEIVED, waiting
// for the ACK that completes a handshake a SYN began (RFC 9293 section
// 3.5).
func (h *Host) HalfOpen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stack.HalfOpen()
}

// From a BatchLink the host reads up to readBatch segments into a
// readArena-byte buffer, and inputs them under one lock.
const (
	readBatch = 512
	readArena = 1 << 20
)

// readBuffers returns link as a BatchLink, if it is one, and the buffer
// and segment slice to read it with: room for one segment, or for a
// batch.
func readBuffers(link Link) (bl BatchLink, batched bool, buf []byte, segs []SegmentInfo) {
	bl, batched = link.(BatchLink)
	if batched {
		return bl, true, make([]byte, readArena), make([]SegmentInfo, readBatch)
	}
	return nil, false, make([]byte, 65536), make([]SegmentInfo, 1)
}

// segmentTaker is a link whose segments a Host can input where they lie,
// without copying them into a buffer of its own: a shard's queue. The
// segments stay valid until the next takeSegments.
type segmentTaker interface {
	takeSegments() (data []byte, segs []SegmentInfo, err error)
}

func (h *Host) readLoop() {
	defer close(h.done)
	if t, ok := h.link.(segmentTaker); ok {
		h.takeLoop(t)
		return
	}
	bl, batched, buf, segs := readBuffers(h.link)
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
		h.inputBatch(buf, segs[:k])
	}
}

// takeLoop is readLoop for a segmentTaker: it inputs each batch taken,
// readBatch segments under one lock at a time.
func (h *Host) takeLoop(t segmentTaker) {
	for {
		data, segs, err := t.takeSegments()
		if err != nil {
			return // the shard's queue closes only with the Sharded
		}
		for len(segs) > 0 {
			k := min(len(segs), readBatch)
			h.inputBatch(data, segs[:k])
			segs = segs[k:]
		}
	}
}

// inputBatch inputs segments read together, which lie in buf, under one
// lock, and acknowledges them together.
func (h *Host) inputBatch(buf []byte, segs []SegmentInfo) {
	h.mu.Lock()
	now := h.clock.Now()
	h.stack.BeginBatch()
	for i := range segs {
		sg := &segs[i]
		if sg.Verified {
			_ = h.stack.InputVerified(buf[sg.Off:sg.Off+sg.N], sg.Src, sg.Dst, now)
		} else {
			_ = h.stack.Input(buf[sg.Off:sg.Off+sg.N], sg.Src, sg.Dst, now)
		}
	}
	h.stack.EndBatch(now) // one ACK per connection for the batch
	h.flushLocked()
	h.mu.Unlock()
}

func (h *Host) onTimer() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.timerAt = 0
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
// out in one pass. It takes the queue and the arena that holds its
// segments, and leaves in their place the ones it wrote last time; if
// the arena had filled, it has the stack fill the other one while it
// writes this one.
func (h *Host) writeLoop() {
	var batch []packet
	var arena []byte
	for {
		select {
		case <-h.wake:
		case <-h.closing:
			return
		}
		for {
			h.mu.Lock()
			if len(h.queued) == 0 {
				h.mu.Unlock()
				break
			}
			batch, h.queued = h.queued, batch[:0]
			arena, h.arena = h.arena, arena[:0]
			if h.full {
				h.full = false
				h.flushLocked()
			}
			h.mu.Unlock()
			for i := range batch {
				p := &batch[i]
				if p.segSize > 0 {
					_ = h.large.WriteLargeSegment(p.b, p.segSize, p.src, p.dst)
				} else {
					_ = h.link.WriteSegment(p.b, p.src, p.dst)
				}
				*p = packet{}
			}
			if cap(batch) > maxBatchKeep {
				batch = nil // a burst's long queue is not kept
			}
		}
	}
}

// The host queues at most an arena of segments for the writer, of at
// most maxArena bytes (growing from minArena); what the stack has to send
// beyond that waits in the stack until the writer takes the arena. It
// keeps a write queue of at most maxBatchKeep entries. So an idle host
// keeps little (the load suite's heap limit counts it): two arenas and
// two queues.
const (
	minArena     = 128 << 10
	maxArena     = 256 << 10
	maxBatchKeep = 1024
)

// flushLocked queues what the stack has to send for the writer
// goroutine, as much as the arena holds, sets the timer for the next
// deadline, and wakes the connections and listeners whose readiness
// changed. The stack writes each segment straight into the arena: no
// copy, and no allocation once the two arenas have grown.
func (h *Host) flushLocked() {
	now := h.clock.Now()
	room := outRoom
	if h.large != nil {
		room = largeMax
	}
	for !h.full {
		if cap(h.arena)-len(h.arena) < room {
			if cap(h.arena) >= maxArena {
				h.full = true // the writer flushes again when it takes this arena
				break
			}
			// Segments queued keep the old arena until written.
			h.arena = make([]byte, 0, min(max(2*cap(h.arena), minArena), maxArena))
		}
		off := len(h.arena)
		buf := h.arena[off : off+room]
		var n, segSize int
		var src, dst netip.Addr
		if h.large != nil {
			n, segSize, src, dst = h.stack.OutputLarge(buf, now)
		} else {
			n, src, dst = h.stack.Output(buf, now)
		}
		if n == 0 {
			break
		}
		h.arena = h.arena[:off+n]
		p := packet{b: h.arena[off : off+n : off+n], src: src, dst: dst, segSize: segSize}
		if k := len(h.queued) - 1; k >= 0 && supersedes(p, &h.queued[k]) {
			h.queued[k] = p // the ACK not yet written says less than this one
			continue
		}
		h.queued = append(h.queued, p)
	}
	if len(h.queued) > 0 {
		wake(h.wake)
	}
	if d, ok := h.stack.NextDeadline(); ok {
		// The timer moves only earlier: moved to a later deadline on every
		// flush, it would never fire under steady traffic, with a due
		// deadline always a millisecond away. Armed too early, it finds
		// nothing due and is set again from there.
		at := max(d, now.Add(time.Millisecond))
		if h.timerAt == 0 || at < h.timerAt {
			h.timer.Reset(at.Sub(now))
			h.timerAt = at
		}
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
		c, _ := ev.Endpoint.Value().(*Conn)
		if c == nil {
			continue // not accepted yet: Accept finds its state as it is
		}
		if ev.Changed&(tcpstack.ReadyRead|tcpstack.ReadyClosed) != 0 {
			wake(c.rwake)
		}
		if ev.Changed&(tcpstack.ReadyWrite|tcpstack.ReadyClosed) != 0 {
			wake(c.wwake)
		}
		if ev.Changed&tcpstack.ReadyClosed != 0 {
			c.logEndLocked()
			if c.closed {
				h.forgetLocked(c.e) // closed by the application and let go of by the stack
			}
		}
	}
	clear(h.evs)
}

// supersedes reports whether the segment p makes q, queued before it and
// not yet written, worth nothing to the peer: both are pure ACKs of the
// same connection (no data, no flag but ACK) and p acknowledges more. An
// ACK that acknowledges no more than q, such as a window update, never
// replaces it: q may be a duplicate ACK, which the peer's loss recovery
// counts (RFC 5681 section 2), and nothing in its bytes says whether it
// is. A receiver that reads a burst as it arrives would otherwise write
// an ACK per batch of the burst, each a system call and a segment for
// the peer to process.
func supersedes(p packet, q *packet) bool {
	a, b := p.b, q.b
	if p.segSize != 0 || q.segSize != 0 || len(a) < 20 || len(b) < 20 ||
		tcpfsm.Flags(a[13]) != tcpfsm.FlagACK || tcpfsm.Flags(b[13]) != tcpfsm.FlagACK ||
		int(a[12]>>4)*4 != len(a) || int(b[12]>>4)*4 != len(b) ||
		p.src != q.src || p.dst != q.dst || [4]byte(a[:4]) != [4]byte(b[:4]) {
		return false
	}
	ackA, ackB := tcpfsm.Seq(binary.BigEndian.Uint32(a[8:])), tcpfsm.Seq(binary.BigEndian.Uint32(b[8:]))
	return ackA.GreaterThan(ackB)
}

// wake signals a waiter's channel without blocking: a signal already
// pending is enough.
func wake(ch chan struct{}) {
	if ch == nil {
		return // nobody has waited yet: a waiter checks the state before it waits
	}
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

// forgetLocked lets go of the Conn kept with e: the readiness report no
// longer wakes it.
func (h *Host) forgetLocked(e *tcpstack.Endpoint) {
	if e.Value() != nil {
		e.SetValue(nil)
		h.live--
	}
}

// takeChanLocked lends a wake-up channel from the host's pool, emptied.
func (h *Host) takeChanLocked() chan struct{} {
	if k := len(h.chans); k > 0 {
		ch := h.chans[k-1]
		h.chans = h.chans[:k-1]
		select {
		case <-ch: // a late wake-up meant for its last user
		default:
		}
		return ch
	}
	return make(chan struct{}, 1)
}

// putChanLocked takes a lent channel back, keeping at most maxChans.
func (h *Host) putChanLocked(ch chan struct{}) {
	if len(h.chans) < maxChans {
		h.chans = append(h.chans, ch)
	}
}

// maxChans bounds the wake-up channels a host keeps for reuse.
const maxChans = 256
