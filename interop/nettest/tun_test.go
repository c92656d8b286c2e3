//go:build linux

package nettest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/tun"
)

var (
	kernelPrefix = netip.MustParsePrefix("10.7.0.1/24")
	ourAddr      = netip.MustParseAddr("10.7.0.2")
)

// inNetns runs the calling test again in a fresh user and network
// namespace, where it may make a TUN device, and reports whether this is
// that inner run. It skips the test where namespaces or TUN devices are
// not available.
func inNetns(t *testing.T) bool {
	if os.Getenv("TCPFSM_NETNS") == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.timeout=300s")
	cmd.Env = append(os.Environ(), "TCPFSM_NETNS="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("SKIP-NETNS")) {
		t.Skip("no TUN device here: " + string(out))
	}
	var ee *exec.Error
	if errors.As(err, &ee) || (err != nil && len(out) == 0) {
		t.Skipf("cannot create a user and network namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("inner run failed: %v\n%s", err, out)
	}
	t.Logf("inner run:\n%s", out)
	return false
}

func TestConnOverTUN(t *testing.T) {
	// A host.Conn over a TUN device, its peer the kernel's TCP: first
	// dialed by tcpfsm to a kernel listener, then accepted by tcpfsm
	// from a kernel dial.
	if !inNetns(t) {
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
