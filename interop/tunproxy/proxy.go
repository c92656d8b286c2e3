// Package tunproxy is an example of the forwarder: a transparent TCP
// proxy from a TUN device to the host's own sockets. Connections to any
// address routed into the device are taken by tcpfsm (host.ListenAll);
// for each SYN the proxy first dials the upstream with the kernel's TCP,
// and only then accepts (the SYN-ACK goes out) or refuses (a RST, as the
// upstream did), so a client sees the upstream's answer. Bytes are then
// copied both ways, half-closes included.
package tunproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Proxy forwards the connections a host's forwarder takes.
type Proxy struct {
	h *host.Host
	// Upstream maps the address a client wanted to the one to dial: a
	// transparent proxy dials it as it is; a test rewrites it to a
	// server of its own.
	Upstream func(netip.AddrPort) netip.AddrPort
	// DialTimeout bounds each upstream dial. Default 5 s.
	DialTimeout time.Duration

	mu      sync.Mutex
	pending map[[2]netip.AddrPort]net.Conn // upstream connections dialled for SYNs not yet accepted
	ln      *host.Listener
}

// New makes a proxy on h: it takes every SYN no other listener of h has.
func New(h *host.Host, upstream func(netip.AddrPort) netip.AddrPort) (*Proxy, error) {
	p := &Proxy{h: h, Upstream: upstream, DialTimeout: 5 * time.Second, pending: map[[2]netip.AddrPort]net.Conn{}}
	ln, err := h.ListenAll(tcpstack.ForwardConfig{Decide: p.decide})
	if err != nil {
		return nil, err
	}
	p.ln = ln
	return p, nil
}

// decide runs under the host's lock: it must not call the host, so the
// dial and the verdict happen in a goroutine.
func (p *Proxy) decide(local, remote netip.AddrPort) tcpstack.Verdict {
	go p.dial(local, remote)
	return tcpstack.Defer
}

// dial connects upstream for a deferred SYN and gives the verdict.
func (p *Proxy) dial(local, remote netip.AddrPort) {
	d := net.Dialer{Timeout: p.DialTimeout}
	up, err := d.Dial("tcp", p.Upstream(local).String())
	if err != nil {
		_ = p.h.Decide(local, remote, tcpstack.Refuse) // the upstream refused or is unreachable
		return
	}
	p.mu.Lock()
	p.pending[[2]netip.AddrPort{local, remote}] = up
	p.mu.Unlock()
	if err := p.h.Decide(local, remote, tcpstack.Accept); err != nil {
		p.take(local, remote)
		up.Close()
	}
}

// take removes and returns the upstream connection dialled for a SYN.
func (p *Proxy) take(local, remote netip.AddrPort) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := [2]netip.AddrPort{local, remote}
	up := p.pending[k]
	delete(p.pending, k)
	return up
}

// Serve accepts the forwarded connections and copies each to its
// upstream, until ctx ends or the listener closes.
func (p *Proxy) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		p.ln.Close()
	}()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		up := p.take(netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
		if up == nil {
			c.Close()
			continue
		}
		go splice(c, up.(*net.TCPConn))
	}
}

// splice copies both ways, passing each half-close on.
func splice(c *host.Conn, up *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, c)
		_ = up.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c, up)
		_ = c.CloseWrite()
	}()
	wg.Wait()
	c.Close()
	up.Close()
}
