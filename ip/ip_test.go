package ip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/tcpfsm/tcpfsm"
)

// pcapFrames returns the IP packets of a little-endian Ethernet or raw-IP
// pcap file.
func pcapFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a pcap file", path)
	}
	link := binary.LittleEndian.Uint32(data[20:])
	var out [][]byte
	for p := data[24:]; len(p) >= 16; {
		n := int(binary.LittleEndian.Uint32(p[8:]))
		if len(p) < 16+n {
			t.Fatalf("%s: truncated record", path)
		}
		f := p[16 : 16+n]
		p = p[16+n:]
		if link == 1 {
			f = f[14:]
		}
		out = append(out, f)
	}
	return out
}

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("192.0.2.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

// Every packet Linux put on the wire parses, its TCP checksum verifies
// with this package's pseudo-header, and PutHeader rebuilds its header
// byte for byte from the parsed fields.
func TestLinuxCaptures(t *testing.T) {
	for _, tc := range []struct {
		file     string
		n        int
		version  uint8
		src, dst netip.Addr
	}{
		{"../testdata/linux-ipv4.pcap", 19, 4, v4a, v4b},
		{"../testdata/linux-ipv6.pcap", 8, 6, v6a, v6b},
	} {
		frames := pcapFrames(t, tc.file)
		if len(frames) != tc.n {
			t.Fatalf("%s: %d packets, want %d", tc.file, len(frames), tc.n)
		}
		for i, f := range frames {
			var p Packet
			if err := Parse(f, &p); err != nil {
				t.Fatalf("%s #%d: %v", tc.file, i, err)
			}
			if p.Version != tc.version || p.Proto != ProtoTCP || p.Fragment {
				t.Fatalf("%s #%d: version %d proto %d fragment %v", tc.file, i, p.Version, p.Proto, p.Fragment)
			}
			if !(p.Src == tc.src && p.Dst == tc.dst) && !(p.Src == tc.dst && p.Dst == tc.src) {
				t.Fatalf("%s #%d: addresses %v > %v", tc.file, i, p.Src, p.Dst)
			}
			if p.TTL != 64 {
				t.Errorf("%s #%d: TTL %d, want Linux's 64", tc.file, i, p.TTL)
			}
			if Checksum(p.Payload, PseudoHeaderSum(p.Src, p.Dst, ProtoTCP, len(p.Payload))) != 0 {
				t.Errorf("%s #%d: TCP checksum does not verify", tc.file, i)
			}
			if !tcpfsm.VerifyChecksum(p.Payload, p.Src, p.Dst) {
				t.Errorf("%s #%d: tcpfsm disagrees on the TCP checksum", tc.file, i)
			}
			if _, err := tcpfsm.ParseSegment(p.Payload); err != nil {
				t.Errorf("%s #%d: payload is not a TCP segment: %v", tc.file, i, err)
			}
			h := Header{Src: p.Src, Dst: p.Dst, Proto: p.Proto, TTL: p.TTL, TOS: p.TOS,
				FlowLabel: p.FlowLabel, ID: uint16(p.ID), DontFragment: p.DontFragment}
			buf := make([]byte, p.HeaderLen)
			hl, err := PutHeader(buf, &h, len(p.Payload))
			if err != nil || hl != p.HeaderLen {
				t.Fatalf("%s #%d: PutHeader = %d, %v", tc.file, i, hl, err)
			}
			if !bytes.Equal(buf, f[:hl]) {
				t.Errorf("%s #%d: rebuilt header\n%x\nwant\n%x", tc.file, i, buf, f[:hl])
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	f := pcapFrames(t, "../testdata/linux-ipv4.pcap")[0]
	var p Packet
	bad := bytes.Clone(f)
	bad[10] ^= 1
	if err := Parse(bad, &p); !errors.Is(err, ErrChecksum) {
		t.Errorf("corrupt header checksum: %v", err)
	}
	if err := Parse(f[:19], &p); !errors.Is(err, ErrShort) {
		t.Errorf("19 bytes: %v", err)
	}
	if err := Parse(f[:len(f)-1], &p); !errors.Is(err, ErrTotalLen) {
		t.Errorf("cut packet: %v", err)
	}
	bad = bytes.Clone(f)
	bad[0] = 0x44
	if err := Parse(bad, &p); !errors.Is(err, ErrHeaderLen) {
		t.Errorf("IHL 4: %v", err)
	}
	if err := Parse([]byte{0x50}, &p); !errors.Is(err, ErrVersion) {
		t.Errorf("version 5: %v", err)
	}
	if err := Parse(nil, &p); !errors.Is(err, ErrShort) {
		t.Errorf("empty: %v", err)
	}
	g := pcapFrames(t, "../testdata/linux-ipv6.pcap")[0]
	if err := Parse(g[:len(g)-1], &p); !errors.Is(err, ErrTotalLen) {
		t.Errorf("cut IPv6 packet: %v", err)
	}
	// Trailing link padding is not payload.
	padded := append(bytes.Clone(f), 0, 0, 0, 0)
	if err := Parse(padded, &p); err != nil || len(p.Payload) != len(f)-20 {
		t.Errorf("padded: %v, payload %d", err, len(p.Payload))
	}
}

// packet4 builds an IPv4 packet with the given options and payload.
func packet4(t *testing.T, opts []byte, frag uint16, proto uint8, payload []byte) []byte {
	t.Helper()
	hl := 20 + len(opts)
	b := make([]byte, hl+len(payload))
	h := Header{Src: v4a, Dst: v4b, Proto: proto, TTL: 7}
	if _, err := PutHeader(b, &h, len(payload)); err != nil {
		t.Fatal(err)
	}
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], frag)
	copy(b[20:], opts)
	copy(b[hl:], payload)
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:hl], 0))
	return b
}

func TestIPv4OptionsAndFragments(t *testing.T) {
	var p Packet
	// Record Route (7), length 7, pointer 4, one empty slot; then End.
	b := packet4(t, []byte{7, 7, 4, 0, 0, 0, 0, 0}, 0, ProtoUDP, []byte("hello"))
	if err := Parse(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.HeaderLen != 28 || string(p.Payload) != "hello" || p.TTL != 7 || p.Fragment {
		t.Errorf("options: header %d payload %q ttl %d fragment %v", p.HeaderLen, p.Payload, p.TTL, p.Fragment)
	}
	for _, tc := range []struct {
		frag uint16
		want bool
		off  int
	}{{0x2000, true, 0}, {0x0003, true, 24}, {0x4000, false, 0}, {0, false, 0}} {
		b := packet4(t, nil, tc.frag, ProtoUDP, []byte("x"))
		if err := Parse(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.Fragment != tc.want || p.FragOffset != tc.off {
			t.Errorf("frag field %#04x: fragment %v offset %d, want %v %d", tc.frag, p.Fragment, p.FragOffset, tc.want, tc.off)
		}
	}
}

// packet6 builds an IPv6 packet whose extension headers are given as
// (next header, body) in order.
func packet6(t *testing.T, exts [][]byte, kinds []uint8, proto uint8, payload []byte) []byte {
	t.Helper()
	var rest []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(kinds) {
			next = kinds[i+1]
		}
		e = bytes.Clone(e)
		e[0] = next
		rest = append(rest, e...)
	}
	rest = append(rest, payload...)
	first := proto
	if len(kinds) > 0 {
		first = kinds[0]
	}
	b := make([]byte, 40+len(rest))
	h := Header{Src: v6a, Dst: v6b, Proto: first, TTL: 3}
	if _, err := PutHeader(b, &h, len(rest)); err != nil {
		t.Fatal(err)
	}
	copy(b[40:], rest)
	return b
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	hbh := []byte{0, 0, 1, 4, 0, 0, 0, 0}                          // Hop-by-Hop, PadN
	dst := []byte{0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // Destination Options, 16 bytes
	frag := []byte{0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef}             // offset 0, M set
	var p Packet
	b := packet6(t, [][]byte{hbh, dst, frag}, []uint8{ProtoHopByHop, ProtoDestOpts, ProtoFragment}, ProtoTCP, []byte("seg"))
	if err := Parse(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Proto != ProtoTCP || p.HeaderLen != 40+8+16+8 || string(p.Payload) != "seg" || !p.Fragment || p.ID != 0xdeadbeef || p.TTL != 3 {
		t.Errorf("chain: %+v", p)
	}
	atomic := []byte{0, 0, 0, 0, 0, 0, 0, 1}
	b = packet6(t, [][]byte{atomic}, []uint8{ProtoFragment}, ProtoUDP, []byte("x"))
	if err := Parse(b, &p); err != nil || p.Fragment || p.Proto != ProtoUDP {
		t.Errorf("atomic fragment: %v %+v", err, p)
	}
	var exts [][]byte
	var kinds []uint8
	for range MaxExtensionHeaders + 2 {
		exts, kinds = append(exts, dst), append(kinds, ProtoDestOpts)
	}
	b = packet6(t, exts, kinds, ProtoTCP, nil)
	if err := Parse(b, &p); !errors.Is(err, ErrExtHeaders) {
		t.Errorf("long chain: %v", err)
	}
	b = packet6(t, [][]byte{dst}, []uint8{ProtoDestOpts}, ProtoTCP, nil)
	binary.BigEndian.PutUint16(b[4:], 8) // the header says 16 bytes; only 8 are in the packet
	if err := Parse(b[:48], &p); !errors.Is(err, ErrExtHeaders) {
		t.Errorf("truncated extension header: %v", err)
	}
}

func TestUDP(t *testing.T) {
	for _, pair := range [][2]netip.Addr{{v4a, v4b}, {v6a, v6b}} {
		buf := make([]byte, 8+5)
		copy(buf[8:], "query")
		n, err := PutUDP(buf, pair[0], pair[1], 5353, 53, 5)
		if err != nil || n != 13 {
			t.Fatal(n, err)
		}
		var u UDP
		if err := ParseUDP(buf, pair[0], pair[1], &u); err != nil {
			t.Fatal(err)
		}
		if u.SrcPort != 5353 || u.DstPort != 53 || string(u.Payload) != "query" {
			t.Errorf("%+v", u)
		}
		if err := ParseUDP(buf, pair[1], netip.MustParseAddr(map[bool]string{true: "192.0.2.9", false: "2001:db8::9"}[pair[0].Is4()]), &u); !errors.Is(err, ErrChecksum) {
			t.Errorf("wrong pseudo-header: %v", err)
		}
		buf[6], buf[7] = 0, 0
		err = ParseUDP(buf, pair[0], pair[1], &u)
		if pair[0].Is4() && err != nil {
			t.Errorf("IPv4 without checksum: %v", err)
		}
		if pair[0].Is6() && !errors.Is(err, ErrChecksum) {
			t.Errorf("IPv6 without checksum: %v", err)
		}
		binary.BigEndian.PutUint16(buf[4:], 14)
		if err := ParseUDP(buf, pair[0], pair[1], &u); !errors.Is(err, ErrTotalLen) {
			t.Errorf("length past the packet: %v", err)
		}
	}
	if _, err := PutUDP(make([]byte, 8), v4a, v6a, 1, 2, 0); !errors.Is(err, ErrAddress) {
		t.Errorf("mixed families: %v", err)
	}
}

func TestICMPEcho(t *testing.T) {
	for _, pair := range [][2]netip.Addr{{v4a, v4b}, {v6a, v6b}} {
		v6 := pair[0].Is6()
		buf := make([]byte, 8+4)
		copy(buf[8:], "ping")
		typ := uint8(ICMPv4Echo)
		if v6 {
			typ = ICMPv6EchoRequest
		}
		n, err := PutICMP(buf, v6, pair[0], pair[1], typ, 0, 0x12340007, 4)
		if err != nil || n != 12 {
			t.Fatal(n, err)
		}
		var m ICMP
		if err := ParseICMP(buf, v6, pair[0], pair[1], &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != typ || m.Rest != 0x12340007 || string(m.Body) != "ping" || m.IsError(v6) {
			t.Errorf("%+v", m)
		}
		buf[9] ^= 0xff
		if err := ParseICMP(buf, v6, pair[0], pair[1], &m); !errors.Is(err, ErrChecksum) {
			t.Errorf("corrupt: %v", err)
		}
	}
}

func TestICMPErrorQuote(t *testing.T) {
	f := pcapFrames(t, "../testdata/linux-ipv4.pcap")[3] // carries 312 bytes of data
	var p Packet
	if err := Parse(f, &p); err != nil {
		t.Fatal(err)
	}
	seg, _ := tcpfsm.ParseSegment(p.Payload)
	big := append(bytes.Clone(f), make([]byte, 1000)...)
	binary.BigEndian.PutUint16(big[2:], uint16(len(big)))
	buf := make([]byte, 2000)
	h := Header{Src: p.Dst, Dst: p.Src}
	n, err := PutICMPError(buf, &h, ICMPv4DestUnreachable, ICMPv4CodeFragNeeded, 1400, big)
	if err != nil || n != 576 {
		t.Fatalf("PutICMPError = %d, %v; want the 576-byte limit", n, err)
	}
	var outer Packet
	if err := Parse(buf[:n], &outer); err != nil || outer.Proto != ProtoICMP {
		t.Fatal(err, outer.Proto)
	}
	var m ICMP
	if err := ParseICMP(outer.Payload, false, outer.Src, outer.Dst, &m); err != nil {
		t.Fatal(err)
	}
	if !m.IsError(false) {
		t.Error("not an error")
	}
	if mtu, ok := m.PathMTU(false, 0); !ok || mtu != 1400 {
		t.Errorf("PathMTU = %d, %v", mtu, ok)
	}
	var q Quote
	if err := ParseQuote(m.Body, &q); err != nil {
		t.Fatal(err)
	}
	if q.Src != p.Src || q.Dst != p.Dst || q.Proto != ProtoTCP || q.SrcPort != seg.SrcPort || q.DstPort != seg.DstPort || q.Seq != uint32(seg.Seq) {
		t.Errorf("quote %+v, segment %d>%d seq %d", q, seg.SrcPort, seg.DstPort, seg.Seq)
	}
	// A router before RFC 1191 leaves the Next-Hop MTU zero: plateau below the quoted length.
	m.Rest = 0
	if mtu, ok := m.PathMTU(false, 1500); !ok || mtu != 1492 {
		t.Errorf("plateau = %d, %v", mtu, ok)
	}
	if err := ParseQuote(m.Body[:27], &q); !errors.Is(err, ErrQuoteTooThin) {
		t.Errorf("thin quote: %v", err)
	}

	g := pcapFrames(t, "../testdata/linux-ipv6.pcap")[3]
	if err := Parse(g, &p); err != nil {
		t.Fatal(err)
	}
	seg, _ = tcpfsm.ParseSegment(p.Payload)
	h = Header{Src: p.Dst, Dst: p.Src}
	n, err = PutICMPError(buf, &h, ICMPv6PacketTooBig, 0, 1280, g)
	if err != nil || n != 40+8+len(g) {
		t.Fatal(n, err)
	}
	if err := Parse(buf[:n], &outer); err != nil || outer.Proto != ProtoICMPv6 {
		t.Fatal(err)
	}
	if err := ParseICMP(outer.Payload, true, outer.Src, outer.Dst, &m); err != nil {
		t.Fatal(err)
	}
	if mtu, ok := m.PathMTU(true, 0); !ok || mtu != 1280 {
		t.Errorf("IPv6 PathMTU = %d, %v", mtu, ok)
	}
	if err := ParseQuote(m.Body, &q); err != nil || q.Seq != uint32(seg.Seq) || q.Src != p.Src {
		t.Errorf("IPv6 quote %+v, %v", q, err)
	}
}

func TestZeroAllocs(t *testing.T) {
	f := pcapFrames(t, "../testdata/linux-ipv4.pcap")[3]
	g := pcapFrames(t, "../testdata/linux-ipv6.pcap")[3]
	udp := make([]byte, 64)
	icmp := make([]byte, 600)
	out := make([]byte, 100)
	allocs := testing.AllocsPerRun(100, func() {
		var p Packet
		_ = Parse(f, &p)
		_ = Parse(g, &p)
		_, _ = PutUDP(udp, v6a, v6b, 1, 2, 20)
		var u UDP
		_ = ParseUDP(udp[:28], v6a, v6b, &u)
		h := Header{Src: v4a, Dst: v4b}
		n, _ := PutICMPError(icmp, &h, ICMPv4DestUnreachable, ICMPv4CodePortUnreach, 0, f)
		var m ICMP
		_ = ParseICMP(icmp[20:n], false, v4a, v4b, &m)
		var q Quote
		_ = ParseQuote(m.Body, &q)
		h = Header{Src: v6a, Dst: v6b, Proto: ProtoTCP}
		_, _ = PutHeader(out, &h, 60)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet, want 0", allocs)
	}
}

func TestChecksumMatchesTCPFSM(t *testing.T) {
	for _, n := range []int{20, 21, 63, 64, 65, 1459, 1460} {
		seg := make([]byte, n)
		for i := range seg {
			seg[i] = byte(i*7 + n)
		}
		seg[16], seg[17] = 0, 0
		want := tcpfsm.Checksum(v6a, v6b, seg)
		if got := Checksum(seg, PseudoHeaderSum(v6a, v6b, ProtoTCP, n)); got != want {
			t.Errorf("len %d: %#04x, tcpfsm %#04x", n, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, fr := range pcapFrames(f, "../testdata/linux-ipv4.pcap")[:3] {
		f.Add(fr)
	}
	for _, fr := range pcapFrames(f, "../testdata/linux-ipv6.pcap")[:3] {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := Parse(b, &p); err != nil {
			return
		}
		if p.HeaderLen+len(p.Payload) > len(b) || (p.Version != 4 && p.Version != 6) || !p.Src.IsValid() {
			t.Fatalf("inconsistent %+v from %d bytes", p, len(b))
		}
		var u UDP
		_ = ParseUDP(p.Payload, p.Src, p.Dst, &u)
		var m ICMP
		if ParseICMP(p.Payload, p.Version == 6, p.Src, p.Dst, &m) == nil {
			var q Quote
			_ = ParseQuote(m.Body, &q)
			_, _ = m.PathMTU(p.Version == 6, q.TotalLen)
		}
	})
}

func FuzzParseQuote(f *testing.F) {
	f.Add(pcapFrames(f, "../testdata/linux-ipv4.pcap")[0])
	f.Add(pcapFrames(f, "../testdata/linux-ipv6.pcap")[0][:48])
	f.Fuzz(func(t *testing.T, b []byte) {
		var q Quote
		err := ParseQuote(b, &q)
		if err == nil && (len(b) < 28 || q.Src.Is6() && len(b) < 48) {
			t.Fatalf("quote from %d bytes", len(b))
		}
	})
}

func FuzzParseUDP(f *testing.F) {
	buf := make([]byte, 13)
	copy(buf[8:], "query")
	_, _ = PutUDP(buf, v4a, v4b, 1, 53, 5)
	f.Add(buf, true)
	f.Fuzz(func(t *testing.T, b []byte, v4 bool) {
		src, dst := v6a, v6b
		if v4 {
			src, dst = v4a, v4b
		}
		var u UDP
		if err := ParseUDP(b, src, dst, &u); err == nil && len(u.Payload)+8 > len(b) {
			t.Fatalf("payload %d from %d bytes", len(u.Payload), len(b))
		}
	})
}

func TestPseudoHeaderSumMixedFamilies(t *testing.T) {
	// RFC 8200 section 8.1: an IPv6 packet may carry an IPv4-mapped
	// address; the pseudo-header then holds both addresses' 16 bytes, and
	// nothing panics. Two mapped addresses count as IPv4.
	mapped := netip.MustParseAddr("::ffff:10.0.0.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	want := uint64(0x0000 + 0xffff + 0x0a00 + 0x0001 + 0x2001 + 0x0db8 + 0x0001 + ProtoUDP + 8)
	if got := PseudoHeaderSum(mapped, v6, ProtoUDP, 8); got != uint32(fold(want)) {
		t.Fatalf("mapped and IPv6: %#x, want %#x", got, fold(want))
	}
	v4 := PseudoHeaderSum(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), ProtoUDP, 8)
	if got := PseudoHeaderSum(mapped, netip.MustParseAddr("::ffff:10.0.0.2"), ProtoUDP, 8); got != v4 {
		t.Fatalf("two mapped addresses: %#x, want IPv4's %#x", got, v4)
	}
	_ = PseudoHeaderSum(netip.Addr{}, v6, ProtoUDP, 8) // must not panic
}
