package host

import (
	"net"
	"net/netip"
	"sync"
)

// Pipe returns two Links joined in memory: a segment written on one is
// read from the other, as if sent from a to b or from b to a. Each
// direction queues up to 1024 segments (a writer waits beyond that) and
// copies each one, so the caller may reuse its buffer. Closing either
// Link closes both directions of that Link. Each Link is an AddrLink
// whose address is its own end's (a, b), so a Host on it needs no
// Config.Addrs. Pipe is for tests, examples and benchmarks that want two
// Hosts in one process.
func Pipe(a, b netip.Addr) (Link, Link) {
	x, y := make(chan []byte, 1024), make(chan []byte, 1024)
	return &pipeLink{in: x, out: y, closed: make(chan struct{}), local: a, remote: b},
		&pipeLink{in: y, out: x, closed: make(chan struct{}), local: b, remote: a}
}

type pipeLink struct {
	in, out       chan []byte
	closed        chan struct{}
	once          sync.Once
	local, remote netip.Addr
}

func (p *pipeLink) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	select {
	case seg := <-p.in:
		return copy(buf, seg), p.remote, p.local, nil
	case <-p.closed:
		return 0, netip.Addr{}, netip.Addr{}, net.ErrClosed
	}
}

func (p *pipeLink) WriteSegment(tcp []byte, _, _ netip.Addr) error {
	select {
	case p.out <- append([]byte(nil), tcp...):
		return nil
	case <-p.closed:
		return net.ErrClosed
	}
}

func (p *pipeLink) Close() error { p.once.Do(func() { close(p.closed) }); return nil }

// LocalAddrs returns the address the link was made with: the host's own
// (AddrLink).
func (p *pipeLink) LocalAddrs() []netip.Addr { return []netip.Addr{p.local} }
