package netstack

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsTimeout bounds one query to one server when the context has no
// deadline (as resolv.conf's default "timeout:5").
const dnsTimeout = 5 * time.Second

// LookupHost resolves host through the tunnel, as LookupContextHost.
func (n *Net) LookupHost(host string) ([]string, error) {
	return n.LookupContextHost(context.Background(), host)
}

// LookupContextHost returns the addresses of host: host itself if it is
// an IP address, else the A (if the device has an IPv4 address) and AAAA
// (if it has an IPv6 one) records that the DNS servers given to
// CreateNetTUN return, asked over UDP through the tunnel and again over
// TCP if the answer was truncated (RFC 1035 section 4.2, RFC 7766
// section 5, RFC 3596).
func (n *Net) LookupContextHost(ctx context.Context, host string) ([]string, error) {
	if host == "" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []string{a.String()}, nil
	}
	fqdn := host
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	name, err := dnsmessage.NewName(fqdn)
	if err != nil || !isDomainName(host) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var types []dnsmessage.Type
	if n.hasV4 || !n.hasV6 {
		types = append(types, dnsmessage.TypeA)
	}
	if n.hasV6 || !n.hasV4 {
		types = append(types, dnsmessage.TypeAAAA)
	}
	if len(n.dns) == 0 {
		return nil, &net.DNSError{Err: "no DNS servers", Name: host}
	}
	var lastErr error
	for _, server := range n.dns {
		var addrs []string
		notFound := false
		ok := true
		for _, qt := range types {
			got, err := n.query(ctx, server, name, qt)
			if errors.Is(err, errNXDomain) {
				notFound = true
				break
			}
			if err != nil {
				lastErr, ok = err, false
				break
			}
			addrs = append(addrs, got...)
		}
		if notFound || ok && len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, Server: server.String(), IsNotFound: true}
		}
		if ok {
			return addrs, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	de := &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	if lastErr != nil {
		de.Err = lastErr.Error()
		var ne net.Error
		de.IsTimeout = errors.As(lastErr, &ne) && ne.Timeout()
	}
	return nil, de
}

var (
	errNXDomain = errors.New("dns: name does not exist")
	errDNSReply = errors.New("dns: malformed or mismatched reply")
)

// query asks server for the records of type qt for name and returns the
// addresses in the answer.
func (n *Net) query(ctx context.Context, server netip.Addr, name dnsmessage.Name, qt dnsmessage.Type) ([]string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(dnsTimeout)
	}
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Question{Name: name, Type: qt, Class: dnsmessage.ClassINET}
	msg := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true}, Questions: []dnsmessage.Question{q}}
	req, err := msg.Pack()
	if err != nil {
		return nil, err
	}
	to := netip.AddrPortFrom(server, 53)
	c, err := n.DialUDPAddrPort(netip.AddrPort{}, to)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = c.SetReadDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 1232) // RFC 9715's safe UDP payload size
	for {
		k, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:k])
		if err != nil || h.ID != id || !h.Response {
			continue // not the reply: keep waiting (RFC 5452 section 9.1)
		}
		if h.Truncated {
			return n.queryTCP(ctx, to, req, id, q, deadline)
		}
		return answers(&p, h, q)
	}
}

// queryTCP repeats a truncated query over TCP (RFC 7766 section 5).
func (n *Net) queryTCP(ctx context.Context, to netip.AddrPort, req []byte, id uint16, q dnsmessage.Question, deadline time.Time) ([]string, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := n.DialContextTCPAddrPort(ctx, to)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	framed := make([]byte, 2+len(req))
	binary.BigEndian.PutUint16(framed, uint16(len(req)))
	copy(framed[2:], req)
	if _, err := c.Write(framed); err != nil {
		return nil, err
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	var p dnsmessage.Parser
	h, err := p.Start(buf)
	if err != nil || h.ID != id || !h.Response {
		return nil, errDNSReply
	}
	return answers(&p, h, q)
}

// answers checks the reply's question against q and returns the A or
// AAAA records of the answer section (RFC 1035 section 4.1).
func answers(p *dnsmessage.Parser, h dnsmessage.Header, q dnsmessage.Question) ([]string, error) {
	switch h.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, errNXDomain
	default:
		return nil, errors.New("dns: server answered " + h.RCode.String())
	}
	rq, err := p.Question()
	if err != nil || rq.Type != q.Type || !strings.EqualFold(rq.Name.String(), q.Name.String()) {
		return nil, errDNSReply
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, errDNSReply
	}
	var out []string
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return out, nil
		}
		if err != nil {
			return nil, errDNSReply
		}
		switch {
		case rh.Type == dnsmessage.TypeA && q.Type == dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return nil, errDNSReply
			}
			out = append(out, netip.AddrFrom4(r.A).String())
		case rh.Type == dnsmessage.TypeAAAA && q.Type == dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return nil, errDNSReply
			}
			out = append(out, netip.AddrFrom16(r.AAAA).String())
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, errDNSReply
			}
		}
	}
}

// isDomainName reports whether s is a syntactically valid host name
// (RFC 1035 section 2.3.1, with RFC 1123 section 2.1's leading digits
// and the underscores real names carry): labels of 1 to 63 bytes, 253 in
// all.
func isDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
