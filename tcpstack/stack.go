package tcpstack

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"iter"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/internal/siphash"
)

// Config configures a Stack.
type Config struct {
	// Endpoint configures every connection (buffers and TCP settings).
	Endpoint EndpointConfig
	// Backlog bounds the half-open (SYN-RECEIVED) connections of each
	// listener; past it, SYNs are answered with SYN cookies and no state
	// (RFC 4987 sections 3.2 to 3.6). Default 128.
	Backlog int
	// AcceptQueue bounds the established connections waiting for Accept.
	// Default 4096, Linux's default net.core.somaxconn.
	AcceptQueue int
	// EphemeralLow and EphemeralHigh bound the ports Dial picks. Default
	// 49152 to 65535 (RFC 6335).
	EphemeralLow, EphemeralHigh uint16
	// CookieKey keys SYN cookies. Default: 16 random bytes.
	CookieKey [16]byte
	// AbortOnOverflow resets a connection whose handshake completes while
	// its listener's accept queue is full. By default the completing ACK
	// is dropped instead (counted in Stats.AcceptOverflow) and the
	// connection stays in SYN-RECEIVED: the SYN-ACK's retransmission, or
	// the peer's, completes it once Accept has made room, as Linux
	// (tcp_abort_on_overflow=0) and FreeBSD do.
	AbortOnOverflow bool
	// Readiness keeps the report that Ready returns: which connections
	// became readable, writable or closed, and which listeners have
	// connections to accept, so a host wakes only those. Off by default,
	// since a Stack whose host never calls Ready would keep the report
	// growing.
	Readiness bool
	// QuietUntil is the end of the quiet time (RFC 9293 section 3.4.3):
	// before it the Stack assigns no initial sequence numbers, so Dial
	// fails with ErrQuietTime and SYNs for its listeners are dropped
	// unanswered (counted in Stats.QuietDrops); segments of
	// connections it has go on as usual. A host restarting after a crash
	// that lost its connections' sequence state sets it to the restart
	// time plus MSL. Zero, the default, means none: the RFC 6528 ISNs
	// this package draws already keep a new incarnation's sequence
	// numbers away from an old one's, which section 3.4.3 accepts as a
	// reason to skip the wait.
	QuietUntil tcpfsm.Time
}

// Stats counts what a Stack saw and did.
type Stats struct {
	SegmentsIn, SegmentsOut uint64
	BadChecksum, Malformed  uint64 // dropped before demultiplexing
	ResetsSent              uint64 // RSTs for segments that matched nothing (RFC 9293 3.10.7.1)
	CookiesSent             uint64 // SYN-ACKs sent in cookie mode
	CookiesAccepted         uint64 // connections built from a valid cookie
	CookiesRejected         uint64 // ACKs whose cookie failed
	AcceptOverflow          uint64 // handshakes not completed (or reset, with AbortOnOverflow): accept queue full
	TimeWaitRecords         uint64 // connections moved to a compact TIME-WAIT record
	QuietDrops              uint64 // SYNs dropped during the quiet time (Config.QuietUntil)
	// The ListenAll forwarder's SYNs: deferred for Decide, refused with a
	// RST, dropped by the verdict, forgotten undecided after
	// DeferTimeout, and dropped past MaxPending or MaxPendingPerSource.
	ForwardDeferred, ForwardRefused, ForwardDropped, ForwardExpired, ForwardOverLimit uint64
}

// Errors of the Stack.
var (
	ErrPortInUse    = errors.New("tcpfsm: port in use")
	ErrNoPorts      = errors.New("tcpfsm: no ephemeral port free")
	ErrNotListening = errors.New("tcpfsm: listener closed")
	// ErrQuietTime is Dial's error before Config.QuietUntil.
	ErrQuietTime = errors.New("tcpfsm: quiet time after restart (RFC 9293 section 3.4.3)")
)

// tuple names a connection: our address and port and the peer's, as
// plain bytes (IPv4 addresses in their IPv6-mapped form, told apart by
// v4), so the key holds no pointers and hashes as one block. Zones of
// scoped IPv6 addresses are not part of it.
type tuple struct {
	local, remote [16]byte
	lport, rport  uint16
	v4            bool
}

// tupleOf returns the key of the connection from local to remote.
func tupleOf(local, remote netip.AddrPort) tuple {
	return tuple{local: local.Addr().As16(), remote: remote.Addr().As16(),
		lport: local.Port(), rport: remote.Port(), v4: local.Addr().Is4()}
}

// addr returns a key's address a as a netip.Addr.
func (k *tuple) addr(a *[16]byte) netip.Addr {
	if k.v4 {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(*a)
}

// Local and Remote return the key's two ends.
func (k *tuple) Local() netip.AddrPort  { return netip.AddrPortFrom(k.addr(&k.local), k.lport) }
func (k *tuple) Remote() netip.AddrPort { return netip.AddrPortFrom(k.addr(&k.remote), k.rport) }

// Stack is many connections keyed by their addresses and ports: listeners
// with a bounded SYN backlog and SYN cookies under pressure, RSTs for
// segments that match nothing, compact TIME-WAIT records, ephemeral ports,
// and one next deadline across every connection (a timing wheel, so
// arming, stopping and firing a connection's timer each cost O(1), not a
// scan). Like Endpoint, it does no I/O.
//
// Host call order: Listen and Dial as the application asks; Input every
// arriving segment; Tick when the clock reaches NextDeadline; after each,
// call Output until it returns 0 and send what it wrote. An application
// done with a connection may Release its Endpoint, which the Stack then
// reuses for a later connection: a steady stream of connections
// allocates nothing.
type Stack struct {
	cfg       Config
	conns     connTable // established and half-open connections
	listeners map[uint16]*Listener
	tw        twTable         // TIME-WAIT records
	orphans   map[uint16]int  // by port: half-open connections of closed listeners
	timers    wheel           // deadlines of connections
	armed     int             // connections with a deadline in the wheel (its other entries are stale)
	active    fifo[*Endpoint] // connections with output waiting
	// The connections with output waiting whose deadlines may have moved
	// since the wheel last learnt them (see after), once per change; or,
	// with untimedAll, all of active.
	untimed    []*Endpoint
	untimedAll bool
	timeVisits uint64          // endpoints timeActive has visited, for tests of its cost
	replies    []reply         // segments the stack itself sends (RSTs, cookie SYN-ACKs)
	ready      fifo[*Endpoint] // endpoints whose readiness changed (Config.Readiness)
	readyL     fifo[*Listener] // listeners with connections newly queued for Accept
	isn        ISNSource
	cookies    cookieJar
	nextPort   uint16
	fresh      tcpfsm.TCB      // a CLOSED TCB with the stack's settings
	shared     *endpointShared // settings every endpoint of the stack points to
	free       []bufPool       // buffers of idle or ended connections, one pool per size
	pooled     int             // bytes in free
	lent       int             // bytes in buffers endpoints hold (takeBuf less putBuf)
	freeIO     []*endpointIO   // buffer sets and output queues of idle connections
	freeEP     []*Endpoint     // endpoints the application released and the stack is done with, for reuse
	cooling    []*Endpoint     // connections keeping buffers for bufHold after their last activity
	coolAt     tcpfsm.Time     // the earliest end of a hold in cooling, if any
	fwd        *forwarder      // the ListenAll listener's state, if any
	batching   bool            // between BeginBatch and EndBatch
	batch      []*Endpoint     // endpoints given segments since BeginBatch, owed output at EndBatch
	stats      Stats
}

// newEndpoint makes an endpoint that takes buffers from the stack only
// while it holds data: a released one if any waits, or a new one.
func (s *Stack) newEndpoint() *Endpoint {
	return s.endpointFrom(&s.fresh)
}

// endpointFrom makes an endpoint whose TCB is a copy of tcb, as
// newEndpoint does.
func (s *Stack) endpointFrom(tcb *tcpfsm.TCB) *Endpoint {
	n := len(s.freeEP)
	if n == 0 {
		return &Endpoint{tcb: *tcb, sh: s.shared}
	}
	e := s.freeEP[n-1]
	s.freeEP[n-1] = nil
	s.freeEP = s.freeEP[:n-1]
	drops := e.stats.drops
	if drops != nil {
		*drops = [tcpfsm.NumDropReasons - 1]uint32{}
	}
	*e = Endpoint{tcb: *tcb, sh: s.shared, stats: endpointCounters{drops: drops}}
	return e
}

// maxFreeEP bounds the released endpoints kept for reuse (384 bytes
// each): enough to bridge the connections that end and the ones that
// start between two calls of a busy host, and little memory kept after
// a burst.
const maxFreeEP = 256

// reclaim keeps e for reuse if the application released it and the
// stack holds it nowhere: not in the connection table, the list of
// output waiting or the readiness report. Its buffers go back to the
// pools now, its unread data with them.
func (s *Stack) reclaim(e *Endpoint) {
	if !e.is(epReleased) || e.bits&(epOwned|epInActive|epPooled) != 0 || e.pendingReady() != 0 {
		return
	}
	if io := e.io; io != nil {
		if len(io.snd.buf) > 0 {
			s.putBuf(io.snd.buf)
		}
		if len(io.rcv.buf) > 0 {
			s.putBuf(io.rcv.buf)
		}
		io.snd, io.rcv, io.nheld = ring{}, ring{}, 0 // unread and held data go with the release
		e.io = nil
		s.putIO(io)
	}
	if len(s.freeEP) < maxFreeEP {
		e.bits |= epPooled
		s.freeEP = append(s.freeEP, e)
	}
}

// The pools of buffers kept for reuse are bounded in bytes, not in
// count, so that the memory a burst of busy connections took goes back to
// the Go heap once they are idle: together they keep at most
// maxPoolBytes, or as many bytes as the connections hold in buffers now
// if that is more (while connections are busy, the ones that go idle for
// a moment find their buffers again, and allocate nothing), and at most
// maxFreeIO buffer sets.
const (
	maxPoolBytes = 512 << 10
	maxFreeIO    = 64
	// maxPooledQueue bounds the capacity, in actions, of an output
	// queue kept for reuse.
	maxPooledQueue = 64
)

// bufPool keeps buffers of one size. A stack's endpoints use a few sizes
// (powers of two from minBuf, and the two configured sizes), so the pools
// are a short list, not a map.
type bufPool struct {
	size int
	bufs [][]byte
}

// pool returns the pool of n-byte buffers, making it if needed.
func (s *Stack) pool(n int) *bufPool {
	for i := range s.free {
		if s.free[i].size == n {
			return &s.free[i]
		}
	}
	s.free = append(s.free, bufPool{size: n})
	return &s.free[len(s.free)-1]
}

// takeBuf returns an n-byte buffer from the pool, or a new one.
func (s *Stack) takeBuf(n int) []byte {
	s.lent += n
	p := s.pool(n)
	if k := len(p.bufs); k > 0 {
		b := p.bufs[k-1]
		p.bufs[k-1] = nil
		p.bufs = p.bufs[:k-1]
		s.pooled -= len(b)
		return b
	}
	return make([]byte, n)
}

// putBuf gives a buffer back for reuse, unless the pools are full; it then
// trims them to their bound, which falls as the connections give their
// buffers back.
func (s *Stack) putBuf(b []byte) {
	s.lent = max(s.lent-len(b), 0)
	limit := max(maxPoolBytes, s.lent)
	if s.pooled+len(b) <= limit {
		p := s.pool(len(b))
		p.bufs = append(p.bufs, b)
		s.pooled += len(b)
	}
	for s.pooled > limit {
		s.dropLargest()
	}
}

// dropLargest lets the largest pooled buffer go to the garbage collector.
func (s *Stack) dropLargest() {
	var big *bufPool
	for i := range s.free {
		if p := &s.free[i]; len(p.bufs) > 0 && (big == nil || p.size > big.size) {
			big = p
		}
	}
	if big == nil {
		s.pooled = 0
		return
	}
	k := len(big.bufs) - 1
	big.bufs[k] = nil
	big.bufs = big.bufs[:k]
	s.pooled -= big.size
}

// takeIO lends an endpoint buffers and a queue: from the pool, or new.
func (s *Stack) takeIO() *endpointIO {
	if n := len(s.freeIO); n > 0 {
		io := s.freeIO[n-1]
		s.freeIO[n-1] = nil
		s.freeIO = s.freeIO[:n-1]
		return io
	}
	return &endpointIO{queue: make([]tcpfsm.Action, 0, 8)}
}

// bufHold is how long a connection whose buffers grew past minBuf keeps
// them after it last moved data (or had any call or segment): a bulk
// flow empties them many times a second, between one batch of segments
// and the next or one read and the next write, and giving them back each
// time would have it take (and, past the pools' bound, allocate) and
// grow them again at once. It gives them back this long after its last
// activity. Buffers of minBuf, all a request and its response need,
// go back at once: the pools keep plenty of them.
const bufHold = 10 * time.Millisecond

// recycle takes back what a connection does not need now: the send
// buffer once everything written is acknowledged, the receive buffer once
// everything was read (and nothing waits out of order), the output queue
// once drained. An idle connection then holds only its state. The
// endpoint stays usable: it takes buffers again when data comes. With
// hold, a connection that has not ended and holds a buffer larger than
// minBuf keeps its buffers until bufHold after now (its latest activity),
// when the stack's sweep recycles it without hold.
func (s *Stack) recycle(e *Endpoint, now tcpfsm.Time, hold bool) {
	io := e.io
	if io == nil {
		return
	}
	e.release()
	if st := e.tcb.State; st == tcpfsm.Closed || st == tcpfsm.TimeWait || st == tcpfsm.Listen {
		io.snd.reset() // nothing left to retransmit
		io.nheld = 0   // nor to receive
	} else if hold && (len(io.snd.buf) > minBuf || len(io.rcv.buf) > minBuf) {
		io.keepUntil = now.Add(bufHold)
		if !io.listed {
			io.listed = true
			if len(s.cooling) == 0 || io.keepUntil < s.coolAt {
				s.coolAt = io.keepUntil
			}
			s.cooling = append(s.cooling, e)
		}
		return
	}
	if len(io.snd.buf) > 0 && io.snd.len() == 0 {
		s.putBuf(io.snd.buf)
		io.snd = ring{}
	}
	if len(io.rcv.buf) > 0 && e.Buffered() == 0 && !e.tcb.HoldsOutOfOrder() && io.nheld == 0 {
		s.putBuf(io.rcv.buf)
		io.rcv = ring{}
	}
	if len(io.snd.buf) == 0 && len(io.rcv.buf) == 0 && !e.pending() {
		e.io = nil
		s.putIO(io)
	}
}

// putIO keeps io, which an endpoint gave up with its buffers returned,
// for another endpoint, unless maxFreeIO are kept already.
func (s *Stack) putIO(io *endpointIO) {
	io.listed = false // an entry left in cooling no longer finds it
	if len(s.freeIO) < maxFreeIO {
		if cap(io.queue) > maxPooledQueue {
			io.queue = nil // a burst's long queue is not kept
		}
		io.queue, io.head = io.queue[:0], 0
		s.freeIO = append(s.freeIO, io)
	}
}

// sweep gives back the buffers of the connections in cooling whose hold
// ended by now, and keeps the others listed.
func (s *Stack) sweep(now tcpfsm.Time) {
	kept := s.cooling[:0]
	var next tcpfsm.Time
	for _, e := range s.cooling {
		io := e.io
		if io == nil || !io.listed {
			continue // gave its io back, or listed twice and seen already
		}
		if now < io.keepUntil && e.is(epOwned) {
			if len(kept) == 0 || io.keepUntil < next {
				next = io.keepUntil
			}
			io.listed = false // until the loop ends: a second entry for e is skipped
			kept = append(kept, e)
			continue
		}
		io.listed = false
		// One with output waiting, or ended, is recycled by after()
		// when that changes; an endpoint the stack let go of keeps
		// what it holds, as it did before it was listed.
		if e.is(epOwned) && !e.is(epInActive) {
			s.recycle(e, now, false)
		}
	}
	for _, e := range kept {
		e.io.listed = true
	}
	clear(s.cooling[len(kept):])
	s.cooling, s.coolAt = kept, next
}

type reply struct {
	seg      tcpfsm.Segment
	src, dst netip.Addr
}

// New returns an empty stack.
func New(cfg Config) (*Stack, error) {
	if cfg.Backlog <= 0 {
		cfg.Backlog = 128
	}
	if cfg.AcceptQueue <= 0 {
		cfg.AcceptQueue = 4096
	}
	if cfg.EphemeralLow == 0 {
		cfg.EphemeralLow = 49152
	}
	if cfg.EphemeralHigh == 0 || cfg.EphemeralHigh < cfg.EphemeralLow {
		cfg.EphemeralHigh = 65535
	}
	if cfg.CookieKey == ([16]byte{}) {
		if _, err := rand.Read(cfg.CookieKey[:]); err != nil {
			return nil, err
		}
	}
	if cfg.Endpoint.ISN == nil {
		cfg.Endpoint.ISN = tcpfsm.NewISNGenerator()
	}
	fresh, shared, err := compileEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	s := &Stack{
		cfg:       cfg,
		conns:     newConnTable(),
		listeners: make(map[uint16]*Listener),
		orphans:   make(map[uint16]int),
		isn:       cfg.Endpoint.ISN,
		cookies:   newCookieJar(cfg.CookieKey),
		nextPort:  cfg.EphemeralLow,
		fresh:     fresh,
		shared:    shared,
	}
	s.tw.init(&s.conns)
	shared.stack = s
	return s, nil
}

// Stats returns the stack's counters.
func (s *Stack) Stats() Stats { return s.stats }

// Conns returns the number of connections with full state (TIME-WAIT
// records not counted).
func (s *Stack) Conns() int { return s.conns.len() }

// HalfOpen returns the number of connections in SYN-RECEIVED over every
// listener, including those of listeners closed since.
func (s *Stack) HalfOpen() int {
	n := 0
	for _, l := range s.listeners {
		n += l.halfOpen
	}
	for _, c := range s.orphans {
		n += c
	}
	if s.fwd != nil {
		n += s.fwd.l.halfOpen
	}
	return n
}

// Connections returns an iterator over the Stack's connections:
// half-open, open and closing (but not TIME-WAIT records: see
// TimeWaitRecords), each an Endpoint with its addresses, State and
// NextDeadline. The Stack must not be used while the iteration runs.
func (s *Stack) Connections() iter.Seq[*Endpoint] {
	return func(yield func(*Endpoint) bool) { s.conns.each(yield) }
}

// TimeWaitInfo describes one TIME-WAIT record (RFC 9293 section
// 3.10.7.4): the connection's two ends and when the record expires.
type TimeWaitInfo struct {
	Local, Remote netip.AddrPort
	Deadline      tcpfsm.Time
}

// TimeWaitRecords returns an iterator over the Stack's TIME-WAIT records.
// The Stack must not be used while the iteration runs.
func (s *Stack) TimeWaitRecords() iter.Seq[TimeWaitInfo] {
	return func(yield func(TimeWaitInfo) bool) {
		s.tw.each(func(k *tuple, r *tcpfsm.TimeWaitRecord) bool {
			return yield(TimeWaitInfo{Local: k.Local(), Remote: k.Remote(), Deadline: r.Deadline()})
		})
	}
}

// TimeWaits returns the number of compact TIME-WAIT records.
func (s *Stack) TimeWaits() int { return s.tw.len() }

// Listener accepts connections to one port.
type Listener struct {
	s        *Stack
	all      bool       // the ListenAll listener
	addr     netip.Addr // the one local address it takes SYNs for, if not every one (ListenOn)
	port     uint16
	halfOpen int
	ready    fifo[*Endpoint]
	closed   bool
	signaled bool // in the stack's readiness report
	// tcb is a TCB in LISTEN on port, as Endpoint.Listen leaves a new
	// endpoint's: each connection the listener takes starts from a copy,
	// instead of stepping a fresh TCB through the same passive OPEN.
	tcb tcpfsm.TCB
}

// queue puts an established connection in the accept queue.
func (l *Listener) queue(e *Endpoint) {
	l.ready.push(e)
	if l.s.cfg.Readiness && !l.signaled {
		l.signaled = true
		l.s.readyL.push(l)
	}
}

// Readiness says what changed for a connection (Stack.Ready).
type Readiness uint8

// The kinds of change Stack.Ready reports. Each means a blocked call may
// now go on, not that it will: the host tries it again.
const (
	// ReadyRead: data, the peer's FIN or an error arrived; Read may not
	// block (RFC 9293 section 3.10.3).
	ReadyRead Readiness = 1 << iota
	// ReadyWrite: the connection opened, or the peer acknowledged data
	// and made room in the send buffer, or it failed (section 3.10.2).
	ReadyWrite
	// ReadyClosed: the connection ended, normally or not, and the Stack
	// has let go of it (section 3.10.4).
	ReadyClosed
	// ReadyAccept: the listener has connections to accept (section 3.10.1).
	ReadyAccept
)

// ReadyEvent is one entry of the readiness report: an endpoint and what
// changed for it, or a listener with connections waiting for Accept.
type ReadyEvent struct {
	Endpoint *Endpoint
	Listener *Listener
	Changed  Readiness
}

// signal records that e's readiness changed by r.
func (s *Stack) signal(e *Endpoint, r Readiness) {
	if e.pendingReady() == 0 {
		s.ready.push(e)
	}
	e.setPendingReady(e.pendingReady() | r)
}

// Ready appends to dst what changed since the last call and forgets it:
// each endpoint whose readiness changed, once, with the union of its
// changes, and each listener that queued connections for Accept. It is
// produced as things happen, without a scan, so a host with many
// connections wakes only those that can go on. It needs
// Config.Readiness; without it, it appends nothing.
func (s *Stack) Ready(dst []ReadyEvent) []ReadyEvent {
	for s.ready.len() > 0 {
		e := s.ready.pop()
		r := e.pendingReady()
		e.setPendingReady(0)
		if e.is(epReleased) {
			s.reclaim(e) // the application wants no more news of it
			continue
		}
		dst = append(dst, ReadyEvent{Endpoint: e, Changed: r})
	}
	for s.readyL.len() > 0 {
		l := s.readyL.pop()
		l.signaled = false
		dst = append(dst, ReadyEvent{Listener: l, Changed: ReadyAccept})
	}
	return dst
}

// Listen starts accepting connections to port on any local address.
// Connections still half-open from a listener closed on the port count in
// the new one's backlog, and it accepts them once they complete.
func (s *Stack) Listen(port uint16) (*Listener, error) {
	if _, ok := s.listeners[port]; ok || port == 0 {
		return nil, ErrPortInUse
	}
	l := &Listener{s: s, port: port, halfOpen: s.orphans[port], tcb: s.fresh}
	if _, err := l.tcb.Step(tcpfsm.ListenOn(port), 0, nil); err != nil {
		return nil, err // a fresh TCB takes a passive OPEN
	}
	delete(s.orphans, port)
	s.listeners[port] = l
	return l, nil
}

// ListenOn is Listen for one local address: SYNs to the port at other
// addresses are answered as if nobody listened (RFC 9293 section 3.10.1
// lets a passive OPEN name the local socket). An unspecified address
// means every address, as Listen. A port has one listener at a time.
func (s *Stack) ListenOn(local netip.AddrPort) (*Listener, error) {
	l, err := s.Listen(local.Port())
	if err == nil && local.Addr().IsValid() && !local.Addr().IsUnspecified() {
		l.addr = local.Addr().Unmap()
	}
	return l, err
}

// Accept returns the next established connection, or false if none waits.
func (l *Listener) Accept() (*Endpoint, bool) {
	if l.ready.len() == 0 {
		return nil, false
	}
	return l.ready.pop(), true
}

// Pending returns how many established connections wait for Accept.
func (l *Listener) Pending() int { return l.ready.len() }

// HalfOpen returns how many connections are in SYN-RECEIVED.
func (l *Listener) HalfOpen() int { return l.halfOpen }

// Close stops listening. Connections already established are not
// affected. Half-open ones are reset when they complete, unless a new
// listener has the port by then: it takes them (see Stack.Listen).
func (l *Listener) Close() {
	if !l.closed && l.all {
		l.closed = true
		l.s.fwd.forgetDeferred() // its half-open connections go on, and are reset once established
		return
	}
	if !l.closed {
		l.closed = true
		delete(l.s.listeners, l.port)
		if l.halfOpen > 0 {
			l.s.orphans[l.port] += l.halfOpen
		}
	}
}

// Dial opens a connection from local (an ephemeral port is chosen) to
// remote. It fails with ErrQuietTime before Config.QuietUntil, and
// with ErrNoPorts when every ephemeral port is taken for remote.
func (s *Stack) Dial(local netip.Addr, remote netip.AddrPort, now tcpfsm.Time) (*Endpoint, error) {
	if now < s.cfg.QuietUntil {
		return nil, ErrQuietTime
	}
	span := int(s.cfg.EphemeralHigh-s.cfg.EphemeralLow) + 1
	for range span {
		p := s.nextPort
		s.nextPort++
		if s.nextPort > s.cfg.EphemeralHigh || s.nextPort < s.cfg.EphemeralLow {
			s.nextPort = s.cfg.EphemeralLow
		}
		e, err := s.dialFrom(netip.AddrPortFrom(local, p), remote, now)
		if err == ErrPortInUse {
			continue
		}
		return e, err
	}
	return nil, ErrNoPorts
}

// DialFrom opens a connection from local, a port the caller chose, to
// remote (RFC 9293 section 3.10.1: the user may name the local port). It
// fails with ErrPortInUse if that 4-tuple is in use or in TIME-WAIT, or
// a listener has the port, and with ErrQuietTime before
// Config.QuietUntil. A host that steers connections to one of several
// Stacks by a hash of the 4-tuple picks ports with it.
func (s *Stack) DialFrom(local, remote netip.AddrPort, now tcpfsm.Time) (*Endpoint, error) {
	if now < s.cfg.QuietUntil {
		return nil, ErrQuietTime
	}
	if local.Port() == 0 {
		return nil, tcpfsm.ErrAddress
	}
	return s.dialFrom(local, remote, now)
}

// dialFrom is DialFrom after the quiet time.
func (s *Stack) dialFrom(lp, remote netip.AddrPort, now tcpfsm.Time) (*Endpoint, error) {
	k := tupleOf(lp, remote)
	if s.conns.get(&k) != nil {
		return nil, ErrPortInUse
	}
	if _, used := s.tw.get(&k); used {
		return nil, ErrPortInUse
	}
	if _, used := s.listeners[lp.Port()]; used {
		return nil, ErrPortInUse
	}
	e := s.newEndpoint()
	if err := e.Dial(lp, remote, now); err != nil {
		return nil, err
	}
	s.adopt(e, k, false)
	s.after(e, now)
	return e, nil
}

// Input hands the stack one arriving TCP segment with its IP addresses.
func (s *Stack) Input(tcp []byte, src, dst netip.Addr, now tcpfsm.Time) error {
	// Small enough to inline, so a host's call goes straight to input.
	return s.input(tcp, src, dst, now, true)
}

// InputVerified is Input for a segment whose checksum the link has
// verified already (receive checksum offload: a virtio-net header's
// DATA_VALID, a NIC's) or whose integrity an authenticated tunnel
// guarantees, so the Stack does not sum it again. Its checksum field may
// hold anything, such as a partial sum. It may be longer than the MSS: a
// link that coalesces segments (GRO) gives them as one.
func (s *Stack) InputVerified(tcp []byte, src, dst netip.Addr, now tcpfsm.Time) error {
	if !src.IsValid() || !dst.IsValid() || src.Unmap().Is4() != dst.Unmap().Is4() {
		s.stats.Malformed++
		return tcpfsm.ErrAddress
	}
	return s.input(tcp, src, dst, now, false)
}

// input is Input, which verifies the checksum first if verify is set,
// and InputVerified after its check of the addresses.
func (s *Stack) input(tcp []byte, src, dst netip.Addr, now tcpfsm.Time, verify bool) error {
	if verify && !tcpfsm.VerifyChecksum(tcp, src, dst) {
		s.stats.BadChecksum++
		return errBadChecksum
	}
	seg, err := tcpfsm.ParseSegment(tcp)
	if err != nil {
		s.stats.Malformed++
		return err
	}
	s.stats.SegmentsIn++
	k := tuple{local: dst.As16(), remote: src.As16(), lport: seg.DstPort, rport: seg.SrcPort, v4: dst.Is4()}
	if e := s.conns.get(&k); e != nil && e.State() == tcpfsm.TimeWait {
		// A connection that entered TIME-WAIT with output still queued
		// (the ACK of the peer's FIN) is in the table until that output
		// goes. Segments for it meanwhile follow the TIME-WAIT record's
		// rules, like every later one: a new incarnation's SYN must
		// not close the endpoint, whose application may still be
		// reading what arrived before the FIN.
		s.toTimeWait(e)
	} else if e != nil {
		if e.is(epHalfOpen) && seg.Flags&(tcpfsm.FlagACK|tcpfsm.FlagRST|tcpfsm.FlagSYN) == tcpfsm.FlagACK {
			if seg.Ack != e.tcb.Iss.Add(1) && s.cookieTakesOver(e, k, &seg, now) {
				return nil
			}
			if s.acceptQueueFull(e) {
				s.stats.AcceptOverflow++
				return nil // the handshake completes once Accept makes room
			}
		}
		var err error
		if s.batching && e.State() == tcpfsm.Established {
			// More of the batch may follow: the ACK waits for EndBatch.
			err = e.stepWith(tcpfsm.Event{Kind: tcpfsm.EvSegment, Seg: &seg, More: true}, &seg, now)
			e.stats.segmentsIn++
			if n := len(s.batch); n == 0 || s.batch[n-1] != e {
				s.batch = append(s.batch, e)
			}
		} else if e.State() != tcpfsm.Listen {
			// inputSegment without its cases that are not an owned
			// endpoint's (no connection; a SYN in LISTEN).
			e.stats.segmentsIn++
			err = e.stepSegment(&seg, 0, now)
		} else {
			err = e.inputSegment(&seg, src, dst, now)
		}
		s.after(e, now)
		return err
	}
	if r, ok := s.tw.get(&k); ok {
		if !s.timeWaitInput(k, r, &seg, now) {
			return nil
		}
		// A new incarnation: the record is gone; go on to the listener.
	}
	if l, ok := s.listeners[seg.DstPort]; ok && (!l.addr.IsValid() || l.addr == dst.Unmap()) {
		return s.listenInput(l, k, &seg, now)
	}
	if s.fwd != nil && !s.fwd.l.closed && seg.Flags&(tcpfsm.FlagSYN|tcpfsm.FlagACK|tcpfsm.FlagRST) == tcpfsm.FlagSYN {
		return s.forwardSYN(k, &seg, now)
	}
	s.reset(&seg, src, dst)
	return nil
}

// BeginBatch starts a batch of arriving segments, such as one read from
// a link that delivers several at once: until EndBatch, the segments of
// established connections are stepped with Event.More, so a connection
// that receives several sends one ACK for them (RFC 9293 MUST-58, MUST-59;
// what a receiver does with coalesced segments, GRO).
func (s *Stack) BeginBatch() { s.batching = true }

// EndBatch ends the batch: each connection given segments in it sends the
// ACK it owes, and whatever else it may send now.
func (s *Stack) EndBatch(now tcpfsm.Time) {
	s.batching = false
	for i, e := range s.batch {
		s.batch[i] = nil
		if e.is(epOwned) {
			_ = e.step(tcpfsm.Flush(), now)
			s.after(e, now)
		}
	}
	s.batch = s.batch[:0]
}

// reset answers a segment that matched nothing (RFC 9293 section 3.10.7.1).
func (s *Stack) reset(seg *tcpfsm.Segment, src, dst netip.Addr) {
	if r, ok := tcpfsm.ResetFor(seg); ok {
		s.replies = append(s.replies, reply{seg: r, src: dst, dst: src})
		s.stats.ResetsSent++
	}
}

// listenInput handles a segment for a listening port with no connection.
func (s *Stack) listenInput(l *Listener, k tuple, seg *tcpfsm.Segment, now tcpfsm.Time) error {
	f := seg.Flags
	switch {
	case f&tcpfsm.FlagRST != 0:
		return nil
	case f&(tcpfsm.FlagSYN|tcpfsm.FlagACK) == tcpfsm.FlagSYN:
		if now < s.cfg.QuietUntil {
			s.stats.QuietDrops++ // a SYN-ACK would assign an ISS
			return nil
		}
		if l.halfOpen >= s.cfg.Backlog {
			s.sendCookie(k, seg, now)
			return nil
		}
		// What Listen(k.Local()) makes of a new endpoint (adopt sets the
		// key).
		e := s.endpointFrom(&l.tcb)
		e.bits = knownLocal
		s.adopt(e, k, true)
		l.halfOpen++
		err := e.inputSegment(seg, k.addr(&k.remote), k.addr(&k.local), now)
		s.after(e, now)
		return err
	case f&(tcpfsm.FlagSYN|tcpfsm.FlagACK) == tcpfsm.FlagACK:
		if s.cookieInput(l, k, seg, now) {
			return nil
		}
	}
	s.reset(seg, k.addr(&k.remote), k.addr(&k.local))
	return nil
}

// adopt makes e a connection of the stack under key k, half-open in the
// backlog of the listener on its port or not. The table finds it by
// e.key, which must not change while it is there.
func (s *Stack) adopt(e *Endpoint, k tuple, halfOpen bool) {
	e.bits |= epOwned
	e.set(epHalfOpen, halfOpen)
	e.key = k
	s.conns.put(e)
}

// disown takes e out of the connection table.
func (s *Stack) disown(e *Endpoint) {
	s.conns.del(e)
	e.bits &^= epOwned
	e.signal(ReadyRead | ReadyWrite | ReadyClosed)
	if e.timerAt != 0 {
		s.armed--
		s.timers.stop(e.timerAt, s.armed)
		e.timerAt = 0
	}
}

// after brings the stack's view of a connection up to date after any call
// on it: output to send, its deadline in the wheel, acceptance, TIME-WAIT,
// removal.
func (s *Stack) after(e *Endpoint, now tcpfsm.Time) {
	if !e.is(epOwned) {
		return // already gone (TIME-WAIT record or deleted)
	}
	if e.is(epHalfOpen) && e.State() != tcpfsm.SynReceived {
		e.bits &^= epHalfOpen
		s.leaveBacklog(e, now)
	}
	if e.pending() && !e.is(epInActive) {
		e.bits |= epInActive
		s.active.push(e)
	}
	if e.is(epInActive) {
		// Its deadline is brought up to date once its output has gone
		// (deactivate), or before then when NextDeadline or Tick needs
		// it (timeActive): sending moves it again, so most changes
		// made before then would be undone at once.
		s.untime(e)
		return
	}
	s.recycle(e, now, true)
	switch e.State() {
	case tcpfsm.TimeWait:
		s.toTimeWait(e)
		return
	case tcpfsm.Closed, tcpfsm.Listen:
		// A half-open connection that a RST or a SYN returned to
		// LISTEN (RFC 9293 section 3.10.7.3) is gone: the listener
		// is the Stack's, and nobody accepted this one.
		s.disown(e)
		s.reclaim(e)
		return
	}
	s.setTimer(e)
}

// untime notes that e, which has output waiting, may have a new deadline
// for timeActive. While few endpoints wait, or once there are as many
// notes as endpoints waiting, visiting them all is cheaper than keeping
// notes: the notes make way for untimedAll. Either way a visit of all of
// them follows a change to each, or to one while few waited.
func (s *Stack) untime(e *Endpoint) {
	switch {
	case s.untimedAll:
	case s.active.len() <= fewActive || len(s.untimed) >= s.active.len():
		clear(s.untimed)
		s.untimed, s.untimedAll = s.untimed[:0], true
	default:
		s.untimed = append(s.untimed, e)
	}
}

// fewActive is as many endpoints with output waiting as timeActive
// visits all of rather than keep notes of their changes.
const fewActive = 16

// timeActive brings the deadlines of the endpoints with output waiting
// up to date in the wheel (see after): those noted since its last call,
// so that a host that calls NextDeadline after every batch does not
// visit every waiting endpoint each time (with thousands waiting on a
// slow link, that walk took a quarter of a loaded server's CPU).
func (s *Stack) timeActive() {
	if s.untimedAll {
		s.untimedAll = false
		s.timeVisits += uint64(s.active.len())
		for _, e := range s.active.q[s.active.head:] {
			if e.is(epOwned) {
				s.setTimer(e)
			}
		}
		return
	}
	s.timeVisits += uint64(len(s.untimed))
	for _, e := range s.untimed {
		if e.is(epOwned | epInActive) {
			s.setTimer(e)
		}
	}
	clear(s.untimed) // no endpoint kept alive for nothing
	s.untimed = s.untimed[:0]
}

// setTimer puts e's next deadline in the wheel.
func (s *Stack) setTimer(e *Endpoint) {
	d, ok := e.NextDeadline()
	switch {
	case !ok:
		if e.timerAt != 0 {
			s.armed--
			s.timers.stop(e.timerAt, s.armed) // its entry is stale now
			e.timerAt = 0
		}
	case d != e.timerAt:
		if e.timerAt != 0 {
			s.timers.stop(e.timerAt, s.armed-1)
		} else {
			s.armed++
		}
		e.timerAt = d
		s.timers.sweep(s.armed)
		s.timers.place(timerEntry{at: d, ep: e})
		s.timers.track(d, s.armed)
	}
}

// acceptQueueFull reports whether a half-open connection to port must not
// complete now: the listener's accept queue is full and the Stack drops
// completing ACKs rather than resetting (Config.AbortOnOverflow).
func (s *Stack) acceptQueueFull(e *Endpoint) bool {
	l := s.listeners[e.key.lport]
	if e.is(epForwarded) {
		l = s.fwd.l
	}
	return !s.cfg.AbortOnOverflow && l != nil && l.ready.len() >= s.cfg.AcceptQueue
}

// leaveBacklog takes a connection that has left SYN-RECEIVED out of the
// backlog of the listener on its port, and queues it for Accept if it is
// established. The listener is the one on the port now: if the one that
// took the SYN was closed and another opened since, the new one inherited
// its backlog (Listen), and takes the connection; with none, the
// connection is reset.
func (s *Stack) leaveBacklog(e *Endpoint, now tcpfsm.Time) {
	port := e.key.lport
	l := s.listeners[port]
	if e.is(epForwarded) {
		f := s.fwd // set once a forwarded connection exists, and kept
		f.hold(e.key.addr(&e.key.remote), -1)
		f.l.halfOpen--
		l = f.l
		if l.closed {
			l = nil
		}
	} else if l != nil {
		l.halfOpen--
	} else if s.orphans[port]--; s.orphans[port] <= 0 {
		delete(s.orphans, port)
	}
	if e.State() != tcpfsm.Established && e.State() != tcpfsm.CloseWait {
		return
	}
	if l != nil && l.ready.len() < s.cfg.AcceptQueue {
		l.queue(e)
		return
	}
	s.stats.AcceptOverflow++
	_ = e.Abort(now)
}

// toTimeWait replaces a connection in TIME-WAIT by a compact record. The
// Endpoint the application holds keeps saying TIME-WAIT; TimeWaits
// counts the records still running.
func (s *Stack) toTimeWait(e *Endpoint) {
	r, _ := e.tcb.TimeWaitRecord()
	k := e.key
	s.disown(e)
	s.recycle(e, 0, false)
	s.tw.put(k, r)
	s.stats.TimeWaitRecords++
	s.reclaim(e)
}

// timeWaitInput handles a segment for a TIME-WAIT record, by the rules a
// TCB in TIME-WAIT follows (TimeWaitRecord.Input). It reports true when
// the segment is a SYN that may open a new incarnation (the record is
// then deleted).
func (s *Stack) timeWaitInput(k tuple, r tcpfsm.TimeWaitRecord, seg *tcpfsm.Segment, now tcpfsm.Time) bool {
	var ack tcpfsm.Segment
	switch r.Input(seg, now, &ack) {
	case tcpfsm.TimeWaitDrop:
		return false
	case tcpfsm.TimeWaitReopen:
		s.tw.del(&k)
		return true
	case tcpfsm.TimeWaitClose:
		s.tw.del(&k)
		return false
	}
	s.tw.put(k, r) // its 2*MSL may have restarted
	s.replies = append(s.replies, reply{seg: ack, src: k.addr(&k.local), dst: k.addr(&k.remote)})
	return false
}

// NextDeadline returns the earliest deadline over every connection and
// TIME-WAIT record, and the end of the earliest hold on an idle
// connection's buffers: a host sleeps until it, then calls Tick. It is
// exact, but for a TIME-WAIT record that began out of order (with a
// deadline earlier than one begun before it), which ends with that one.
func (s *Stack) NextDeadline() (tcpfsm.Time, bool) {
	if len(s.untimed) > 0 || s.untimedAll {
		s.timeActive()
	}
	d, ok := s.timers.nextDeadline(s.armed)
	if s.tw.len() > 0 {
		if tw, twOK := s.tw.next(); twOK && (!ok || tw < d) {
			d, ok = tw, true
		}
	}
	if s.fwd != nil {
		if f, fOK := s.nextDeferred(); fOK && (!ok || f < d) {
			d, ok = f, true
		}
	}
	if len(s.cooling) > 0 && (!ok || s.coolAt < d) {
		d, ok = s.coolAt, true
	}
	return d, ok
}

// Tick fires every timer due at now.
func (s *Stack) Tick(now tcpfsm.Time) {
	if len(s.untimed) > 0 || s.untimedAll {
		s.timeActive()
	}
	if s.tw.len() > 0 {
		s.tw.expire(now)
	}
	if s.fwd != nil {
		s.expireDeferred(now)
	}
	if len(s.cooling) > 0 && now >= s.coolAt {
		s.sweep(now)
	}
	s.timers.expire(now, func(t timerEntry) { s.fire(t.ep, now) })
}

// fire runs the timers of a connection whose deadline is due at now.
func (s *Stack) fire(e *Endpoint, now tcpfsm.Time) {
	e.timerAt = 0
	s.armed--
	e.Tick(now)
	s.after(e, now)
	if e.is(epOwned | epInActive) {
		s.setTimer(e) // a deadline already due fires in this Tick, as any other
	}
}

// Output writes the next segment to send into buf and returns its length
// and addresses; 0 when nothing waits. buf must hold MSS plus 60 bytes.
func (s *Stack) Output(buf []byte, now tcpfsm.Time) (n int, src, dst netip.Addr) {
	// Small enough to inline: a host calls Output until it returns 0, so
	// the last call of each round finds nothing and costs no call. (The
	// fifo of endpoints is empty exactly when its slice is: pop resets it.)
	if len(s.replies) != 0 || len(s.active.q) != 0 {
		n, src, dst = s.output(buf, now)
	}
	return
}

// output is Output when something may wait.
func (s *Stack) output(buf []byte, now tcpfsm.Time) (n int, src, dst netip.Addr) {
	if len(s.replies) > 0 {
		r := &s.replies[0]
		b := r.seg.AppendTo(buf[:0])
		_ = tcpfsm.SetChecksum(b, r.src, r.dst)
		src, dst = r.src, r.dst
		s.replies = s.replies[1:]
		if len(s.replies) == 0 {
			s.replies = s.replies[:0:0]
		}
		s.stats.SegmentsOut++
		return len(b), src, dst
	}
	for s.active.len() > 0 {
		e := s.active.front()
		// Endpoint.output, which this is, but for knowing when the
		// queue empties.
		if io := e.io; io != nil {
			for io.head < len(io.queue) {
				a := &io.queue[io.head]
				io.head++
				if n := e.encode(buf, a); n > 0 {
					s.stats.SegmentsOut++
					if io.head == len(io.queue) {
						// That was its last segment: it leaves the list
						// now, as the next call would have it, so that
						// call need not visit it. Its send buffer is
						// released by the recycle in deactivate's after,
						// or, if after queued more (an abort's RST),
						// once that goes; an endpoint the stack let go
						// of has emptied it.
						io.queue, io.head = io.queue[:0], 0
						s.deactivate(e, now)
					} else {
						e.release()
					}
					// A stack's endpoint knows both addresses before it
					// sends.
					return n, e.key.addr(&e.key.local), e.key.addr(&e.key.remote)
				}
			}
			io.queue, io.head = io.queue[:0], 0
			e.release()
		}
		s.deactivate(e, now)
	}
	return 0, netip.Addr{}, netip.Addr{}
}

// deactivate takes e, the first of the endpoints with output waiting, off
// that list once its queue is empty.
func (s *Stack) deactivate(e *Endpoint, now tcpfsm.Time) {
	e.bits &^= epInActive
	s.active.pop()
	s.after(e, now)
}

// SYN cookies (RFC 4987 section 3.6).
//
// A cookie is the ISS of a SYN-ACK sent without keeping state: 5 bits of a
// 64-second counter, 3 bits naming the MSS, and 24 bits of a keyed MAC
// over the addresses, ports, the peer's ISN and the counter. With
// timestamps, the SYN-ACK's TSval carries the window scale and SACK
// permission in its low 5 bits, so those options survive; without them
// the SYN-ACK offers neither.

var cookieMSS = [8]uint16{536, 1024, 1220, 1360, 1440, 1460, 4312, 8960}

const cookiePeriod = 64 * time.Second

type cookieJar struct{ k0, k1 uint64 }

func newCookieJar(key [16]byte) cookieJar {
	return cookieJar{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}
}

func (j *cookieJar) mac(k tuple, irs tcpfsm.Seq, count uint32) uint32 {
	var b [44]byte
	copy(b[0:], k.local[:])
	copy(b[16:], k.remote[:])
	binary.BigEndian.PutUint16(b[32:], k.lport)
	binary.BigEndian.PutUint16(b[34:], k.rport)
	binary.BigEndian.PutUint32(b[36:], uint32(irs))
	binary.BigEndian.PutUint32(b[40:], count)
	return uint32(siphash.Sum64(j.k0, j.k1, b[:]))
}

func (j *cookieJar) make(k tuple, irs tcpfsm.Seq, mssIdx int, now tcpfsm.Time) tcpfsm.Seq {
	count := uint32(now / tcpfsm.Time(cookiePeriod))
	return tcpfsm.Seq(count&0x1f<<27 | uint32(mssIdx)&7<<24 | j.mac(k, irs, count)&0xffffff)
}

// check returns the MSS index of a valid cookie made within the last two
// periods.
func (j *cookieJar) check(k tuple, irs, cookie tcpfsm.Seq, now tcpfsm.Time) (int, bool) {
	c := uint32(cookie)
	now32 := uint32(now / tcpfsm.Time(cookiePeriod))
	for age := range uint32(2) {
		count := now32 - age
		if count&0x1f == c>>27 && j.mac(k, irs, count)&0xffffff == c&0xffffff {
			return int(c >> 24 & 7), true
		}
	}
	return 0, false
}

// cookieTSVal returns the TSval of a cookie SYN-ACK: the connection's
// timestamp clock with its low 5 bits replaced by bits, never ahead of the
// clock. A TSval ahead of it would make the connection's next segments
// carry smaller ones, which the peer's PAWS check drops (RFC 7323 section
// 5), and its echo would look like a sample from the future.
func cookieTSVal(clock, bits uint32) uint32 {
	v := clock&^0x1f | bits
	if int32(v-clock) > 0 {
		v -= 0x20
	}
	return v
}

// sendCookie answers a SYN statelessly.
func (s *Stack) sendCookie(k tuple, syn *tcpfsm.Segment, now tcpfsm.Time) {
	cfg := &s.cfg.Endpoint.Config
	peer := uint16(536)
	if syn.Options.Has(tcpfsm.OptMSS) {
		peer = syn.Options.MSS
	}
	idx := 0
	for i, m := range cookieMSS {
		if m <= peer {
			idx = i
		}
	}
	iss := s.cookies.make(k, syn.Seq, idx, now)
	our := cfg.MSS
	if our == 0 {
		our = 1460
	}
	rb := cfg.RecvBuffer
	if rb == 0 {
		rb = 65535
	}
	sa := tcpfsm.Segment{SrcPort: k.lport, DstPort: k.rport, Seq: iss, Ack: syn.Seq.Add(1),
		Flags: tcpfsm.FlagSYN | tcpfsm.FlagACK, Window: uint16(min(rb, 0xffff)),
		Options: tcpfsm.Options{Present: tcpfsm.OptMSS, MSS: our}}
	if syn.Options.Has(tcpfsm.OptTimestamps) && !cfg.NoTimestamps {
		var bits uint32
		if syn.Options.Has(tcpfsm.OptWindowScale) && !cfg.NoWindowScale {
			bits |= uint32(min(syn.Options.WindowScale, 14)) + 1
		}
		if syn.Options.Has(tcpfsm.OptSACKPermitted) && !cfg.NoSACK {
			bits |= 0x10
		}
		sa.Options.Present |= tcpfsm.OptTimestamps
		sa.Options.TSVal = cookieTSVal(now.Millis()+uint32(iss), bits)
		sa.Options.TSEcr = syn.Options.TSVal
		if bits&0xf != 0 {
			sa.Options.Present |= tcpfsm.OptWindowScale
			sa.Options.WindowScale = s.fresh.WindowScale()
		}
		if bits&0x10 != 0 {
			sa.Options.Present |= tcpfsm.OptSACKPermitted
		}
	}
	s.replies = append(s.replies, reply{seg: sa, src: k.addr(&k.local), dst: k.addr(&k.remote)})
	s.stats.CookiesSent++
}

// cookieTakesOver handles an ACK for a half-open connection e that does
// not acknowledge e's SYN-ACK but carries a valid cookie: the peer's first
// SYN found the backlog full and was answered with a cookie, and a
// retransmission of it made e once the backlog had room. The peer is
// ESTABLISHED by the cookie, so the connection is the cookie's, as Linux
// builds it when an ACK does not match the request it finds. Without
// this, e would answer the unacceptable ACK with a RST (RFC 9293 section
// 3.10.7.3) and reset the peer's good connection. e goes without a word.
// It reports whether it took the segment.
func (s *Stack) cookieTakesOver(e *Endpoint, k tuple, ack *tcpfsm.Segment, now tcpfsm.Time) bool {
	l, ok := s.listeners[k.lport]
	if !ok || e.is(epForwarded) || e.State() != tcpfsm.SynReceived {
		return false
	}
	if _, ok := s.cookies.check(k, ack.Seq.Add(^uint32(0)), ack.Ack.Add(^uint32(0)), now); !ok {
		return false
	}
	_ = e.step(tcpfsm.Abort(), now)
	if e.io != nil {
		e.io.queue, e.io.head = e.io.queue[:0], 0 // the RST the abort queued stays unsent
	}
	s.after(e, now)
	if e.is(epOwned) {
		s.disown(e)
	}
	return s.cookieInput(l, k, ack, now)
}

// cookieInput builds a connection from an ACK that carries a valid cookie.
func (s *Stack) cookieInput(l *Listener, k tuple, ack *tcpfsm.Segment, now tcpfsm.Time) bool {
	iss := ack.Ack.Add(^uint32(0))
	irs := ack.Seq.Add(^uint32(0))
	idx, ok := s.cookies.check(k, irs, iss, now)
	if !ok {
		s.stats.CookiesRejected++
		return false
	}
	if l.ready.len() >= s.cfg.AcceptQueue {
		s.stats.AcceptOverflow++
		// Dropped: the peer's retransmission completes the handshake once
		// Accept makes room. With AbortOnOverflow it is reset.
		return !s.cfg.AbortOnOverflow
	}
	// Rebuild the SYN the peer sent, as far as the cookie remembers it,
	// and replay the handshake through the state machine.
	syn := tcpfsm.Segment{SrcPort: k.rport, DstPort: k.lport, Seq: irs, Flags: tcpfsm.FlagSYN,
		Window: ack.Window, Options: tcpfsm.Options{Present: tcpfsm.OptMSS, MSS: cookieMSS[idx]}}
	if ack.Options.Has(tcpfsm.OptTimestamps) {
		bits := ack.Options.TSEcr & 0x1f
		syn.Options.Present |= tcpfsm.OptTimestamps
		syn.Options.TSVal = ack.Options.TSVal
		if bits&0xf != 0 {
			syn.Options.Present |= tcpfsm.OptWindowScale
			syn.Options.WindowScale = uint8(bits&0xf - 1)
		}
		if bits&0x10 != 0 {
			syn.Options.Present |= tcpfsm.OptSACKPermitted
		}
	}
	e := s.newEndpoint()
	local, remote := k.Local(), k.Remote()
	_ = e.Listen(local, now)
	if err := e.acceptSYN(&syn, local, remote, iss, now); err != nil {
		return false
	}
	e.io.queue = e.io.queue[:0] // the SYN-ACK was sent already, by the cookie
	if err := e.inputSegment(ack, remote.Addr(), local.Addr(), now); err != nil || e.State() != tcpfsm.Established {
		return false
	}
	s.adopt(e, k, false)
	l.queue(e)
	s.stats.CookiesAccepted++
	s.after(e, now)
	return true
}

// fifo is a first-in, first-out queue in a slice whose space is reused:
// popping moves a head index, and pushing slides the live part down once
// the head has passed half the slice, so a steady stream of pushes and
// pops allocates nothing.
type fifo[T any] struct {
	q    []T
	head int
}

func (f *fifo[T]) len() int { return len(f.q) - f.head }
func (f *fifo[T]) front() T { return f.q[f.head] }

func (f *fifo[T]) push(x T) {
	if f.head > 0 && f.head >= len(f.q)/2 {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, x)
}

func (f *fifo[T]) pop() T {
	x := f.q[f.head]
	var zero T
	f.q[f.head] = zero // no reference kept
	f.head++
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	}
	return x
}
