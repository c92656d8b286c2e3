package tcpstack

import (
	"errors"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Verdict is a forwarder's answer to a SYN for an address and port it
// may serve (ListenAll).
type Verdict uint8

// The verdicts.
const (
	// Accept answers the SYN with a SYN-ACK now (RFC 9293 section
	// 3.10.7.2): the connection is accepted once the handshake completes.
	Accept Verdict = iota
	// Refuse answers with a RST, as a port nobody listens on does (RFC
	// 9293 section 3.10.7.1): the peer's connect fails with "refused".
	Refuse
	// Drop says nothing: the peer retransmits its SYN and, if it is still
	// not decided, gives up in time.
	Drop
	// Defer holds the SYN until the host calls Stack.Decide, for example
	// once it has connected upstream: the SYN-ACK goes out only then.
	// Retransmissions of the SYN meanwhile are ignored.
	Defer
)

// ForwardConfig configures a listener for every address and port
// (ListenAll), as a transparent proxy or a tunnel's forwarder needs.
type ForwardConfig struct {
	// Decide is asked about every new SYN that no other listener takes:
	// local is the address and port the peer wants, remote the peer's.
	// Nil accepts all. It must not call the Stack.
	Decide func(local, remote netip.AddrPort) Verdict
	// MaxPending bounds the handshakes in flight (deferred SYNs and
	// connections in SYN-RECEIVED) over every source; past it, SYNs are
	// dropped and counted in Stats.ForwardOverLimit. Default 4096.
	MaxPending int
	// MaxPendingPerSource bounds them per peer address. Default 64.
	MaxPendingPerSource int
	// DeferTimeout is how long a deferred SYN waits for Decide before it
	// is forgotten (the peer's retransmission then asks again). Default
	// 30 s.
	DeferTimeout time.Duration
}

// Errors of the forwarder.
var (
	// ErrNotDeferred is Decide's error for a SYN that is not waiting.
	ErrNotDeferred = errors.New("tcpfsm: no deferred SYN for these addresses")
	// ErrBadVerdict is Decide's error for Defer, or a value not listed.
	ErrBadVerdict = errors.New("tcpfsm: verdict must be Accept, Refuse or Drop")
)

// forwarder is the state of a Stack's ListenAll listener.
type forwarder struct {
	l        *Listener
	cfg      ForwardConfig
	pending  int                    // deferred SYNs and half-open connections
	bySource map[netip.Addr]int     // the same, by peer address
	deferred map[tuple]deferredSYN  // SYNs waiting for Decide
	expiry   fifo[deferredDeadline] // when each deferred SYN is forgotten, in order
}

// deferredSYN is a SYN waiting for Decide: the segment (without payload)
// and when it is forgotten.
type deferredSYN struct {
	seg tcpfsm.Segment
	at  tcpfsm.Time
}

// deferredDeadline names a deferred SYN in the expiry queue.
type deferredDeadline struct {
	k  tuple
	at tcpfsm.Time
}

// ListenAll returns a listener for every address and port that no Listen
// has taken: the forwarder of a tunnel or a transparent proxy. Each
// accepted connection's LocalAddr is the address and port its peer
// wanted. cfg.Decide is asked about each SYN first (RFC 9293 section
// 3.10.7.2 leaves to the user which connections a passive open accepts).
// There is at most one.
func (s *Stack) ListenAll(cfg ForwardConfig) (*Listener, error) {
	if s.fwd != nil && !s.fwd.l.closed {
		return nil, ErrPortInUse
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 4096
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = 64
	}
	if cfg.DeferTimeout <= 0 {
		cfg.DeferTimeout = 30 * time.Second
	}
	l := &Listener{s: s, all: true}
	if f := s.fwd; f != nil {
		// A closed forwarder's half-open connections join the new one,
		// as a port's do when it is listened on again.
		l.halfOpen = f.l.halfOpen
		f.l, f.cfg = l, cfg
		return l, nil
	}
	s.fwd = &forwarder{l: l, cfg: cfg, bySource: make(map[netip.Addr]int), deferred: make(map[tuple]deferredSYN)}
	return l, nil
}

// forgetDeferred drops every deferred SYN (the listener closed).
func (f *forwarder) forgetDeferred() {
	for k := range f.deferred {
		delete(f.deferred, k)
		f.hold(k.addr(&k.remote), -1)
	}
	f.expiry = fifo[deferredDeadline]{}
}

// forwardSYN takes a SYN that no listener's port matched.
func (s *Stack) forwardSYN(k tuple, seg *tcpfsm.Segment, now tcpfsm.Time) error {
	f := s.fwd
	if _, waiting := f.deferred[k]; waiting {
		return nil // a retransmission of a SYN still undecided
	}
	src := k.addr(&k.remote)
	if f.pending >= f.cfg.MaxPending || f.bySource[src] >= f.cfg.MaxPendingPerSource {
		s.stats.ForwardOverLimit++
		return nil
	}
	if now < s.cfg.QuietUntil {
		s.stats.QuietDrops++
		return nil
	}
	v := Accept
	if f.cfg.Decide != nil {
		v = f.cfg.Decide(k.Local(), k.Remote())
	}
	switch v {
	case Accept:
		return s.forwardAccept(k, seg, now)
	case Defer:
		syn := *seg
		syn.Payload = nil // data on a SYN is not kept; the peer sends it again
		at := now.Add(f.cfg.DeferTimeout)
		f.deferred[k] = deferredSYN{seg: syn, at: at}
		f.expiry.push(deferredDeadline{k: k, at: at})
		f.hold(src, 1)
		s.stats.ForwardDeferred++
		return nil
	case Refuse:
		s.stats.ForwardRefused++
		s.reset(seg, k.addr(&k.remote), k.addr(&k.local))
		return nil
	}
	s.stats.ForwardDropped++
	return nil
}

// hold counts n more (or fewer) handshakes in flight from src.
func (f *forwarder) hold(src netip.Addr, n int) {
	f.pending += n
	if c := f.bySource[src] + n; c > 0 {
		f.bySource[src] = c
	} else {
		delete(f.bySource, src)
	}
}

// forwardAccept answers a SYN the forwarder accepted: a half-open
// connection in its backlog.
func (s *Stack) forwardAccept(k tuple, seg *tcpfsm.Segment, now tcpfsm.Time) error {
	e := s.newEndpoint()
	_ = e.Listen(k.Local(), now)
	s.adopt(e, k, true)
	e.bits |= epForwarded
	s.fwd.l.halfOpen++
	s.fwd.hold(k.addr(&k.remote), 1)
	err := e.inputSegment(seg, k.addr(&k.remote), k.addr(&k.local), now)
	s.after(e, now)
	return err
}

// Decide gives the verdict on a deferred SYN from remote to local: Accept
// sends the SYN-ACK now, Refuse a RST, Drop nothing (the peer's
// retransmission asks again).
func (s *Stack) Decide(local, remote netip.AddrPort, v Verdict, now tcpfsm.Time) error {
	if v == Defer || v > Defer {
		return ErrBadVerdict
	}
	f := s.fwd
	if f == nil || f.l.closed {
		return ErrNotDeferred
	}
	k := tupleOf(local, remote)
	d, ok := f.deferred[k]
	if !ok {
		return ErrNotDeferred
	}
	delete(f.deferred, k)
	f.hold(k.addr(&k.remote), -1)
	switch v {
	case Accept:
		if e := s.conns.get(&k); e != nil {
			return tcpfsm.ErrConnectionExists // the tuple was taken meanwhile
		}
		return s.forwardAccept(k, &d.seg, now)
	case Refuse:
		s.stats.ForwardRefused++
		s.reset(&d.seg, k.addr(&k.remote), k.addr(&k.local))
	default:
		s.stats.ForwardDropped++
	}
	return nil
}

// expireDeferred forgets the deferred SYNs whose time is up.
func (s *Stack) expireDeferred(now tcpfsm.Time) {
	f := s.fwd
	for f.expiry.len() > 0 && f.expiry.front().at <= now {
		x := f.expiry.pop()
		if d, ok := f.deferred[x.k]; ok && d.at == x.at {
			delete(f.deferred, x.k)
			f.hold(x.k.addr(&x.k.remote), -1)
			s.stats.ForwardExpired++
		}
	}
}

// nextDeferred returns when the next deferred SYN is forgotten.
func (s *Stack) nextDeferred() (tcpfsm.Time, bool) {
	f := s.fwd
	for f.expiry.len() > 0 {
		x := f.expiry.front()
		if d, ok := f.deferred[x.k]; ok && d.at == x.at {
			return x.at, true
		}
		f.expiry.pop() // decided already
	}
	return 0, false
}
