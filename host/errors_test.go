package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// requireOpError checks that err is a *net.OpError for op, as
// *net.TCPConn's errors are, and returns it.
func requireOpError(t *testing.T, err error, op string) *net.OpError {
	t.Helper()
	var oe *net.OpError
	require.True(t, errors.As(err, &oe), "%T %v is not a *net.OpError", err, err)
	require.Equal(t, op, oe.Op)
	require.Equal(t, "tcp", oe.Net)
	require.NotNil(t, oe.Addr, "the remote address")
	return oe
}

func TestDialRefused(t *testing.T) {
	// A dial to a port nobody listens on: ECONNREFUSED, as the kernel
	// says it, and tcpstack.ErrRefused.
	p := newPair(t, tcpstack.Config{})
	_, err := p.a.DialContext(context.Background(), "tcp", "10.0.0.2:81")
	oe := requireOpError(t, err, "dial")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.ErrorIs(t, err, tcpstack.ErrRefused)
	require.Equal(t, "10.0.0.2:81", oe.Addr.String())
	require.NotNil(t, oe.Source)
	require.True(t, strings.HasPrefix(oe.Source.String(), "10.0.0.1:"), "%v", oe.Source)
	require.Contains(t, err.Error(), "connection refused")
}

func TestResetErrors(t *testing.T) {
	// After the peer's RST, a Read fails with ECONNRESET (and
	// tcpstack.ErrReset) and a Write after that with EPIPE; a Write
	// first gets ECONNRESET, and EPIPE the next time, as from the kernel.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	require.NoError(t, s.Abort())
	_, err := c.Read(make([]byte, 10))
	requireOpError(t, err, "read")
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.ErrorIs(t, err, tcpstack.ErrReset)
	require.Contains(t, err.Error(), "connection reset by peer")
	_, err = c.Write([]byte("x"))
	requireOpError(t, err, "write")
	require.ErrorIs(t, err, syscall.EPIPE)
	require.ErrorIs(t, err, tcpstack.ErrReset)
	_, err = c.Read(make([]byte, 10))
	require.ErrorIs(t, err, io.EOF, "the reset was reported: later Reads see the end of the stream, as on Linux")

	c2, s2 := p.connect(t)
	require.NoError(t, s2.Abort())
	waitFor(func() bool { return c2.TCB().State == tcpfsm.Closed })
	_, err = c2.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = c2.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE)
	// Close after a reset succeeds, as close(2) does.
	require.NoError(t, c2.Close())
}

func TestWriteAfterCloseWrite(t *testing.T) {
	p := newPair(t, tcpstack.Config{})
	c, _ := p.connect(t)
	require.NoError(t, c.CloseWrite())
	require.NoError(t, c.CloseWrite(), "a second shutdown is harmless")
	n, err := c.Write([]byte("late"))
	require.Zero(t, n)
	requireOpError(t, err, "write")
	require.ErrorIs(t, err, syscall.EPIPE)
	require.NotErrorIs(t, err, net.ErrClosed)
}

func TestClosedConn(t *testing.T) {
	// After a local Close, every call fails with net.ErrClosed inside a
	// *net.OpError.
	p := newPair(t, tcpstack.Config{})
	c, _ := p.connect(t)
	require.NoError(t, c.Close())
	_, err := c.Read(make([]byte, 1))
	requireOpError(t, err, "read")
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = c.Write([]byte("x"))
	requireOpError(t, err, "write")
	require.ErrorIs(t, err, net.ErrClosed)
	err = c.Close()
	requireOpError(t, err, "close")
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, c.CloseWrite(), net.ErrClosed)
	require.ErrorIs(t, c.CloseRead(), net.ErrClosed)
	require.ErrorIs(t, c.SetNoDelay(true), net.ErrClosed)

	// And after the Host closes, with net.ErrClosed too.
	c2, _ := p.connect(t)
	require.NoError(t, p.a.Close())
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, err, ErrClosed)
	_, err = p.a.DialContext(context.Background(), "tcp", "10.0.0.2:80")
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = p.a.Listen("tcp", ":81")
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestDeadlineErrors(t *testing.T) {
	// A deadline that has passed fails Read and Write at once, even with
	// data waiting and room to write, with os.ErrDeadlineExceeded; its
	// Timeout is true. Nothing is written.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	_, err := s.Write([]byte("waiting"))
	require.NoError(t, err)
	waitFor(func() bool { tcb := c.TCB(); return tcb.Unread() > 0 })
	require.NoError(t, c.SetDeadline(time.Now().Add(-time.Second)))
	n, err := c.Read(make([]byte, 10))
	require.Zero(t, n)
	requireOpError(t, err, "read")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout())
	n, err = c.Write([]byte("not sent"))
	require.Zero(t, n)
	requireOpError(t, err, "write")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	tcb := c.TCB()
	st, _ := tcb.Status()
	require.Zero(t, st.Unsent+st.InFlight, "a write past its deadline queued data")

	// A deadline in the future ends a blocked Read.
	require.NoError(t, c.SetDeadline(time.Time{}))
	got := make([]byte, 7)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = c.Read(got)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestRetransmissionTimeout(t *testing.T) {
	// The path goes dark with data unacknowledged: once R2 has passed,
	// Read fails with ETIMEDOUT (and tcpstack.ErrTimeout), a timeout.
	p := newPair(t, tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{
		InitialRTO: 100 * time.Millisecond, MinRTO: 100 * time.Millisecond, R2: 500 * time.Millisecond}}})
	c, _ := p.connect(t)
	p.ga.blocked.Store(true)
	p.gb.blocked.Store(true)
	_, err := c.Write([]byte("lost"))
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	requireOpError(t, err, "read")
	require.ErrorIs(t, err, syscall.ETIMEDOUT)
	require.ErrorIs(t, err, tcpstack.ErrTimeout)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout())
	_, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE, "the error was reported: writes get EPIPE")
}

func TestDialCancelFreesPort(t *testing.T) {
	// Cancelling the context of a Dial in SYN-SENT resets the attempt
	// and frees its port: with one ephemeral port, a second Dial gets
	// it. While the first holds it, a Dial fails with EADDRNOTAVAIL.
	p := newPair(t, tcpstack.Config{EphemeralLow: 50000, EphemeralHigh: 50000})
	p.ga.blocked.Store(true) // SYNs go nowhere
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := p.a.DialContext(ctx, "tcp", "10.0.0.2:80")
			errc <- err
		}()
		waitFor(func() bool { return p.a.Conns() == 1 })
		_, err := p.a.DialContextAddrPort(context.Background(), netip.AddrPortFrom(addrB, 80))
		require.ErrorIs(t, err, syscall.EADDRNOTAVAIL)
		require.ErrorIs(t, err, tcpstack.ErrNoPorts)
		cancel()
		err = <-errc
		requireOpError(t, err, "dial")
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, p.a.Conns(), "the cancelled connection is gone from the stack")
	}
	// A context already done fails at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.a.DialContext(ctx, "tcp", "10.0.0.2:80")
	require.ErrorIs(t, err, context.Canceled)
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = p.a.DialContext(ctx, "tcp", "10.0.0.2:80")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout())
}

func TestDialAndListenBadInput(t *testing.T) {
	// Bad networks and addresses fail with package net's errors; none
	// panics.
	p := newPair(t, tcpstack.Config{})
	ctx := context.Background()
	for _, c := range []struct{ network, address string }{
		{"udp", "10.0.0.2:80"}, {"tcp", "10.0.0.2"}, {"tcp", "10.0.0.2:99999"}, {"tcp", ":80"},
		{"tcp", "10.0.0.2:0"}, {"tcp6", "10.0.0.2:80"}, {"tcp", "[::1]:80"}, {"tcp", "0.0.0.0:80"}, {"", ""},
	} {
		_, err := p.a.DialContext(ctx, c.network, c.address)
		requireOpError := func() {
			var oe *net.OpError
			require.True(t, errors.As(err, &oe), "%s %q: %v", c.network, c.address, err)
			require.Equal(t, "dial", oe.Op)
		}
		requireOpError()
	}
	_, err := p.a.DialContext(ctx, "tcp", "[::1]:80")
	require.ErrorIs(t, err, syscall.ENETUNREACH, "no IPv6 address")
	require.ErrorIs(t, err, ErrNoLocalAddr)
	_, err = p.a.DialContextAddrPort(ctx, netip.AddrPort{})
	require.Error(t, err)

	_, err = p.a.Listen("udp", ":80")
	require.Error(t, err)
	_, err = p.a.Listen("tcp", "10.9.9.9:80")
	require.ErrorIs(t, err, syscall.EADDRNOTAVAIL, "not one of the host's addresses")
	_, err = p.b.Listen("tcp", ":80")
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorIs(t, err, tcpstack.ErrPortInUse)
	ln, err := p.a.Listen("tcp4", ":0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.GreaterOrEqual(t, port, 49152, "an ephemeral port")
	require.Equal(t, "0.0.0.0", ln.Addr().(*net.TCPAddr).IP.String())
	require.NoError(t, ln.Close())
	err = ln.Close()
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	var oe *net.OpError
	require.True(t, errors.As(err, &oe) && oe.Op == "accept")
}

func TestDialByNameAndService(t *testing.T) {
	// Listen and Dial take package net's address forms, a port by
	// service name included, and report addresses as *net.TCPAddr.
	p := newPair(t, tcpstack.Config{})
	ln, err := p.b.Listen("tcp", "10.0.0.2:http-alt") // 8080 in /etc/services, else a number
	if err != nil {
		ln, err = p.b.Listen("tcp", "10.0.0.2:8080")
	}
	require.NoError(t, err)
	defer ln.Close()
	require.Equal(t, "10.0.0.2:8080", ln.Addr().String())
	c, err := p.a.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "10.0.0.2:8080", c.RemoteAddr().String())
	require.True(t, strings.HasPrefix(c.LocalAddr().String(), "10.0.0.1:"))
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())
}

func TestListenerDeadline(t *testing.T) {
	p := newPair(t, tcpstack.Config{})
	require.NoError(t, p.ln.SetDeadline(time.Now().Add(10*time.Millisecond)))
	_, err := p.ln.Accept()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, p.ln.SetDeadline(time.Time{}))
	p.connect(t)
}

func TestLogger(t *testing.T) {
	// The host logs connection events: established and closed at Debug,
	// refused and reset at Info.
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newPair(t, tcpstack.Config{}, func(c *Config) { c.Logger = log })
	_, err := p.a.DialContext(context.Background(), "tcp", "10.0.0.2:81")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	c, s := p.connect(t)
	require.NoError(t, s.Abort())
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	c2, s2 := p.connect(t)
	require.NoError(t, c2.Close())
	require.NoError(t, s2.Close())
	waitFor(func() bool { return strings.Contains(buf.String(), "tcp connection closed") })
	out := buf.String()
	require.Contains(t, out, `level=INFO msg="tcp dial failed" local=10.0.0.1:`)
	require.Contains(t, out, "remote=10.0.0.2:81 err=\"connection refused\"")
	require.Contains(t, out, `level=DEBUG msg="tcp connection established"`)
	require.Contains(t, out, `level=INFO msg="tcp connection reset"`)
	require.Contains(t, out, `level=DEBUG msg="tcp connection closed"`)
	require.NotContains(t, out, "tcp connection refused", "a failed dial is logged once")

	// Without a Logger nothing is logged, and nothing breaks.
	q := newPair(t, tcpstack.Config{})
	q.connect(t)
}

// syncBuffer is a bytes.Buffer the host's goroutines write while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
