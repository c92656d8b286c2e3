package netstack_test

import (
	"context"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm/ip"
	"github.com/tcpfsm/tcpfsm/wireguard/netstack"
	"golang.zx2c4.com/wireguard/tun"
)

// pump moves packets from one device to the other until ctx ends; hook
// may swallow a packet (returning true) and answer it itself.
func pump(ctx context.Context, from, to tun.Device, hook func([]byte) bool) {
	bufs := make([][]byte, from.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65536)
	}
	sizes := make([]int, len(bufs))
	for ctx.Err() == nil {
		n, err := from.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			if hook != nil && hook(p) {
				continue
			}
			_, _ = to.Write([][]byte{p}, 0)
		}
	}
}

func TestPathMTUFromICMP(t *testing.T) {
	// A router on the way with a 1000-byte MTU drops the sender's first
	// large segment and says so (RFC 1191): the connection segments to
	// fit at once, and the whole stream arrives.
	a, b := netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("10.7.0.2")
	devA, netA, err := netstack.CreateNetTUN([]netip.Addr{a}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	devB, netB, err := netstack.CreateNetTUN([]netip.Addr{b}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	defer devA.Close()
	defer devB.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var told atomic.Bool
	router := netip.MustParseAddr("10.7.0.254")
	go pump(ctx, devA, devB, func(p []byte) bool {
		if len(p) <= 1000 {
			return false
		}
		if !told.Swap(true) {
			icmp := make([]byte, 1500)
			n, err := ip.PutICMPError(icmp, &ip.Header{Src: router, Dst: a}, ip.ICMPv4DestUnreachable,
				ip.ICMPv4CodeFragNeeded, 1000, p)
			if err == nil {
				_, _ = devA.Write([][]byte{icmp[:n]}, 0)
			}
		}
		return true // too big for the path: dropped
	})
	go pump(ctx, devB, devA, nil)

	l, err := netB.ListenTCPAddrPort(netip.AddrPortFrom(b, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const size = 200_000
	go func() {
		c, err := netA.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(b, 80))
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(make([]byte, size))
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	if !told.Load() {
		t.Fatal("no segment was too big for the path")
	}
	if st := netA.Stats(); st.PathMTUUpdates != 1 {
		t.Fatalf("%d path-MTU updates, want 1 (stats %+v)", st.PathMTUUpdates, st)
	}
}
