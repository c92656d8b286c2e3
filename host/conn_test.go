package host

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// The interfaces of *net.TCPConn that programs look for.
var (
	_ net.Conn      = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ interface {
		CloseRead() error
		CloseWrite() error
		SetNoDelay(bool) error
		SetKeepAlive(bool) error
		SetKeepAlivePeriod(time.Duration) error
		SetLinger(int) error
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	} = (*Conn)(nil)
	_ net.Listener = (*Listener)(nil)
)

func TestCloseRead(t *testing.T) {
	// After CloseRead, Read returns io.EOF, even with data waiting, and
	// the sending half goes on.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	_, err := s.Write([]byte("unread"))
	require.NoError(t, err)
	waitFor(func() bool { tcb := c.TCB(); return tcb.Unread() > 0 })
	require.NoError(t, c.CloseRead())
	n, err := c.Read(make([]byte, 10))
	require.Zero(t, n)
	require.Equal(t, io.EOF, err)
	_, err = c.Write([]byte("still"))
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	require.Equal(t, "still", string(got))
}

func TestCloseWriteHalfClose(t *testing.T) {
	// After CloseWrite the peer reads EOF, and this side still reads
	// what the peer sends.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	_, err := c.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	req, err := io.ReadAll(s)
	require.NoError(t, err)
	require.Equal(t, "request", string(req))
	_, err = s.Write([]byte("response"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	resp, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "response", string(resp))
}

// plainReader and plainWriter have no ReadFrom or WriteTo.
type (
	plainReader struct{ r io.Reader }
	plainWriter struct{ w io.Writer }
)

func (r plainReader) Read(p []byte) (int, error)  { return r.r.Read(p) }
func (w plainWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

func TestReadFromAndWriteTo(t *testing.T) {
	// io.Copy into and out of a Conn goes through its ReadFrom and
	// WriteTo, from and to readers and writers with and without their
	// own, and between two Conns (a proxy), and moves every byte.
	big := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}
	p := newPair(t, big)
	data := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB
	for _, tc := range []struct {
		name string
		src  func() io.Reader
		dst  func(*bytes.Buffer) io.Writer
	}{
		{"WriterTo source, ReaderFrom sink", func() io.Reader { return bytes.NewReader(data) },
			func(b *bytes.Buffer) io.Writer { return b }},
		{"plain source and sink", func() io.Reader { return plainReader{bytes.NewReader(data)} },
			func(b *bytes.Buffer) io.Writer { return plainWriter{b} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := p.connect(t)
			done := make(chan error, 1)
			var got bytes.Buffer
			go func() {
				n, err := s.WriteTo(tc.dst(&got))
				if err == nil && n != int64(len(data)) {
					err = io.ErrShortWrite
				}
				done <- err
			}()
			n, err := c.ReadFrom(tc.src())
			require.NoError(t, err)
			require.Equal(t, int64(len(data)), n)
			require.NoError(t, c.CloseWrite())
			require.NoError(t, <-done)
			require.True(t, bytes.Equal(data, got.Bytes()), "%d of %d bytes", got.Len(), len(data))
		})
	}
	t.Run("proxy", func(t *testing.T) {
		// client -> c1 ... s1 -> (io.Copy) -> c2 ... s2
		c1, s1 := p.connect(t)
		c2, s2 := p.connect(t)
		copied := make(chan int64, 1)
		go func() {
			n, _ := io.Copy(c2, s1) // s1.WriteTo(c2), then c2.ReadFrom
			_ = c2.CloseWrite()
			copied <- n
		}()
		go func() {
			_, _ = c1.Write(data[:1<<20])
			_ = c1.CloseWrite()
		}()
		got, err := io.ReadAll(s2)
		require.NoError(t, err)
		require.Equal(t, int64(1<<20), <-copied)
		require.True(t, bytes.Equal(data[:1<<20], got))
	})
}

func TestSetLingerZeroResets(t *testing.T) {
	// With SetLinger(0), Close resets: the peer's Read fails with
	// ECONNRESET.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	require.NoError(t, c.SetLinger(0))
	require.NoError(t, c.Close())
	_, err := s.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)

	// A negative or positive value closes gracefully: the peer reads EOF.
	for _, sec := range []int{-1, 5} {
		c, s := p.connect(t)
		require.NoError(t, c.SetLinger(sec))
		_, err := c.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		got, err := io.ReadAll(s)
		require.NoError(t, err, "SetLinger(%d)", sec)
		require.Equal(t, "bye", string(got))
	}
}

func TestSetNoDelay(t *testing.T) {
	// With the peer's ACKs lost, Nagle holds a second small write while
	// the first is unacknowledged; SetNoDelay(true) sends it at once.
	p := newPair(t, tcpstack.Config{})
	c, _ := p.connect(t)
	p.gb.blocked.Store(true)
	status := func() tcpfsm.Status {
		tcb := c.TCB()
		st, _ := tcb.Status()
		return st
	}
	_, err := c.Write([]byte("first"))
	require.NoError(t, err)
	_, err = c.Write([]byte("second"))
	require.NoError(t, err)
	require.Equal(t, uint32(6), status().Unsent, "Nagle holds the second write")
	require.NoError(t, c.SetNoDelay(true))
	require.Zero(t, status().Unsent, "SetNoDelay(true) sends it")
	_, err = c.Write([]byte("third"))
	require.NoError(t, err)
	require.Zero(t, status().Unsent)
	require.NoError(t, c.SetNoDelay(false))
	_, err = c.Write([]byte("fourth"))
	require.NoError(t, err)
	require.Equal(t, uint32(6), status().Unsent, "Nagle is back")
}

func TestSetKeepAlive(t *testing.T) {
	// With keep-alive on after 1 s idle, a connection whose path went
	// dark ends with ETIMEDOUT once the probes go unanswered.
	cfg := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{
		KeepaliveInterval: 100 * time.Millisecond, KeepaliveCount: 2}}}
	p := newPair(t, cfg)
	c, _ := p.connect(t)
	require.NoError(t, c.SetKeepAlivePeriod(-1), "a negative period changes nothing")
	require.NoError(t, c.SetKeepAlivePeriod(time.Second))
	require.NoError(t, c.SetKeepAlive(true))
	p.ga.blocked.Store(true)
	p.gb.blocked.Store(true)
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ETIMEDOUT)

	// Off again, and the default period: no error.
	c2, _ := newPair(t, tcpstack.Config{}).connect(t)
	require.NoError(t, c2.SetKeepAlive(true))
	c2.h.mu.Lock()
	require.Zero(t, c2.keepIdle, "SetKeepAlive(true) alone uses Go's 15 s default")
	c2.h.mu.Unlock()
	require.NoError(t, c2.SetKeepAlive(false))
	require.NoError(t, c2.SetKeepAlivePeriod(0))
}

func TestSetWriteBuffer(t *testing.T) {
	// SetWriteBuffer bounds the bytes written and not acknowledged: with
	// the path dark, a Write queues that many and waits.
	p := newPair(t, tcpstack.Config{})
	c, _ := p.connect(t)
	require.Error(t, c.SetWriteBuffer(-1))
	require.NoError(t, c.SetWriteBuffer(3*1024))
	p.ga.blocked.Store(true)
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
	n, err := c.Write(make([]byte, 10000))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, 3*1024, n)
}

func TestSetReadBuffer(t *testing.T) {
	// SetReadBuffer accepts any size and keeps the Stack's; the
	// connection works as before. A negative size is EINVAL.
	p := newPair(t, tcpstack.Config{})
	c, s := p.connect(t)
	require.NoError(t, c.SetReadBuffer(1<<30))
	require.NoError(t, c.SetReadBuffer(0))
	err := c.SetReadBuffer(-1)
	require.ErrorIs(t, err, syscall.EINVAL)
	msg := strings.Repeat("x", 200_000)
	go func() {
		_, _ = io.WriteString(s, msg)
		_ = s.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}
