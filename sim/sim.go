// Package sim is a deterministic network simulator for tcpfsm: virtual
// time, seeded randomness, and links that lose, duplicate, reorder, delay,
// jitter, corrupt and rate-limit packets, between any number of
// tcpfsm.Stacks. A run depends only on its seed, so a failure found at
// scale replays exactly, with a trace.
//
//	net := sim.New(seed)
//	a, _ := net.AddNode(addrA, tcpstack.Config{}, sim.Link{Delay: 10 * time.Millisecond, Loss: 0.05})
//	b, _ := net.AddNode(addrB, tcpstack.Config{}, sim.Link{Delay: 10 * time.Millisecond})
//	ln, _ := b.Stack.Listen(80)
//	c, _ := a.Stack.Dial(addrA, netip.AddrPortFrom(addrB, 80), net.Now())
//	net.RunUntil(net.Now().Add(time.Minute), func() bool { return c.Connected() })
//
// Users can test their own transports the same way: anything that moves
// segments between Stacks fits behind a Node.
package sim

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/internal/minheap"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Link describes what happens to packets a node sends.
type Link struct {
	Delay     time.Duration // one-way propagation delay
	Jitter    time.Duration // extra delay, uniform in [0, Jitter)
	Loss      float64       // probability a packet is lost
	Duplicate float64       // probability a packet arrives twice
	Reorder   float64       // probability a packet is held back by one more Delay
	Corrupt   float64       // probability one bit of a packet flips (the checksum must catch it)
	Bandwidth int64         // bytes per second leaving the node; 0 is unlimited
	MTU       int           // largest TCP segment carried, in bytes; 0 is unlimited; larger ones are dropped
}

// Stats counts what the network did to packets.
type Stats struct {
	Sent, Delivered, Lost, Duplicated, Reordered, Corrupted, TooBig uint64
}

// Network is a set of nodes joined by links, with a virtual clock.
type Network struct {
	seed  uint64
	now   tcpfsm.Time
	rng   *rand.Rand
	nodes []*Node
	byIP  map[netip.Addr]*Node
	q     packetHeap
	seq   uint64
	buf   []byte
	stats Stats

	// Trace, if set, is called for every packet a node sends, with what
	// happened to it: "sent", "lost", "duplicated", "corrupted", "too big".
	Trace func(at tcpfsm.Time, src, dst netip.Addr, tcp []byte, fate string)
}

// Node is one host: a Stack with an address and the link it sends on.
type Node struct {
	Addr  netip.Addr
	Stack *tcpstack.Stack
	Link  Link
	busy  tcpfsm.Time // when the link is free again (bandwidth)
}

// New returns an empty network whose randomness comes from seed.
func New(seed uint64) *Network {
	return &Network{seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5eed)), byIP: map[netip.Addr]*Node{},
		buf: make([]byte, 65536)}
}

// Seed returns the seed the network was made with.
func (n *Network) Seed() uint64 { return n.seed }

// Now returns the virtual time.
func (n *Network) Now() tcpfsm.Time { return n.now }

// Stats returns what the network did to packets so far.
func (n *Network) Stats() Stats { return n.stats }

// Rand returns the network's random source, for scenarios that want their
// randomness tied to the seed too.
func (n *Network) Rand() *rand.Rand { return n.rng }

// AddNode adds a host at addr with a Stack made from cfg. Its ISNs come
// from the network's seed, so runs repeat.
func (n *Network) AddNode(addr netip.Addr, cfg tcpstack.Config, link Link) (*Node, error) {
	if cfg.Endpoint.ISN == nil {
		var key [16]byte
		for i := range key {
			key[i] = byte(n.rng.Uint32())
		}
		cfg.Endpoint.ISN = tcpfsm.NewISNGeneratorWithKey(key)
	}
	if cfg.CookieKey == ([16]byte{}) {
		for i := range cfg.CookieKey {
			cfg.CookieKey[i] = byte(n.rng.Uint32())
		}
	}
	s, err := tcpstack.New(cfg)
	if err != nil {
		return nil, err
	}
	nd := &Node{Addr: addr, Stack: s, Link: link}
	n.nodes = append(n.nodes, nd)
	n.byIP[addr] = nd
	return nd, nil
}

// packet is one delivery waiting in the network.
type packet struct {
	at       tcpfsm.Time
	seq      uint64 // ties broken by send order
	src, dst netip.Addr
	data     []byte
}

// Flush takes every packet the nodes want to send onto their links. Call
// it after acting on a stack from outside (Dial, Write, Close).
func (n *Network) Flush() {
	for _, nd := range n.nodes {
		for {
			m, src, dst := nd.Stack.Output(n.buf, n.now)
			if m == 0 {
				break
			}
			n.send(nd, src, dst, n.buf[:m])
		}
	}
}

func (n *Network) send(nd *Node, src, dst netip.Addr, tcp []byte) {
	l := &nd.Link
	n.stats.Sent++
	fate := "sent"
	switch {
	case l.MTU > 0 && len(tcp) > l.MTU:
		n.stats.TooBig++
		fate = "too big"
	case n.rng.Float64() < l.Loss:
		n.stats.Lost++
		fate = "lost"
	}
	if fate != "sent" {
		if n.Trace != nil {
			n.Trace(n.now, src, dst, tcp, fate)
		}
		return
	}
	data := append([]byte(nil), tcp...)
	if n.rng.Float64() < l.Corrupt {
		i := n.rng.IntN(len(data))
		data[i] ^= 1 << n.rng.IntN(8)
		n.stats.Corrupted++
		fate = "corrupted"
	}
	depart := n.now
	if l.Bandwidth > 0 {
		depart = max(depart, nd.busy)
		depart = depart.Add(time.Duration(int64(len(data)) * int64(time.Second) / l.Bandwidth))
		nd.busy = depart
	}
	at := depart.Add(l.Delay)
	if l.Jitter > 0 {
		at = at.Add(time.Duration(n.rng.Int64N(int64(l.Jitter))))
	}
	if n.rng.Float64() < l.Reorder {
		at = at.Add(l.Delay + time.Millisecond)
		n.stats.Reordered++
	}
	n.push(packet{at: at, src: src, dst: dst, data: data})
	if n.rng.Float64() < l.Duplicate {
		n.stats.Duplicated++
		n.push(packet{at: at.Add(time.Millisecond), src: src, dst: dst, data: append([]byte(nil), data...)})
		fate = "duplicated"
	}
	if n.Trace != nil {
		n.Trace(n.now, src, dst, data, fate)
	}
}

func (n *Network) push(p packet) {
	n.seq++
	p.seq = n.seq
	n.q.push(p)
}

// Step does the next thing that happens: a delivery or a timer, moving
// the clock to it. It reports false if nothing is left to happen.
func (n *Network) Step() bool {
	n.Flush()
	next := tcpfsm.Time(-1)
	if len(n.q) > 0 {
		next = n.q[0].at
	}
	for _, nd := range n.nodes {
		if d, ok := nd.Stack.NextDeadline(); ok && (next < 0 || d < next) {
			next = d
		}
	}
	if next < 0 {
		return false
	}
	n.now = max(n.now, next)
	if len(n.q) > 0 && n.q[0].at <= n.now {
		p := n.q.pop()
		if nd, ok := n.byIP[p.dst]; ok {
			n.stats.Delivered++
			_ = nd.Stack.Input(p.data, p.src, p.dst, n.now)
		}
	} else {
		for _, nd := range n.nodes {
			nd.Stack.Tick(n.now)
		}
	}
	n.Flush()
	return true
}

// RunUntil steps until done reports true (checked before every step) or
// the clock would pass limit; it reports whether done was reached.
func (n *Network) RunUntil(limit tcpfsm.Time, done func() bool) bool {
	for {
		n.Flush()
		if done != nil && done() {
			return true
		}
		if n.nextAt() > limit || !n.Step() {
			n.now = max(n.now, limit)
			return done != nil && done()
		}
	}
}

func (n *Network) nextAt() tcpfsm.Time {
	next := tcpfsm.Time(1<<63 - 1)
	if len(n.q) > 0 {
		next = n.q[0].at
	}
	for _, nd := range n.nodes {
		if d, ok := nd.Stack.NextDeadline(); ok && d < next {
			next = d
		}
	}
	return next
}

// packetHeap orders deliveries by time, then by send order.
type packetHeap []packet

// Less orders packets by delivery time, then by send order (minheap.Lesser).
func (p packet) Less(q packet) bool { return p.at < q.at || (p.at == q.at && p.seq < q.seq) }

func (h *packetHeap) push(p packet) { *h = minheap.Push(*h, p) }

func (h *packetHeap) pop() packet {
	p, rest := minheap.Pop(*h)
	*h = rest
	return p
}
