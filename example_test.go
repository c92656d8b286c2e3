package tcpfsm_test

import (
	"fmt"
	"net/netip"

	"github.com/tcpfsm/tcpfsm"
)

// The three-way handshake (RFC 9293 section 3.5), stepped by hand: each
// side is a TCB value, and the segments one Step sends are the events of
// the other's next Step.
func ExampleStep() {
	cfg := tcpfsm.Config{NoTimestamps: true, NoSACK: true, NoWindowScale: true}
	client, _ := tcpfsm.NewTCB(cfg)
	server, _ := tcpfsm.NewTCB(cfg)
	var now tcpfsm.Time
	out, _ := server.Step(tcpfsm.ListenOn(80), now, nil)
	out, _ = client.Step(tcpfsm.Open(40000, 80, 100), now, out[:0])
	syn := sent(out)
	fmt.Println("client:", client.State, "sends", syn.String())
	out, _ = server.Step(tcpfsm.Arrive(&syn, 300), now, out[:0])
	synAck := sent(out)
	fmt.Println("server:", server.State, "sends", synAck.String())
	out, _ = client.Step(tcpfsm.Arrive(&synAck, 0), now, out[:0])
	ack := sent(out)
	fmt.Println("client:", client.State, "sends", ack.String())
	_, _ = server.Step(tcpfsm.Arrive(&ack, 0), now, out[:0])
	fmt.Println("server:", server.State)
	// Output:
	// client: SYN-SENT sends Flags [S], seq 100, win 65535, options [mss 1460], length 0
	// server: SYN-RECEIVED sends Flags [S.], seq 300, ack 101, win 65535, options [mss 1460], length 0
	// client: ESTABLISHED sends Flags [.], ack 301, win 65535, length 0
	// server: ESTABLISHED
}

// sent returns the segment of the first ActSend action in out.
func sent(out []tcpfsm.Action) tcpfsm.Segment {
	for _, a := range out {
		if a.Kind == tcpfsm.ActSend {
			return a.Seg
		}
	}
	return tcpfsm.Segment{}
}

// A segment parsed from the wire, printed as tcpdump does, and encoded
// again (RFC 9293 section 3.1).
func ExampleParseSegment() {
	s := tcpfsm.Segment{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000,
		Flags: tcpfsm.FlagACK | tcpfsm.FlagPSH, Window: 512, Payload: []byte("hello")}
	wire := s.AppendTo(nil)
	got, err := tcpfsm.ParseSegment(wire)
	fmt.Println(got.String(), err)
	fmt.Println(len(wire), "bytes:", string(got.Payload))
	// Output:
	// Flags [P.], seq 1000:1005, ack 2000, win 512, length 5 <nil>
	// 25 bytes: hello
}

// fixedISN gives every connection the same initial sequence number, so
// the example's output is the same on every run.
type fixedISN tcpfsm.Seq

func (f fixedISN) ISN(_, _ netip.AddrPort, _ tcpfsm.Time) tcpfsm.Seq { return tcpfsm.Seq(f) }

// Two Endpoints joined by a loop that moves each one's output to the
// other: a connection, a message, and a half-close (RFC 9293 section
// 3.10).
func ExampleEndpoint() {
	a := netip.MustParseAddrPort("192.0.2.1:40000")
	b := netip.MustParseAddrPort("192.0.2.2:80")
	client, _ := tcpfsm.NewEndpoint(tcpfsm.EndpointConfig{ISN: fixedISN(100)})
	server, _ := tcpfsm.NewEndpoint(tcpfsm.EndpointConfig{ISN: fixedISN(300)})
	var now tcpfsm.Time
	_ = server.Listen(b, now)
	_ = client.Dial(a, b, now)
	buf := make([]byte, 1600)
	exchange := func() {
		for moved := true; moved; {
			moved = false
			for _, p := range [][2]*tcpfsm.Endpoint{{client, server}, {server, client}} {
				for n := p[0].Output(buf, now); n > 0; n = p[0].Output(buf, now) {
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
	cfg := tcpfsm.StackConfig{Endpoint: tcpfsm.EndpointConfig{ISN: fixedISN(1000)}}
	sa, _ := tcpfsm.NewStack(cfg)
	sb, _ := tcpfsm.NewStack(cfg)
	l, _ := sb.Listen(80)
	var now tcpfsm.Time
	c, _ := sa.Dial(ipA, netip.AddrPortFrom(ipB, 80), now)
	buf := make([]byte, 1600)
	for moved := true; moved; {
		moved = false
		for _, p := range [][2]*tcpfsm.Stack{{sa, sb}, {sb, sa}} {
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
