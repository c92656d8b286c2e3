package bench

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"unsafe"

	"github.com/soypat/seqs/stacks"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// stackPair is two tcpfsm Stacks joined in memory.
type stackPair struct {
	s   [2]*tcpstack.Stack
	ip  [2]netip.Addr
	buf []byte
	now tcpfsm.Time
}

func (p *stackPair) pump() {
	for moved := true; moved; {
		moved = false
		for i, s := range p.s {
			for {
				n, src, dst := s.Output(p.buf, p.now)
				if n == 0 {
					break
				}
				_ = p.s[1-i].Input(p.buf[:n], src, dst, p.now)
				moved = true
			}
		}
	}
}

// tcpfsmBytesPerConn opens n idle established connections between two
// Stacks and returns the heap each one costs (both ends counted).
func tcpfsmBytesPerConn(t *testing.T, n int) float64 {
	big := tcpstack.Config{AcceptQueue: 1 << 20, Backlog: 1 << 20, EphemeralLow: 1024, EphemeralHigh: 65535}
	p := &stackPair{ip: [2]netip.Addr{addrA.Addr(), addrB.Addr()}, buf: make([]byte, 2048)}
	var err error
	for i := range p.s {
		if p.s[i], err = tcpstack.New(big); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := p.s[1].Listen(80)
	ends := make([]*tcpstack.Endpoint, 0, 2*n)
	before := heapInUse()
	for i := range n {
		c, err := p.s[0].Dial(netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), addrB, p.now)
		if err != nil {
			t.Fatal(err)
		}
		p.pump()
		srv, ok := l.Accept()
		if !ok || !c.Connected() {
			t.Fatalf("connection %d did not complete", i)
		}
		ends = append(ends, c, srv)
	}
	after := heapInUse()
	runtime.KeepAlive(ends)
	return float64(after-before) / float64(2*n)
}

// gvisorBytesPerConn does the same between two gVisor netstacks joined by
// link/pipe, through gonet.
func gvisorBytesPerConn(t *testing.T, n int) float64 {
	p := gvisorPeers(t)
	conns := make([]net.Conn, 0, 2*n)
	before := heapInUse()
	for range n {
		c, s := connPair(t, p)
		conns = append(conns, c, s)
	}
	after := heapInUse()
	for _, c := range conns {
		c.Close()
	}
	return float64(after-before) / float64(2*n)
}

// TestBytesPerConnection measures the heap an idle established
// connection costs in tcpfsm's Stack and in gVisor's netstack, both ends
// counted, and gives soypat/seqs' figure from its types: a TCPConn and
// the two buffers its caller sizes (it allocates nothing per connection
// beyond those). The figures go to BENCHMARKS.md; the test fails if
// tcpfsm's idle connection is not the smaller.
func TestBytesPerConnection(t *testing.T) {
	const n = 2000
	ours := tcpfsmBytesPerConn(t, n)
	theirs := gvisorBytesPerConn(t, n)
	seqsConn := unsafe.Sizeof(stacks.TCPConn{})
	t.Logf("heap per idle established connection (%d connections, both ends): tcpfsm %.0f bytes, gVisor %.0f bytes; "+
		"seqs: a TCPConn is %d bytes plus its send and receive buffers (at the 2 x 16 KiB of BenchmarkBulk: %d bytes)",
		n, ours, theirs, seqsConn, int(seqsConn)+2*16<<10)
	if ours <= 0 || theirs <= 0 {
		t.Fatalf("no growth measured: tcpfsm %.0f, gVisor %.0f", ours, theirs)
	}
	if ours >= theirs {
		t.Fatalf("tcpfsm's idle connection (%.0f bytes) is not smaller than gVisor's (%.0f bytes)", ours, theirs)
	}
}
