package host

import (
	"net/netip"

	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// ListenAll returns a listener for every address and port that no other
// listener has: the forwarder of a tunnel or a transparent proxy
// (tcpstack.Stack.ListenAll). Each accepted connection's LocalAddr is the
// address and port its peer wanted, so a proxy knows where to dial.
// cfg.Decide is asked about each SYN under the Host's lock: it must not
// call the Host. To decide later, for example after dialling upstream, it
// returns tcpstack.Defer, and the program calls Decide (RFC 9293 section
// 3.10.7.2 leaves to the user which connections a passive open accepts).
func (h *Host) ListenAll(cfg tcpstack.ForwardConfig) (*Listener, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wild := netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	if h.closed {
		return nil, opError("listen", nil, h.netAddr(wild), ErrClosed)
	}
	ln, err := h.stack.ListenAll(cfg)
	if err != nil {
		return nil, opError("listen", nil, h.netAddr(wild), err)
	}
	l := &Listener{h: h, ln: ln, addr: h.netAddr(wild), wake: make(chan struct{}, 1)}
	h.listeners[ln] = l
	return l, nil
}

// Decide gives the verdict on a SYN from remote to local that the
// ListenAll listener's Decide deferred: tcpstack.Accept sends the SYN-ACK
// now, tcpstack.Refuse a RST, tcpstack.Drop nothing.
func (h *Host) Decide(local, remote netip.AddrPort, v tcpstack.Verdict) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	err := h.stack.Decide(local, remote, v, h.clock.Now())
	h.flushLocked()
	return err
}
