package ipstack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/ip"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var (
	addrA4 = netip.MustParseAddr("192.0.2.1")
	addrB4 = netip.MustParseAddr("192.0.2.2")
	addrA6 = netip.MustParseAddr("2001:db8::1")
	addrB6 = netip.MustParseAddr("2001:db8::2")
)

// node is an ipstack.Stack over a tcpstack.Stack.
type node struct {
	ip  *Stack
	tcp *tcpstack.Stack
}

func newNode(t testing.TB, addrs ...netip.Addr) *node {
	t.Helper()
	ts, err := tcpstack.New(tcpstack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addrs: addrs, TCP: ts})
	if err != nil {
		t.Fatal(err)
	}
	return &node{ip: s, tcp: ts}
}

// pump moves packets between a and b until neither has any, passing
// each through drop first, which may keep it from arriving. It returns
// the packets moved.
func pump(t testing.TB, a, b *node, now tcpfsm.Time, drop func(from *node, pkt []byte) bool) int {
	t.Helper()
	buf := make([]byte, 65536)
	moved := 0
	for progress := true; progress; {
		progress = false
		for _, p := range [][2]*node{{a, b}, {b, a}} {
			for n := p[0].ip.Output(buf, now); n > 0; n = p[0].ip.Output(buf, now) {
				progress = true
				moved++
				if drop != nil && drop(p[0], buf[:n]) {
					continue
				}
				_ = p[1].ip.Input(buf[:n], now)
			}
		}
	}
	return moved
}

func TestTCPOverIP(t *testing.T) {
	for _, fam := range [][2]netip.Addr{{addrA4, addrB4}, {addrA6, addrB6}} {
		a, b := newNode(t, fam[0]), newNode(t, fam[1])
		l, err := b.tcp.Listen(80)
		if err != nil {
			t.Fatal(err)
		}
		var now tcpfsm.Time
		c, err := a.tcp.Dial(fam[0], netip.AddrPortFrom(fam[1], 80), now)
		if err != nil {
			t.Fatal(err)
		}
		pump(t, a, b, now, nil)
		srv, ok := l.Accept()
		if !ok || c.State() != tcpfsm.Established {
			t.Fatalf("%v: no connection: %v %v", fam, ok, c.State())
		}
		msg := bytes.Repeat([]byte("0123456789abcdef"), 1000)
		if n, err := c.Write(msg, now); err != nil || n != len(msg) {
			t.Fatal(n, err)
		}
		pump(t, a, b, now, nil)
		got := make([]byte, len(msg)+1)
		n, _ := srv.Read(got, now)
		if !bytes.Equal(got[:n], msg) {
			t.Errorf("%v: read %d bytes, want %d", fam, n, len(msg))
		}
		if st := a.ip.Stats(); st.PacketsOut == 0 || st.PacketsIn == 0 || st.BadHeader != 0 {
			t.Errorf("stats %+v", st)
		}
	}
}

// established returns two nodes with a connection from a to b that has
// data in flight: b's ACKs are not delivered yet.
func inFlight(t *testing.T, la, lb netip.Addr) (a, b *node, c *tcpstack.Endpoint, sent [][]byte) {
	a, b = newNode(t, la), newNode(t, lb)
	if _, err := b.tcp.Listen(80); err != nil {
		t.Fatal(err)
	}
	var now tcpfsm.Time
	c, err := a.tcp.Dial(la, netip.AddrPortFrom(lb, 80), now)
	if err != nil {
		t.Fatal(err)
	}
	pump(t, a, b, now, nil)
	if _, err := c.Write(make([]byte, 8000), now); err != nil {
		t.Fatal(err)
	}
	// Hold back a's data segments: they are what an ICMP error would quote.
	pump(t, a, b, now, func(from *node, pkt []byte) bool {
		if from == a {
			sent = append(sent, bytes.Clone(pkt))
			return true
		}
		return false
	})
	if len(sent) == 0 {
		t.Fatal("nothing in flight")
	}
	return a, b, c, sent
}

// router builds the ICMP error a router at from would send to the
// packet's source about pkt.
func routerError(t *testing.T, from netip.Addr, pkt []byte, mtu uint32) []byte {
	t.Helper()
	var p ip.Packet
	if err := ip.Parse(pkt, &p); err != nil {
		t.Fatal(err)
	}
	typ, code := uint8(ip.ICMPv4DestUnreachable), uint8(ip.ICMPv4CodeFragNeeded)
	if p.Version == 6 {
		typ, code = ip.ICMPv6PacketTooBig, 0
	}
	buf := make([]byte, 1500)
	h := ip.Header{Src: from, Dst: p.Src}
	n, err := ip.PutICMPError(buf, &h, typ, code, mtu, pkt)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func sendMSS(t *testing.T, e *tcpstack.Endpoint) int {
	t.Helper()
	tcb := e.TCB()
	st, err := tcb.Status()
	if err != nil {
		t.Fatal(err)
	}
	return int(st.SendMSS)
}

func TestPathMTU(t *testing.T) {
	for _, tc := range []struct {
		la, lb, router netip.Addr
		mtu            uint32
		wantMSS        int
	}{
		{addrA4, addrB4, netip.MustParseAddr("198.51.100.1"), 1000, 1000 - 40},
		{addrA6, addrB6, netip.MustParseAddr("2001:db8:ffff::1"), 1300, 1300 - 60},
		{addrA6, addrB6, netip.MustParseAddr("2001:db8:ffff::1"), 600, 1280 - 60}, // RFC 8201: never below 1280
	} {
		a, b, c, sent := inFlight(t, tc.la, tc.lb)
		before := sendMSS(t, c)
		var now tcpfsm.Time

		// An error quoting a sequence number outside SND.UNA..SND.NXT is
		// ignored (RFC 5927 section 4.1).
		stale := bytes.Clone(sent[0])
		var p ip.Packet
		_ = ip.Parse(stale, &p)
		seq := binary.BigEndian.Uint32(p.Payload[4:])
		binary.BigEndian.PutUint32(p.Payload[4:], seq-100000)
		err := a.ip.Input(routerError(t, tc.router, stale, tc.mtu), now)
		if !errors.Is(err, tcpstack.ErrStaleICMP) || sendMSS(t, c) != before {
			t.Fatalf("stale quote: %v, MSS %d -> %d", err, before, sendMSS(t, c))
		}
		if st := a.ip.Stats(); st.PathMTUUpdates != 0 || st.ICMPIgnored != 1 {
			t.Errorf("after the stale quote: %+v", st)
		}
		// An error for a connection that does not exist is ignored.
		other := bytes.Clone(sent[0])
		_ = ip.Parse(other, &p)
		binary.BigEndian.PutUint16(p.Payload[2:], 81)
		if err := a.ip.Input(routerError(t, tc.router, other, tc.mtu), now); !errors.Is(err, tcpstack.ErrNoConnection) {
			t.Errorf("quote of no connection: %v", err)
		}

		if err := a.ip.Input(routerError(t, tc.router, sent[len(sent)-1], tc.mtu), now); err != nil {
			t.Fatal(err)
		}
		if got := sendMSS(t, c); got != tc.wantMSS {
			t.Errorf("MTU %d: send MSS %d -> %d, want %d", tc.mtu, before, got, tc.wantMSS)
		}
		if st := a.ip.Stats(); st.PathMTUUpdates != 1 {
			t.Errorf("PathMTUUpdates = %d", st.PathMTUUpdates)
		}
		// What goes out from now on fits the path: the retransmissions
		// when the timer fires, and the rest of the data.
		limit := int(tc.mtu)
		if tc.la.Is6() {
			limit = max(int(tc.mtu), 1280)
		}
		now = now.Add(5 * time.Second)
		a.tcp.Tick(now)
		n := pump(t, a, b, now, func(from *node, pkt []byte) bool {
			if from == a && len(pkt) > limit {
				t.Errorf("a %d-byte packet after a path MTU of %d", len(pkt), limit)
			}
			return false
		})
		if n == 0 {
			t.Error("nothing sent after the update")
		}
		// A larger MTU later does not raise it (RFC 1191 section 6.3 leaves
		// increases to probing).
		if err := a.ip.Input(routerError(t, tc.router, sent[0], 9000), now); err == nil {
			t.Error("an increase was applied")
		}
	}
}

func TestEcho(t *testing.T) {
	for _, fam := range [][2]netip.Addr{{addrA4, addrB4}, {addrA6, addrB6}} {
		a, b := newNode(t, fam[0]), newNode(t, fam[1])
		a.ip.WatchEcho(true)
		if err := a.ip.SendEcho(netip.Addr{}, fam[1], 7, 9, []byte("are you there")); err != nil {
			t.Fatal(err)
		}
		pump(t, a, b, 0, nil)
		if b.ip.Stats().EchoReplies != 1 {
			t.Fatalf("%v: no echo reply: %+v", fam, b.ip.Stats())
		}
		buf := make([]byte, 100)
		n, from, ok := a.ip.RecvEcho(buf)
		if !ok || from != fam[1] {
			t.Fatalf("RecvEcho: %v from %v", ok, from)
		}
		want := uint8(ip.ICMPv4EchoReply)
		if fam[0].Is6() {
			want = ip.ICMPv6EchoReply
		}
		if buf[0] != want || binary.BigEndian.Uint32(buf[4:]) != 7<<16|9 || string(buf[8:n]) != "are you there" {
			t.Errorf("reply %x", buf[:n])
		}
		a.ip.WatchEcho(false)
	}
}

func TestUDP(t *testing.T) {
	for _, fam := range [][2]netip.Addr{{addrA4, addrB4}, {addrA6, addrB6}} {
		a, b := newNode(t, fam[0]), newNode(t, fam[1])
		srv, err := b.ip.BindUDP(netip.AddrPortFrom(netip.Addr{}, 53))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.ip.BindUDP(netip.AddrPortFrom(netip.Addr{}, 53)); !errors.Is(err, ErrPortInUse) {
			t.Errorf("second bind: %v", err)
		}
		cl, err := a.ip.BindUDP(netip.AddrPort{})
		if err != nil || cl.LocalAddr().Port() < 49152 {
			t.Fatal(cl.LocalAddr(), err)
		}
		if err := cl.Send([]byte("query"), netip.Addr{}, netip.AddrPortFrom(fam[1], 53)); err != nil {
			t.Fatal(err)
		}
		pump(t, a, b, 0, nil)
		if r := b.ip.UDPReady(nil); len(r) != 1 || r[0] != srv {
			t.Errorf("UDPReady = %v", r)
		}
		buf := make([]byte, 100)
		n, from, ok := srv.Recv(buf)
		if !ok || string(buf[:n]) != "query" || from != netip.AddrPortFrom(fam[0], cl.LocalAddr().Port()) {
			t.Fatalf("Recv %q from %v, %v", buf[:n], from, ok)
		}
		if err := srv.Send([]byte("answer"), netip.Addr{}, from); err != nil {
			t.Fatal(err)
		}
		pump(t, a, b, 0, nil)
		if n, _, ok := cl.Recv(buf); !ok || string(buf[:n]) != "answer" {
			t.Errorf("reply %q %v", buf[:n], ok)
		}
		if err := cl.Send(make([]byte, 1500), netip.Addr{}, from); !errors.Is(err, ErrTooLarge) {
			t.Errorf("oversized: %v", err)
		}

		// A datagram to a closed port draws port unreachable, quoting it.
		srv.Close()
		if err := cl.Send([]byte("late"), netip.Addr{}, netip.AddrPortFrom(fam[1], 53)); err != nil {
			t.Fatal(err)
		}
		var errPkt []byte
		pump(t, a, b, 0, func(from *node, pkt []byte) bool {
			if from == b {
				errPkt = bytes.Clone(pkt)
			}
			return false
		})
		if b.ip.Stats().UDPNoPort != 1 || errPkt == nil {
			t.Fatalf("no port unreachable: %+v", b.ip.Stats())
		}
		var p ip.Packet
		var m ip.ICMP
		var q ip.Quote
		if err := ip.Parse(errPkt, &p); err != nil {
			t.Fatal(err)
		}
		if err := ip.ParseICMP(p.Payload, p.Version == 6, p.Src, p.Dst, &m); err != nil {
			t.Fatal(err)
		}
		wantType, wantCode := uint8(ip.ICMPv4DestUnreachable), uint8(ip.ICMPv4CodePortUnreach)
		if p.Version == 6 {
			wantType, wantCode = ip.ICMPv6DestUnreachable, ip.ICMPv6CodePortUnreach
		}
		if m.Type != wantType || m.Code != wantCode {
			t.Errorf("ICMP %d/%d", m.Type, m.Code)
		}
		if err := ip.ParseQuote(m.Body, &q); err != nil || q.Proto != ip.ProtoUDP || q.DstPort != 53 {
			t.Errorf("quote %+v %v", q, err)
		}
		// The error is not answered with another (RFC 1122 section 3.2.2).
		if st := a.ip.Stats(); st.UnreachableSent != 0 {
			t.Errorf("a answered an error: %+v", st)
		}
	}
}

func TestDrops(t *testing.T) {
	a := newNode(t, addrA4)
	frames := pcapFrames(t, "../testdata/linux-ipv4.pcap")
	f := bytes.Clone(frames[0]) // 192.0.2.1 > 192.0.2.2: not ours
	if err := a.ip.Input(f, 0); !errors.Is(err, ErrNotOurs) {
		t.Errorf("other host: %v", err)
	}
	// Make it a fragment to us.
	copy(f[16:20], addrA4.AsSlice())
	binary.BigEndian.PutUint16(f[6:], 0x2000)
	f[10], f[11] = 0, 0
	binary.BigEndian.PutUint16(f[10:], ip.Checksum(f[:20], 0))
	if err := a.ip.Input(f, 0); !errors.Is(err, ErrFragment) {
		t.Errorf("fragment: %v", err)
	}
	f[12] ^= 1
	if err := a.ip.Input(f, 0); !errors.Is(err, ip.ErrChecksum) {
		t.Errorf("bad header checksum: %v", err)
	}
	st := a.ip.Stats()
	if st.NotForUs != 1 || st.Fragments != 1 || st.BadHeader != 1 {
		t.Errorf("%+v", st)
	}
	// An unknown protocol draws protocol unreachable.
	buf := make([]byte, 28)
	h := ip.Header{Src: addrB4, Dst: addrA4, Proto: 253}
	_, _ = ip.PutHeader(buf, &h, 8)
	if err := a.ip.Input(buf, 0); !errors.Is(err, ErrNoProtocol) {
		t.Errorf("protocol 253: %v", err)
	}
	out := make([]byte, 1500)
	n := a.ip.Output(out, 0)
	var p ip.Packet
	if err := ip.Parse(out[:n], &p); err != nil || p.Proto != ip.ProtoICMP || p.Payload[0] != ip.ICMPv4DestUnreachable || p.Payload[1] != ip.ICMPv4CodeProtoUnreach {
		t.Errorf("protocol unreachable: %v %x", err, out[:n])
	}
}

func TestLinuxCaptureSegmentsReachTCP(t *testing.T) {
	// The server's stack, listening on 5001 as in the capture, sees the
	// client's SYN and answers with a SYN-ACK to the client's address.
	srv := newNode(t, addrB4)
	if _, err := srv.tcp.Listen(5001); err != nil {
		t.Fatal(err)
	}
	syn := pcapFrames(t, "../testdata/linux-ipv4.pcap")[0]
	if err := srv.ip.Input(syn, 0); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 1500)
	n := srv.ip.Output(out, 0)
	var p ip.Packet
	if err := ip.Parse(out[:n], &p); err != nil {
		t.Fatal(err)
	}
	seg, err := tcpfsm.ParseSegment(p.Payload)
	if err != nil || p.Dst != addrA4 || seg.Flags != tcpfsm.FlagSYN|tcpfsm.FlagACK || !tcpfsm.VerifyChecksum(p.Payload, p.Src, p.Dst) {
		t.Errorf("reply to Linux's SYN: %v %v %v", err, p.Dst, seg.Flags)
	}
}

func TestZeroAllocs(t *testing.T) {
	a, b := newNode(t, addrA4), newNode(t, addrB4)
	srv, _ := b.ip.BindUDP(netip.AddrPortFrom(netip.Addr{}, 53))
	cl, _ := a.ip.BindUDP(netip.AddrPort{})
	to := netip.AddrPortFrom(addrB4, 53)
	buf := make([]byte, 2000)
	msg := make([]byte, 100)
	var ready []*UDPSocket
	round := func() {
		_ = cl.Send(msg, netip.Addr{}, to)
		_ = a.ip.SendEcho(netip.Addr{}, addrB4, 1, 1, msg)
		for n := a.ip.Output(buf, 0); n > 0; n = a.ip.Output(buf, 0) {
			_ = b.ip.Input(buf[:n], 0)
		}
		for n := b.ip.Output(buf, 0); n > 0; n = b.ip.Output(buf, 0) {
			_ = a.ip.Input(buf[:n], 0)
		}
		_, _, _ = srv.Recv(buf)
		ready = b.ip.UDPReady(ready[:0])
	}
	round() // fills the queues' buffers
	if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
		t.Errorf("%v allocations per round of UDP and ICMP packets, want 0", allocs)
	}
	if b.ip.Stats().EchoReplies < 200 || b.ip.Stats().UDPIn < 200 {
		t.Errorf("rounds did not run: %+v", b.ip.Stats())
	}
}

func pcapFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for p := data[24:]; len(p) >= 16; {
		n := int(binary.LittleEndian.Uint32(p[8:]))
		out = append(out, p[16+14:16+n])
		p = p[16+n:]
	}
	return out
}

func FuzzInput(f *testing.F) {
	for _, fr := range pcapFrames(f, "../testdata/linux-ipv4.pcap")[:4] {
		f.Add(fr)
	}
	for _, fr := range pcapFrames(f, "../testdata/linux-ipv6.pcap")[:4] {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := newNode(t, addrB4, addrB6)
		if _, err := n.tcp.Listen(5001); err != nil {
			t.Fatal(err)
		}
		_, _ = n.ip.BindUDP(netip.AddrPortFrom(netip.Addr{}, 53))
		err := n.ip.Input(b, 0)
		st := n.ip.Stats()
		if err == nil && st.PacketsIn != 1 {
			t.Fatalf("accepted without counting: %+v", st)
		}
		out := make([]byte, 65536)
		for k := n.ip.Output(out, 0); k > 0; k = n.ip.Output(out, 0) {
			var p ip.Packet
			if err := ip.Parse(out[:k], &p); err != nil {
				t.Fatalf("stack built a bad packet: %v", err)
			}
		}
	})
}
