package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

func TestEchoBetweenTwoHosts(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	la, lb := Pipe(a, b)
	big := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}
	ha, err := New(la, Config{Stack: big})
	require.NoError(t, err)
	hb, err := New(lb, Config{Stack: big})
	require.NoError(t, err)
	defer ha.Close()
	defer hb.Close()
	ln, err := hb.ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 80))
	require.NoError(t, err)
	var srvGot bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, io.TeeReader(c, &srvGot))
		_ = c.(*Conn).CloseWrite()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := ha.DialContextAddrPort(ctx, netip.AddrPortFrom(b, 80))
	require.NoError(t, err)
	data := make([]byte, 10<<20)
	for i := 0; i+4 <= len(data); i += 4 { // each word holds its own offset
		binary.BigEndian.PutUint32(data[i:], uint32(i))
	}
	go func() {
		_, _ = c.Write(data)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	<-done
	sg := srvGot.Bytes()
	j := 0
	for j < len(sg) && j < len(data) && sg[j] == data[j] {
		j++
	}
	if !bytes.Equal(data, sg) {
		w := j &^ 3
		t.Fatalf("server read %d, first difference at %d: the bytes there came from offset %d; %d bytes later from %d",
			len(sg), j, binary.BigEndian.Uint32(sg[w:]), 4096, binary.BigEndian.Uint32(sg[w+4096:]))
	}
	k := 0
	for k < len(got) && k < len(data) && got[k] == data[k] {
		k++
	}
	require.True(t, bytes.Equal(data, got), "%d of %d bytes, first difference at %d", len(got), len(data), k)
}

func TestTrafficWakesOnlyItsConnection(t *testing.T) {
	// A packet for one connection signals that connection's waiters and
	// no other's: the readiness report names it.
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	la, lb := Pipe(a, b)
	ha, err := New(la, Config{})
	require.NoError(t, err)
	hb, err := New(lb, Config{})
	require.NoError(t, err)
	defer ha.Close()
	defer hb.Close()
	ln, err := hb.ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 80))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet, err := ha.DialContextAddrPort(ctx, netip.AddrPortFrom(b, 80))
	require.NoError(t, err)
	qs, err := ln.Accept()
	require.NoError(t, err)
	busy, err := ha.DialContextAddrPort(ctx, netip.AddrPortFrom(b, 80))
	require.NoError(t, err)
	bs, err := ln.Accept()
	require.NoError(t, err)
	drain := func(ch chan struct{}) {
		select {
		case <-ch:
		default:
		}
	}
	for _, c := range []*Conn{quiet, qs.(*Conn)} {
		drain(c.rwake)
		drain(c.wwake)
	}
	msg := make([]byte, 1000)
	got := make([]byte, 1000)
	for range 50 {
		_, err := busy.Write(msg)
		require.NoError(t, err)
		_, err = io.ReadFull(bs, got)
		require.NoError(t, err)
	}
	for _, c := range []*Conn{quiet, qs.(*Conn)} {
		require.Empty(t, c.rwake, "a quiet connection's reader was woken")
		require.Empty(t, c.wwake, "a quiet connection's writer was woken")
	}
	// And its own traffic does wake it.
	_, err = quiet.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(qs, got[:1])
	require.NoError(t, err)
	require.NoError(t, quiet.Close())
	require.NoError(t, qs.Close())
	require.NoError(t, busy.Close())
	require.NoError(t, bs.Close())
}

func TestManyConcurrentConnections(t *testing.T) {
	// 300 clients at once, each with 20 request and response exchanges
	// under deadlines: every exchange completes and every connection
	// closes.
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	la, lb := Pipe(a, b)
	cfg := tcpstack.Config{Backlog: 512, AcceptQueue: 512}
	ha, err := New(la, Config{Stack: cfg})
	require.NoError(t, err)
	hb, err := New(lb, Config{Stack: cfg})
	require.NoError(t, err)
	defer ha.Close()
	defer hb.Close()
	ln, err := hb.ListenAddrPort(netip.AddrPortFrom(netip.Addr{}, 80))
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	const clients, rounds = 300, 20
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := ha.DialContextAddrPort(ctx, netip.AddrPortFrom(b, 80))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			msg := []byte{byte(i), byte(i >> 8), 0}
			got := make([]byte, 3)
			for r := range rounds {
				msg[2] = byte(r)
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("client %d round %d: got %v", i, r, got)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		require.NoError(t, <-errs)
	}
	// Both ends closed: each host lets go of every Conn once its
	// connection has left the stack (TIME-WAIT or CLOSED).
	left := func() int {
		n := 0
		for _, h := range []*Host{ha, hb} {
			h.mu.Lock()
			n += h.live
			h.mu.Unlock()
		}
		return n
	}
	for end := time.Now().Add(10 * time.Second); left() > 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	require.Zero(t, left(), "the hosts forget closed connections")
}

func TestHostPathMTU(t *testing.T) {
	// An ICMP "fragmentation needed" for data in flight: what was sent
	// goes again at once in segments that fit; a stale one is refused.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	p.ga.blocked.Store(true) // the client's segments are lost for now
	_, err := c.Write(make([]byte, 20_000))
	require.NoError(t, err)
	local, remote := c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
	var una tcpfsm.Seq
	for inFlight := false; !inFlight; { // until the host has sent some of it
		p.a.mu.Lock()
		for e := range p.a.stack.Connections() {
			tcb := e.TCB()
			una, inFlight = tcb.SndUna, tcb.SndNxt != tcb.SndUna
		}
		p.a.mu.Unlock()
		runtime.Gosched()
	}
	require.ErrorIs(t, p.a.PathMTU(local, remote, una.Add(1<<30), 1000), tcpstack.ErrStaleICMP)
	p.ga.blocked.Store(false)
	require.NoError(t, p.a.PathMTU(local, remote, una, 1000))
	got := make([]byte, 20_000)
	require.NoError(t, s.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	p.a.mu.Lock()
	for e := range p.a.stack.Connections() {
		tcb := e.TCB()
		st, err := tcb.Status()
		require.NoError(t, err)
		require.Equal(t, uint16(1000-40), st.SendMSS)
	}
	p.a.mu.Unlock()
}

func TestConnsCountsLiveConnections(t *testing.T) {
	// One connection on each host while it is open; none once both ends
	// have closed (the active closer's TIME-WAIT is a record, not a
	// connection).
	p := newPair(t, tcpstack.Config{})
	require.Zero(t, p.a.Conns())
	c, s := p.connect(t)
	require.Equal(t, 1, p.a.Conns())
	require.Equal(t, 1, p.b.Conns())
	require.Zero(t, p.b.HalfOpen())
	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	require.Eventually(t, func() bool { return p.a.Conns() == 0 && p.b.Conns() == 0 }, 10*time.Second, time.Millisecond)
}
