// Package bench measures tcpfsm side by side with TCP implementations
// nobody here wrote, on the same workloads in one run: gVisor's netstack
// (two stacks joined by link/pipe), soypat/seqs (its PortStacks, and its
// ControlBlock beside tcpfsm's TCB: seqs_test.go) and the kernel over
// loopback. Run with
//
//	go test ./bench -run '^$' -bench . -benchmem -count 6 | benchstat -
//
// tools/icount.sh counts the instructions of the control-block benchmarks
// (icount_test.go).
package bench

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

const chunk = 64 << 10 // bytes per op in the bulk benchmarks

var (
	addrA = netip.MustParseAddrPort("10.9.0.1:40000")
	addrB = netip.MustParseAddrPort("10.9.0.2:80")
)

// tcpfsmPair is two Endpoints joined in memory: the host loop moves each
// packet from Output to Input at once.
type tcpfsmPair struct {
	a, b *tcpstack.Endpoint
	now  tcpfsm.Time
	pkt  []byte
}

func newTcpfsmPair(b *testing.B) *tcpfsmPair {
	cfg := tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}
	p := &tcpfsmPair{pkt: make([]byte, 2048)}
	p.a, _ = tcpstack.NewEndpoint(cfg)
	p.b, _ = tcpstack.NewEndpoint(cfg)
	_ = p.b.Listen(addrB, 0)
	_ = p.a.Dial(addrA, addrB, 0)
	p.pump()
	if !p.a.Connected() {
		b.Fatal("no connection")
	}
	return p
}

func (p *tcpfsmPair) pump() {
	for moved := true; moved; {
		moved = false
		for m, _, _ := p.a.Output(p.pkt, p.now); m > 0; m, _, _ = p.a.Output(p.pkt, p.now) {
			_ = p.b.Input(p.pkt[:m], addrA.Addr(), addrB.Addr(), p.now)
			moved = true
		}
		for m, _, _ := p.b.Output(p.pkt, p.now); m > 0; m, _, _ = p.b.Output(p.pkt, p.now) {
			_ = p.a.Input(p.pkt[:m], addrB.Addr(), addrA.Addr(), p.now)
			moved = true
		}
	}
}

func BenchmarkBulk(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		p := newTcpfsmPair(b)
		data, rbuf := make([]byte, chunk), make([]byte, chunk)
		b.SetBytes(chunk)
		b.ReportAllocs()
		for b.Loop() {
			for off := 0; off < chunk; {
				n, _ := p.a.Write(data[off:], p.now)
				off += n
				p.pump()
				for {
					k, err := p.b.Read(rbuf, p.now)
					if err != nil || k == 0 {
						break
					}
				}
				p.pump()
			}
		}
	})
	b.Run("tcpfsm-host", func(b *testing.B) {
		big := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}
		bulk(b, hostPair(b, big))
	})
	b.Run("seqs-stacks", func(b *testing.B) {
		// Buffer sizes are uint16 in seqs and their sum must fit too:
		// 16 KiB each. Each round writes
		// what the send buffer takes and moves frames until all of it
		// is read, one goroutine, as the tcpfsm case does.
		const bufSize = 16 << 10
		p := newSeqsStacks(b, bufSize)
		data, rbuf := make([]byte, bufSize), make([]byte, chunk)
		b.SetBytes(chunk)
		b.ReportAllocs()
		for b.Loop() {
			for off := 0; off < chunk; {
				n := min(bufSize, chunk-off)
				if _, err := p.client.Write(data[:n]); err != nil {
					b.Fatal(err)
				}
				got := p.pump(b, rbuf)
				if got != n {
					b.Fatalf("seqs delivered %d of %d bytes", got, n)
				}
				off += n
			}
		}
	})
	b.Run("gvisor", func(b *testing.B) {
		bulk(b, gvisorPeers(b))
	})
	b.Run("kernel", func(b *testing.B) {
		bulk(b, kernelPeers(b))
	})
}

// bulk connects p and writes chunk bytes per op on the dialed end,
// reading them on the accepted one.
func bulk(b *testing.B, p peers) {
	c1, c2 := connPair(b, p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, c2)
	}()
	data := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c1.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	c1.Close()
	<-done
}

func newGVisor(b testing.TB, addr netip.Addr, ep stack.LinkEndpoint) *stack.Stack {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		b.Fatal(err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(addr.As4()).WithPrefix()}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		b.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	sack := tcpip.TCPSACKEnabled(true)
	_ = s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	return s
}

// gvisorPeers makes two netstacks joined by link/pipe; it returns a
// listener on the second and a dial function from the first.
func gvisorPeers(b testing.TB) peers {
	e1, e2 := pipe.New("\x02\x00\x00\x00\x00\x01", "\x02\x00\x00\x00\x00\x02", 1500)
	s1 := newGVisor(b, addrA.Addr(), e1)
	s2 := newGVisor(b, addrB.Addr(), e2)
	full := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(addrB.Addr().As4()), Port: 80}
	ln, err := gonet.ListenTCP(s2, full, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	return peers{ln, func() (net.Conn, error) {
		return gonet.DialContextTCP(context.Background(), s1, full, ipv4.ProtocolNumber)
	}}
}

// kernelPeers is the kernel's TCP over loopback.
func kernelPeers(b testing.TB) peers {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return peers{ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }}
}

// peers is a listener on one implementation and a dial function from
// another of the same kind.
type peers struct {
	ln   net.Listener
	dial func() (net.Conn, error)
}

// connPair makes one connection: the dialed end and the accepted one.
func connPair(b testing.TB, p peers) (net.Conn, net.Conn) {
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := p.ln.Accept()
		accepted <- c
	}()
	c1, err := p.dial()
	if err != nil {
		b.Fatal(err)
	}
	return c1, <-accepted
}

// BenchmarkConnection is one whole connection per op: handshake, 1 KiB
// each way, close.
func BenchmarkConnection(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		short := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{MSL: time.Millisecond}}}
		s1, _ := tcpstack.New(short)
		s2, _ := tcpstack.New(short)
		ln, _ := s2.Listen(80)
		buf := make([]byte, 2048)
		data := make([]byte, 1024)
		now := tcpfsm.Time(0)
		pump := func() {
			for moved := true; moved; {
				moved = false
				for m, src, dst := s1.Output(buf, now); m > 0; m, src, dst = s1.Output(buf, now) {
					_ = s2.Input(buf[:m], src, dst, now)
					moved = true
				}
				for m, src, dst := s2.Output(buf, now); m > 0; m, src, dst = s2.Output(buf, now) {
					_ = s1.Input(buf[:m], src, dst, now)
					moved = true
				}
			}
		}
		tick := func(d time.Duration) {
			now = now.Add(d)
			s1.Tick(now)
			s2.Tick(now)
			pump()
		}
		b.ReportAllocs()
		for b.Loop() {
			c, err := s1.Dial(addrA.Addr(), addrB, now)
			if err != nil {
				b.Fatal(err)
			}
			pump()
			srv, _ := ln.Accept()
			_, _ = c.Write(data, now)
			_, _ = srv.Write(data, now)
			pump()
			_, _ = c.Read(buf, now)
			_, _ = srv.Read(buf, now)
			_ = c.Close(now)
			c.Release(now) // the Stack reuses the endpoint once the connection is done
			pump()
			_ = srv.Close(now)
			srv.Release(now)
			pump()
			tick(200 * time.Millisecond) // delayed ACKs and TIME-WAIT run out
		}
	})
	b.Run("tcpfsm-host", func(b *testing.B) {
		short := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{MSL: time.Millisecond}}}
		connection(b, hostPair(b, short))
	})
	b.Run("gvisor", func(b *testing.B) {
		connection(b, gvisorPeers(b))
	})
	b.Run("kernel", func(b *testing.B) {
		connection(b, kernelPeers(b))
	})
}

func connection(b *testing.B, p peers) {
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1024)
				_, _ = io.ReadFull(c, buf)
				_, _ = c.Write(buf)
				c.Close()
			}()
		}
	}()
	data, buf := make([]byte, 1024), make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		c, err := p.dial()
		if err != nil {
			b.Fatal(err)
		}
		_, _ = c.Write(data)
		_, _ = io.ReadFull(c, buf)
		c.Close()
	}
	p.ln.Close()
}
