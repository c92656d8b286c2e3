//go:build linux

package tun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var (
	kernelPrefix = netip.MustParsePrefix("10.7.0.1/24")
	kernelAddr   = kernelPrefix.Addr()
	ourAddr      = netip.MustParseAddr("10.7.0.2")
)

// setup makes the TUN device and a tcpfsm host on it.
func setup(t *testing.T, loss float64) *host.Host {
	h, _ := setupDevice(t, loss, tcpfsm.Config{})
	return h
}

// setupDevice is setup with TCP settings cfg (its buffers set here), also
// returning the device.
func setupDevice(t *testing.T, loss float64, cfg tcpfsm.Config) (*host.Host, *Device) {
	d, err := Open("tcpfsm0")
	if err != nil {
		t.Log("SKIP-NETNS", err)
		t.FailNow()
	}
	if err := d.Configure(kernelPrefix); err != nil {
		t.Fatal(err)
	}
	d.Loss = loss
	cfg.RecvBuffer = 1 << 20
	h, err := host.New(d, host.Config{Addrs: []netip.Addr{ourAddr}, Stack: tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: cfg}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, d
}

func TestLargeSegmentsToTheKernel(t *testing.T) {
	// Over a TUN device with a virtio-net header, the host writes large
	// segments whole and the kernel cuts them into MSS-sized parts:
	// 10 MiB echoed each way arrive intact, and most of ours went large.
	if !peertest.InNetns(t) {
		return
	}
	d, err := OpenLarge("tcpfsm0")
	if err != nil {
		t.Log("SKIP-NETNS", err)
		t.FailNow()
	}
	if err := d.Configure(kernelPrefix); err != nil {
		t.Fatal(err)
	}
	h, err := host.New(d, host.Config{Addrs: []netip.Addr{ourAddr}, Stack: tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20,
		Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, _ := dialKernelEcho(t, h)
	defer c.Close()
	peertest.SendAndHalfClose(t, c, c, peertest.Payload(10<<20))
	st := c.Endpoint().Stats()
	t.Logf("%d large writes for %d segments out", d.LargeWrites.Load(), st.SegmentsOut)
	if d.LargeWrites.Load() == 0 || d.LargeWrites.Load()*4 > uint64(st.SegmentsOut) {
		t.Fatalf("%d large writes for %d segments: few went large", d.LargeWrites.Load(), st.SegmentsOut)
	}
}

func TestKernelClientOurServer(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h := setup(t, 0)
	ln, err := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	go peertest.Echo(ln)
	c, err := net.DialTimeout("tcp", "10.7.0.2:80", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peertest.SendAndHalfClose(t, c.(*net.TCPConn), c.(*net.TCPConn), peertest.Payload(10<<20)) // 10 MiB each way, then half-close both ways
}

// dialKernelEcho starts an echo server on the kernel's TCP and connects
// to it from tcpfsm; it returns the connection and the server's port.
func dialKernelEcho(t *testing.T, h *host.Host) (*host.Conn, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "10.7.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go peertest.Echo(ln)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.DialContextAddrPort(ctx, netip.AddrPortFrom(kernelAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	return c, port
}

func TestOurClientKernelServer(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h := setup(t, 0)
	c, _ := dialKernelEcho(t, h)
	defer c.Close()
	peertest.SendAndHalfClose(t, c, c, peertest.Payload(10<<20))
	st := c.Endpoint().TCB()
	s, _ := st.Status()
	t.Logf("negotiated with Linux: MSS %d, window scale %d/%d, timestamps %v, SACK %v", s.SendMSS, s.SndShift, s.RcvShift, s.Timestamps, s.SACK)
	if !s.Timestamps || !s.SACK || s.SndShift == 0 {
		t.Fatalf("options not negotiated with the kernel: %+v", s)
	}
}

// TestWithLossBothWays echoes 2 MiB through tcpfsm with 5% of packets
// lost each way. Our side runs with Linux-like loss recovery (200 ms RTO
// floor, early retransmit, the tail loss probe); with RFC 6298's 1 s floor
// alone the same run took about 50 s, most of it waiting for timeouts.
func TestWithLossBothWays(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h, _ := setupDevice(t, 0.05, tcpfsm.Config{MinRTO: 200 * time.Millisecond, EarlyRetransmit: true, TailLossProbe: true})
	ln, _ := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	go peertest.Echo(ln)
	c, err := net.DialTimeout("tcp", "10.7.0.2:80", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(4 * time.Minute))
	start := time.Now()
	peertest.SendAndHalfClose(t, c.(*net.TCPConn), c.(*net.TCPConn), peertest.Payload(2<<20))
	t.Logf("2 MiB echoed through tcpfsm at 5%% loss each way in %v", time.Since(start))
}

func TestResetsBothWays(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h := setup(t, 0)
	// The kernel connects to a port nobody listens on: refused by our RST.
	if _, err := net.DialTimeout("tcp", "10.7.0.2:81", 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("kernel dial to a closed tcpfsm port: %v, want ECONNREFUSED", err)
	}
	// We connect to a kernel port nobody listens on: refused by its RST.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.DialContextAddrPort(ctx, netip.AddrPortFrom(kernelAddr, 9)); !errors.Is(err, tcpstack.ErrRefused) {
		t.Fatalf("tcpfsm dial to a closed kernel port: %v, want ErrRefused", err)
	}
	// Abort: the kernel's read ends with ECONNRESET.
	ln, _ := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Read(make([]byte, 1)) // the kernel's connect has returned
			_ = c.(*host.Conn).Abort()
		}
	}()
	c, err := net.DialTimeout("tcp", "10.7.0.2:80", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("kernel read after our abort: %v, want ECONNRESET", err)
	}
}

func TestHTTPServedToTheKernel(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h := setup(t, 0)
	ln, _ := h.ListenAddrPort(netip.AddrPortFrom(ourAddr, 80))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "served by tcpfsm to "+r.UserAgent())
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	req, _ := http.NewRequest("GET", "http://10.7.0.2/", nil)
	req.Header.Set("User-Agent", "the kernel's TCP")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "served by tcpfsm to the kernel's TCP" {
		t.Fatalf("body %q", body)
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-s", "-m", "10", "http://10.7.0.2/").Output()
		if err != nil || !bytes.HasPrefix(out, []byte("served by tcpfsm to curl")) {
			t.Fatalf("curl: %v %q", err, out)
		}
	}
}
