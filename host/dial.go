package host

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// errNoSuitableAddress is package net's error for an address of none of
// the network's families.
const errNoSuitableAddress = "no suitable address found"

// Dial connects to address on the named network, as net.Dial does (see
// DialContext).
func (h *Host) Dial(network, address string) (net.Conn, error) {
	return h.DialContext(context.Background(), network, address)
}

// DialContext connects to address on the named network, as
// net.Dialer.DialContext does, and waits for the handshake, the context,
// or a failure. network is "tcp", "tcp4" or "tcp6"; address is
// "host:port", where host is an IP address or a name the system's
// resolver (net.DefaultResolver) looks up, and port a number or a service
// name. The addresses a name has are tried one after another until one
// connects. The source address is the host's own (Config.Addrs).
//
// Errors are *net.OpError with Op "dial": errors.Is matches
// syscall.ECONNREFUSED (and tcpstack.ErrRefused) when the peer refuses,
// ETIMEDOUT when the SYN goes unanswered, ENETUNREACH when the host has
// no address of the remote's family, and the context's error when it
// ends first; the connection attempt is then reset and its port freed.
//
// Its signature is that of net.Dialer.DialContext, so it can stand in for
// it, for instance as http.Transport.DialContext.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return h.dialAddress(ctx, network, address, h.DialContextAddrPort)
}

// dialAddress dials address on network with dial, as DialContext
// describes: an "ip:port" literal on "tcp" at once (what resolving it
// would come to, without the list of one), anything else through
// resolve, one address after another.
func (h *Host) dialAddress(ctx context.Context, network, address string, dial func(context.Context, netip.AddrPort) (*Conn, error)) (net.Conn, error) {
	if network == "tcp" {
		if ap, err := netip.ParseAddrPort(address); err == nil {
			c, err := dial(ctx, ap)
			if err != nil {
				return nil, err // not a nil *Conn in a non-nil interface
			}
			return c, nil
		}
	}
	addrs, err := h.resolve(ctx, "dial", network, address)
	if err != nil {
		return nil, err
	}
	return dialFirst(ctx, addrs, dial)
}

// dialFirst dials each of addrs in turn until one connects or ctx ends,
// and returns that connection or the first error.
func dialFirst(ctx context.Context, addrs []netip.AddrPort, dial func(context.Context, netip.AddrPort) (*Conn, error)) (net.Conn, error) {
	var first error
	for _, ra := range addrs {
		c, err := dial(ctx, ra)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// DialContextAddrPort connects to remote, as DialContext does.
func (h *Host) DialContextAddrPort(ctx context.Context, remote netip.AddrPort) (*Conn, error) {
	return h.dialWith(ctx, remote, func(local netip.Addr, remote netip.AddrPort, now tcpfsm.Time) (*tcpstack.Endpoint, error) {
		return h.stack.Dial(local, remote, now)
	})
}

// dialWith dials remote with the connection opened by open, called with
// h.mu held and the remote address normalized, and waits for it to be
// established (RFC 9293 section 3.10.1).
func (h *Host) dialWith(ctx context.Context, remote netip.AddrPort, open func(local netip.Addr, remote netip.AddrPort, now tcpfsm.Time) (*tcpstack.Endpoint, error)) (*Conn, error) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap().WithZone(""), remote.Port())
	if !remote.Addr().IsValid() || remote.Addr().IsUnspecified() || remote.Port() == 0 {
		return nil, opError("dial", nil, h.netAddr(remote), &net.AddrError{Err: "invalid remote address", Addr: remote.String()})
	}
	local, ok := h.localFor(remote.Addr())
	if !ok {
		return nil, opError("dial", nil, h.netAddr(remote), &sysError{errno: syscall.ENETUNREACH, err: ErrNoLocalAddr})
	}
	// The error's addresses are made only for an error: a dial that
	// succeeds does not allocate them.
	dialErr := func(err error) error {
		return opError("dial", h.netAddr(netip.AddrPortFrom(local, 0)), h.netAddr(remote), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, dialErr(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, dialErr(ErrClosed)
	}
	e, err := open(local, remote, h.clock.Now())
	if err != nil {
		if errors.Is(err, tcpstack.ErrNoPorts) {
			err = &sysError{errno: syscall.EADDRNOTAVAIL, err: err} // as connect(2) with no ephemeral port left
		}
		return nil, dialErr(err)
	}
	c := h.newConn(e)
	c.logged = true // a failure is logged here, not as the end of a connection
	h.flushLocked()
	// The dial waits as a blocked Write does, on a channel from the
	// host's pool that goes back once the wait is over.
	c.wwake = h.takeChanLocked()
	c.wwait++
	ww := c.wwake
	defer func() {
		if c.wwait--; c.wwait == 0 {
			h.putChanLocked(c.wwake)
			c.wwake = nil
		}
	}()
	if ctx.Done() != nil { // else it is never canceled: nothing to watch
		stop := context.AfterFunc(ctx, func() { wake(ww) })
		defer stop()
	}
	for !e.Connected() {
		err := e.Err()
		if err == nil && e.State() == tcpfsm.Closed {
			err = tcpstack.ErrAborted
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
			_ = e.Abort(h.clock.Now()) // out of SYN-SENT: the stack lets go of it and its port
			h.flushLocked()
		}
		if err == nil && h.closed {
			err = ErrClosed
		}
		if err != nil {
			c.closed = true
			h.forgetLocked(e)
			if errno := errnoOf(err); errno != 0 {
				err = &sysError{errno: errno, err: err}
			}
			if h.log != nil {
				h.log.LogAttrs(ctx, slog.LevelInfo, "tcp dial failed", slog.String("local", e.LocalAddr().String()),
					slog.String("remote", e.RemoteAddr().String()), slog.String("err", err.Error()))
			}
			return nil, c.opErr("dial", err)
		}
		h.waitLocked(ww, time.Time{})
	}
	c.logged = false
	c.logLocked(slog.LevelDebug, "tcp connection established")
	return c, nil
}

// localFor returns the host's address to dial remote from: a loopback
// one for a loopback remote if it has one, else the first of remote's
// family.
func (h *Host) localFor(remote netip.Addr) (netip.Addr, bool) {
	var found netip.Addr
	for _, a := range h.addrs {
		if a.Is4() != remote.Is4() {
			continue
		}
		if a.IsLoopback() == remote.IsLoopback() {
			return a, true
		}
		if !found.IsValid() {
			found = a
		}
	}
	return found, found.IsValid()
}

// resolve turns a network and an address string into the addresses to
// try, as package net does for op ("dial" or "listen"). For "listen", an
// empty host is the unspecified address.
func (h *Host) resolve(ctx context.Context, op, network, address string) ([]netip.AddrPort, error) {
	fail := func(err error) ([]netip.AddrPort, error) {
		return nil, &net.OpError{Op: op, Net: network, Err: err}
	}
	var family string
	switch network {
	case "tcp":
		family = "ip"
	case "tcp4":
		family = "ip4"
	case "tcp6":
		family = "ip6"
	default:
		return fail(net.UnknownNetworkError(network))
	}
	host, service, err := net.SplitHostPort(address)
	if err != nil {
		return fail(err)
	}
	port, err := net.DefaultResolver.LookupPort(ctx, network, service)
	if err != nil {
		return fail(err)
	}
	var ips []netip.Addr
	switch a, perr := netip.ParseAddr(host); {
	case host == "" && op == "listen":
		ips = []netip.Addr{netip.IPv6Unspecified()}
		if network == "tcp4" {
			ips[0] = netip.IPv4Unspecified()
		}
	case host == "":
		return fail(&net.AddrError{Err: "missing address", Addr: address})
	case perr == nil:
		ips = []netip.Addr{a}
	default:
		ips, err = net.DefaultResolver.LookupNetIP(ctx, family, host)
		if err != nil {
			return fail(err)
		}
	}
	var out, other []netip.AddrPort
	for _, a := range ips {
		a = a.Unmap()
		if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && a.Is4()) {
			continue
		}
		ap := netip.AddrPortFrom(a, uint16(port))
		if _, ok := h.localFor(a); ok || len(h.addrs) == 0 {
			out = append(out, ap) // addresses the host can reach first
		} else {
			other = append(other, ap)
		}
	}
	out = append(out, other...)
	if len(out) == 0 {
		return fail(&net.AddrError{Err: errNoSuitableAddress, Addr: host})
	}
	return out, nil
}

// Listener is a net.Listener for one TCP port of the host.
type Listener struct {
	h      *Host
	ln     *tcpstack.Listener
	addr   net.Addr
	closed bool
	dl     time.Time
	wake   chan struct{}
}

// Listen announces on the local address, as net.Listen does: network is
// "tcp", "tcp4" or "tcp6"; address is "host:port", where an empty host
// means every address of the host and port 0 an ephemeral port. A
// specific host must be one of the host's addresses (Config.Addrs), else
// it fails with EADDRNOTAVAIL; the Stack demultiplexes by port only, so
// the Listener takes connections to its port at any of the host's
// addresses, and a port has one Listener (a second fails with
// EADDRINUSE, as tcpstack.ErrPortInUse).
func (h *Host) Listen(network, address string) (net.Listener, error) {
	addrs, err := h.resolve(context.Background(), "listen", network, address)
	if err != nil {
		return nil, err
	}
	l, err := h.ListenAddrPort(addrs[0])
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenAddrPort is Listen for local: an invalid or unspecified address
// means every address of the host, and port 0 an ephemeral port.
func (h *Host) ListenAddrPort(local netip.AddrPort) (*Listener, error) {
	a := local.Addr().Unmap().WithZone("")
	if !a.IsValid() {
		a = netip.IPv6Unspecified()
	}
	local = netip.AddrPortFrom(a, local.Port())
	fail := func(err error) (*Listener, error) {
		return nil, opError("listen", nil, h.netAddr(local), err)
	}
	if !a.IsUnspecified() && len(h.addrs) > 0 {
		if _, ok := h.ownAddr(a); !ok {
			return fail(&sysError{errno: syscall.EADDRNOTAVAIL})
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fail(ErrClosed)
	}
	port := local.Port()
	var ln *tcpstack.Listener
	var err error
	if port != 0 {
		ln, err = h.stack.ListenOn(netip.AddrPortFrom(a, port))
	} else {
		ln, port, err = h.listenEphemeralLocked(a)
	}
	if errors.Is(err, tcpstack.ErrPortInUse) {
		return fail(&sysError{errno: syscall.EADDRINUSE, err: err})
	}
	if err != nil {
		return fail(err)
	}
	l := &Listener{h: h, ln: ln, addr: h.netAddr(netip.AddrPortFrom(a, port)), wake: make(chan struct{}, 1)}
	h.listeners[ln] = l
	return l, nil
}

// ownAddr reports whether a is one of the host's addresses.
func (h *Host) ownAddr(a netip.Addr) (netip.Addr, bool) {
	for _, x := range h.addrs {
		if x == a {
			return x, true
		}
	}
	return netip.Addr{}, false
}

// listenEphemeralLocked listens on a free port of the ephemeral range,
// from a random place in it.
func (h *Host) listenEphemeralLocked(a netip.Addr) (*tcpstack.Listener, uint16, error) {
	lo, hi := int(h.ephLow), int(h.ephHigh)
	if hi < lo {
		lo, hi = hi, lo
	}
	span := hi - lo + 1
	start := rand.IntN(span)
	for i := range span {
		p := uint16(lo + (start+i)%span)
		if p == 0 {
			continue
		}
		ln, err := h.stack.ListenOn(netip.AddrPortFrom(a, p))
		if errors.Is(err, tcpstack.ErrPortInUse) {
			continue
		}
		return ln, p, err
	}
	return nil, 0, tcpstack.ErrPortInUse
}

// Accept waits for the next connection, as net.Listener's.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP waits for the next connection and returns it as a *Conn.
// After Close it fails with net.ErrClosed, and past the deadline with
// os.ErrDeadlineExceeded, inside a *net.OpError.
func (l *Listener) AcceptTCP() (*Conn, error) {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		switch {
		case l.closed:
			return nil, opError("accept", nil, l.addr, net.ErrClosed)
		case h.closed:
			return nil, opError("accept", nil, l.addr, ErrClosed)
		}
		if e, ok := l.ln.Accept(); ok {
			c := h.newConn(e)
			c.logLocked(slog.LevelDebug, "tcp connection accepted")
			return c, nil
		}
		if passed(l.dl) {
			return nil, opError("accept", nil, l.addr, os.ErrDeadlineExceeded)
		}
		h.waitLocked(l.wake, l.dl)
	}
}

// SetDeadline sets when a blocked Accept gives up; the zero time means
// never.
func (l *Listener) SetDeadline(t time.Time) error {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	l.dl = t
	wake(l.wake)
	return nil
}

// Close stops listening. Connections already accepted go on; a second
// Close returns net.ErrClosed.
func (l *Listener) Close() error {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.closed {
		return opError("close", nil, l.addr, net.ErrClosed)
	}
	l.closed = true
	l.ln.Close()
	delete(h.listeners, l.ln)
	wake(l.wake)
	return nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }
