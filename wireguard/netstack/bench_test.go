package netstack_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
)

// benchPair returns two sides of one kind joined by a WireGuard tunnel.
func benchPair(b *testing.B, kind string) (a, c *stackSide) {
	a = newSide(b, kind, addrA, addrB)
	c = newSide(b, kind, addrB, addrA)
	tunnel(b, a, c)
	return a, c
}

// BenchmarkTunnelThroughput streams 1 MiB per iteration over one TCP
// connection through the tunnel: tcpfsm on both ends against gVisor on
// both ends (wireguard-go's tun/netstack). The WireGuard encryption on
// both ends is in the figure, as it is for a real user.
func BenchmarkTunnelThroughput(b *testing.B) {
	for _, kind := range []string{"tcpfsm", "gvisor"} {
		b.Run(kind, func(b *testing.B) {
			srv, cli := benchPair(b, kind)
			l, err := srv.listen(5001)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			got := make(chan int64, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					got <- -1
					return
				}
				n, _ := io.Copy(io.Discard, c)
				_, _ = c.Write([]byte{1})
				_ = c.Close()
				got <- n
			}()
			c, err := cli.dial(context.Background(), "tcp", netip.AddrPortFrom(srv.addr, 5001).String())
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = c.(interface{ CloseWrite() error }).CloseWrite()
			_, _ = c.Read(make([]byte, 1)) // the server has read everything
			b.StopTimer()
			_ = c.Close()
			if n := <-got; n != int64(b.N)*int64(len(buf)) {
				b.Fatalf("server read %d bytes, want %d", n, int64(b.N)*int64(len(buf)))
			}
		})
	}
}

// BenchmarkIdleConnHeap opens one connection per iteration through the
// tunnel and keeps them all open and idle after a one-byte exchange; it
// reports the live heap per connection, both ends' stacks counted, and
// the goroutine stacks per connection.
// Run it with a fixed count, e.g. -benchtime=500x.
func BenchmarkIdleConnHeap(b *testing.B) {
	for _, kind := range []string{"tcpfsm", "gvisor"} {
		b.Run(kind, func(b *testing.B) {
			srv, cli := benchPair(b, kind)
			l, err := srv.listen(5002)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			addr := netip.AddrPortFrom(srv.addr, 5002).String()
			conns := make([]net.Conn, 0, 2*b.N)
			one := make([]byte, 1)
			// Warm up: the first connection allocates the stacks' tables.
			warm, _ := cli.dial(context.Background(), "tcp", addr)
			warmS, _ := l.Accept()
			defer warm.Close()
			defer warmS.Close()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for range b.N {
				c, err := cli.dial(context.Background(), "tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				s, err := l.Accept()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s, one); err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c, s)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heapB/conn")
			b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(b.N), "stackB/conn")
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
}
