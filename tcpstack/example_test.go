package tcpstack_test

import (
	"fmt"
	"net/netip"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Two Endpoints joined by a loop that moves each one's output to the
// other: a connection, a message, and a half-close (RFC 9293 section
// 3.10).
func ExampleEndpoint() {
	a := netip.MustParseAddrPort("192.0.2.1:40000")
	b := netip.MustParseAddrPort("192.0.2.2:80")
	client, _ := tcpstack.NewEndpoint(tcpstack.EndpointConfig{ISN: tcpstack.FixedISN(100)})
	server, _ := tcpstack.NewEndpoint(tcpstack.EndpointConfig{ISN: tcpstack.FixedISN(300)})
	var now tcpfsm.Time
	_ = server.Listen(b, now)
	_ = client.Dial(a, b, now)
	buf := make([]byte, 1600)
	exchange := func() {
		for moved := true; moved; {
			moved = false
			for _, p := range [][2]*tcpstack.Endpoint{{client, server}, {server, client}} {
				for n, _, _ := p[0].Output(buf, now); n > 0; n, _, _ = p[0].Output(buf, now) {
					_ = p[1].Input(buf[:n], p[0].LocalAddr().Addr(), p[1].LocalAddr().Addr(), now)
					moved = true
				}
			}
		}
	}
	exchange()
	fmt.Println(client.State(), server.State())
	_, _ = client.Write([]byte("hello, server"), now)
	_ = client.CloseWrite(now)
	exchange()
	msg := make([]byte, 64)
	n, _ := server.Read(msg, now)
	_, err := server.Read(msg[n:], now)
	fmt.Printf("%q then %v; %v %v\n", msg[:n], err, client.State(), server.State())
	// Output:
	// ESTABLISHED ESTABLISHED
	// "hello, server" then EOF; FIN-WAIT-2 CLOSE-WAIT
}

// Two Stacks over an in-memory link: a listener, a dial, and the
// accepted connection (RFC 9293 section 3.10.1).
func ExampleStack() {
	ipA, ipB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	cfg := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{ISN: &tcpstack.SequentialISN{Next: 1000}}}
	sa, _ := tcpstack.New(cfg)
	sb, _ := tcpstack.New(cfg)
	l, _ := sb.Listen(80)
	var now tcpfsm.Time
	c, _ := sa.Dial(ipA, netip.AddrPortFrom(ipB, 80), now)
	buf := make([]byte, 1600)
	for moved := true; moved; {
		moved = false
		for _, p := range [][2]*tcpstack.Stack{{sa, sb}, {sb, sa}} {
			for n, src, dst := p[0].Output(buf, now); n > 0; n, src, dst = p[0].Output(buf, now) {
				_ = p[1].Input(buf[:n], src, dst, now)
				moved = true
			}
		}
	}
	srv, ok := l.Accept()
	fmt.Println(c.State(), ok, srv.State(), srv.RemoteAddr().Addr())
	fmt.Println(sa.Conns(), sb.Conns(), sb.HalfOpen())
	// Output:
	// ESTABLISHED true ESTABLISHED 192.0.2.1
	// 1 1 0
}
