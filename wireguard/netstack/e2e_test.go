package netstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm/wireguard/netstack"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	gvnetstack "golang.zx2c4.com/wireguard/tun/netstack"
)

// stackSide is what the tests need of either netstack: the same calls
// on tcpfsm's and on wireguard-go's gVisor one.
type stackSide struct {
	name   string
	addr   netip.Addr
	listen func(port uint16) (net.Listener, error)
	dial   func(ctx context.Context, network, address string) (net.Conn, error)
	lookup func(ctx context.Context, host string) ([]string, error)
	dev    tun.Device
}

const tunMTU = 1420

func newSide(t testing.TB, kind string, addr, dns netip.Addr) *stackSide {
	t.Helper()
	s := &stackSide{name: kind, addr: addr}
	switch kind {
	case "tcpfsm":
		dev, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr}, []netip.Addr{dns}, tunMTU)
		if err != nil {
			t.Fatal(err)
		}
		s.dev = dev
		s.listen = func(port uint16) (net.Listener, error) {
			return tnet.ListenTCPAddrPort(netip.AddrPortFrom(addr, port))
		}
		s.dial = tnet.DialContext
		s.lookup = tnet.LookupContextHost
	case "gvisor":
		dev, tnet, err := gvnetstack.CreateNetTUN([]netip.Addr{addr}, []netip.Addr{dns}, tunMTU)
		if err != nil {
			t.Fatal(err)
		}
		s.dev = dev
		s.listen = func(port uint16) (net.Listener, error) {
			return tnet.ListenTCPAddrPort(netip.AddrPortFrom(addr, port))
		}
		s.dial = tnet.DialContext
		s.lookup = tnet.LookupContextHost
	default:
		t.Fatalf("unknown stack %q", kind)
	}
	return s
}

func keyPair(t testing.TB) (priv, pub [32]byte) {
	t.Helper()
	if _, err := rand.Read(priv[:]); err != nil {
		t.Fatal(err)
	}
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(pub[:], p)
	return priv, pub
}

// tunnel joins two sides with two wireguard-go devices over loopback UDP
// with real WireGuard crypto (handshake, ChaCha20-Poly1305).
func tunnel(t testing.TB, a, b *stackSide) {
	t.Helper()
	sides := [2]*stackSide{a, b}
	var priv, pub [2][32]byte
	for i := range sides {
		priv[i], pub[i] = keyPair(t)
	}
	var devs [2]*device.Device
	var ports [2]int
	for i, s := range sides {
		level := device.LogLevelError
		if testing.Verbose() {
			level = device.LogLevelVerbose
		}
		d := device.NewDevice(s.dev, conn.NewDefaultBind(), device.NewLogger(level, fmt.Sprintf("%s-%d: ", s.name, i)))
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\nreplace_peers=true\npublic_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\n",
			hex.EncodeToString(priv[i][:]), hex.EncodeToString(pub[1-i][:]), sides[1-i].addr)
		if err := d.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := d.Up(); err != nil {
			t.Fatal(err)
		}
		get, err := d.IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(get, "\n") {
			if v, ok := strings.CutPrefix(line, "listen_port="); ok {
				ports[i], _ = strconv.Atoi(v)
			}
		}
		if ports[i] == 0 {
			t.Fatalf("no listen port in %q", get)
		}
		devs[i] = d
		t.Cleanup(d.Close)
	}
	for i, d := range devs {
		cfg := fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%d\n", hex.EncodeToString(pub[1-i][:]), ports[1-i])
		if err := d.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// serveHTTP runs an HTTP server on s's port 80: /download?n=N sends N
// bytes whose SHA-256 is in the trailer-free header X-Sum... computed
// by the client instead; /upload reads the body and answers its SHA-256;
// /hello answers "hello from NAME".
func serveHTTP(t testing.TB, s *stackSide) {
	t.Helper()
	l, err := s.listen(80)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.Atoi(r.URL.Query().Get("seed"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.Copy(w, io.LimitReader(newPattern(seed), int64(n)))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s %s", s.name, r.URL.Query().Get("i"))
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// pattern is a deterministic pseudo-random byte stream, so both ends can
// compute the SHA-256 of what should arrive.
type pattern struct{ x uint64 }

func newPattern(seed int) *pattern { return &pattern{x: uint64(seed)*0x9e3779b97f4a7c15 + 1} }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x)
	}
	return len(b), nil
}

func patternSum(seed int, n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(newPattern(seed), n))
	return hex.EncodeToString(h.Sum(nil))
}

func client(s *stackSide) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         s.dial,
		MaxIdleConnsPerHost: 100,
		DisableCompression:  true,
	}}
}

// bulkSize is what each direction carries; TCPFSM_WG_BULK overrides it
// (in bytes) for a quicker run.
func bulkSize() int64 {
	if v, err := strconv.ParseInt(os.Getenv("TCPFSM_WG_BULK"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 64 << 20
}

// exercise runs the HTTP checks with cli as client and srv as server.
func exercise(t *testing.T, cli, srv *stackSide) {
	c := client(cli)
	defer c.CloseIdleConnections()
	base := "http://" + netip.AddrPortFrom(srv.addr, 80).String()
	n := bulkSize()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("download", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/download?n=%d&seed=7", base, n), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		got, err := io.Copy(h, resp.Body)
		if err != nil || got != n {
			t.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != patternSum(7, n) {
			t.Errorf("sha256 %s, want %s", sum, patternSum(7, n))
		}
	})
	t.Run("upload", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/upload", io.LimitReader(newPattern(11), n))
		req.ContentLength = n
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d %s", n, patternSum(11, n)); string(body) != want {
			t.Errorf("server got %q, want %q", body, want)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/hello?i=%d", base, i), nil)
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if want := fmt.Sprintf("hello from %s %d", srv.name, i); err != nil || string(body) != want {
					errs <- fmt.Errorf("request %d: %q, %v; want %q", i, body, err, want)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

var (
	addrA = netip.MustParseAddr("10.44.0.1")
	addrB = netip.MustParseAddr("10.44.0.2")
)

func TestWireGuardPairs(t *testing.T) {
	for _, pair := range [][2]string{{"tcpfsm", "gvisor"}, {"gvisor", "tcpfsm"}, {"tcpfsm", "tcpfsm"}} {
		t.Run(pair[0]+"-"+pair[1], func(t *testing.T) {
			a := newSide(t, pair[0], addrA, addrB)
			b := newSide(t, pair[1], addrB, addrA)
			tunnel(t, a, b)
			serveHTTP(t, a)
			serveHTTP(t, b)
			t.Run("b-to-a", func(t *testing.T) { exercise(t, b, a) })
			t.Run("a-to-b", func(t *testing.T) { exercise(t, a, b) })
		})
	}
}

// A tiny DNS server on the gVisor side answers the tcpfsm side's
// lookups through the tunnel; ping goes the other way.
func TestLookupAndPing(t *testing.T) {
	dev, tnet, err := netstack.CreateNetTUN([]netip.Addr{addrA}, []netip.Addr{addrB}, tunMTU)
	if err != nil {
		t.Fatal(err)
	}
	a := &stackSide{name: "tcpfsm", addr: addrA, dev: dev}
	gdev, gnet, err := gvnetstack.CreateNetTUN([]netip.Addr{addrB}, nil, tunMTU)
	if err != nil {
		t.Fatal(err)
	}
	b := &stackSide{name: "gvisor", addr: addrB, dev: gdev}
	tunnel(t, a, b)

	pc, err := gnet.ListenUDPAddrPort(netip.AddrPortFrom(addrB, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveDNS(pc, "svc.example.", netip.MustParseAddr("10.44.0.9"))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs, err := tnet.LookupContextHost(ctx, "svc.example")
	if err != nil || len(addrs) != 1 || addrs[0] != "10.44.0.9" {
		t.Fatalf("LookupContextHost = %v, %v", addrs, err)
	}
	if _, err := tnet.LookupContextHost(ctx, "nothing.example"); err == nil {
		t.Error("a name the server does not know resolved")
	} else if de, ok := err.(*net.DNSError); !ok || !de.IsNotFound {
		t.Errorf("unknown name: %v", err)
	}
	if addrs, err := tnet.LookupHost("10.1.2.3"); err != nil || addrs[0] != "10.1.2.3" {
		t.Errorf("literal: %v %v", addrs, err)
	}

	// Ping the gVisor side, which answers echo requests itself.
	c, err := tnet.Dial("ping4", addrB.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'h', 'i'}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(req) || buf[0] != 0 || !bytes.Equal(buf[8:n], req[8:]) || buf[6] != 0 || buf[7] != 1 {
		t.Errorf("echo reply %x", buf[:n])
	}

	// UDP between the two stacks, as a net.PacketConn.
	u, err := tnet.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(addrB, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var _ net.PacketConn = u
	var _ net.Conn = u
}

// serveDNS answers A queries for name with addr and NXDOMAIN for others,
// until pc closes.
func serveDNS(pc net.PacketConn, name string, addr netip.Addr) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// Parse the single question's name by hand.
		var labels []string
		i := 12
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			labels = append(labels, string(q[i+1:i+1+l]))
			i += 1 + l
		}
		qend := i + 5
		if qend > len(q) {
			continue
		}
		qtype := int(q[i+1])<<8 | int(q[i+2])
		resp := append([]byte(nil), q[:qend]...)
		resp[2] |= 0x80 // QR
		resp[3] = 0x80  // RA
		known := strings.Join(labels, ".")+"." == name
		if !known {
			resp[3] |= 3 // NXDOMAIN
		}
		if known && qtype == 1 {
			resp[7] = 1 // one answer
			a := addr.As4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, a[0], a[1], a[2], a[3])
		}
		_, _ = pc.WriteTo(resp, from)
	}
}
