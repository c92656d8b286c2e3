package host

import (
	"errors"
	"net"
	"syscall"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// ErrNoLocalAddr is the error, inside a *net.OpError, of a Dial when the
// host has no address of the remote address's family (see Config.Addrs).
// errors.Is matches it against syscall.ENETUNREACH too.
var ErrNoLocalAddr = errors.New("host: no local address of the remote address's family")

// sysError is an error as the kernel's TCP gives it, an errno, standing
// for the error of tcpstack or of this package behind it: errors.Is
// matches either, and Error reads as the kernel's message.
type sysError struct {
	errno syscall.Errno
	err   error // may be nil
}

func (e *sysError) Error() string { return e.errno.Error() }

// Unwrap returns the errno and the error it stands for.
func (e *sysError) Unwrap() []error {
	if e.err == nil {
		return []error{e.errno}
	}
	return []error{e.errno, e.err}
}

// Timeout reports whether the errno is a timeout (ETIMEDOUT is), so
// net.OpError.Timeout reports it as *net.TCPConn's errors do.
func (e *sysError) Timeout() bool { return e.errno.Timeout() }

// Temporary is the errno's, for net.Error.
func (e *sysError) Temporary() bool { return e.errno.Temporary() }

// errnoOf returns the errno the kernel reports for the end of a
// connection that tcpstack reports as err, or 0 if err is none of those.
func errnoOf(err error) syscall.Errno {
	switch {
	case errors.Is(err, tcpstack.ErrReset):
		return syscall.ECONNRESET
	case errors.Is(err, tcpstack.ErrRefused):
		return syscall.ECONNREFUSED
	case errors.Is(err, tcpstack.ErrTimeout), errors.Is(err, tcpstack.ErrUserTimeout):
		return syscall.ETIMEDOUT
	case errors.Is(err, tcpstack.ErrAborted):
		return syscall.ECONNABORTED
	}
	return 0
}

// closingErr reports whether err is the state machine's refusal of a
// call because the connection is closing or gone.
func closingErr(err error) bool {
	return errors.Is(err, tcpfsm.ErrConnectionClosing) || errors.Is(err, tcpfsm.ErrConnectionDoesNotExist)
}

// opError wraps err as *net.TCPConn's methods do; nil stays nil.
func opError(op string, local, remote net.Addr, err error) error {
	if err == nil {
		return nil
	}
	network := "tcp"
	switch {
	case remote != nil:
		network = remote.Network()
	case local != nil:
		network = local.Network()
	}
	return &net.OpError{Op: op, Net: network, Source: local, Addr: remote, Err: err}
}
