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
	iffTUN     = 0x0001
	iffNoPI    = 0x1000
	iffVnetHdr = 0x4000
	tunSetIff  = 0x400454ca
	// TUNSETOFFLOAD and its flags: what the device takes from the
	// kernel unfinished (checksums, segments to cut).
	tunSetOffload = 0x400454d0
	tunFCsum      = 0x01 // TUN_F_CSUM: partial checksums
	tunFTSO4      = 0x02 // TUN_F_TSO4: IPv4 TCP super-segments

	vnetHdrLen    = 10   // struct virtio_net_hdr
	vnetNeedsCS   = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetDataValid = 2    // VIRTIO_NET_HDR_F_DATA_VALID
	vnetGSONone   = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetTCPv4     = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOECN    = 0x80 // VIRTIO_NET_HDR_GSO_ECN, or'ed into the type
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
	// LargeReads counts the segments read whole that the kernel would
	// have cut into several (a GSO super-segment whose payload is longer
	// than its gso_size, the MSS): only with receive offload.
	LargeReads atomic.Uint64
	// OffloadReads counts the segments read whose checksum the
	// virtio-net header vouched for (NEEDS_CSUM: the kernel left it
	// partial; DATA_VALID: it checked it), which the Host does not sum.
	OffloadReads atomic.Uint64
	// BadHeaders counts the packets dropped for a virtio-net header
	// that makes no sense for them (an unknown flag or GSO type, a
	// checksum position that is not the TCP checksum's).
	BadHeaders atomic.Uint64

	// vnet says every packet read or written starts with a virtio-net
	// header (IFF_VNET_HDR), so large segments can be written whole.
	vnet bool
	// offload says the kernel may hand over super-segments and partial
	// checksums (TUNSETOFFLOAD with TUN_F_CSUM|TUN_F_TSO4).
	offload bool
	rmu     sync.Mutex
	rbuf    []byte // ReadSegment's buffer, for a packet with its header

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
// (IFF_VNET_HDR) and offloads both ways. The Device is then a
// host.LargeLink, and writes a large segment whole for the kernel to cut
// into parts (generic segmentation offload), one system call for up to
// 64 KiB. And the kernel does the same towards it (TUNSETOFFLOAD with
// TUN_F_CSUM|TUN_F_TSO4): its TCP hands over IPv4 TCP super-segments of
// up to 64 KiB whole, and leaves their checksums, and those of ordinary
// segments, partial; ReadSegments marks such segments
// host.SegmentInfo.Verified, so the Host does not sum them.
func OpenLarge(name string) (*Device, error) {
	return OpenWith(name, Options{Large: true, ReceiveOffload: true})
}

// Options say how OpenWith opens a device.
type Options struct {
	// Large puts a virtio-net header on every packet, so the device
	// writes large segments whole (host.LargeLink).
	Large bool
	// ReceiveOffload, with Large, lets the kernel hand over
	// super-segments and partial checksums (TUNSETOFFLOAD).
	ReceiveOffload bool
}

// OpenWith is Open with the options o: OpenWith(name, Options{}) is
// Open(name), and OpenLarge sets both options.
func OpenWith(name string, o Options) (*Device, error) {
	d, err := open(name, o.Large)
	if err != nil || !o.Large || !o.ReceiveOffload {
		return d, err
	}
	rc, err := d.f.SyscallConn()
	if err != nil {
		d.Close()
		return nil, err
	}
	var e syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, e = syscall.Syscall(syscall.SYS_IOCTL, fd, tunSetOffload, tunFCsum|tunFTSO4)
	}); err != nil {
		d.Close()
		return nil, err
	}
	if e != 0 {
		d.Close()
		return nil, e
	}
	d.offload = true
	return d, nil
}

// ReceiveOffload reports whether the kernel may hand the Device
// super-segments and partial checksums (OpenLarge).
func (d *Device) ReceiveOffload() bool { return d.offload }

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

// ReadSegment returns the next TCP segment the kernel sends. A segment
// the kernel left with a partial checksum (receive offload) gets its
// full checksum here, as a Link's segments must have it; a Host reads
// through ReadSegments instead, which spares that sum.
func (d *Device) ReadSegment(buf []byte) (int, netip.Addr, netip.Addr, error) {
	if d.vnet {
		return d.readVnet(buf)
	}
	for {
		n, err := d.f.Read(buf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		if off, m, src, dst, _, ok := d.packet(buf[:n]); ok {
			return copy(buf, buf[off:off+m]), src, dst, nil
		} // else not IPv4 TCP (IPv6 router solicitations and the like), or lost
	}
}

// readVnet is ReadSegment for a device with virtio-net headers: it
// reads into a buffer that holds the largest packet and its header.
func (d *Device) readVnet(buf []byte) (int, netip.Addr, netip.Addr, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.rbuf == nil {
		d.rbuf = make([]byte, maxRead)
	}
	for {
		n, err := d.f.Read(d.rbuf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		off, m, src, dst, _, ok := d.packet(d.rbuf[:n])
		if !ok {
			continue
		}
		if m > len(buf) {
			continue // larger than the caller takes: lost, as a truncated read would be
		}
		seg := buf[:copy(buf, d.rbuf[off:off+m])]
		if d.rbuf[0]&vnetNeedsCS != 0 {
			_ = tcpfsm.SetChecksum(seg, src, dst)
		}
		return m, src, dst, nil
	}
}

// maxPacket is the largest IP packet a read from the device can return,
// and maxRead the most a read returns: that packet and a virtio-net
// header.
const (
	maxPacket = 65535
	maxRead   = maxPacket + vnetHdrLen
)

// ReadSegments reads the segments that have arrived into buf, as many as
// segs and buf hold, waiting only for the first (host.BatchLink): one
// wake-up for a burst. Each packet stays where it was read; segs points
// at its TCP segment.
func (d *Device) ReadSegments(buf []byte, segs []host.SegmentInfo) (int, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	k, off := 0, 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for k < len(segs) && len(buf)-off >= maxRead {
			n, err := syscall.Read(int(fd), buf[off:off+maxRead])
			if err == syscall.EAGAIN {
				return k > 0 // nothing yet: wait for the device to be readable
			}
			if err != nil {
				rerr = err
				return true
			}
			if n <= 0 {
				continue
			}
			if at, m, src, dst, verified, ok := d.packet(buf[off : off+n]); ok {
				segs[k] = host.SegmentInfo{Off: off + at, N: m, Src: src, Dst: dst, Verified: verified}
				k++
				off += at + m
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

// packet finds the TCP segment in p, a packet as read from the device:
// it is p[off:off+n], from src to dst. verified says the virtio-net
// header vouches for its checksum. ok is false for anything but IPv4
// TCP, for a packet with a header that makes no sense (counted in
// BadHeaders), and for a packet the device's Loss drops.
func (d *Device) packet(p []byte) (off, n int, src, dst netip.Addr, verified, ok bool) {
	if !d.vnet {
		off, n, src, dst, ok = d.ipv4(p)
		return off, n, src, dst, false, ok
	}
	if len(p) < vnetHdrLen {
		d.BadHeaders.Add(1)
		return 0, 0, src, dst, false, false
	}
	h, ip := p[:vnetHdrLen], p[vnetHdrLen:]
	flags, gso := h[0], h[1]&^vnetGSOECN
	gsoSize := int(binary.LittleEndian.Uint16(h[4:]))
	csumStart := int(binary.LittleEndian.Uint16(h[6:]))
	csumOffset := int(binary.LittleEndian.Uint16(h[8:]))
	if flags&^(vnetNeedsCS|vnetDataValid) != 0 || (gso != vnetGSONone && gso != vnetTCPv4) {
		// Unknown flags, or a type this IPv4 TCP device never asked for.
		d.BadHeaders.Add(1)
		return 0, 0, src, dst, false, false
	}
	if gso == vnetGSONone && flags == 0 {
		off, n, src, dst, ok = d.ipv4(ip)
		return vnetHdrLen + off, n, src, dst, false, ok
	}
	if !isIPv4TCP(ip) {
		if gso != vnetGSONone {
			d.BadHeaders.Add(1) // a TCPv4 super-segment that is not one
		}
		return 0, 0, src, dst, false, false // else not ours, as without a header
	}
	ihl := int(ip[0]&0xf) * 4
	if flags&vnetNeedsCS != 0 && (csumStart != ihl || csumOffset != 16) ||
		gso == vnetTCPv4 && (flags&vnetNeedsCS == 0 || gsoSize == 0) {
		// The partial checksum is not the TCP checksum's, or a
		// super-segment comes without one or without a part size.
		d.BadHeaders.Add(1)
		return 0, 0, src, dst, false, false
	}
	off, n, src, dst, ok = d.ipv4(ip)
	if !ok {
		return 0, 0, src, dst, false, false
	}
	if n < 20 || int(ip[ihl+12]>>4)*4 > n {
		d.BadHeaders.Add(1) // no room for the TCP header, nor the checksum the header points at
		return 0, 0, src, dst, false, false
	}
	if gso == vnetTCPv4 && n-int(ip[ihl+12]>>4)*4 > gsoSize {
		d.LargeReads.Add(1)
	}
	d.OffloadReads.Add(1)
	return vnetHdrLen + off, n, src, dst, true, true
}

// isIPv4TCP reports whether p starts like an IPv4 packet carrying TCP.
func isIPv4TCP(p []byte) bool {
	return len(p) >= 20 && p[0]>>4 == 4 && p[9] == tcpfsm.ProtocolTCP
}

// ipv4 finds the TCP segment of the IPv4 packet p: p[off:off+n].
func (d *Device) ipv4(p []byte) (off, n int, src, dst netip.Addr, ok bool) {
	if !isIPv4TCP(p) {
		return 0, 0, src, dst, false
	}
	ihl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl || d.lose() {
		return 0, 0, src, dst, false
	}
	src = netip.AddrFrom4([4]byte(p[12:16]))
	dst = netip.AddrFrom4([4]byte(p[16:20]))
	return ihl, total - ihl, src, dst, true
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
