package host

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

func TestHostForwardsAnyDestination(t *testing.T) {
	// A transparent proxy's host: the client dials addresses the server
	// host does not have; the forwarder defers each SYN until the program
	// decides, and the accepted connection knows where its peer wanted
	// to go. A refused one fails as a closed port does.
	la, lb := newBatchPipe(addrA, addrB)
	client, err := New(la, Config{Addrs: []netip.Addr{addrA}})
	require.NoError(t, err)
	server, err := New(lb, Config{Addrs: []netip.Addr{addrB}})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })

	type syn struct{ local, remote netip.AddrPort }
	syns := make(chan syn, 16)
	ln, err := server.ListenAll(tcpstack.ForwardConfig{Decide: func(local, remote netip.AddrPort) tcpstack.Verdict {
		syns <- syn{local, remote}
		return tcpstack.Defer
	}})
	require.NoError(t, err)
	_, err = server.ListenAll(tcpstack.ForwardConfig{})
	require.Error(t, err, "one forwarder")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := netip.MustParseAddrPort("192.0.2.80:443")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the program: accept after "dialling upstream"
		defer wg.Done()
		s := <-syns
		if s.local != want {
			t.Errorf("deferred a SYN to %v, want %v", s.local, want)
		}
		if err := server.Decide(s.local, s.remote, tcpstack.Accept); err != nil {
			t.Error(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if got := c.LocalAddr().(*net.TCPAddr).AddrPort(); got != want {
			t.Errorf("accepted for %v, want %v", got, want)
		}
		_, _ = io.Copy(c, c) // echo, as the upstream would
	}()
	c, err := client.DialContextAddrPort(ctx, want)
	require.NoError(t, err)
	_, err = c.Write([]byte("through the forwarder"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "through the forwarder", string(got))
	require.NoError(t, c.Close())
	wg.Wait()

	// Refused: the dial fails with ECONNREFUSED.
	refused := netip.MustParseAddrPort("192.0.2.81:22")
	go func() {
		s := <-syns
		_ = server.Decide(s.local, s.remote, tcpstack.Refuse)
	}()
	_, err = client.DialContextAddrPort(ctx, refused)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.ErrorIs(t, server.Decide(refused, netip.MustParseAddrPort("10.0.0.1:1"), tcpstack.Accept), tcpstack.ErrNotDeferred)
	require.NoError(t, ln.Close())
}
