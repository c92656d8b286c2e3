package bench

import (
	"context"
	"net"
	"testing"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// hostPair starts two Hosts joined by host.Pipe (one goroutine per
// direction, as gVisor's link/pipe): the shape a host program gives
// tcpfsm when it wants a net.Conn, so the "tcpfsm-host" figures pay for
// goroutines, locks and copies as gonet does. It returns a listener on
// the second and a dial function from the first.
func hostPair(b testing.TB, cfg tcpstack.Config) peers {
	la, lb := host.Pipe(addrA.Addr(), addrB.Addr())
	ha, err := host.New(la, host.Config{Stack: cfg})
	if err != nil {
		b.Fatal(err)
	}
	hb, err := host.New(lb, host.Config{Stack: cfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ha.Close(); hb.Close() })
	ln, err := hb.ListenAddrPort(addrB)
	if err != nil {
		b.Fatal(err)
	}
	return peers{ln, func() (net.Conn, error) {
		return ha.DialContext(context.Background(), "tcp", addrB.String())
	}}
}
