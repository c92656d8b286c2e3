package gvisor

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// setupWith is setup with the host's stack configured by cfg.
func setupWith(t *testing.T, cfg tcpstack.Config) (*Peer, *host.Host) {
	p, err := NewPeer(peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.New(p, host.Config{Stack: cfg, Addrs: []netip.Addr{ourAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return p, h
}

// connect returns a connected pair: ours (tcpfsm) and theirs (gVisor),
// with tcpfsm as the client when ourClient is set.
func connect(t *testing.T, p *Peer, h *host.Host, ourClient bool) (ours peertest.HalfCloser, theirs peertest.HalfCloser) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan net.Conn, 1)
	if ourClient {
		ln, err := gonet.ListenTCP(p.Stack, p.Full(80), ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() { c, _ := ln.Accept(); accepted <- c }()
		c, err := h.DialContextAddrPort(ctx, netip.AddrPortFrom(peerAddr, 80))
		if err != nil {
			t.Fatal(err)
		}
		return withDeadline(c, (<-accepted).(peertest.HalfCloser))
	}
	ln, err := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	go func() { c, _ := ln.Accept(); accepted <- c }()
	c, err := gonet.DialContextTCP(ctx, p.Stack, fullOf(ourAddr, 80), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	return withDeadline((<-accepted).(peertest.HalfCloser), c)
}

// withDeadline gives both ends two minutes (or $GVISOR_DEADLINE, a
// duration), so a stalled case fails rather than waiting for the test
// binary's timeout.
func withDeadline(ours, theirs peertest.HalfCloser) (peertest.HalfCloser, peertest.HalfCloser) {
	d := time.Now().Add(deadline())
	_ = ours.SetDeadline(d)
	_ = theirs.SetDeadline(d)
	return ours, theirs
}

func roles(t *testing.T, f func(t *testing.T, ourClient bool)) {
	t.Run("tcpfsm-client", func(t *testing.T) { f(t, true) })
	t.Run("tcpfsm-server", func(t *testing.T) { f(t, false) })
}

// TestHalfCloseBothOrders: one end sends and half-closes, the other keeps
// sending afterwards, in both orders and both roles (RFC 9293 3.6).
func TestHalfCloseBothOrders(t *testing.T) {
	for _, first := range []string{"tcpfsm-first", "gvisor-first"} {
		t.Run(first, func(t *testing.T) {
			roles(t, func(t *testing.T, ourClient bool) {
				p, h := setup(t, 0)
				ours, theirs := connect(t, p, h, ourClient)
				a, b := peertest.HalfCloser(ours), peertest.HalfCloser(theirs)
				if first == "gvisor-first" {
					a, b = b, a
				}
				peertest.SendAndHalfClose(t, a, b, peertest.Payload(256<<10))
				// The end that got the FIN sends afterwards: CLOSE-WAIT
				// carries data for as long as the application likes.
				time.Sleep(50 * time.Millisecond)
				peertest.SendAndHalfClose(t, b, a, peertest.Payload(300 << 10)[1000:])
				ours.Close()
				theirs.Close()
			})
		})
	}
}

// TestZeroWindowStall: the receiver's application stops reading until
// its window is zero, the sender stalls (probing, RFC 9293 3.8.6.1), and
// everything arrives once the reader resumes. Both directions.
func TestZeroWindowStall(t *testing.T) {
	small := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 64 << 10,
		Config: tcpfsm.Config{RecvBuffer: 16 << 10}}}
	for _, dir := range []string{"gvisor-sends", "tcpfsm-sends"} {
		t.Run(dir, func(t *testing.T) {
			p, h := setupWith(t, small)
			ours, theirs := connect(t, p, h, true)
			defer ours.Close()
			defer theirs.Close()
			w, r := peertest.HalfCloser(theirs), peertest.HalfCloser(ours)
			if dir == "tcpfsm-sends" {
				w, r = r, w
			}
			data := peertest.Payload(4 << 20)
			errc := peertest.WriteThenHalfClose(w, data)
			// Long enough for the window to close and a few persist
			// probes to go out unanswered by any reading.
			time.Sleep(1500 * time.Millisecond)
			select {
			case err := <-errc:
				t.Fatalf("the writer finished (%v) while nobody read: the window never closed", err)
			default:
			}
			if dir == "gvisor-sends" {
				tcb := ours.(*host.Conn).TCB()
				if wnd := tcb.RcvWnd(); wnd != 0 {
					t.Fatalf("tcpfsm's receive window is %d after the stall, want 0", wnd)
				}
			}
			_ = r.SetReadDeadline(time.Now().Add(60 * time.Second))
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d of %d bytes after the stall, or different bytes", len(got), len(data))
			}
		})
	}
}

// TestSimultaneousClose: after an exchange both applications close at
// once; both ends must finish cleanly whichever FIN crosses which.
func TestSimultaneousClose(t *testing.T) {
	roles(t, func(t *testing.T, ourClient bool) {
		p, h := setup(t, 0)
		ours, theirs := connect(t, p, h, ourClient)
		msg := []byte("hello")
		if _, err := ours.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(theirs, buf); err != nil || !bytes.Equal(buf, msg) {
			t.Fatalf("exchange before the close: %q %v", buf, err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = theirs.Close() }()
		go func() { defer wg.Done(); _ = ours.CloseWrite() }()
		wg.Wait()
		// Our side must see the peer's FIN (end of stream), not a reset.
		_ = ours.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := ours.Read(buf); err != io.EOF {
			t.Fatalf("after the simultaneous close tcpfsm read %d, %v; want EOF", n, err)
		}
		conn := ours.(*host.Conn)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := conn.TCB().State
			if st == tcpfsm.TimeWait || st == tcpfsm.Closed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tcpfsm stuck in %v after the simultaneous close", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := conn.Endpoint().Err(); err != nil {
			t.Fatalf("tcpfsm's connection ended with %v", err)
		}
		_ = ours.Close()
	})
}

// TestSynFloodWhileConnecting: SYNs from spoofed addresses (up to 20,000;
// the flood runs until the real client is done) reach our listener
// (backlog 16) while gVisor connects: the half-open queue stays bounded,
// the overflow gets SYN cookies, and the real client connects and echoes
// (RFC 4987).
func TestSynFloodWhileConnecting(t *testing.T) {
	p, h := setupWith(t, tcpstack.Config{Backlog: 16})
	ln, err := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	go peertest.Echo(ln)
	rng := rand.New(rand.NewPCG(21, 22))
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		for ; n < 20000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			src := netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.Uint32())})
			s := tcpfsm.Segment{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: 80,
				Seq: tcpfsm.Seq(rng.Uint32()), Flags: tcpfsm.FlagSYN, Window: 65535}
			b := s.AppendTo(nil)
			_ = tcpfsm.SetChecksum(b, src, ourAddr)
			p.InjectToTcpfsm(b, src, ourAddr)
		}
	}()
	time.Sleep(20 * time.Millisecond) // the flood is under way
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, p.Stack, fullOf(ourAddr, 80), ipv4.ProtocolNumber)
	if err != nil {
		close(stop)
		t.Fatalf("gVisor could not connect during the flood: %v", err)
	}
	defer c.Close()
	peertest.SendAndHalfClose(t, c, c, peertest.Payload(64<<10))
	close(stop)
	n := <-flooded
	st := h.Stats()
	t.Logf("%d spoofed SYNs; %d SYN cookies sent, %d accepted", n, st.CookiesSent, st.CookiesAccepted)
	if st.CookiesSent == 0 {
		t.Fatal("no SYN cookies were sent: the half-open queue was not the bound")
	}
}

// TestOptionsRefused: each option refused in turn, by us (our SYN or
// SYN-ACK leaves it out) or by gVisor (SACK off, its default), in both
// roles. The option must end up off on our side and 1 MiB must still
// cross byte-exact (RFC 7323 sections 2.2 and 3.2, RFC 2018 section 2).
func TestOptionsRefused(t *testing.T) {
	cases := []struct {
		name   string
		cfg    tcpfsm.Config
		noSACK bool // on gVisor
		check  func(st tcpfsm.Status) bool
	}{
		{"window-scale-by-tcpfsm", tcpfsm.Config{NoWindowScale: true}, false, func(st tcpfsm.Status) bool { return st.SndShift == 0 && st.RcvShift == 0 }},
		{"timestamps-by-tcpfsm", tcpfsm.Config{NoTimestamps: true}, false, func(st tcpfsm.Status) bool { return !st.Timestamps }},
		{"sack-by-tcpfsm", tcpfsm.Config{NoSACK: true}, false, func(st tcpfsm.Status) bool { return !st.SACK }},
		{"sack-by-gvisor", tcpfsm.Config{}, true, func(st tcpfsm.Status) bool { return !st.SACK }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roles(t, func(t *testing.T, ourClient bool) {
				cfg := c.cfg
				cfg.RecvBuffer = 1 << 20
				p, h := setupWith(t, tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: cfg}})
				if c.noSACK {
					off := tcpip.TCPSACKEnabled(false)
					if err := p.Stack.SetTransportProtocolOption(tcp.ProtocolNumber, &off); err != nil {
						t.Fatal(err)
					}
				}
				ours, theirs := connect(t, p, h, ourClient)
				defer ours.Close()
				defer theirs.Close()
				tcb := ours.(*host.Conn).TCB()
				st, _ := tcb.Status()
				if !c.check(st) {
					t.Fatalf("option still in use: %+v", st)
				}
				peertest.SendAndHalfClose(t, theirs, ours, peertest.Payload(1<<20))
				peertest.SendAndHalfClose(t, ours, theirs, peertest.Payload(1<<20))
			})
		})
	}
}
