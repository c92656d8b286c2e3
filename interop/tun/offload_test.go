//go:build linux

package tun

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// TestLargeSegmentsFromTheKernel sends 10 MiB from a kernel TCP client
// to a tcpfsm server over a device with receive offload: the kernel
// hands over super-segments of several MSS whole, with partial
// checksums, and the bytes arrive intact (by SHA-256) with none taken
// for a bad checksum. The Host reads them in batches, as verified
// segments; and one at a time through ReadSegment, which completes
// their checksums.
func TestLargeSegmentsFromTheKernel(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	t.Run("batched", func(t *testing.T) { receiveFromKernel(t, func(d *Device) host.Link { return d }) })
	t.Run("one at a time", func(t *testing.T) { receiveFromKernel(t, func(d *Device) host.Link { return oneAtATime{d} }) })
}

// oneAtATime is a Device as a plain host.LargeLink, without ReadSegments.
type oneAtATime struct{ d *Device }

func (l oneAtATime) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	return l.d.ReadSegment(buf)
}
func (l oneAtATime) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	return l.d.WriteSegment(tcp, src, dst)
}
func (l oneAtATime) Close() error        { return l.d.Close() }
func (l oneAtATime) LargeSegments() bool { return l.d.LargeSegments() }
func (l oneAtATime) WriteLargeSegment(tcp []byte, segSize int, src, dst netip.Addr) error {
	return l.d.WriteLargeSegment(tcp, segSize, src, dst)
}

// receiveFromKernel runs TestLargeSegmentsFromTheKernel's transfer on a
// host over link(device).
func receiveFromKernel(t *testing.T, link func(*Device) host.Link) {
	d, err := OpenLarge("tcpfsm0")
	if err != nil {
		t.Log("SKIP-NETNS", err)
		t.FailNow()
	}
	if !d.ReceiveOffload() {
		t.Fatal("OpenLarge: no receive offload")
	}
	if err := d.Configure(kernelPrefix); err != nil {
		t.Fatal(err)
	}
	h, err := host.New(link(d), host.Config{Addrs: []netip.Addr{ourAddr}, Stack: tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20,
		Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ln, err := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	type received struct {
		n   int64
		sum [sha256.Size]byte
		err error
	}
	got := make(chan received, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- received{err: err}
			return
		}
		defer c.Close()
		s := sha256.New()
		n, err := io.Copy(s, c)
		got <- received{n: n, sum: [sha256.Size]byte(s.Sum(nil)), err: err}
	}()

	data := peertest.Payload(10 << 20)
	c, err := net.DialTimeout("tcp", "10.7.0.2:80", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("tcpfsm's read: %v after %d bytes", r.err, r.n)
	}
	if r.n != int64(len(data)) || r.sum != sha256.Sum256(data) {
		t.Fatalf("tcpfsm read %d bytes, SHA-256 %x; want %d, %x", r.n, r.sum, len(data), sha256.Sum256(data))
	}
	st := h.Stats()
	t.Logf("%d segments in: %d super-segments longer than the MSS, %d with offloaded checksums, %d bad headers, %d bad checksums",
		st.SegmentsIn, d.LargeReads.Load(), d.OffloadReads.Load(), d.BadHeaders.Load(), st.BadChecksum)
	if d.LargeReads.Load() == 0 {
		t.Errorf("no super-segment longer than the MSS arrived")
	}
	if d.OffloadReads.Load() == 0 {
		t.Errorf("no segment came with an offloaded checksum")
	}
	if st.BadChecksum != 0 || d.BadHeaders.Load() != 0 {
		t.Errorf("%d segments dropped for a bad checksum, %d for a bad header", st.BadChecksum, d.BadHeaders.Load())
	}
}

// vnetPacket builds a packet as a device with virtio-net headers reads
// it: the header (flags, GSO type and size, checksum start and offset)
// and an IPv4 packet carrying a TCP segment of payload bytes.
func vnetPacket(flags, gso uint8, gsoSize, csumStart, csumOffset uint16, payload int) []byte {
	p := make([]byte, vnetHdrLen+20+20+payload)
	p[0], p[1] = flags, gso
	binary.LittleEndian.PutUint16(p[2:], 40)
	binary.LittleEndian.PutUint16(p[4:], gsoSize)
	binary.LittleEndian.PutUint16(p[6:], csumStart)
	binary.LittleEndian.PutUint16(p[8:], csumOffset)
	ip := p[vnetHdrLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8], ip[9] = 64, tcpfsm.ProtocolTCP
	copy(ip[12:], []byte{10, 7, 0, 1, 10, 7, 0, 2})
	tcp := ip[20:]
	tcp[12] = 5 << 4
	tcp[13] = byte(tcpfsm.FlagACK)
	return p
}

// TestVirtioHeaders reads packets with each kind of virtio-net header:
// what the kernel sends with offload is taken, verified or not as its
// flags say; a header that makes no sense is dropped and counted.
func TestVirtioHeaders(t *testing.T) {
	for _, tc := range []struct {
		name             string
		p                []byte
		ok, verified     bool
		large, badHeader bool
	}{
		{name: "no offload", p: vnetPacket(0, vnetGSONone, 0, 0, 0, 100), ok: true},
		{name: "partial checksum", p: vnetPacket(vnetNeedsCS, vnetGSONone, 0, 20, 16, 100), ok: true, verified: true},
		{name: "checked by the kernel", p: vnetPacket(vnetDataValid, vnetGSONone, 0, 0, 0, 100), ok: true, verified: true},
		{name: "super-segment", p: vnetPacket(vnetNeedsCS, vnetTCPv4, 1448, 20, 16, 3*1448), ok: true, verified: true, large: true},
		{name: "super-segment with ECN", p: vnetPacket(vnetNeedsCS, vnetTCPv4|vnetGSOECN, 1448, 20, 16, 3*1448), ok: true, verified: true, large: true},
		{name: "super-segment of one part", p: vnetPacket(vnetNeedsCS, vnetTCPv4, 1448, 20, 16, 1000), ok: true, verified: true},
		{name: "unknown flag", p: vnetPacket(0x04, vnetGSONone, 0, 0, 0, 100), badHeader: true},
		{name: "IPv6 super-segment", p: vnetPacket(vnetNeedsCS, 4, 1448, 20, 16, 3*1448), badHeader: true},
		{name: "UDP super-segment", p: vnetPacket(vnetNeedsCS, 3, 1448, 20, 16, 3*1448), badHeader: true},
		{name: "checksum elsewhere", p: vnetPacket(vnetNeedsCS, vnetGSONone, 0, 20, 6, 100), badHeader: true},
		{name: "checksum start elsewhere", p: vnetPacket(vnetNeedsCS, vnetGSONone, 0, 24, 16, 100), badHeader: true},
		{name: "super-segment without a partial checksum", p: vnetPacket(0, vnetTCPv4, 1448, 0, 0, 3*1448), badHeader: true},
		{name: "super-segment without a part size", p: vnetPacket(vnetNeedsCS, vnetTCPv4, 0, 20, 16, 3*1448), badHeader: true},
		{name: "short header", p: make([]byte, vnetHdrLen-1), badHeader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Device{vnet: true, offload: true}
			off, n, src, dst, verified, ok := d.packet(tc.p)
			if ok != tc.ok || verified != tc.verified {
				t.Fatalf("ok %v verified %v, want %v %v", ok, verified, tc.ok, tc.verified)
			}
			if got := d.LargeReads.Load() != 0; got != tc.large {
				t.Errorf("counted as larger than the MSS: %v, want %v", got, tc.large)
			}
			if got := d.BadHeaders.Load() != 0; got != tc.badHeader {
				t.Errorf("counted as a bad header: %v, want %v", got, tc.badHeader)
			}
			if !ok {
				return
			}
			if off != vnetHdrLen+20 || n != len(tc.p)-off {
				t.Errorf("segment at %d, %d bytes; want %d, %d", off, n, vnetHdrLen+20, len(tc.p)-vnetHdrLen-20)
			}
			if src != netip.MustParseAddr("10.7.0.1") || dst != netip.MustParseAddr("10.7.0.2") {
				t.Errorf("addresses %v -> %v", src, dst)
			}
		})
	}
}

// FuzzVirtioPacket reads arbitrary bytes as a packet with a virtio-net
// header: nothing panics, and a segment taken lies inside the packet.
func FuzzVirtioPacket(f *testing.F) {
	f.Add(vnetPacket(vnetNeedsCS, vnetTCPv4, 1448, 20, 16, 3*1448))
	f.Add(vnetPacket(vnetDataValid, vnetGSONone, 0, 0, 0, 10))
	f.Add(vnetPacket(0, vnetGSONone, 0, 0, 0, 0))
	rng := rand.New(rand.NewPCG(7, 8))
	for range 32 {
		p := vnetPacket(vnetNeedsCS, vnetTCPv4, 1448, 20, 16, rng.IntN(200))
		p[rng.IntN(len(p))] ^= byte(1 + rng.IntN(255))
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		d := &Device{vnet: true, offload: true}
		off, n, _, _, verified, ok := d.packet(bytes.Clone(p))
		if !ok {
			if verified {
				t.Fatal("verified but not taken")
			}
			return
		}
		if off < vnetHdrLen || n < 0 || off+n > len(p) {
			t.Fatalf("segment at %d, %d bytes, in a packet of %d", off, n, len(p))
		}
		if verified && n < 20 {
			t.Fatalf("verified segment of %d bytes", n)
		}
	})
}
