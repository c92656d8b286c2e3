package tcpstack

import (
	"errors"
	"net/netip"

	"github.com/tcpfsm/tcpfsm"
)

// Errors of Stack.PathMTU: the ICMP message is ignored.
var (
	// ErrNoConnection: the quoted segment names no connection of the
	// Stack (RFC 5927 section 4.1: the message is dropped).
	ErrNoConnection = errors.New("tcpfsm: ICMP message for no connection")
	// ErrStaleICMP: the quoted sequence number is outside
	// SND.UNA..SND.NXT, so the message cannot be about data in flight
	// (RFC 5927 section 4.1); a blind attacker who does not know the
	// connection's sequence numbers is turned away here.
	ErrStaleICMP = errors.New("tcpfsm: ICMP quoted sequence number outside SND.UNA..SND.NXT")
	// ErrPathMTU: the reported MTU is not smaller than what the
	// connection already uses, or is below the protocol minimum (68
	// bytes for IPv4, RFC 791 and RFC 1191 section 3; IPv6 values below
	// 1280 are raised to 1280, RFC 8201 section 4).
	ErrPathMTU = errors.New("tcpfsm: ICMP path MTU not usable")
)

// TCP and IP header sizes without options, for turning an MTU into an MSS
// (RFC 9293 section 3.7.1, RFC 879).
const (
	tcpHeaderLen  = 20
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
)

// PathMTU applies an ICMP "fragmentation needed" (RFC 1191 section 4)
// or ICMPv6 "packet too big" (RFC 8201 section 4) message about the
// connection from local to remote. seq is the sequence number of the TCP
// segment quoted in the message, and mtu the next-hop MTU it reports.
// The message is accepted only if seq lies in SND.UNA..SND.NXT (RFC 5927
// section 4.1; SND.UNA itself is accepted while nothing is in flight, as
// an outstanding zero-window probe or FIN may be what was quoted), and
// only if it lowers the send MSS; the connection then segments to
// mtu - IP header - TCP header, and what is in flight goes again at once
// in smaller segments (the PathMTU event).
func (s *Stack) PathMTU(local, remote netip.AddrPort, seq tcpfsm.Seq, mtu int, now tcpfsm.Time) error {
	k := tupleOf(netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
	e := s.conns.get(&k)
	if e == nil || e.State() == tcpfsm.Listen || e.State() == tcpfsm.Closed {
		return ErrNoConnection
	}
	una, nxt := e.tcb.SndUna, e.tcb.SndNxt
	if !(seq == una || seq.InRange(una, nxt)) {
		return ErrStaleICMP
	}
	hdr := ipv6HeaderLen
	if k.v4 {
		hdr = ipv4HeaderLen
		if mtu < 68 {
			return ErrPathMTU
		}
	} else if mtu < 1280 {
		mtu = 1280
	}
	mss := mtu - hdr - tcpHeaderLen
	st, err := e.tcb.Status()
	if err != nil {
		return ErrNoConnection
	}
	if mss <= 0 || mss >= int(st.SendMSS) {
		return ErrPathMTU
	}
	err = e.step(tcpfsm.PathMTU(uint32(mss)), now)
	s.after(e, now)
	return err
}
