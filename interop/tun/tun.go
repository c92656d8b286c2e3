//go:build linux

// Package tun carries tcpfsm over a Linux TUN device, so the kernel's own
// TCP can talk to it: a host.Link that reads and writes raw IPv4 packets.
// It is the interop host against the kernel, and an example of running
// tcpfsm as a userspace stack.
package tun

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
)

const (
	iffTUN      = 0x0001
	iffNoPI     = 0x1000
	iffVnetHdr  = 0x4000
	tunSetIff   = 0x400454ca
	vnetHdrLen  = 10 // struct virtio_net_hdr
	vnetNeedsCS = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetTCPv4   = 1  // VIRTIO_NET_HDR_GSO_TCPV4
)

// Device is an open TUN device: a host.Link carrying IPv4 TCP packets.
type Device struct {
	Name string
	f    *os.File
	wbuf []byte
	mu   sync.Mutex

	// WriteErrors counts the packets the kernel refused.
	WriteErrors atomic.Uint64
	// LargeWrites counts the large segments written whole.
	LargeWrites atomic.Uint64

	// vnet says every packet read or written starts with a virtio-net
	// header (IFF_VNET_HDR), so large segments can be written whole.
	vnet bool

	// Loss, if set, drops that fraction of packets in each direction
	// (the kernel has no netem here, so the test host injects loss).
	Loss float64
	rng  *rand.Rand
}

// Open creates the TUN device name (IFF_TUN|IFF_NO_PI). The file is
// wrapped with os.NewFile only after TUNSETIFF, or Go's poller never
// wakes for it.
func Open(name string) (*Device, error) { return open(name, false) }

// OpenLarge is Open with a virtio-net header on every packet
// (IFF_VNET_HDR): the Device is then a host.LargeLink, and writes a
// large segment whole for the kernel to cut into parts (generic
// segmentation offload), one system call for up to 64 KiB.
func OpenLarge(name string) (*Device, error) { return open(name, true) }

func open(name string, vnet bool) (*Device, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var ifr [40]byte
	copy(ifr[:15], name)
	flags := uint16(iffTUN | iffNoPI)
	if vnet {
		flags |= iffVnetHdr
	}
	binary.LittleEndian.PutUint16(ifr[16:], flags)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, e
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &Device{Name: name, f: os.NewFile(uintptr(fd), "/dev/net/tun"), wbuf: make([]byte, 65536+vnetHdrLen),
		rng: rand.New(rand.NewPCG(1, 2)), vnet: vnet}, nil
}

// Configure gives the kernel's side of the device the address kernel
// (with the given prefix) and brings the device and lo up, with ip(8).
func (d *Device) Configure(kernel netip.Prefix) error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", kernel.String(), "dev", d.Name},
		{"link", "set", d.Name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return errors.New("ip " + args[0] + ": " + err.Error() + ": " + string(out))
		}
	}
	return nil
}

func (d *Device) lose() bool {
	if d.Loss == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Float64() < d.Loss
}

// ReadSegment returns the next TCP segment the kernel sends.
func (d *Device) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	for {
		n, err := d.f.Read(buf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		if m, src, dst, ok := d.segment(buf[:n]); ok {
			return m, src, dst, nil
		} // else not IPv4 TCP (IPv6 router solicitations and the like), or lost
	}
}

// maxPacket is the largest packet a read from the device can return.
const maxPacket = 65535

// ReadSegments reads the segments that have arrived into buf, one after
// another, as many as segs and buf hold, waiting only for the first
// (host.BatchLink): one wake-up for a burst.
func (d *Device) ReadSegments(buf []byte, segs []host.SegmentInfo) (int, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	k, off := 0, 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for k < len(segs) && len(buf)-off >= maxPacket {
			n, err := syscall.Read(int(fd), buf[off:off+maxPacket])
			if err == syscall.EAGAIN {
				return k > 0 // nothing yet: wait for the device to be readable
			}
			if err != nil {
				rerr = err
				return true
			}
			if m, src, dst, ok := d.segment(buf[off : off+n]); ok {
				segs[k] = host.SegmentInfo{Off: off, N: m, Src: src, Dst: dst}
				k++
				off += m
			}
		}
		return true
	})
	if k > 0 {
		return k, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return 0, err
}

// segment moves the TCP segment of the IPv4 packet in p to its start and
// returns its length and addresses; ok is false for anything else, or a
// packet the device's Loss drops.
func (d *Device) segment(p []byte) (n int, src, dst netip.Addr, ok bool) {
	if d.vnet {
		// The kernel computed the checksums (no offload was offered to
		// it), so the header says nothing this side needs; a packet it
		// would have us segment or checksum is not expected.
		if len(p) < vnetHdrLen || p[0] != 0 || p[1] != 0 {
			return 0, src, dst, false
		}
		m, src, dst, ok := d.ipv4(p[vnetHdrLen:])
		if ok {
			copy(p, p[vnetHdrLen:vnetHdrLen+m])
		}
		return m, src, dst, ok
	}
	return d.ipv4(p)
}

// ipv4 moves the TCP segment of the IPv4 packet p to its start.
func (d *Device) ipv4(p []byte) (n int, src, dst netip.Addr, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != tcpfsm.ProtocolTCP {
		return 0, src, dst, false
	}
	ihl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl || d.lose() {
		return 0, src, dst, false
	}
	src = netip.AddrFrom4([4]byte(p[12:16]))
	dst = netip.AddrFrom4([4]byte(p[16:20]))
	return copy(p, p[ihl:total]), src, dst, true
}

// WriteSegment sends a TCP segment to the kernel in an IPv4 packet.
func (d *Device) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	if d.lose() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.wbuf[:0]
	if d.vnet {
		var z [vnetHdrLen]byte
		b = append(b, z[:]...)
	}
	return d.write(b, tcp, src, dst)
}

// LargeSegments reports whether the Device takes large segments: one
// from OpenLarge does (host.LargeLink).
func (d *Device) LargeSegments() bool { return d.vnet }

// WriteLargeSegment writes a large TCP segment whole, for the kernel to
// cut into parts of segSize payload bytes (host.LargeLink). It needs a
// Device from OpenLarge.
func (d *Device) WriteLargeSegment(tcp []byte, segSize int, src, dst netip.Addr) error {
	if !d.vnet {
		return errors.New("tun: large segments need OpenLarge")
	}
	if d.lose() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	hl := int(tcp[12]>>4) * 4
	var h [vnetHdrLen]byte
	h[0], h[1] = vnetNeedsCS, vnetTCPv4
	binary.LittleEndian.PutUint16(h[2:], uint16(20+hl))   // hdr_len
	binary.LittleEndian.PutUint16(h[4:], uint16(segSize)) // gso_size
	binary.LittleEndian.PutUint16(h[6:], 20)              // csum_start: the TCP header
	binary.LittleEndian.PutUint16(h[8:], 16)              // csum_offset: its checksum
	b := append(d.wbuf[:0], h[:]...)
	// With NEEDS_CSUM the checksum field holds the pseudo-header's sum,
	// folded and not complemented; the kernel adds each part's bytes.
	s, t := src.As4(), dst.As4()
	sum := uint32(binary.BigEndian.Uint16(s[:2])) + uint32(binary.BigEndian.Uint16(s[2:])) +
		uint32(binary.BigEndian.Uint16(t[:2])) + uint32(binary.BigEndian.Uint16(t[2:])) +
		uint32(tcpfsm.ProtocolTCP) + uint32(len(tcp))
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(tcp[16:], uint16(sum))
	d.LargeWrites.Add(1)
	return d.write(b, tcp, src, dst)
}

// write appends the IPv4 header and tcp to b and writes the packet.
func (d *Device) write(b, tcp []byte, src, dst netip.Addr) error {
	total := 20 + len(tcp)
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, tcpfsm.ProtocolTCP, 0, 0)
	s, t := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, t[:]...)
	ip := b[len(b)-20:]
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	b = append(b, tcp...)
	_, err := d.f.Write(b)
	if err != nil {
		d.WriteErrors.Add(1)
	}
	return err
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }
