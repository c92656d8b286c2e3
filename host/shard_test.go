package host

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// batchPipeLink is one end of an in-memory link pair that is a
// BatchLink: a write appends to the other end's queue, and a read takes
// everything queued at once.
type batchPipeLink struct {
	in, out *segQueue
	local   netip.Addr
	closed  atomic.Bool
}

// newBatchPipe returns two joined batchPipeLinks whose own addresses are
// a and b.
func newBatchPipe(a, b netip.Addr) (*batchPipeLink, *batchPipeLink) {
	x, y := newSegQueue(8<<20), newSegQueue(8<<20)
	return &batchPipeLink{in: x, out: y, local: a}, &batchPipeLink{in: y, out: x, local: b}
}

func (l *batchPipeLink) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	return l.in.ReadSegment(buf)
}

func (l *batchPipeLink) ReadSegments(buf []byte, segs []SegmentInfo) (int, error) {
	return l.in.ReadSegments(buf, segs)
}

func (l *batchPipeLink) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	if l.closed.Load() {
		return net.ErrClosed
	}
	sg := [1]SegmentInfo{{N: len(tcp), Src: src, Dst: dst}}
	var idx [1]uint16
	if !l.out.push(tcp, sg[:], idx[:], 0) {
		return net.ErrClosed
	}
	return nil
}

func (l *batchPipeLink) Close() error { l.closed.Store(true); l.in.close(); return nil }

func (l *batchPipeLink) LocalAddrs() []netip.Addr { return []netip.Addr{l.local} }

// shardedPair is a client and a server Sharded joined by a link pair.
type shardedPair struct {
	client, server *Sharded
}

// newShardedPair starts two Sharded of n shards each over a batch pipe,
// or over Pipe if plain.
func newShardedPair(tb testing.TB, n int, plain bool, cfg ShardConfig) *shardedPair {
	tb.Helper()
	var la, lb Link
	if plain {
		la, lb = Pipe(addrA, addrB)
	} else {
		la, lb = newBatchPipe(addrA, addrB)
	}
	cfg.Shards = n
	c, err := NewSharded(la, cfg)
	require.NoError(tb, err)
	s, err := NewSharded(lb, cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close(); s.Close() })
	return &shardedPair{client: c, server: s}
}

// connTuple returns c's local and remote addresses.
func connTuple(c *Conn) (local, remote netip.AddrPort) {
	return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
}

// shardIndex returns which shard of s has c, or -1.
func shardIndex(s *Sharded, c *Conn) int {
	for i := range s.shards {
		if s.shards[i].h == c.h {
			return i
		}
	}
	return -1
}

func TestShardHashIsSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	k := keyedHash{r.Uint64(), r.Uint64()}
	randAddr := func(v6 bool) netip.Addr {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if v6 {
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	for i := range 10000 {
		v6 := i%2 == 1
		a := netip.AddrPortFrom(randAddr(v6), uint16(r.Uint32()))
		b := netip.AddrPortFrom(randAddr(v6), uint16(r.Uint32()))
		require.Equal(t, k.hash(a, b), k.hash(b, a), "%v %v", a, b)
		require.Equal(t, SymmetricToeplitz(a, b), SymmetricToeplitz(b, a), "%v %v", a, b)
		// An IPv4 address and its IPv4-mapped form hash alike.
		if !v6 {
			am := netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
			require.Equal(t, k.hash(a, b), k.hash(am, b))
			require.Equal(t, SymmetricToeplitz(a, b), SymmetricToeplitz(am, b))
		}
	}
}

func TestShardToeplitzKnownAnswers(t *testing.T) {
	// Microsoft's RSS specification, "Verifying the RSS Hash
	// Calculation": the hashes of TCP segments under its sample key.
	key, err := hex.DecodeString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
	require.NoError(t, err)
	for _, c := range []struct {
		src, dst string
		want     uint32
	}{
		{"66.9.149.187:2794", "161.142.100.80:1766", 0x51ccc178},
		{"199.92.111.2:14230", "65.69.140.83:4739", 0xc626b0ea},
		{"24.19.198.95:12898", "12.22.207.184:38024", 0x5c2b394a},
		{"38.27.205.30:48228", "209.142.163.6:2217", 0xafc7327f},
		{"153.39.163.191:44251", "202.188.127.2:1303", 0x10e828a2},
		{"[3ffe:2501:200:1fff::7]:2794", "[3ffe:2501:200:3::1]:1766", 0x40207d3d},
		{"[3ffe:501:8::260:97ff:fe40:efab]:14230", "[ff02::1]:4739", 0xdde51bbf},
		{"[3ffe:1900:4545:3:200:f8ff:fe21:67cf]:44251", "[fe80::200:f8ff:fe21:67cf]:38024", 0x02d1feef},
	} {
		got := toeplitz(key, netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst))
		require.Equal(t, c.want, got, "%s -> %s: %#x", c.src, c.dst, got)
	}
}

func TestShardHashSpreadsPorts(t *testing.T) {
	// The local ports of dials to one remote spread over the shards.
	for _, h := range []func(a, b netip.AddrPort) uint32{keyedHash{3, 4}.hash, SymmetricToeplitz} {
		const n = 4
		var count [n]int
		remote := netip.AddrPortFrom(addrB, 80)
		for p := 49152; p < 65536; p++ {
			count[h(netip.AddrPortFrom(addrA, uint16(p)), remote)%n]++
		}
		for i, c := range count {
			require.Greater(t, c, 16384/n*9/10, "shard %d: %v", i, count)
		}
	}
}

func TestShardManyConnections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plain bool
		hash  func(a, b netip.AddrPort) uint32
	}{
		{"batch", false, nil},
		{"pipe", true, nil},
		{"toeplitz", false, SymmetricToeplitz},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const shards, clients = 4, 200
			p := newShardedPair(t, shards, tc.plain, ShardConfig{Hash: tc.hash})
			ln, err := p.server.Listen("tcp", ":80")
			require.NoError(t, err)
			defer ln.Close()

			var mu sync.Mutex
			serverShard := map[netip.AddrPort]int{} // by the client's address
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range clients {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					sc := c.(*Conn)
					mu.Lock()
					_, remote := connTuple(sc)
					serverShard[remote] = shardIndex(p.server, sc)
					mu.Unlock()
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, _ = io.Copy(sc, sc) // echo until the client closes
						_ = sc.Close()
					}()
				}
			}()

			type result struct {
				local   netip.AddrPort
				shard   int
				echo    string
				sent    string
				err     error
				want    int
				remoteS string
			}
			results := make([]result, clients)
			var cwg sync.WaitGroup
			for i := range clients {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					r := &results[i]
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					c, err := p.client.DialContext(ctx, "tcp", "10.0.0.2:80")
					if err != nil {
						r.err = err
						return
					}
					cc := c.(*Conn)
					defer cc.Close()
					local, remote := connTuple(cc)
					r.local = local
					r.shard = shardIndex(p.client, cc)
					r.want = p.client.ShardOf(local, remote)
					r.remoteS = c.RemoteAddr().String()
					r.sent = fmt.Sprintf("hello from client %d", i)
					if _, err := c.Write([]byte(r.sent)); err != nil {
						r.err = err
						return
					}
					buf := make([]byte, len(r.sent))
					if _, err := io.ReadFull(c, buf); err != nil {
						r.err = err
						return
					}
					r.echo = string(buf)
				}()
			}
			cwg.Wait()
			wg.Wait()

			var perClientShard [shards]int
			var perServerShard [shards]int
			for i, r := range results {
				require.NoError(t, r.err, "client %d", i)
				require.Equal(t, r.sent, r.echo, "client %d", i)
				require.Equal(t, "10.0.0.2:80", r.remoteS)
				// The client's connection is on the shard its tuple
				// hashes to, and so is the server's end of it, by the
				// server's hash (the same function with a key of its
				// own, or the same Toeplitz hash).
				require.Equal(t, r.want, r.shard, "client %d", i)
				remote := netip.AddrPortFrom(addrB, 80)
				wantServer := p.server.ShardOf(remote, r.local)
				require.Equal(t, wantServer, p.server.ShardOf(r.local, remote))
				if tc.hash != nil {
					require.Equal(t, r.want, wantServer, "one hash on both sides")
				}
				s, ok := serverShard[r.local]
				require.True(t, ok, "client %d (%v) was not accepted", i, r.local)
				require.Equal(t, wantServer, s, "client %d", i)
				perClientShard[r.shard]++
				perServerShard[s]++
			}
			// Dials go to each shard in turn; every shard's listener accepts.
			for i := range shards {
				require.Equal(t, clients/shards, perClientShard[i], "dials on client shard %d", i)
				require.Positive(t, perServerShard[i], "accepts on server shard %d", i)
			}
			// No segment reached a shard without its connection: such a
			// segment would be answered with a reset, or taken for a
			// SYN cookie's ACK by the shard's listener. (Closed first,
			// so that the counters stand still.)
			require.NoError(t, p.client.Close())
			require.NoError(t, p.server.Close())
			for _, s := range []*Sharded{p.client, p.server} {
				var in uint64
				for i := range s.Shards() {
					st := s.Shard(i).Stats()
					require.Zero(t, st.ResetsSent, "shard %d", i)
					require.Zero(t, st.CookiesRejected, "shard %d", i)
					require.Positive(t, st.SegmentsIn, "shard %d", i)
					in += st.SegmentsIn
				}
				require.Equal(t, in, s.Stats().SegmentsIn, "Stats sums the shards")
			}
		})
	}
}

func TestShardListenerOnEveryShard(t *testing.T) {
	p := newShardedPair(t, 3, false, ShardConfig{})
	l, err := p.server.ListenAddrPort(netip.AddrPort{})
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NotZero(t, port)
	require.Len(t, l.subs, 3)
	for i, sub := range l.subs {
		require.Same(t, p.server.Shard(i), sub.h)
		require.Equal(t, port, sub.Addr().(*net.TCPAddr).Port)
	}
	// The port is taken on every shard: a second Listen fails.
	_, err = p.server.Listen("tcp", fmt.Sprintf(":%d", port))
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	// A Listen on a port one shard has fails and leaves none behind.
	one, err := p.server.Shard(1).ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 81))
	require.NoError(t, err)
	_, err = p.server.ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 81))
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	for _, i := range []int{0, 2} {
		lx, err := p.server.Shard(i).ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 81))
		require.NoError(t, err, "shard %d", i)
		require.NoError(t, lx.Close())
	}
	require.NoError(t, one.Close())

	// A deadline that has passed ends Accept.
	require.NoError(t, l.SetDeadline(time.Now().Add(-time.Second)))
	_, err = l.Accept()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, l.SetDeadline(time.Time{}))

	// A blocked Accept returns when the listener closes.
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	require.NoError(t, l.Close())
	require.ErrorIs(t, <-errc, net.ErrClosed)
	require.ErrorIs(t, l.Close(), net.ErrClosed)

	// The port is free again on every shard, and a dial to it is refused.
	_, err = p.client.DialContext(context.Background(), "tcp", fmt.Sprintf("10.0.0.2:%d", port))
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	l2, err := p.server.ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, uint16(port)))
	require.NoError(t, err)
	require.NoError(t, l2.Close())
}

func TestShardAcceptMergesShards(t *testing.T) {
	// Several Accepts wait at once; connections on any shard reach them.
	p := newShardedPair(t, 2, false, ShardConfig{})
	l, err := p.server.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	require.NoError(t, err)
	defer l.Close()
	const n = 16
	accepted := make(chan *Conn, n)
	for range 4 {
		acceptEach(l, func(c *Conn) { accepted <- c })
	}
	var clients []*Conn
	for range n {
		c, err := p.client.DialContextAddrPort(context.Background(), netip.AddrPortFrom(addrB, 80))
		require.NoError(t, err)
		clients = append(clients, c)
	}
	seen := map[netip.AddrPort]bool{}
	shards := map[int]bool{}
	for range n {
		c := <-accepted
		_, remote := connTuple(c)
		seen[remote] = true
		shards[shardIndex(p.server, c)] = true
		require.NoError(t, c.Close())
	}
	for _, c := range clients {
		local, _ := connTuple(c)
		require.True(t, seen[local], "%v accepted", local)
		require.NoError(t, c.Close())
	}
	require.Len(t, shards, 2, "both shards accepted")
}

func TestShardClose(t *testing.T) {
	p := newShardedPair(t, 2, false, ShardConfig{})
	l, err := p.server.Listen("tcp", ":80")
	require.NoError(t, err)
	c, err := p.client.Dial("tcp", "10.0.0.2:80")
	require.NoError(t, err)
	s, err := l.Accept()
	require.NoError(t, err)
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = io.ReadFull(s, buf)
	require.NoError(t, err)

	acceptErr := make(chan error, 1)
	go func() { _, err := l.Accept(); acceptErr <- err }()
	readErr := make(chan error, 1)
	go func() { _, err := s.Read(buf); readErr <- err }()

	require.NoError(t, p.server.Close())
	require.NoError(t, p.server.Close(), "a second Close does nothing")
	require.ErrorIs(t, <-acceptErr, net.ErrClosed)
	require.ErrorIs(t, <-readErr, net.ErrClosed)
	select {
	case <-p.server.done:
	default:
		t.Fatal("the dispatcher still runs")
	}
	for i := range p.server.Shards() {
		h := p.server.Shard(i)
		h.mu.Lock()
		closed := h.closed
		h.mu.Unlock()
		require.True(t, closed, "shard %d", i)
	}
	_, err = p.server.Dial("tcp", "10.0.0.1:80")
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = p.server.Listen("tcp", ":81")
	require.ErrorIs(t, err, net.ErrClosed)

	// The client's connection closes on its own side as usual.
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Close(), net.ErrClosed)
}

func TestShardDialCancelled(t *testing.T) {
	// A dial nobody answers ends with its context and frees its port.
	la, _ := newBatchPipe(addrA, addrB) // the other end never reads
	s, err := NewSharded(la, ShardConfig{Shards: 2})
	require.NoError(t, err)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	_, err = s.DialContextAddrPort(ctx, netip.AddrPortFrom(addrB, 80))
	require.ErrorIs(t, err, context.Canceled)
	for i := range s.Shards() {
		require.Zero(t, s.Shard(i).Conns(), "shard %d", i)
	}
}

func TestShardSegQueueBackpressure(t *testing.T) {
	// A writer waits while the queue is over its limit and goes on
	// when the reader takes what is queued; nothing is lost or
	// reordered, whether the reader copies segments out (ReadSegments)
	// or reads them where they lie (takeSegments, as a shard's Host does).
	for _, inPlace := range []bool{false, true} {
		q := newSegQueue(4000)
		const n = 200
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					seg := make([]byte, 1000)
					seg[0], seg[1] = byte(w), byte(i)
					sg := [1]SegmentInfo{{N: len(seg), Src: addrA, Dst: addrB}}
					var idx [1]uint16
					if !q.push(seg, sg[:], idx[:], 0) {
						return
					}
				}
			}()
		}
		buf := make([]byte, 1<<16)
		segs := make([]SegmentInfo, 16)
		var next [3]int
		read := func() ([]byte, []SegmentInfo, error) {
			if inPlace {
				return q.takeSegments()
			}
			k, err := q.ReadSegments(buf, segs)
			return buf, segs[:k], err
		}
		for got := 0; got < 3*n; {
			data, segs, err := read()
			require.NoError(t, err)
			for _, sg := range segs {
				require.Equal(t, 1000, sg.N)
				require.Equal(t, addrA, sg.Src)
				w, i := data[sg.Off], int(data[sg.Off+1])
				require.Equal(t, next[w]%256, i, "writer %d's order", w)
				next[w]++
			}
			got += len(segs)
		}
		wg.Wait()
		q.close()
		_, _, err := read()
		require.ErrorIs(t, err, net.ErrClosed)
	}
}

func TestShardSegQueueKeepsSegmentInfo(t *testing.T) {
	// What a BatchLink says of a segment beyond where it is (its
	// addresses, the flags of receive offload) reaches the shard as is.
	in := SegmentInfo{Off: 3, N: 5, Src: addrA, Dst: addrB}
	v := reflect.ValueOf(&in).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Bool {
			f.SetBool(true)
		}
	}
	q := newSegQueue(1 << 10)
	require.True(t, q.push([]byte("...hello"), []SegmentInfo{in}, []uint16{0}, 0))
	buf := make([]byte, 64)
	out := make([]SegmentInfo, 4)
	k, err := q.ReadSegments(buf, out)
	require.NoError(t, err)
	require.Equal(t, 1, k)
	require.Equal(t, "hello", string(buf[out[0].Off:out[0].Off+out[0].N]))
	want := in
	want.Off = out[0].Off
	require.Equal(t, want, out[0])
}

func TestShardDefaultsToOnePerCore(t *testing.T) {
	la, lb := newBatchPipe(addrA, addrB)
	defer lb.Close()
	s, err := NewSharded(la, ShardConfig{})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, runtime.GOMAXPROCS(0), s.Shards())
	for i := range s.Shards() {
		require.Equal(t, []netip.Addr{addrA}, s.Shard(i).addrs, "addresses from the AddrLink")
	}
	_, err = NewSharded(nil, ShardConfig{})
	require.Error(t, err)
	bad := ShardConfig{Shards: 2}
	bad.Stack.Endpoint.Config = tcpfsm.Config{MSS: 10}
	_, err = NewSharded(lb, bad)
	require.Error(t, err)
}

// benchConfig is the configuration of the benchmarks' hosts: a wide
// ephemeral range, so that connections made back to back do not reuse a
// port whose previous connection the server holds in TIME-WAIT; and one
// hash with one key on both sides, so that the client's dials, spread
// evenly over its shards, spread evenly over the server's too. (With a
// key of its own the server may get 8 streams as 6 and 2, or 8 and 0,
// as a NIC's RSS does with few flows, and the bulk figures would vary
// with the draw.)
func benchConfig(buf int) ShardConfig {
	c := ShardConfig{Hash: keyedHash{1, 2}.hash}
	c.Stack = tcpstack.Config{EphemeralLow: 1024, EphemeralHigh: 65535}
	if buf > 0 {
		c.Stack.Endpoint.SendBuffer = buf
		c.Stack.Endpoint.RecvBuffer = uint32(buf)
	}
	return c
}

// BenchmarkShardedConnections measures whole connections: dial, a
// 64-byte request, a 64-byte response, the server's close and the
// client's, from 64 clients at once, between a client and a server
// Sharded (one shard per GOMAXPROCS) over an in-memory BatchLink.
func BenchmarkShardedConnections(b *testing.B) {
	p := newShardedPair(b, 0, false, benchConfig(0))
	ln, err := p.server.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acceptEach(ln, func(c *Conn) {
		go func() {
			var req [64]byte
			if _, err := io.ReadFull(c, req[:]); err == nil {
				_, _ = c.Write(req[:])
			}
			_ = c.Close()
		}()
	})
	const workers = 64
	remote := netip.AddrPortFrom(addrB, 80)
	var left atomic.Int64
	left.Store(int64(b.N))
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [64]byte
			for left.Add(-1) >= 0 {
				err := func() error {
					c, err := p.client.DialContextAddrPort(context.Background(), remote)
					if err != nil {
						return err
					}
					defer c.Close()
					if _, err := c.Write(buf[:]); err != nil {
						return err
					}
					if _, err := io.ReadFull(c, buf[:]); err != nil {
						return err
					}
					if n, err := c.Read(buf[:]); n != 0 || err != io.EOF {
						return fmt.Errorf("after the response: %d bytes, %v", n, err)
					}
					return nil
				}()
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
	reportCPU(b, cpu0)
}

// BenchmarkShardedBulk measures bulk transfer: 8 connections at once,
// each sending its share of b.N 64 KiB writes to a server that discards
// them, between a client and a server Sharded over an in-memory
// BatchLink.
func BenchmarkShardedBulk(b *testing.B) {
	const streams, chunk = 8, 64 << 10
	p := newShardedPair(b, 0, false, benchConfig(1<<20))
	ln, err := p.server.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	read := make(chan int64, streams) // what each connection's server read
	acceptEach(ln, func(c *Conn) {
		go func() {
			n, _ := io.Copy(io.Discard, c)
			_ = c.Close()
			read <- n
		}()
	})
	remote := netip.AddrPortFrom(addrB, 80)
	conns := make([]*Conn, streams)
	for i := range conns {
		c, err := p.client.DialContextAddrPort(context.Background(), remote)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	data := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := c.Write(data); err != nil {
					e := err // declared here, it does not escape on every write
					failed.CompareAndSwap(nil, &e)
					return
				}
			}
			if err := c.CloseWrite(); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
	var got int64
	for range streams {
		got += <-read // the server read up to the end of the stream
	}
	b.StopTimer()
	if got != int64(b.N)*chunk {
		b.Fatalf("server read %d bytes, want %d", got, int64(b.N)*chunk)
	}
	reportCPU(b, cpu0)
	for _, c := range conns {
		_ = c.Close()
	}
}

func TestShardedConnectionAllocations(t *testing.T) {
	// A connection dialed with a context that is never canceled,
	// accepted and closed at both ends allocates its two Endpoints and
	// its two Conns: no addresses for errors that did not happen, no
	// watch on the context, the dialer's wake-up channel from the pool,
	// and for an "ip:port" literal no list of addresses to try.
	p := newShardedPair(t, 1, false, benchConfig(0))
	ln, err := p.server.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	require.NoError(t, err)
	defer ln.Close()
	acceptEach(ln, func(c *Conn) { _ = c.Close() })
	remote := netip.AddrPortFrom(addrB, 80)
	for _, literal := range []bool{false, true} {
		dial := func() {
			var c net.Conn
			var err error
			if literal {
				c, err = p.client.DialContext(context.Background(), "tcp", "10.0.0.2:80")
			} else {
				c, err = p.client.DialContextAddrPort(context.Background(), remote)
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
		}
		for range 100 {
			dial()
		}
		// A busy machine adds a few (queues that grow when the accepting
		// goroutine falls behind): the least of a few tries counts.
		var allocs float64
		for range 5 {
			if allocs = testing.AllocsPerRun(200, dial); allocs <= 4 {
				break
			}
		}
		if allocs > 4 {
			t.Fatalf("%v allocations a connection (literal %v), want at most 4", allocs, literal)
		}
	}
}

func TestShardedBulkAllocatesNothing(t *testing.T) {
	// Streams of 64 KiB writes between two Shardeds, each round read to
	// the end by the server: once the buffers, arenas and queues have
	// grown, a round allocates nothing, in the Stacks (their buffers
	// kept while the connections are busy) nor in the Hosts (segments
	// written straight into the writer's arena). A round that stalls past
	// the Stacks' hold on idle buffers would allocate, so the rounds get
	// a few tries.
	if raceEnabled {
		t.Skip("the race detector slows rounds past the hold")
	}
	const streams, chunk, writes = 4, 64 << 10, 4
	p := newShardedPair(t, 2, false, benchConfig(1<<20))
	ln, err := p.server.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	require.NoError(t, err)
	defer ln.Close()
	var read atomic.Int64
	acceptEach(ln, func(c *Conn) {
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				read.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	})
	conns := make([]*Conn, streams)
	for i := range conns {
		c, err := p.client.DialContextAddrPort(context.Background(), netip.AddrPortFrom(addrB, 80))
		require.NoError(t, err)
		conns[i] = c
		defer c.Close()
	}
	data := make([]byte, chunk)
	var want int64
	round := func() {
		for range writes {
			for _, c := range conns {
				if _, err := c.Write(data); err != nil {
					t.Fatal(err)
				}
			}
		}
		want += streams * writes * chunk
		for deadline := time.Now().Add(10 * time.Second); read.Load() < want; {
			if time.Now().After(deadline) {
				t.Fatalf("read %d of %d", read.Load(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	for range 50 {
		round()
	}
	var allocs float64
	for range 5 {
		if allocs = testing.AllocsPerRun(20, round); allocs == 0 {
			return
		}
	}
	t.Fatalf("%v allocations a round", allocs)
}

// reportCPU reports the process's CPU time per operation since cpu0, and
// how many cores it kept busy on average: on a machine shared with other
// work, cores below GOMAXPROCS say the benchmark did not get them all.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	cpu := processCPU() - cpu0
	if cpu <= 0 {
		return
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
}

func BenchmarkShardHash(b *testing.B) {
	x := netip.MustParseAddrPort("10.0.0.1:50000")
	y := netip.MustParseAddrPort("10.0.0.2:80")
	for _, h := range []struct {
		name string
		f    func(a, b netip.AddrPort) uint32
	}{{"keyed", keyedHash{1, 2}.hash}, {"toeplitz", SymmetricToeplitz}} {
		b.Run(h.name, func(b *testing.B) {
			var sum uint32
			for i := range b.N {
				sum += h.f(x, netip.AddrPortFrom(y.Addr(), uint16(i)))
			}
			if sum == 1 {
				b.Log(sum) // keeps the calls
			}
		})
	}
}
