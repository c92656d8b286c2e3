package overudp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

func pair(t *testing.T) (*Transport, *Transport, *net.UDPAddr) {
	t.Helper()
	pa, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	pb, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := New(pa, tcpstack.Config{})
	require.NoError(t, err)
	b, err := New(pb, tcpstack.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, pb.LocalAddr().(*net.UDPAddr)
}

func TestEchoOverUDP(t *testing.T) {
	client, server, saddr := pair(t)
	ln, err := server.Listen(7)
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*Conn).CloseWrite()
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialContextAddrPort(ctx, saddr.AddrPort(), 7)
	require.NoError(t, err)
	msg := bytes.Repeat([]byte("tcp over udp "), 40_000) // 520 kB, many windows
	go func() {
		_, _ = c.Write(msg)
		_ = c.CloseWrite() // half-close: the echo still comes back
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.True(t, bytes.Equal(msg, got), "echoed %d of %d bytes", len(got), len(msg))
	require.NoError(t, c.Close())
	require.Equal(t, "tcp-over-udp", c.RemoteAddr().Network())
	require.True(t, strings.HasSuffix(c.RemoteAddr().String(), "/7"))
}

func TestHTTPOverUDP(t *testing.T) {
	client, server, saddr := pair(t)
	ln, err := server.Listen(80)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return client.DialContext(ctx, Network, saddr.String()+"/80")
		},
	}}
	for _, path := range []string{"/a", "/b"} { // the second reuses the connection
		resp, err := hc.Get("http://tcpfsm.test" + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, "hello from "+path, string(body))
	}
}

func TestDeadlineAndRefused(t *testing.T) {
	client, server, saddr := pair(t)
	ln, err := server.Listen(9)
	require.NoError(t, err)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second) // never writes
		}
	}()
	ctx := context.Background()
	c, err := client.DialContextAddrPort(ctx, saddr.AddrPort(), 9)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = c.Read(make([]byte, 10))
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)

	_, err = client.DialContextAddrPort(ctx, saddr.AddrPort(), 10) // nobody listens on 10
	require.Error(t, err)
	require.ErrorIs(t, err, tcpstack.ErrRefused)

	// A dial to a UDP address where nothing runs ends with the context.
	dead, _ := net.ResolveUDPAddr("udp", "127.0.0.1:9")
	ctx2, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = client.DialContextAddrPort(ctx2, dead.AddrPort(), 80)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestDialFromDualStackSocket(t *testing.T) {
	// A client on a dual-stack socket sees an IPv4 server's datagrams
	// come from its IPv4-mapped address: a dial by either form reaches
	// it and gets its replies.
	pa, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Skip("no dual-stack UDP socket here:", err)
	}
	pb, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := New(pa, tcpstack.Config{})
	require.NoError(t, err)
	b, err := New(pb, tcpstack.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	ln, err := b.Listen(7)
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*Conn).CloseWrite()
			}()
		}
	}()
	v4 := pb.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), v4.Port())
	for _, server := range []netip.AddrPort{v4, mapped} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := a.DialContextAddrPort(ctx, server, 7)
		cancel()
		require.NoError(t, err, "dial %v", server)
		_, err = io.WriteString(c, "hello")
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "hello", string(got))
		require.NoError(t, c.Close())
	}
}

func TestDialContextAddresses(t *testing.T) {
	// DialContext takes the network "tcp-over-udp" and addresses as
	// Addr.String writes them; anything else fails without panicking.
	client, server, saddr := pair(t)
	ln, err := server.Listen(0)
	require.NoError(t, err)
	defer ln.Close()
	la := ln.Addr().(*Addr)
	require.Equal(t, saddr.String(), la.UDP.String())
	require.NotZero(t, la.Port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, Network, la.String())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, la.String(), c.RemoteAddr().String())
	require.Equal(t, Network, c.LocalAddr().Network())
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())
	for _, bad := range [][2]string{{"tcp", la.String()}, {Network, saddr.String()}, {Network, "/80"},
		{Network, saddr.String() + "/x"}, {Network, saddr.String() + "/99999"}, {Network, ""}} {
		_, err := client.DialContext(ctx, bad[0], bad[1])
		var oe *net.OpError
		require.True(t, errors.As(err, &oe), "%q %q: %v", bad[0], bad[1], err)
		require.Equal(t, "dial", oe.Op)
	}
}
