package host

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
)

// gate is a Link that drops every segment it is asked to send while
// blocked: a path that has gone dark in one direction.
type gate struct {
	Link
	blocked atomic.Bool
}

func (g *gate) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	if g.blocked.Load() {
		return nil
	}
	return g.Link.WriteSegment(tcp, src, dst)
}

// pair is two Hosts joined by a Pipe through gates, with a Listener on
// port 80 of b.
type pair struct {
	a, b   *Host
	ga, gb *gate // what a sends, what b sends
	ln     *Listener
}

// newPair starts a pair whose stacks are configured by cfg; cfgA, if
// given, changes a's host configuration further.
func newPair(t *testing.T, cfg tcpstack.Config, cfgA ...func(*Config)) *pair {
	t.Helper()
	la, lb := Pipe(addrA, addrB)
	p := &pair{ga: &gate{Link: la}, gb: &gate{Link: lb}}
	ca := Config{Stack: cfg, Addrs: []netip.Addr{addrA}}
	for _, f := range cfgA {
		f(&ca)
	}
	var err error
	p.a, err = New(p.ga, ca)
	require.NoError(t, err)
	p.b, err = New(p.gb, Config{Stack: cfg, Addrs: []netip.Addr{addrB}})
	require.NoError(t, err)
	t.Cleanup(func() { p.a.Close(); p.b.Close() })
	p.ln, err = p.b.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	require.NoError(t, err)
	return p
}

// connect dials from a to b's listener and returns both ends.
func (p *pair) connect(t *testing.T) (client, server *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.a.DialContext(ctx, "tcp", "10.0.0.2:80")
	require.NoError(t, err)
	s, err := p.ln.AcceptTCP()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*Conn), s
}

// waitFor polls cond until it holds; the test's own timeout bounds it.
func waitFor(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// acceptEach accepts ln's connections (a Listener's or a
// ShardedListener's), on a goroutine of its own, until ln closes, and
// hands each to handle on that goroutine.
func acceptEach(ln interface{ AcceptTCP() (*Conn, error) }, handle func(c *Conn)) {
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}
