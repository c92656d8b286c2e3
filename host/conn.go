package host

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Conn is a TCP connection of a Host. It implements net.Conn and the
// other methods of *net.TCPConn that make sense without a socket:
// CloseRead, CloseWrite, ReadFrom, WriteTo and the settings. Its errors
// are described in the package documentation.
type Conn struct {
	h            *Host
	e            *tcpstack.Endpoint
	rdl, wdl     deadline      // SetReadDeadline's, SetWriteDeadline's
	keepIdle     time.Duration // SetKeepAlivePeriod's idle time, 0 if not set
	rwake, wwake chan struct{} // signaled when a blocked Read or Write may go on; lent while one waits
	linger       int32         // SetLinger's value; -1 by default
	closed       bool          // Close or Abort was called
	rclosed      bool          // CloseRead was called: Read returns io.EOF
	wclosed      bool          // CloseWrite was called: Write fails with EPIPE
	reported     bool          // the connection's error was returned once (later writes get EPIPE)
	logged       bool          // its end was logged
	keepalive    bool          // keep-alive probes are on
	rwait, wwait uint8         // Reads and Writes waiting on them
}

// deadline is a time.Time in nanoseconds since 1970, 0 for none: 8 bytes
// where a time.Time takes 24, so an idle connection costs less.
type deadline int64

// deadlineOf converts t; the zero time is no deadline.
func deadlineOf(t time.Time) deadline {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n != 0 {
		return deadline(n)
	}
	return 1 // 1970 exactly: long passed, and not "none"
}

// time returns the deadline as a time.Time, the zero time for none.
func (d deadline) time() time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(d))
}

// waitReadLocked waits until a blocked Read may go on, on a channel lent
// by the host for as long as a Read waits, so that an idle connection
// holds none. h.mu held.
func (c *Conn) waitReadLocked() {
	if c.rwake == nil {
		c.rwake = c.h.takeChanLocked()
	}
	c.rwait++
	c.h.waitLocked(c.rwake, c.rdl.time())
	if c.rwait--; c.rwait == 0 {
		c.h.putChanLocked(c.rwake)
		c.rwake = nil
	}
}

// waitWriteLocked is waitReadLocked for a blocked Write.
func (c *Conn) waitWriteLocked() {
	if c.wwake == nil {
		c.wwake = c.h.takeChanLocked()
	}
	c.wwait++
	c.h.waitLocked(c.wwake, c.wdl.time())
	if c.wwait--; c.wwait == 0 {
		c.h.putChanLocked(c.wwake)
		c.wwake = nil
	}
}

// defaultKeepAliveIdle is the idle time SetKeepAlive(true) uses when
// SetKeepAlivePeriod gave none: Go's default for *net.TCPConn.
const defaultKeepAliveIdle = 15 * time.Second

// newConn makes the Conn of e and registers it for wake-ups.
func (h *Host) newConn(e *tcpstack.Endpoint) *Conn {
	c := &Conn{h: h, e: e,
		linger: -1, keepalive: h.keepaliveDefault}
	e.SetValue(c) // found again from the readiness report
	h.live++
	return c
}

// passed reports whether deadline is set and has passed.
func passed(deadline time.Time) bool { return !deadline.IsZero() && !time.Now().Before(deadline) }

// opErr wraps err as *net.TCPConn's method op does.
func (c *Conn) opErr(op string, err error) error {
	return opError(op, c.h.netAddr(c.e.LocalAddr()), c.h.netAddr(c.e.RemoteAddr()), err)
}

// stateErrLocked returns why a call op cannot go on regardless of the
// connection's state: a local Close, the Host closed, or the deadline.
func (c *Conn) stateErrLocked(op string, dl deadline) error {
	switch {
	case c.closed:
		return c.opErr(op, net.ErrClosed)
	case c.h.closed:
		return c.opErr(op, ErrClosed)
	case passed(dl.time()):
		return c.opErr(op, os.ErrDeadlineExceeded)
	}
	return nil
}

// endErrLocked turns the error of an Endpoint call into what the kernel
// would report for op: the connection's end as its errno, once; after
// that, and after the sending half was closed, EPIPE to a write.
func (c *Conn) endErrLocked(op string, err error) error {
	if errno := errnoOf(err); errno != 0 {
		if op == "write" && c.reported {
			errno = syscall.EPIPE
		}
		c.reported = true
		return c.opErr(op, &sysError{errno: errno, err: err})
	}
	if op == "write" && closingErr(err) {
		return c.opErr(op, &sysError{errno: syscall.EPIPE, err: err})
	}
	return c.opErr(op, err)
}

// Read reads received bytes; it returns io.EOF after the peer closed,
// or after CloseRead. After a reset or a timeout the first Read or Write
// reports it (ECONNRESET, ETIMEDOUT), and later Reads return io.EOF, as
// on Linux.
func (c *Conn) Read(p []byte) (int, error) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if err := c.stateErrLocked("read", c.rdl); err != nil {
			return 0, err
		}
		if c.rclosed {
			return 0, io.EOF
		}
		n, err := c.e.Read(p, h.clock.Now())
		if n > 0 {
			h.flushLocked()
			return n, nil // an error after the data is seen by the next Read
		}
		switch {
		case err == nil:
			return 0, nil // len(p) == 0
		case errors.Is(err, io.EOF):
			return 0, io.EOF
		case !errors.Is(err, tcpstack.ErrWouldBlock):
			if c.reported && errnoOf(err) != 0 {
				return 0, io.EOF // the end was reported once; then the stream is over, as read(2) says
			}
			return 0, c.endErrLocked("read", err)
		}
		c.waitReadLocked()
	}
}

// Write sends all of p, waiting for room in the send buffer. After
// CloseWrite it fails with EPIPE, as after a reset once the reset was
// reported.
func (c *Conn) Write(p []byte) (int, error) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	sent := 0
	for {
		if err := c.stateErrLocked("write", c.wdl); err != nil {
			return sent, err
		}
		if c.wclosed {
			return sent, c.opErr("write", &sysError{errno: syscall.EPIPE, err: tcpfsm.ErrConnectionClosing})
		}
		if sent == len(p) {
			return sent, nil
		}
		n, err := c.e.Write(p[sent:], h.clock.Now())
		sent += n
		if n > 0 {
			h.flushLocked()
			continue
		}
		if err != nil && !errors.Is(err, tcpstack.ErrWouldBlock) {
			return sent, c.endErrLocked("write", err)
		}
		c.waitWriteLocked()
	}
}

// Close closes the connection (both halves): queued data goes out, then
// a FIN, in the background. Unread data, or data that arrives later,
// resets the connection instead, as the kernel does; so does a Close
// after SetLinger(0). A second Close returns net.ErrClosed.
func (c *Conn) Close() error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	if c.linger == 0 {
		_ = c.e.Abort(h.clock.Now())
	} else {
		_ = c.e.Close(h.clock.Now()) // a connection that already ended has nothing to close
	}
	h.flushLocked()
	c.releaseLocked()
	return nil
}

// CloseWrite closes the sending half: the peer reads EOF, and this side
// can still read. Later writes fail with EPIPE.
func (c *Conn) CloseWrite() error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.stateErrLocked("close", 0); err != nil {
		return err
	}
	if c.wclosed {
		return nil
	}
	c.wclosed = true
	err := c.e.CloseWrite(h.clock.Now())
	h.flushLocked()
	wake(c.wwake)
	if errno := errnoOf(err); errno != 0 {
		return c.opErr("close", &sysError{errno: syscall.ENOTCONN, err: err}) // shutdown(2) of a connection that ended
	}
	return nil
}

// CloseRead closes the receiving half: Read returns io.EOF from now on.
// Nothing is sent; data that arrives later stays unread, so a Close
// after it resets the connection, as the kernel's does.
func (c *Conn) CloseRead() error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.stateErrLocked("close", 0); err != nil {
		return err
	}
	c.rclosed = true
	wake(c.rwake)
	return nil
}

// Abort resets the connection (an RST to the peer) and closes the Conn.
func (c *Conn) Abort() error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	_ = c.e.Abort(h.clock.Now()) // a connection that already ended needs no reset
	h.flushLocked()
	c.releaseLocked()
	return nil
}

// releaseLocked wakes the connection's waiters, which find it closed,
// and forgets it once the stack has let go of it too (flushLocked forgets
// it when that happens later).
func (c *Conn) releaseLocked() {
	wake(c.rwake)
	wake(c.wwake)
	if st := c.e.State(); st == tcpfsm.Closed || st == tcpfsm.TimeWait {
		c.logEndLocked()
		c.h.forgetLocked(c.e)
	}
}

// logEndLocked logs how the connection ended, once.
func (c *Conn) logEndLocked() {
	if c.logged || c.h.log == nil {
		return
	}
	c.logged = true
	err := c.e.Err()
	level, msg := slog.LevelInfo, "tcp connection aborted"
	switch {
	case err == nil:
		level, msg = slog.LevelDebug, "tcp connection closed"
	case errors.Is(err, tcpstack.ErrReset):
		msg = "tcp connection reset"
	case errors.Is(err, tcpstack.ErrTimeout), errors.Is(err, tcpstack.ErrUserTimeout):
		msg = "tcp connection timed out"
	case errors.Is(err, tcpstack.ErrRefused):
		msg = "tcp connection refused"
	}
	attrs := []slog.Attr{slog.String("local", c.e.LocalAddr().String()), slog.String("remote", c.e.RemoteAddr().String())}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	c.h.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// logLocked logs a connection event.
func (c *Conn) logLocked(level slog.Level, msg string) {
	if c.h.log != nil {
		c.h.log.LogAttrs(context.Background(), level, msg, slog.String("local", c.e.LocalAddr().String()), slog.String("remote", c.e.RemoteAddr().String()))
	}
}

// TCB returns a copy of the connection's state (RFC 9293 section 3.3.1),
// taken under the host's lock, so it is safe while other goroutines read
// and write the connection.
func (c *Conn) TCB() tcpfsm.TCB {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return c.e.TCB()
}

// Endpoint returns the connection's Endpoint, for its state and counters.
// Use it only while holding no other call on the connection.
func (c *Conn) Endpoint() *tcpstack.Endpoint { return c.e }

// LocalAddr returns the local address.
// (The Conn keeps no net.Addr of its own, so that an idle connection
// costs less; each call makes one.)
func (c *Conn) LocalAddr() net.Addr {
	c.h.mu.Lock()
	ap := c.e.LocalAddr()
	c.h.mu.Unlock()
	return c.h.netAddr(ap)
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr {
	c.h.mu.Lock()
	ap := c.e.RemoteAddr()
	c.h.mu.Unlock()
	return c.h.netAddr(ap)
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.rdl, c.wdl = deadlineOf(d), deadlineOf(d)
	wake(c.rwake)
	wake(c.wwake)
	c.h.mu.Unlock()
	return nil
}

// SetReadDeadline sets when Read gives up: a Read blocked then, or called
// after, fails with os.ErrDeadlineExceeded (its Timeout is true), even if
// data is waiting. The zero time means never.
func (c *Conn) SetReadDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.rdl = deadlineOf(d)
	wake(c.rwake)
	c.h.mu.Unlock()
	return nil
}

// SetWriteDeadline sets when Write gives up: a Write blocked then, or
// called after, fails with os.ErrDeadlineExceeded, with what it queued
// before counted in its result. The zero time means never.
func (c *Conn) SetWriteDeadline(d time.Time) error {
	c.h.mu.Lock()
	c.wdl = deadlineOf(d)
	wake(c.wwake)
	c.h.mu.Unlock()
	return nil
}

// settingLocked checks that a setting can be changed: not after Close.
func (c *Conn) settingLocked() error {
	if c.closed {
		return c.opErr("set", net.ErrClosed)
	}
	return nil
}

// SetNoDelay turns the Nagle algorithm off (noDelay true: small writes go
// out at once) or back on (RFC 9293 MUST-17). The default is the Stack's
// configuration: Nagle on unless tcpfsm.Config.NoDelay.
func (c *Conn) SetNoDelay(noDelay bool) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	if err := c.e.SetNoDelay(noDelay, h.clock.Now()); err != nil && !closingErr(err) && errnoOf(err) == 0 {
		return c.opErr("set", err)
	}
	h.flushLocked()
	return nil
}

// SetKeepAlive turns keep-alive probes on or off. On, the first probe
// follows the idle time of SetKeepAlivePeriod, or 15 s (Go's default)
// without one; later probes follow tcpfsm.Config.KeepaliveInterval and
// KeepaliveCount.
func (c *Conn) SetKeepAlive(keepalive bool) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	c.keepalive = keepalive
	var idle time.Duration
	if keepalive {
		idle = c.keepIdle
		if idle == 0 {
			idle = defaultKeepAliveIdle
		}
	}
	return c.keepAliveLocked(idle)
}

// SetKeepAlivePeriod sets the idle time before the first keep-alive
// probe: 0 means 15 s, and a negative d changes nothing, as for
// *net.TCPConn. It applies at once if probes are on, else when
// SetKeepAlive turns them on.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	if d < 0 {
		return nil
	}
	if d == 0 {
		d = defaultKeepAliveIdle
	}
	c.keepIdle = d
	if !c.keepalive {
		return nil
	}
	return c.keepAliveLocked(d)
}

// keepAliveLocked sets the endpoint's keep-alive idle time (0: off).
func (c *Conn) keepAliveLocked(idle time.Duration) error {
	if err := c.e.SetKeepAlive(idle, c.h.clock.Now()); err != nil && !closingErr(err) && errnoOf(err) == 0 {
		return c.opErr("set", err)
	}
	c.h.flushLocked()
	return nil
}

// SetLinger sets what Close does with data not yet sent. With sec < 0,
// the default, Close returns at once and the data and a FIN go out in
// the background. With sec == 0, Close discards it and resets the
// connection (an RST, through Endpoint.Abort). With sec > 0, Close
// behaves as with sec < 0: it does not wait (Go documents this for
// *net.TCPConn on most systems), and the data goes on being sent until
// it is acknowledged or the connection times out.
func (c *Conn) SetLinger(sec int) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	c.linger = int32(min(max(sec, -1), 1<<30))
	return nil
}

// SetReadBuffer accepts a receive buffer size and keeps the Stack's:
// every connection of a Stack has the receive buffer of its
// configuration (tcpstack.Config.Endpoint.RecvBuffer), as the kernel
// clamps SO_RCVBUF to net.core.rmem_max. It fails only for a negative
// bytes (EINVAL) or after Close.
func (c *Conn) SetReadBuffer(bytes int) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	if bytes < 0 {
		return c.opErr("set", &sysError{errno: syscall.EINVAL})
	}
	return nil
}

// SetWriteBuffer limits the bytes written but not yet acknowledged to
// bytes (Endpoint.SetSendBuffer, which may round it up, to a whole KiB),
// at most the Stack's configured send buffer
// (tcpstack.Config.Endpoint.SendBuffer): a larger value, or 0, means
// that size, held to twice the peer's largest window as without the call
// (tcpstack.EndpointConfig.SendBuffer). Data already written stays
// queued. A negative bytes fails with EINVAL.
func (c *Conn) SetWriteBuffer(bytes int) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.settingLocked(); err != nil {
		return err
	}
	if bytes < 0 {
		return c.opErr("set", &sysError{errno: syscall.EINVAL})
	}
	c.e.SetSendBuffer(bytes)
	wake(c.wwake) // a larger buffer has room for a blocked Write
	return nil
}

// copyBuffers holds the buffers of ReadFrom and WriteTo when the other
// side cannot lend its own.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readerOnly and writerOnly hide a Conn's ReadFrom and WriteTo, so that
// the other side's ReadFrom or WriteTo, called by ours, does not call
// ours back.
type (
	readerOnly struct{ io.Reader }
	writerOnly struct{ io.Writer }
)

// ReadFrom implements io.ReaderFrom: it writes to the connection what it
// reads from r until io.EOF, and returns how many bytes it wrote. If r
// is an io.WriterTo (a bytes.Reader, a bufio.Reader, ...), r writes its
// own buffer to the connection, so the data is copied once, into the
// send buffer; otherwise it goes through one pooled buffer.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if wt, ok := r.(io.WriterTo); ok {
		return wt.WriteTo(writerOnly{c})
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(writerOnly{c}, readerOnly{r}, *bp)
}

// WriteTo implements io.WriterTo: it writes to w what it reads from the
// connection until EOF, and returns how many bytes it wrote. If w is an
// io.ReaderFrom (a bytes.Buffer, a bufio.Writer, an os.File, ...), the
// connection reads straight into w's buffer, so the data is copied once,
// out of the receive buffer; otherwise it goes through one pooled buffer.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(readerOnly{c})
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(writerOnly{w}, readerOnly{c}, *bp)
}
