package host

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Sharded runs one Stack per core over one Link: N Hosts (shards), each
// with its own Stack, lock, reader, writer and timer, so that
// connections on different shards never contend. It is how a kernel
// spreads TCP over cores: receive-side scaling (RSS) hashes each
// packet's 4-tuple to a queue and a core, and SO_REUSEPORT gives each
// core a listening socket of its own on the same port.
//
// A dispatcher goroutine reads the Link (a whole batch at a time from a
// BatchLink) and steers each segment to the shard its 4-tuple hashes to.
// The hash is symmetric, hash(src, dst, sport, dport) == hash(dst, src,
// dport, sport), so both directions of a connection map to one shard: a
// connection lands on one shard and stays there, its segments handled
// under that shard's lock only. Every shard writes to the Link itself,
// from its own writer goroutine, so the Link's WriteSegment (and
// WriteLargeSegment) must be safe for concurrent use, as a net.PacketConn
// or a TUN device's file is.
//
// Listen listens on every shard (the same port, as SO_REUSEPORT sockets
// do) and returns one Listener whose Accept takes connections from all
// of them. Dial opens each connection on the next shard in turn and
// chooses its local port (RFC 9293 section 3.10.1 lets the user name it)
// among those whose 4-tuple hashes to that shard, so the replies come
// back to it. Connections are *Conn, the same as a Host's.
//
// # Beyond one process
//
// The shards of one Sharded share a Link, and the dispatcher that reads
// it is one goroutine: it does little per segment (a hash and a copy),
// but on a fast enough link it is the limit. The same scheme scales
// further with the steering done below the process. A NIC with several
// queues steers by RSS: give each queue a Link of its own (an AF_XDP
// socket, a TUN device with IFF_MULTI_QUEUE, one packet socket per queue
// with PACKET_FANOUT_HASH) and run one Host per queue, or one process
// per queue, with no dispatcher at all. For the connections a shard
// dials to come back to it, the shard picks local ports with the same
// hash the NIC uses: set ShardConfig.Hash to SymmetricToeplitz (the
// Toeplitz function with the repeated 0x6d5a key, which `ethtool -X dev
// hkey` can set, and with which RSS is symmetric) and keep the NIC's
// indirection table the identity modulo the queue count. Processes on
// one machine share the addresses the same way SO_REUSEPORT sockets do;
// machines behind a load balancer that hashes the 4-tuple (ECMP, an L4
// balancer with consistent hashing) are shards one level up, each with
// its own address or a shared one, and each machine then shards again
// per core.
type Sharded struct {
	link   Link
	shards []shard
	hash   func(a, b netip.AddrPort) uint32
	next   atomic.Uint32 // the shard the next Dial goes to
	done   chan struct{} // closed when the dispatcher returns

	closeMu sync.Mutex
	closed  bool
}

// shard is one Host and the queue of segments steered to it.
type shard struct {
	h      *Host
	q      *segQueue
	cursor uint16 // the next ephemeral port Dial tries; h.mu held
}

// ShardConfig configures a Sharded.
type ShardConfig struct {
	// Config configures each shard's Host. Addrs defaults to the Link's
	// own if it is an AddrLink; every shard has the same addresses.
	Config
	// Shards is how many shards to run. Zero or less: one per core
	// (runtime.GOMAXPROCS(0)).
	Shards int
	// Hash maps a segment's two ends to a shard: hash % Shards. It must
	// be symmetric, Hash(a, b) == Hash(b, a). Nil: a keyed hash with a
	// random key (so that nobody can choose ports that load one shard),
	// fast to compute. SymmetricToeplitz matches a NIC's RSS.
	Hash func(a, b netip.AddrPort) uint32
	// QueueBytes bounds the segment bytes waiting for each shard; the
	// dispatcher waits when one shard's queue is full, and the Link then
	// queues (or drops) what arrives. Default 4 MiB.
	QueueBytes int
}

// NewSharded starts cfg.Shards Hosts over link and a dispatcher that
// reads it until Close. It fails if link is nil or cfg.Stack is
// invalid.
func NewSharded(link Link, cfg ShardConfig) (*Sharded, error) {
	if link == nil {
		return nil, errors.New("host: nil Link")
	}
	n := cfg.Shards
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	s := &Sharded{link: link, shards: make([]shard, n), hash: cfg.Hash, done: make(chan struct{})}
	if s.hash == nil {
		k := keyedHash{rand.Uint64(), rand.Uint64()}
		s.hash = k.hash
	}
	hc := cfg.Config
	if len(hc.Addrs) == 0 {
		if al, ok := link.(AddrLink); ok {
			hc.Addrs = al.LocalAddrs()
		}
	}
	qb := cfg.QueueBytes
	if qb <= 0 {
		qb = 4 << 20
	}
	var large LargeLink
	if ll, ok := link.(LargeLink); ok && ll.LargeSegments() {
		large = ll
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.q = newSegQueue(qb)
		var vl Link = &shardLink{q: sh.q, link: link}
		if large != nil {
			vl = &shardLargeLink{shardLink{q: sh.q, link: link}, large}
		}
		h, err := New(vl, hc)
		if err != nil {
			for _, o := range s.shards[:i] {
				o.h.Close()
			}
			return nil, err
		}
		sh.h = h
		lo, hi := h.ephRange()
		sh.cursor = lo + uint16(rand.IntN(int(hi-lo)+1))
	}
	go s.dispatch()
	return s, nil
}

// Shards returns how many shards s runs.
func (s *Sharded) Shards() int { return len(s.shards) }

// Shard returns the Host of shard i, 0 <= i < Shards().
func (s *Sharded) Shard(i int) *Host { return s.shards[i].h }

// ShardOf returns the shard of the connection between a and b, in either
// order.
func (s *Sharded) ShardOf(a, b netip.AddrPort) int {
	return int(s.hash(a, b) % uint32(len(s.shards)))
}

// Close stops every shard and the dispatcher and closes the link.
// Connections end without a goodbye.
func (s *Sharded) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	err := s.link.Close()
	for i := range s.shards {
		s.shards[i].q.close() // the dispatcher waits on no full queue
	}
	<-s.done
	for i := range s.shards {
		_ = s.shards[i].h.Close()
	}
	return err
}

// Stats returns the sum of the shards' counters.
func (s *Sharded) Stats() tcpstack.Stats {
	var sum tcpstack.Stats
	v := reflect.ValueOf(&sum).Elem()
	for i := range s.shards {
		st := s.shards[i].h.Stats()
		w := reflect.ValueOf(st)
		for f := range v.NumField() {
			if fv := v.Field(f); fv.Kind() == reflect.Uint64 {
				fv.SetUint(fv.Uint() + w.Field(f).Uint())
			}
		}
	}
	return sum
}

// PathMTU applies an ICMP "fragmentation needed" or ICMPv6 "packet too
// big" message (RFC 1191, RFC 8201, checked as RFC 5927 says) on the
// shard of the connection from local to remote; see Host.PathMTU.
func (s *Sharded) PathMTU(local, remote netip.AddrPort, seq tcpfsm.Seq, mtu int) error {
	return s.shards[s.ShardOf(local, remote)].h.PathMTU(local, remote, seq, mtu)
}

// dispatch reads the link and steers each segment to its shard, until
// the link fails with the Sharded closed.
func (s *Sharded) dispatch() {
	defer close(s.done)
	bl, batched, buf, segs := readBuffers(s.link)
	n := len(s.shards)
	idx := make([]uint16, len(segs)) // each segment's shard
	for {
		var k int
		var err error
		if batched {
			k, err = bl.ReadSegments(buf, segs)
		} else {
			segs[0] = SegmentInfo{}
			segs[0].N, segs[0].Src, segs[0].Dst, err = s.link.ReadSegment(buf)
			k = 1
		}
		if err != nil {
			s.closeMu.Lock()
			closed := s.closed
			s.closeMu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		for i := range segs[:k] {
			idx[i] = uint16(s.segShard(buf[segs[i].Off:segs[i].Off+segs[i].N], &segs[i]))
		}
		for j := range n {
			if !s.shards[j].q.push(buf, segs[:k], idx[:k], uint16(j)) {
				return // closed
			}
		}
	}
}

// segShard returns the shard of a segment: that of its ports and
// addresses. A segment too short to have ports goes to shard 0, whose
// Stack counts it as malformed.
func (s *Sharded) segShard(tcp []byte, sg *SegmentInfo) int {
	if len(tcp) < 4 {
		return 0
	}
	a := netip.AddrPortFrom(sg.Src, binary.BigEndian.Uint16(tcp[0:2]))
	b := netip.AddrPortFrom(sg.Dst, binary.BigEndian.Uint16(tcp[2:4]))
	return s.ShardOf(a, b)
}

// keyedHash is the default shard hash: each end's address and port mixed
// with a random key, and the two results added, so that the order of the
// ends does not matter.
type keyedHash struct{ k0, k1 uint64 }

func (k keyedHash) hash(a, b netip.AddrPort) uint32 {
	return uint32(mix64(k.end(a)+k.end(b)) >> 32)
}

// end mixes one end's address (in its 16-byte form, so an IPv4 address
// and its IPv4-mapped form are one) and port with the key.
func (k keyedHash) end(ap netip.AddrPort) uint64 {
	a := ap.Addr().As16()
	hi := binary.LittleEndian.Uint64(a[:8])
	lo := binary.LittleEndian.Uint64(a[8:])
	return mix64(mix64(mix64(hi^k.k0)^lo^k.k1) ^ uint64(ap.Port()))
}

// mix64 is the finalizer of SplitMix64: every input bit changes about
// half of the output bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// toeplitzKey is the symmetric RSS key: 0x6d5a repeated. Its period of
// 16 bits makes the Toeplitz hash of (src, dst, sport, dport) equal that
// of (dst, src, dport, sport), since swapping the addresses shifts the
// input by a multiple of 16 bits, as swapping the ports does.
var toeplitzKey = func() (k [40]byte) {
	for i := 0; i < len(k); i += 2 {
		k[i], k[i+1] = 0x6d, 0x5a
	}
	return k
}()

// SymmetricToeplitz is the Toeplitz hash that receive-side scaling NICs
// compute (Microsoft's RSS specification, "Verifying the RSS Hash
// Calculation"), over the source address, destination address, source
// port and destination port of a TCP segment from a to b (IPv4: 12
// bytes; IPv6: 36), with the key 0x6d5a repeated, which makes it
// symmetric: SymmetricToeplitz(a, b) == SymmetricToeplitz(b, a). As
// ShardConfig.Hash it makes a Sharded (or a process per NIC queue) pick
// the local ports of its dials on the queue the NIC steers their replies
// to, with the NIC's indirection table set to hash % queues.
func SymmetricToeplitz(a, b netip.AddrPort) uint32 {
	return toeplitz(toeplitzKey[:], a, b)
}

// toeplitz is the Toeplitz hash of a segment from a to b with key, which
// has at least 4 bytes more than the input.
func toeplitz(key []byte, a, b netip.AddrPort) uint32 {
	var in [36]byte
	var n int
	aa, ba := a.Addr().Unmap(), b.Addr().Unmap()
	if aa.Is4() && ba.Is4() {
		x, y := aa.As4(), ba.As4()
		copy(in[0:], x[:])
		copy(in[4:], y[:])
		n = 8
	} else {
		x, y := aa.As16(), ba.As16()
		copy(in[0:], x[:])
		copy(in[16:], y[:])
		n = 32
	}
	binary.BigEndian.PutUint16(in[n:], a.Port())
	binary.BigEndian.PutUint16(in[n+2:], b.Port())
	n += 4
	var h uint32
	w := binary.BigEndian.Uint32(key[:4]) // the key's 32 bits at the current input bit
	for i := range n {
		next := key[i+4]
		for bit := 7; bit >= 0; bit-- {
			if in[i]>>bit&1 != 0 {
				h ^= w
			}
			w = w<<1 | uint32(next>>bit&1)
		}
	}
	return h
}

// segQueue carries segments from the dispatcher to one shard's Host: the
// dispatcher appends to one arena under the lock, and the reader swaps
// it for its own emptied one and reads from that without the lock.
type segQueue struct {
	mu     sync.Mutex
	data   []byte
	segs   []SegmentInfo
	closed bool
	ready  chan struct{} // signaled when segments arrive
	room   chan struct{} // if not nil, writers wait for room: closed when the reader takes segments
	done   chan struct{} // closed by close
	limit  int

	// The reader's side: segments taken, and the next to read.
	rdata []byte
	rsegs []SegmentInfo
	rnext int
}

func newSegQueue(limit int) *segQueue {
	return &segQueue{limit: limit, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// push appends the segments of segs whose idx is j, from buf. It waits
// while the queue is over its limit, and reports false once closed.
// Several goroutines may push at once.
func (q *segQueue) push(buf []byte, segs []SegmentInfo, idx []uint16, j uint16) bool {
	q.mu.Lock()
	pushed := false
	for i := range segs {
		if idx[i] != j {
			continue
		}
		sg := segs[i]
		for len(q.data) > 0 && len(q.data)+sg.N > q.limit && !q.closed {
			if q.room == nil {
				q.room = make(chan struct{})
			}
			room := q.room
			q.mu.Unlock()
			if pushed {
				wake(q.ready)
				pushed = false
			}
			select {
			case <-room:
			case <-q.done:
			}
			q.mu.Lock()
		}
		if q.closed {
			q.mu.Unlock()
			return false
		}
		off := len(q.data)
		q.data = append(q.data, buf[sg.Off:sg.Off+sg.N]...)
		sg.Off = off
		q.segs = append(q.segs, sg)
		pushed = true
	}
	q.mu.Unlock()
	if pushed {
		wake(q.ready)
	}
	return true
}

// close makes the reader fail with net.ErrClosed and the writer give up.
func (q *segQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}

// take waits for segments and takes every one queued, for the reader to
// read from rdata and rsegs; it fails with net.ErrClosed once the queue
// is closed and empty. The writers append to the other arena meanwhile.
func (q *segQueue) take() error {
	for {
		q.mu.Lock()
		if len(q.segs) > 0 {
			q.data, q.rdata = q.rdata[:0], q.data
			q.segs, q.rsegs = q.rsegs[:0], q.segs
			q.rnext = 0
			if q.room != nil {
				close(q.room) // every waiting writer goes on
				q.room = nil
			}
			q.mu.Unlock()
			return nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
		select {
		case <-q.ready:
		case <-q.done:
		}
	}
}

// takeSegments is segmentTaker's: every segment queued, in place, valid
// until the next call. A shard's Host reads its queue this way, without
// the copy ReadSegments makes.
func (q *segQueue) takeSegments() ([]byte, []SegmentInfo, error) {
	if err := q.take(); err != nil {
		return nil, nil, err
	}
	q.rnext = len(q.rsegs)
	return q.rdata, q.rsegs, nil
}

// ReadSegments is BatchLink's: it copies the segments taken from the
// queue into buf, taking more (with the lock) when none are left.
func (q *segQueue) ReadSegments(buf []byte, out []SegmentInfo) (int, error) {
	if q.rnext == len(q.rsegs) {
		if err := q.take(); err != nil {
			return 0, err
		}
	}
	k, off := 0, 0
	for k < len(out) && q.rnext < len(q.rsegs) {
		sg := q.rsegs[q.rnext]
		if off+sg.N > len(buf) {
			if k == 0 {
				q.rnext++ // larger than buf: dropped, as a link drops it
				continue
			}
			break
		}
		copy(buf[off:], q.rdata[sg.Off:sg.Off+sg.N])
		sg.Off = off
		out[k] = sg
		off += sg.N
		k++
		q.rnext++
	}
	if k == 0 {
		return q.ReadSegments(buf, out)
	}
	return k, nil
}

// ReadSegment is Link's: one segment of those ReadSegments gives.
func (q *segQueue) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	var one [1]SegmentInfo
	if _, err := q.ReadSegments(buf, one[:]); err != nil {
		return 0, netip.Addr{}, netip.Addr{}, err
	}
	return one[0].N, one[0].Src, one[0].Dst, nil
}

// shardLink is a shard's Link: it reads what the dispatcher steered to
// the shard and writes to the Sharded's Link.
type shardLink struct {
	q    *segQueue
	link Link
}

func (l *shardLink) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	return l.q.ReadSegment(buf)
}

func (l *shardLink) ReadSegments(buf []byte, segs []SegmentInfo) (int, error) {
	return l.q.ReadSegments(buf, segs)
}

func (l *shardLink) takeSegments() ([]byte, []SegmentInfo, error) { return l.q.takeSegments() }

func (l *shardLink) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	return l.link.WriteSegment(tcp, src, dst)
}

// Close closes the shard's queue only: the Sharded closes the Link.
func (l *shardLink) Close() error { l.q.close(); return nil }

// shardLargeLink is a shardLink over a LargeLink.
type shardLargeLink struct {
	shardLink
	large LargeLink
}

func (l *shardLargeLink) LargeSegments() bool { return true }

func (l *shardLargeLink) WriteLargeSegment(tcp []byte, segSize int, src, dst netip.Addr) error {
	return l.large.WriteLargeSegment(tcp, segSize, src, dst)
}

// Dial connects to address on the named network, as net.Dial does (see
// DialContext).
func (s *Sharded) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext connects to address on the named network, as
// Host.DialContext does (RFC 9293 section 3.10.1, OPEN), on the next
// shard in turn, from a local port whose 4-tuple hashes to that shard.
func (s *Sharded) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return s.shards[0].h.dialAddress(ctx, network, address, s.DialContextAddrPort)
}

// DialContextAddrPort connects to remote, as DialContext does (RFC 9293
// section 3.10.1): on the next shard in turn, from the next ephemeral
// port whose 4-tuple hashes to that shard.
func (s *Sharded) DialContextAddrPort(ctx context.Context, remote netip.AddrPort) (*Conn, error) {
	i := int(s.next.Add(1)-1) % len(s.shards)
	sh := &s.shards[i]
	return sh.h.dialWith(ctx, remote, func(local netip.Addr, remote netip.AddrPort, now tcpfsm.Time) (*tcpstack.Endpoint, error) {
		return s.dialOnShard(i, local, remote, now)
	})
}

// dialOnShard opens a connection on shard i from the next ephemeral port
// whose 4-tuple hashes to i. The shard's h.mu is held.
func (s *Sharded) dialOnShard(i int, local netip.Addr, remote netip.AddrPort, now tcpfsm.Time) (*tcpstack.Endpoint, error) {
	sh := &s.shards[i]
	h := sh.h
	lo, hi := h.ephRange()
	for range int(hi-lo) + 1 {
		p := sh.cursor
		sh.cursor++
		if sh.cursor > hi || sh.cursor < lo {
			sh.cursor = lo
		}
		if p == 0 {
			continue
		}
		lp := netip.AddrPortFrom(local, p)
		if s.ShardOf(lp, remote) != i {
			continue
		}
		e, err := h.stack.DialFrom(lp, remote, now)
		if errors.Is(err, tcpstack.ErrPortInUse) {
			continue
		}
		return e, err
	}
	return nil, tcpstack.ErrNoPorts
}

// ephRange returns the ephemeral ports, lowest first.
func (h *Host) ephRange() (lo, hi uint16) {
	if h.ephHigh < h.ephLow {
		return h.ephHigh, h.ephLow
	}
	return h.ephLow, h.ephHigh
}

// ShardedListener is a net.Listener for one TCP port of every shard, as
// SO_REUSEPORT sockets on one port, one per core, taken together: Accept
// returns the next connection any shard has.
type ShardedListener struct {
	subs []*Listener
	addr net.Addr
	wake chan struct{} // every shard's listener signals this one
	next atomic.Uint32 // the shard Accept looks at first

	mu     sync.Mutex
	dl     time.Time
	closed bool
}

// Listen announces on the local address on every shard, as Host.Listen
// does (RFC 9293 section 3.10.1, a passive OPEN): port 0 is an ephemeral
// port free on every shard.
func (s *Sharded) Listen(network, address string) (net.Listener, error) {
	addrs, err := s.shards[0].h.resolve(context.Background(), "listen", network, address)
	if err != nil {
		return nil, err
	}
	l, err := s.ListenAddrPort(addrs[0])
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenAddrPort is Listen for local (RFC 9293 section 3.10.1): an
// invalid or unspecified address means every address of the host, and
// port 0 an ephemeral port free on every shard.
func (s *Sharded) ListenAddrPort(local netip.AddrPort) (*ShardedListener, error) {
	if local.Port() != 0 {
		return s.listenAll(local)
	}
	l16, h16 := s.shards[0].h.ephRange()
	lo, span := int(l16), int(h16-l16)+1
	start := rand.IntN(span)
	var err error
	for i := range span {
		p := uint16(lo + (start+i)%span)
		if p == 0 {
			continue
		}
		var l *ShardedListener
		l, err = s.listenAll(netip.AddrPortFrom(local.Addr(), p))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		return l, err
	}
	return nil, err
}

// listenAll listens on local's port on every shard, or on none.
func (s *Sharded) listenAll(local netip.AddrPort) (*ShardedListener, error) {
	l := &ShardedListener{wake: make(chan struct{}, 1)}
	for i := range s.shards {
		sub, err := s.shards[i].h.ListenAddrPort(local)
		if err != nil {
			for _, o := range l.subs {
				_ = o.Close()
			}
			return nil, err
		}
		h := sub.h
		h.mu.Lock()
		sub.wake = l.wake
		h.mu.Unlock()
		l.subs = append(l.subs, sub)
	}
	l.addr = l.subs[0].addr
	return l, nil
}

// Accept waits for the next connection, as net.Listener's.
func (l *ShardedListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP waits for the next connection of any shard and returns it as
// a *Conn. After Close it fails with net.ErrClosed, and past the
// deadline with os.ErrDeadlineExceeded, inside a *net.OpError.
func (l *ShardedListener) AcceptTCP() (*Conn, error) {
	for {
		l.mu.Lock()
		closed, dl := l.closed, l.dl
		l.mu.Unlock()
		if closed {
			return nil, opError("accept", nil, l.addr, net.ErrClosed)
		}
		start := int(l.next.Add(1))
		for j := range l.subs {
			sub := l.subs[(start+j)%len(l.subs)]
			c, err := sub.tryAccept()
			if c != nil || err != nil {
				if c != nil {
					wake(l.wake) // another Accept may be waiting for what this wake-up was also for
				}
				return c, err
			}
		}
		if passed(dl) {
			return nil, opError("accept", nil, l.addr, os.ErrDeadlineExceeded)
		}
		var t *time.Timer
		var expired <-chan time.Time
		if !dl.IsZero() {
			t = time.NewTimer(time.Until(dl))
			expired = t.C
		}
		select {
		case <-l.wake:
		case <-expired:
		case <-l.subs[0].h.closing:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// tryAccept returns the next connection of l if it has one, an error if
// l or its Host is closed, and neither otherwise.
func (l *Listener) tryAccept() (*Conn, error) {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case l.closed:
		return nil, opError("accept", nil, l.addr, net.ErrClosed)
	case h.closed:
		return nil, opError("accept", nil, l.addr, ErrClosed)
	}
	if e, ok := l.ln.Accept(); ok {
		c := h.newConn(e)
		c.logLocked(slog.LevelDebug, "tcp connection accepted")
		return c, nil
	}
	return nil, nil
}

// SetDeadline sets when a blocked Accept gives up; the zero time means
// never.
func (l *ShardedListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	l.dl = t
	l.mu.Unlock()
	wake(l.wake)
	return nil
}

// Close stops listening on every shard. Connections already accepted go
// on; a second Close returns net.ErrClosed.
func (l *ShardedListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return opError("close", nil, l.addr, net.ErrClosed)
	}
	l.closed = true
	l.mu.Unlock()
	for _, sub := range l.subs {
		_ = sub.Close()
	}
	wake(l.wake)
	return nil
}

// Addr returns the listener's address.
func (l *ShardedListener) Addr() net.Addr { return l.addr }
