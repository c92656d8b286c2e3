// Package gvisor joins tcpfsm to gVisor's netstack in one process: a
// host.Link whose other end is a netstack NIC (a channel link endpoint),
// so tcpfsm and a TCP implementation nobody here wrote exchange raw IPv4
// packets. It is the in-process interop peer.
package gvisor

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
)

// Peer is a gVisor netstack with one NIC at Addr, and the Link that
// carries tcpfsm's packets to and from it.
type Peer struct {
	Stack *stack.Stack
	Addr  netip.Addr
	ch    *channel.Endpoint
	ctx   context.Context
	stop  context.CancelFunc

	mu   sync.Mutex
	rng  *rand.Rand
	Loss float64 // fraction of packets dropped each way (no netem: the link drops)
	// Reorder is the fraction of packets held back each way and delivered
	// after the next one, or toward tcpfsm as soon as netstack has nothing
	// to send, toward netstack after heldFor if nothing follows.
	Reorder float64
	buf     []byte
	heldIn  []byte  // an IPv4 packet toward netstack, held back (under mu)
	heldOut *forged // a segment toward tcpfsm, held back (read loop only)
	nextOut *forged // the held segment, due on the next ReadSegment

	injected chan forged   // segments an off-path attacker sends toward tcpfsm
	written  chan struct{} // netstack queued a packet (capacity 1: a doorbell)

	capture *Capture // nil unless the Peer was made by NewPeerWith with one
}

// WriteNotify implements channel.Notification: it rings the doorbell, so
// ReadSegment waits for netstack's packets and injected ones at once.
func (p *Peer) WriteNotify() {
	p.capture.stampQueued()
	select {
	case p.written <- struct{}{}:
	default:
	}
}

type forged struct {
	seg      []byte
	src, dst netip.Addr
}

// InjectToTcpfsm delivers seg to tcpfsm as if it came from src: the
// off-path attacker's way in.
func (p *Peer) InjectToTcpfsm(seg []byte, src, dst netip.Addr) {
	select {
	case p.injected <- forged{append([]byte(nil), seg...), src, dst}:
	case <-p.ctx.Done():
	}
}

// NewPeer makes a netstack at addr with SACK on (it is off by default).
// Its random sources (the one behind ISNs, ports and jitter, and the
// "secure" one) are seeded from addr, so a run's choices repeat. Its
// clock stays the real one: netstack processes segments on its own
// goroutines, so a manual clock could not make the interleaving repeat,
// and its timers must run while those goroutines work.
func NewPeer(addr netip.Addr) (*Peer, error) { return NewPeerWith(addr, nil) }

// NewPeerWith is NewPeer recording into c, when c is not nil, every
// segment that crosses the link and netstack's sender state after each
// segment it processes (through its TCP probe, on the same Reno
// congestion control tcp.NewProtocol uses).
func NewPeerWith(addr netip.Addr, c *Capture) (*Peer, error) {
	var probe tcp.TCPProbeFunc
	if c != nil {
		probe = c.probe
	}
	s, ch, err := newNetstack(addr, nil, probe)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Peer{Stack: s, Addr: addr, ch: ch, ctx: ctx, stop: stop, rng: rand.New(rand.NewPCG(7, 8)),
		buf: make([]byte, 0, 65536), injected: make(chan forged, 64), written: make(chan struct{}, 1),
		capture: c}
	ch.AddNotify(p)
	return p, nil
}

// newNetstack makes the netstack of NewPeer: one NIC at addr (a channel
// link endpoint), SACK on, random sources seeded from addr. A nil clock
// is the real one; a non-nil probe is netstack's TCP probe, with the
// Reno congestion control tcp.NewProtocol uses.
func newNetstack(addr netip.Addr, clock tcpip.Clock, probe tcp.TCPProbeFunc) (*stack.Stack, *channel.Endpoint, error) {
	seed := uint64(binary.BigEndian.Uint32(addr.AsSlice()))
	tcpProto := tcp.NewProtocol
	if probe != nil {
		tcpProto = tcp.NewProtocolProbe(probe)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcpProto},
		RandSource:         &lockedSource{src: rand.NewPCG(seed, 1)},
		SecureRNG:          &lockedReader{r: rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 31: 7})},
		Clock:              clock,
	})
	ch := channel.New(4096, 1500, "")
	if err := s.CreateNIC(1, ch); err != nil {
		return nil, nil, errors.New(err.String())
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(addr.As4()).WithPrefix()}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		return nil, nil, errors.New(err.String())
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, nil, errors.New(err.String())
	}
	return s, ch, nil
}

// lockedSource is a seeded math/rand Source safe for netstack's
// concurrent use.
type lockedSource struct {
	mu  sync.Mutex
	src *rand.PCG
}

func (l *lockedSource) Int63() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.src.Uint64() >> 1)
}

func (l *lockedSource) Seed(int64) {}

// lockedReader is a seeded byte stream standing in for crypto/rand.
type lockedReader struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(b)
}

// Full returns the netstack address of port.
func (p *Peer) Full(port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(p.Addr.As4()), Port: port}
}

func (p *Peer) lose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chanceLocked(p.Loss)
}

func (p *Peer) chanceLocked(f float64) bool { return f > 0 && p.rng.Float64() < f }

// ReadSegment returns the next TCP segment netstack sends.
func (p *Peer) ReadSegment(b []byte) (int, netip.Addr, netip.Addr, error) {
	n, src, dst, err := p.readSegment(b)
	if err == nil {
		p.capture.add(ToTcpfsm, Delivered, b[:n])
	}
	return n, src, dst, err
}

func (p *Peer) readSegment(b []byte) (int, netip.Addr, netip.Addr, error) {
	for {
		if f := p.nextOut; f != nil {
			p.nextOut = nil
			return copy(b, f.seg), f.src, f.dst, nil
		}
		select {
		case f := <-p.injected:
			return copy(b, f.seg), f.src, f.dst, nil
		default:
		}
		pkt := p.ch.Read()
		if pkt == nil {
			// Nothing follows a held packet: deliver it now, a
			// little late, rather than after a retransmission
			// timeout.
			if f := p.heldOut; f != nil {
				p.heldOut = nil
				return copy(b, f.seg), f.src, f.dst, nil
			}
			p.mu.Lock()
			held := p.heldIn
			p.heldIn = nil
			p.mu.Unlock()
			if held != nil {
				p.inject(held)
				continue
			}
			select {
			case f := <-p.injected:
				return copy(b, f.seg), f.src, f.dst, nil
			case <-p.written:
				continue
			case <-p.ctx.Done():
				return 0, netip.Addr{}, netip.Addr{}, net.ErrClosed
			}
		}
		var queuedAt time.Duration
		if p.capture != nil {
			queuedAt = p.capture.takeQueued()
		}
		v := pkt.ToView()
		raw := v.AsSlice()
		n := copy(b, raw)
		v.Release()
		pkt.DecRef()
		if n < 20 || b[0]>>4 != 4 || b[9] != tcpfsm.ProtocolTCP {
			continue
		}
		ihl, total := int(b[0]&0xf)*4, int(binary.BigEndian.Uint16(b[2:]))
		if total > n || total < ihl {
			continue
		}
		if p.capture != nil {
			p.capture.addAt(queuedAt, ToTcpfsm, Sent, b[ihl:total])
		}
		if p.lose() {
			p.capture.add(ToTcpfsm, Lost, b[ihl:total])
			continue
		}
		src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		m := copy(b, b[ihl:total])
		if p.heldOut != nil { // this one overtakes the held one
			p.nextOut, p.heldOut = p.heldOut, nil
		} else {
			p.mu.Lock()
			hold := p.chanceLocked(p.Reorder)
			p.mu.Unlock()
			if hold {
				p.heldOut = &forged{append([]byte(nil), b[:m]...), src, dst}
				continue
			}
		}
		return m, src, dst, nil
	}
}

// WriteSegment hands netstack a TCP segment in an IPv4 packet.
func (p *Peer) WriteSegment(seg []byte, src, dst netip.Addr) error {
	p.capture.add(ToGVisor, Sent, seg)
	if p.lose() {
		p.capture.add(ToGVisor, Lost, seg)
		return nil
	}
	total := 20 + len(seg)
	b := make([]byte, total)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(total), TTL: 64, Protocol: uint8(tcp.ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[20:], seg)
	p.mu.Lock()
	held := p.heldIn
	p.heldIn = nil
	if held == nil && p.chanceLocked(p.Reorder) {
		p.heldIn = b
		// If nothing follows it soon, it goes late rather than never:
		// a reordered packet, not a lost one.
		ip := b
		time.AfterFunc(heldFor, func() { p.releaseIn(ip) })
		b = nil
	}
	p.mu.Unlock()
	for _, ip := range [][]byte{b, held} { // the held packet after this one
		if ip != nil {
			p.inject(ip)
		}
	}
	return nil
}

// heldFor is how long a packet held back for reordering waits, at most,
// for one to overtake it.
const heldFor = time.Millisecond

// releaseIn delivers the held packet ip toward netstack if it is still
// held.
func (p *Peer) releaseIn(ip []byte) {
	p.mu.Lock()
	held := p.heldIn
	if held == nil || &held[0] != &ip[0] {
		p.mu.Unlock()
		return // delivered already, after the packet that overtook it
	}
	p.heldIn = nil
	p.mu.Unlock()
	p.inject(ip)
}

// inject hands netstack one IPv4 packet.
func (p *Peer) inject(ip []byte) {
	p.capture.add(ToGVisor, Delivered, ip[20:])
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(ip)})
	p.ch.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
}

// Close stops the link and the netstack.
func (p *Peer) Close() error {
	p.stop()
	p.ch.Close()
	p.Stack.Close()
	return nil
}
