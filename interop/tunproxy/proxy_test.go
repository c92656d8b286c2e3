//go:build linux

package tunproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/tun"
)

func TestTransparentProxy(t *testing.T) {
	// In a namespace of its own: 198.51.100.0/24 is routed into the TUN
	// device; the kernel's client connects to addresses there; the proxy
	// (tcpfsm's forwarder) dials the same port on the kernel's own
	// address, and accepts only once that worked.
	if !peertest.InNetns(t) {
		return
	}
	d, err := tun.Open("tcpfsm0")
	if err != nil {
		t.Log("SKIP-NETNS", err)
		t.FailNow()
	}
	kernel := netip.MustParsePrefix("10.7.0.1/24")
	if err := d.Configure(kernel); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "route", "add", "198.51.100.0/24", "dev", "tcpfsm0").CombinedOutput(); err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	h, err := host.New(d, host.Config{Addrs: []netip.Addr{netip.MustParseAddr("10.7.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p, err := New(h, func(dst netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(kernel.Addr(), dst.Port()) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Serve(ctx) }()

	// The upstream: an echo server on the kernel's address.
	up, err := net.Listen("tcp", kernel.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	port := up.Addr().(*net.TCPAddr).Port

	payload := bytes.Repeat([]byte("proxied "), 100_000)
	for _, dst := range []string{"198.51.100.7", "198.51.100.8"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, itoa(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", dst, err)
		}
		go func() { _, _ = c.Write(payload); _ = c.(*net.TCPConn).CloseWrite() }()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("through the proxy to %s: %d of %d bytes, %v", dst, len(got), len(payload), err)
		}
	}
	// A port nobody listens on upstream: the client is refused, as it
	// would be without the proxy.
	_, err = net.DialTimeout("tcp", "198.51.100.9:1", 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed upstream port: %v, want ECONNREFUSED", err)
	}
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for n > 0 || i == len(b) {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
