package bench

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
)

// chanLink joins two host.Hosts in memory, one goroutine per direction as
// gVisor's link/pipe does: the shape a host program gives tcpfsm when it
// wants a net.Conn, so the "tcpfsm-host" figures pay for goroutines,
// locks and copies as gonet does.
type chanLink struct {
	in, out       chan []byte
	closed        chan struct{}
	once          sync.Once
	local, remote netip.Addr
}

func chanLinks(a, b netip.Addr) (*chanLink, *chanLink) {
	x, y := make(chan []byte, 1024), make(chan []byte, 1024)
	return &chanLink{in: x, out: y, closed: make(chan struct{}), local: a, remote: b},
		&chanLink{in: y, out: x, closed: make(chan struct{}), local: b, remote: a}
}

func (l *chanLink) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	select {
	case p := <-l.in:
		return copy(buf, p), l.remote, l.local, nil
	case <-l.closed:
		return 0, netip.Addr{}, netip.Addr{}, net.ErrClosed
	}
}

func (l *chanLink) WriteSegment(tcp []byte, _, _ netip.Addr) error {
	select {
	case l.out <- append([]byte(nil), tcp...):
	case <-l.closed:
	}
	return nil
}

func (l *chanLink) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// hostPair starts two Hosts and returns a listener on the second and a
// dial function from the first.
func hostPair(b testing.TB, cfg tcpfsm.StackConfig) (net.Listener, func() (net.Conn, error)) {
	la, lb := chanLinks(addrA.Addr(), addrB.Addr())
	ha, err := host.New(la, cfg)
	if err != nil {
		b.Fatal(err)
	}
	hb, err := host.New(lb, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ha.Close(); hb.Close() })
	ln, err := hb.Listen(addrB.Port(), net.TCPAddrFromAddrPort(addrB))
	if err != nil {
		b.Fatal(err)
	}
	dial := func() (net.Conn, error) {
		return ha.Dial(context.Background(), addrA.Addr(), addrB, nil)
	}
	return ln, dial
}
