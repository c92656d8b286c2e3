//go:build linux

// Package tun carries tcpfsm over a Linux TUN device, so the kernel's own
// TCP can talk to it: a host.Link that reads and writes raw IPv4 packets.
// It is the interop host of issue 7, and an example of running tcpfsm as a
// userspace stack.
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
	iffTUN    = 0x0001
	iffNoPI   = 0x1000
	tunSetIff = 0x400454ca
)

// Device is an open TUN device: a host.Link carrying IPv4 TCP packets.
type Device struct {
	Name string
	f    *os.File
	wbuf []byte
	mu   sync.Mutex

	// WriteErrors counts the packets the kernel refused.
	WriteErrors atomic.Uint64

	// Loss, if set, drops that fraction of packets in each direction
	// (the kernel has no netem here, so the test host injects loss).
	Loss float64
	rng  *rand.Rand
}

// Open creates the TUN device name (IFF_TUN|IFF_NO_PI). The file is
// wrapped with os.NewFile only after TUNSETIFF, or Go's poller never
// wakes for it.
func Open(name string) (*Device, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var ifr [40]byte
	copy(ifr[:15], name)
	binary.LittleEndian.PutUint16(ifr[16:], iffTUN|iffNoPI)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, e
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &Device{Name: name, f: os.NewFile(uintptr(fd), "/dev/net/tun"), wbuf: make([]byte, 65536),
		rng: rand.New(rand.NewPCG(1, 2))}, nil
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
	total := 20 + len(tcp)
	b := append(d.wbuf[:0], 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, tcpfsm.ProtocolTCP, 0, 0)
	s, t := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, t[:]...)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	b = append(b, tcp...)
	_, err := d.f.Write(b)
	if err != nil {
		d.WriteErrors.Add(1)
	}
	return err
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }
