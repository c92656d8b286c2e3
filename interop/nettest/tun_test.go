//go:build linux

package nettest

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"

	"golang.org/x/net/nettest"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/tun"
)

var (
	kernelPrefix = netip.MustParsePrefix("10.7.0.1/24")
	ourAddr      = netip.MustParseAddr("10.7.0.2")
)

func TestConnOverTUN(t *testing.T) {
	// A host.Conn over a TUN device, its peer the kernel's TCP: first
	// dialed by tcpfsm to a kernel listener, then accepted by tcpfsm
	// from a kernel dial.
	if !peertest.InNetns(t) {
		return
	}
	d, err := tun.Open("tcpfsm0")
	if err != nil {
		t.Log("SKIP-NETNS", err)
		t.FailNow()
	}
	if err := d.Configure(kernelPrefix); err != nil {
		t.Fatal(err)
	}
	h, err := host.New(d, host.Config{Addrs: []netip.Addr{ourAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	kln, err := net.Listen("tcp", kernelPrefix.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer kln.Close()
	t.Run("Dialed", func(t *testing.T) {
		dial := func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "tcp", kln.Addr().String()) }
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return connect(kln, dial, false) })
	})

	ln, err := h.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Run("Accepted", func(t *testing.T) {
		var dialer net.Dialer
		dial := func(ctx context.Context) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", ourAddr.String()+":80")
		}
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return connect(ln, dial, true) })
	})
}
