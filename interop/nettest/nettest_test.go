package nettest

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/overudp"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// connect dials with dial, accepts from ln, and returns the pair as
// nettest wants it: dialed first, or accepted first if acceptedFirst.
func connect(ln net.Listener, dial func(context.Context) (net.Conn, error), acceptedFirst bool) (c1, c2 net.Conn, stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	d, err := dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	a := <-accepted
	if a.err != nil {
		d.Close()
		return nil, nil, nil, a.err
	}
	stop = func() { d.Close(); a.c.Close() }
	if acceptedFirst {
		return a.c, d, stop, nil
	}
	return d, a.c, stop, nil
}

func TestConnOverPipe(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	la, lb := host.Pipe(a, b)
	ha, err := host.New(la, host.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := host.New(lb, host.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ha.Close(); hb.Close() })
	ln, err := hb.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func(ctx context.Context) (net.Conn, error) { return ha.DialContext(ctx, "tcp", "10.0.0.2:80") }
	for _, acceptedFirst := range []bool{false, true} {
		name := "Dialed"
		if acceptedFirst {
			name = "Accepted"
		}
		t.Run(name, func(t *testing.T) {
			nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return connect(ln, dial, acceptedFirst) })
		})
	}
}

func TestConnOverUDP(t *testing.T) {
	pa, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := overudp.New(pa, tcpstack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := overudp.New(pb, tcpstack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ta.Close(); tb.Close() })
	ln, err := tb.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	address := pb.LocalAddr().String() + "/80"
	dial := func(ctx context.Context) (net.Conn, error) { return ta.DialContext(ctx, overudp.Network, address) }
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return connect(ln, dial, false) })
}
