// Package ipstack is a userspace network stack for tunnels: whole IPv4
// and IPv6 packets in and out, as a TUN device or a WireGuard peer moves
// them. It hands TCP segments to a TCP (a *tcpstack.Stack, or anything
// with its Input and Output), keeps UDP sockets by port (RFC 768), and
// answers ICMP and ICMPv6 itself: echo requests (RFC 792, RFC 4443
// section 4), port unreachable for UDP (RFC 1122 section 4.1.3.1), and
// "fragmentation needed" and "packet too big" turned into a path-MTU
// update for the TCP connection they quote (RFC 1191, RFC 8201), after
// checking its sequence number (RFC 5927 section 4.1).
//
// Like the rest of tcpfsm it does no I/O, starts no goroutine, reads no
// clock and takes no lock: the caller owns a Stack, passes each arriving
// packet to Input and drains Output into the tunnel. Once its queues
// have their buffers, the IP, UDP and ICMP work allocates nothing per
// packet (TCP's is the TCP layer's). Fragments are counted and dropped (RFC 8900 section
// 3 explains why a tunnel endpoint may: both ends pick packet sizes that
// need none).
package ipstack

import (
	"errors"
	"net/netip"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/ip"
)

// TCP is the TCP layer a Stack serves: *tcpstack.Stack implements it.
// Input takes one arriving segment with its addresses (RFC 9293 section
// 3.10.7); Output writes the next segment to send into buf and returns
// its length, or 0.
type TCP interface {
	Input(tcp []byte, src, dst netip.Addr, now tcpfsm.Time) error
	Output(buf []byte, now tcpfsm.Time) (n int, src, dst netip.Addr)
}

// PathMTUTarget is a TCP that takes path-MTU updates from ICMP
// (RFC 1191 section 6.4, RFC 8201 section 5.2): *tcpstack.Stack is one
// (tcpstack.Stack.PathMTU). A Stack whose TCP is not one ignores those
// messages and counts them in Stats.ICMPIgnored.
type PathMTUTarget interface {
	PathMTU(local, remote netip.AddrPort, seq tcpfsm.Seq, mtu int, now tcpfsm.Time) error
}

// Config configures a Stack.
type Config struct {
	// Addrs are the stack's own addresses. Packets to other addresses
	// are dropped (RFC 1122 section 3.3.4.2: a host does not forward),
	// and UDP sockets and ICMP replies take their source address from
	// them. Empty: every unicast address is the stack's.
	Addrs []netip.Addr
	// TCP receives TCP segments and supplies those to send. Nil: TCP
	// packets are dropped and counted in Stats.NoProtocol.
	TCP TCP
	// MTU is the largest packet the stack builds for UDP and ICMP.
	// Default 1500; at least 1280 (RFC 8200 section 5).
	MTU int
	// TTL is the TTL and Hop Limit of packets the stack builds. Default
	// 64 (RFC 1700, as Linux).
	TTL uint8
	// UDPQueue bounds the datagrams waiting in each UDP socket; more
	// are dropped and counted. Default 64.
	UDPQueue int
	// OutputQueue bounds the UDP and ICMP packets waiting for Output;
	// more are dropped and counted. Default 256.
	OutputQueue int
	// EphemeralLow and EphemeralHigh bound the ports BindUDP picks for
	// port 0. Default 49152 to 65535 (RFC 6335 section 6).
	EphemeralLow, EphemeralHigh uint16
}

// Stats counts what a Stack saw and did.
type Stats struct {
	PacketsIn, PacketsOut uint64
	BadHeader             uint64 // IP header malformed or its checksum wrong (RFC 791, RFC 8200)
	BadChecksum           uint64 // UDP, ICMP or ICMPv6 checksum wrong
	NotForUs              uint64 // destination not one of Config.Addrs, or multicast or broadcast
	Fragments             uint64 // fragments, dropped (RFC 791 section 2.3, RFC 8200 section 4.5)
	NoProtocol            uint64 // no handler for the upper-layer protocol
	UDPIn, UDPOut         uint64
	UDPNoPort             uint64 // datagrams to a port without a socket: answered with port unreachable
	UDPQueueFull          uint64 // datagrams dropped: their socket's queue was full
	EchoReplies           uint64 // echo requests answered (RFC 792, RFC 4443 section 4.2)
	EchoRepliesIn         uint64 // echo replies received (to Ping)
	UnreachableSent       uint64 // port or protocol unreachable sent
	PathMTUUpdates        uint64 // fragmentation needed / packet too big applied to a connection
	ICMPIgnored           uint64 // ICMP messages that changed nothing: stale, unknown or not ours
	OutputDropped         uint64 // UDP or ICMP packets dropped: the output queue was full
}

// Errors of the Stack.
var (
	ErrPortInUse  = errors.New("ipstack: UDP port in use")
	ErrNoPorts    = errors.New("ipstack: no ephemeral UDP port free")
	ErrNoAddress  = errors.New("ipstack: no local address of the destination's family")
	ErrTooLarge   = errors.New("ipstack: datagram larger than the MTU allows")
	ErrClosed     = errors.New("ipstack: socket closed")
	ErrQueueFull  = errors.New("ipstack: output queue full")
	ErrNotOurs    = errors.New("ipstack: packet not for this stack")
	ErrFragment   = errors.New("ipstack: fragment dropped")
	ErrNoProtocol = errors.New("ipstack: no handler for the protocol")
)

// Stack is a userspace IP layer over one tunnel. It is not safe for
// concurrent use: a host serializes its calls.
type Stack struct {
	cfg   Config
	tcp   TCP
	pmtu  PathMTUTarget
	udp   map[uint16]*UDPSocket
	ready []*UDPSocket // sockets that got datagrams since UDPReady
	out   queue        // UDP and ICMP packets waiting for Output
	stats Stats
	id    uint16 // IPv4 Identification of packets the stack builds
	next  uint16 // the next ephemeral port BindUDP tries
	echo  queue  // echo replies received, for Ping
	echoN int    // Ping requests outstanding interest: keep replies only while > 0
}

// New returns a Stack.
func New(cfg Config) (*Stack, error) {
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < ip.IPv6MinimumMTU || cfg.MTU > 65535 {
		return nil, errors.New("ipstack: MTU must be 1280 to 65535")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 64
	}
	if cfg.UDPQueue <= 0 {
		cfg.UDPQueue = 64
	}
	if cfg.OutputQueue <= 0 {
		cfg.OutputQueue = 256
	}
	if cfg.EphemeralLow == 0 {
		cfg.EphemeralLow = 49152
	}
	if cfg.EphemeralHigh == 0 {
		cfg.EphemeralHigh = 65535
	}
	if cfg.EphemeralLow > cfg.EphemeralHigh {
		return nil, errors.New("ipstack: EphemeralLow above EphemeralHigh")
	}
	cfg.Addrs = append([]netip.Addr(nil), cfg.Addrs...)
	for i, a := range cfg.Addrs {
		cfg.Addrs[i] = a.Unmap().WithZone("")
	}
	s := &Stack{cfg: cfg, tcp: cfg.TCP, udp: make(map[uint16]*UDPSocket), next: cfg.EphemeralLow}
	s.pmtu, _ = cfg.TCP.(PathMTUTarget)
	s.out.init(cfg.OutputQueue, cfg.MTU)
	s.echo.init(16, cfg.MTU)
	return s, nil
}

// Stats returns the stack's counters.
func (s *Stack) Stats() Stats { return s.stats }

// MTU returns the configured MTU.
func (s *Stack) MTU() int { return s.cfg.MTU }

// Addrs returns the stack's own addresses.
func (s *Stack) Addrs() []netip.Addr { return s.cfg.Addrs }

// ours reports whether a is one of the stack's unicast addresses
// (RFC 1122 section 3.2.1.3 for the addresses a host must not accept as
// its own).
func (s *Stack) ours(a netip.Addr) bool {
	if a.IsMulticast() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	if len(s.cfg.Addrs) == 0 {
		return true
	}
	for _, o := range s.cfg.Addrs {
		if o == a {
			return true
		}
	}
	return false
}

// LocalFor returns the stack's address to send to dst from: the first of
// dst's family (RFC 6724 in its simplest form, with one address each).
func (s *Stack) LocalFor(dst netip.Addr) (netip.Addr, bool) {
	dst = dst.Unmap()
	for _, a := range s.cfg.Addrs {
		if a.Is4() == dst.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Input takes one arriving IP packet (RFC 791 section 3.2, RFC 8200
// section 4). Malformed packets, packets for other hosts and fragments
// are dropped and counted; the error says why. Input does not keep pkt.
func (s *Stack) Input(pkt []byte, now tcpfsm.Time) error {
	var p ip.Packet
	if err := ip.Parse(pkt, &p); err != nil {
		s.stats.BadHeader++
		return err
	}
	s.stats.PacketsIn++
	if !s.ours(p.Dst) {
		s.stats.NotForUs++
		return ErrNotOurs
	}
	if p.Fragment {
		s.stats.Fragments++
		return ErrFragment
	}
	v6 := p.Version == 6
	switch {
	case p.Proto == ip.ProtoTCP && s.tcp != nil:
		return s.tcp.Input(p.Payload, p.Src, p.Dst, now)
	case p.Proto == ip.ProtoUDP:
		return s.inputUDP(&p, pkt)
	case p.Proto == ip.ProtoICMP && !v6, p.Proto == ip.ProtoICMPv6 && v6:
		return s.inputICMP(&p, now)
	case p.Proto == ip.ProtoNoNext:
		return nil // RFC 8200 section 4.7: nothing follows
	}
	s.stats.NoProtocol++
	if p.Proto != ip.ProtoTCP {
		// RFC 1122 section 3.2.2.1 (protocol unreachable), RFC 4443
		// section 3.4 (unrecognized Next Header).
		if v6 {
			s.sendError(&p, pkt, ip.ICMPv6ParamProblem, ip.ICMPv6CodeNextHeader, uint32(p.HeaderLen-ip.IPv6HeaderLen+6))
		} else {
			s.sendError(&p, pkt, ip.ICMPv4DestUnreachable, ip.ICMPv4CodeProtoUnreach, 0)
		}
	}
	return ErrNoProtocol
}

// inputICMP answers echo requests and applies path-MTU errors.
func (s *Stack) inputICMP(p *ip.Packet, now tcpfsm.Time) error {
	v6 := p.Version == 6
	var m ip.ICMP
	if err := ip.ParseICMP(p.Payload, v6, p.Src, p.Dst, &m); err != nil {
		s.stats.BadChecksum++
		return err
	}
	switch {
	case !v6 && m.Type == ip.ICMPv4Echo, v6 && m.Type == ip.ICMPv6EchoRequest:
		typ := uint8(ip.ICMPv4EchoReply)
		if v6 {
			typ = ip.ICMPv6EchoReply
		}
		b := s.out.slot()
		if b == nil {
			s.stats.OutputDropped++
			return ErrQueueFull
		}
		hl := ip.HeaderLenFor(p.Src)
		body := copy(b[hl+ip.ICMPHeaderLen:], m.Body)
		n, err := ip.PutICMP(b[hl:], v6, p.Dst, p.Src, typ, 0, m.Rest, body)
		if err == nil {
			err = s.header(b, p.Dst, p.Src, icmpProto(v6), n)
		}
		if err != nil {
			return err
		}
		s.out.push(hl + n)
		s.stats.EchoReplies++
		return nil
	case !v6 && m.Type == ip.ICMPv4EchoReply, v6 && m.Type == ip.ICMPv6EchoReply:
		s.stats.EchoRepliesIn++
		if s.echoN > 0 {
			if b := s.echo.slot(); b != nil {
				s.echo.push(copy(b, p.Payload))
				s.echo.setAddr(p.Src)
			}
		}
		return nil
	case m.IsError(v6):
		return s.icmpError(p, &m, now)
	}
	s.stats.ICMPIgnored++
	return nil
}

// icmpError applies an ICMP error to the TCP connection it quotes: a
// path-MTU update after checking the quote (RFC 5927 section 4.1). Other
// errors about TCP are soft (RFC 1122 section 4.2.3.9, RFC 5461) and
// change nothing here.
func (s *Stack) icmpError(p *ip.Packet, m *ip.ICMP, now tcpfsm.Time) error {
	v6 := p.Version == 6
	var q ip.Quote
	if err := ip.ParseQuote(m.Body, &q); err != nil {
		s.stats.ICMPIgnored++
		return err
	}
	mtu, ok := m.PathMTU(v6, q.TotalLen)
	// The quoted packet is one we sent: from us to someone, in the
	// same family as the error.
	if !ok || q.Proto != ip.ProtoTCP || s.pmtu == nil || q.Src.Is6() != v6 || q.Src != p.Dst {
		s.stats.ICMPIgnored++
		return nil
	}
	if err := s.pmtu.PathMTU(netip.AddrPortFrom(q.Src, q.SrcPort), netip.AddrPortFrom(q.Dst, q.DstPort), tcpfsm.Seq(q.Seq), mtu, now); err != nil {
		s.stats.ICMPIgnored++
		return err
	}
	s.stats.PathMTUUpdates++
	return nil
}

func icmpProto(v6 bool) uint8 {
	if v6 {
		return ip.ProtoICMPv6
	}
	return ip.ProtoICMP
}

// header writes an IP header for a payload of n bytes that starts at
// b[HeaderLenFor(dst):].
func (s *Stack) header(b []byte, src, dst netip.Addr, proto uint8, n int) error {
	s.id++
	h := ip.Header{Src: src, Dst: dst, Proto: proto, TTL: s.cfg.TTL, ID: s.id, DontFragment: true}
	_, err := ip.PutHeader(b, &h, n)
	return err
}

// sendError queues an ICMP error about the packet pkt, unless the rules
// of RFC 1122 section 3.2.2 and RFC 4443 section 2.4(e) forbid one: not
// about an ICMP error, a fragment other than the first, or a packet
// from an address that does not name a single host.
func (s *Stack) sendError(p *ip.Packet, pkt []byte, typ, code uint8, rest uint32) {
	if p.Src.IsMulticast() || p.Src.IsUnspecified() || !s.ours(p.Dst) {
		return
	}
	b := s.out.slot()
	if b == nil {
		s.stats.OutputDropped++
		return
	}
	s.id++
	h := ip.Header{Src: p.Dst, Dst: p.Src, TTL: s.cfg.TTL, ID: s.id}
	n, err := ip.PutICMPError(b, &h, typ, code, rest, pkt[:p.HeaderLen+len(p.Payload)])
	if err != nil {
		return
	}
	s.out.push(n)
	s.stats.UnreachableSent++
}

// Output writes the next packet to send into buf and returns its length,
// or 0 when there is none: UDP and ICMP packets first, then TCP
// segments, each behind the IP header it needs. buf must hold the MTU's
// worth (and the TCP layer's largest segment plus 40 bytes).
func (s *Stack) Output(buf []byte, now tcpfsm.Time) int {
	if s.out.len() > 0 {
		b := s.out.front()
		if len(b) > len(buf) {
			s.out.pop()
			s.stats.OutputDropped++
			return s.Output(buf, now)
		}
		n := copy(buf, b)
		s.out.pop()
		s.stats.PacketsOut++
		return n
	}
	if s.tcp == nil || len(buf) < ip.IPv6HeaderLen {
		return 0
	}
	for {
		n, src, dst := s.tcp.Output(buf[ip.IPv6HeaderLen:], now)
		if n == 0 {
			return 0
		}
		hl := ip.HeaderLenFor(dst)
		if hl < ip.IPv6HeaderLen {
			copy(buf[hl:], buf[ip.IPv6HeaderLen:ip.IPv6HeaderLen+n])
		}
		if s.header(buf, src, dst, ip.ProtoTCP, n) != nil {
			continue // addresses of two families: the segment cannot go
		}
		s.stats.PacketsOut++
		return hl + n
	}
}

// Pending reports whether UDP or ICMP packets wait for Output (TCP
// segments are the TCP layer's to report).
func (s *Stack) Pending() bool { return s.out.len() > 0 }

// queue is a bounded FIFO of packets in buffers it keeps and reuses, so
// a steady flow allocates nothing: a popped entry's buffer goes to spare,
// and only as many buffers exist as entries were ever queued at once.
type queue struct {
	bufs  [][]byte
	spare [][]byte
	lens  []int
	addrs []netip.AddrPort
	head  int
	n     int
	size  int
}

func (q *queue) init(capacity, size int) {
	q.bufs = make([][]byte, capacity)
	q.lens = make([]int, capacity)
	q.addrs = make([]netip.AddrPort, capacity)
	q.spare = make([][]byte, 0, capacity)
	q.size = size
}

func (q *queue) len() int { return q.n }

// slot returns the buffer of the next entry, or nil if the queue is
// full; push commits it with its length.
func (q *queue) slot() []byte {
	if q.n == len(q.bufs) {
		return nil
	}
	i := (q.head + q.n) % len(q.bufs)
	if q.bufs[i] == nil {
		if k := len(q.spare); k > 0 {
			q.bufs[i], q.spare = q.spare[k-1], q.spare[:k-1]
		} else {
			q.bufs[i] = make([]byte, q.size)
		}
	}
	return q.bufs[i]
}

func (q *queue) push(n int) {
	q.lens[(q.head+q.n)%len(q.bufs)] = n
	q.n++
}

// setAddr records an address with the entry pushed last.
func (q *queue) setAddr(a netip.Addr) { q.setAddrPort(netip.AddrPortFrom(a, 0)) }

func (q *queue) setAddrPort(a netip.AddrPort) {
	q.addrs[(q.head+q.n-1)%len(q.bufs)] = a
}

func (q *queue) front() []byte { return q.bufs[q.head][:q.lens[q.head]] }

func (q *queue) frontAddr() netip.AddrPort { return q.addrs[q.head] }

func (q *queue) pop() {
	q.spare = append(q.spare, q.bufs[q.head])
	q.bufs[q.head] = nil
	q.head = (q.head + 1) % len(q.bufs)
	q.n--
}
