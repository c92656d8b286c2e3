//go:build linux

package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	gvtun "gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/tun"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Kind names one of the three servers.
type Kind string

// The servers, all running the same Handler.
const (
	Kernel Kind = "kernel" // the kernel's TCP, through net.Listen
	GVisor Kind = "gVisor" // gVisor's netstack on its own TUN device, through gonet
	Tcpfsm Kind = "tcpfsm" // tcpfsm's host package on its own TUN device
)

// Kinds lists the servers in the order the report shows them.
var Kinds = []Kind{Kernel, GVisor, Tcpfsm}

// Settings shared by the servers.
const (
	// Port is the HTTP port of every server.
	Port = 80
	// ListenBacklog bounds the connections waiting to be accepted on every
	// server, and the kernel's half-open ones: tcpfsm's
	// tcpstack.Config.AcceptQueue (its half-open backlog keeps its default,
	// 128, beyond which it answers with SYN cookies), the kernel's net.core.somaxconn
	// and net.ipv4.tcp_max_syn_backlog (set by the test inside its
	// namespace), and the backlog gonet.ListenTCP passes to netstack.
	// 4096 is Linux's default somaxconn since 5.4.
	ListenBacklog = 4096
	// BufferSize is tcpfsm's and netstack's send and receive buffer per
	// connection. The kernel keeps its own defaults (autotuned).
	BufferSize = 256 << 10
	// MTU is both TUN devices' MTU (the kernel's default for TUN).
	MTU = 1500
	// Body is what "/" returns.
	Body = "tcpfsm load test: a small body\n"
	// MaxBulk bounds "/bulk?n=".
	MaxBulk = 1 << 30
)

// Addresses inside the test's namespace. Each TUN device has a /24: the
// kernel holds .1, the userspace stack .2.
var (
	TcpfsmKernelSide = netip.MustParsePrefix("10.7.0.1/24")
	TcpfsmAddr       = netip.MustParseAddr("10.7.0.2")
	GVisorKernelSide = netip.MustParsePrefix("10.8.0.1/24")
	GVisorAddr       = netip.MustParseAddr("10.8.0.2")
	// KernelPrefix holds the kernel server's address, on a third TUN
	// device (see OpenKernelDevice). Clients reach it through loopback
	// like any local address; it is not 127.0.0.1 because the kernel
	// sends nothing from a loopback address to another device, so it
	// would not even answer the flood's SYNs.
	KernelPrefix = netip.MustParsePrefix("10.6.0.1/24")
	// SpoofedSource is the source address of the SYN flood. Its /24 is
	// routed into the kernel server's TUN device, which nobody reads: the
	// SYN-ACKs to it are lost and the half-open connections stay, as in a
	// real spoofed flood. The userspace stacks' SYN-ACKs to it reach the
	// kernel through their TUN devices, and the kernel does not forward.
	SpoofedSource = netip.MustParseAddr("10.9.0.99")
)

// openConnections is the tcpfsm server's counter of the connections it
// holds past their handshake (TIME-WAIT records not counted).
const openConnections = "open_connections"

// TUN device names, one per server.
const (
	tcpfsmDevice = "tcpfsm0"
	gvisorDevice = "gvisor0"
	kernelDevice = "kernel0"
)

// OpenKernelDevice makes the TUN device that holds KernelPrefix and the
// route to SpoofedSource's /24, and brings loopback up. The device lasts
// until the returned Closer is closed; it is never read.
func OpenKernelDevice() (io.Closer, error) {
	d, err := tun.Open(kernelDevice)
	if err != nil {
		return nil, fmt.Errorf("TUN device: %w", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", KernelPrefix.String(), "dev", kernelDevice},
		{"link", "set", kernelDevice, "up"},
		{"route", "add", netip.PrefixFrom(SpoofedSource, 24).Masked().String(), "dev", kernelDevice},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			d.Close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return d, nil
}

// Addr returns where the kind's server listens.
func (k Kind) Addr() netip.AddrPort {
	switch k {
	case Tcpfsm:
		return netip.AddrPortFrom(TcpfsmAddr, Port)
	case GVisor:
		return netip.AddrPortFrom(GVisorAddr, Port)
	default:
		return netip.AddrPortFrom(KernelPrefix.Addr(), Port)
	}
}

// bulkSeed seeds the generator of "/bulk" bytes, so clients can compute
// the expected digest.
var bulkSeed = [32]byte{'t', 'c', 'p', 'f', 's', 'm', ' ', 'l', 'o', 'a', 'd'}

// BulkReader returns the deterministic bytes "/bulk" serves: n of them,
// the same on every call.
func BulkReader(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(bulkSeed), n)
}

// Handler returns the HTTP handler every server runs: "/" returns Body,
// "/bulk?n=BYTES" streams BYTES bytes of BulkReader, and "/sink" reads
// a request body of up to MaxBulk bytes and returns its length and
// CRC-32C (Castagnoli), as "BYTES CRC\n" in decimal and hex: an upload's
// check, a fraction of what a SHA-256 would cost the server.
// "/slowsink" does the same reading slowly (see its parameters).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(Body)))
		_, _ = io.WriteString(w, Body)
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > MaxBulk {
			http.Error(w, "n must be a byte count up to 1 GiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		_, _ = io.Copy(w, BulkReader(n))
	})
	mux.HandleFunc("/slowsink", func(w http.ResponseWriter, r *http.Request) {
		// "/slowsink?first=B&stall=D&chunk=B&pause=D": reads first bytes,
		// stops reading for stall with the client's data filling the
		// receive window, then reads the rest chunk bytes at a time with
		// pause after each, and returns the length and CRC-32C as /sink.
		q := r.URL.Query()
		first, err1 := strconv.ParseInt(q.Get("first"), 10, 64)
		chunk, err2 := strconv.Atoi(q.Get("chunk"))
		stall, err3 := time.ParseDuration(q.Get("stall"))
		pause, err4 := time.ParseDuration(q.Get("pause"))
		if err := errors.Join(err1, err2, err3, err4); err != nil || first < 0 || chunk <= 0 || chunk > 1<<20 {
			http.Error(w, "bad parameters", http.StatusBadRequest)
			return
		}
		h := crc32.New(castagnoli)
		body := http.MaxBytesReader(w, r.Body, MaxBulk)
		n, err := io.CopyN(h, body, first)
		if err == nil {
			time.Sleep(stall)
			buf := make([]byte, chunk)
			for {
				k, rerr := body.Read(buf)
				h.Write(buf[:k])
				n += int64(k)
				if rerr != nil {
					if rerr != io.EOF {
						err = rerr
					}
					break
				}
				time.Sleep(pause)
			}
		}
		if err != nil && err != io.EOF {
			http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d %08x\n", n, h.Sum32())
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		h := crc32.New(castagnoli)
		n, err := io.Copy(h, http.MaxBytesReader(w, r.Body, MaxBulk))
		if err != nil {
			http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d %08x\n", n, h.Sum32())
	})
	return mux
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Heap is a server process's memory, from runtime.ReadMemStats.
type Heap struct {
	HeapInuse, HeapAlloc, Sys uint64
	Goroutines                int
}

// The child protocol: the test binary runs again with childEnv naming
// the kind, prints readyPrefix and its control address on stdout once it
// serves, and exits when its stdin closes.
const (
	childEnv    = "LOAD_SERVER"
	readyPrefix = "LOAD-SERVER-READY "
)

// ServeIfChild runs a server and exits if this process was started by
// Start as one; otherwise it returns at once. Call it from TestMain.
func ServeIfChild() {
	kind := Kind(os.Getenv(childEnv))
	if kind == "" {
		return
	}
	if err := serveChild(kind); err != nil {
		fmt.Fprintf(os.Stderr, "load server %s: %v\n", kind, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveChild runs the kind's server until stdin closes.
func serveChild(kind Kind) error {
	if err := RaiseFileLimit(); err != nil {
		return err
	}
	clientBase = netstat(clientNames)
	ln, counters, stop, err := listen(kind)
	if err != nil {
		return err
	}
	defer stop()
	if dir := os.Getenv("LOAD_CPUPROFILE"); dir != "" {
		// A CPU profile of the whole run, for go tool pprof.
		f, err := os.Create(filepath.Join(dir, string(kind)+".pprof"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		defer func() {
			// And what the heap holds at the end, after a GC.
			runtime.GC()
			if hf, err := os.Create(filepath.Join(dir, string(kind)+".heap.pprof")); err == nil {
				_ = pprof.WriteHeapProfile(hf)
				hf.Close()
			}
		}()
	}
	logger := log.New(os.Stderr, string(kind)+": ", log.Lmicroseconds)
	srv := &http.Server{Handler: Handler(), ErrorLog: logger, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("serve: %v", err)
		}
	}()

	// The control server runs on the kernel's loopback, apart from the
	// stack under test.
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctl := http.NewServeMux()
	ctl.HandleFunc("/heap", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") != "" {
			runtime.GC()
			debug.FreeOSMemory()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(Heap{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, Sys: ms.Sys,
			Goroutines: runtime.NumGoroutine()})
	})
	ctl.HandleFunc("/counters", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(counters())
	})
	go func() { _ = http.Serve(cln, ctl) }()
	fmt.Printf("%s%s\n", readyPrefix, cln.Addr())

	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return nil
}

// listen starts the kind's stack and listener. counters reports the
// stack's own counts of overflows, cookies and resets; stop tears the
// stack down.
func listen(kind Kind) (ln net.Listener, counters func() map[string]uint64, stop func(), err error) {
	switch kind {
	case Kernel:
		ln, err := net.Listen("tcp", kind.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		return ln, kernelCounters, func() { ln.Close() }, nil
	case Tcpfsm:
		return listenTcpfsm()
	case GVisor:
		return listenGVisor()
	}
	return nil, nil, nil, fmt.Errorf("unknown server kind %q", kind)
}

// listenTcpfsm serves on tcpfsm's host package over a TUN device.
func listenTcpfsm() (net.Listener, func() map[string]uint64, func(), error) {
	// LOAD_RXOFFLOAD=0 keeps the kernel from handing the device
	// super-segments and partial checksums, to measure what they bring.
	d, err := tun.OpenWith(tcpfsmDevice, tun.Options{Large: true, ReceiveOffload: os.Getenv("LOAD_RXOFFLOAD") != "0"})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TUN device: %w", err)
	}
	if err := d.Configure(TcpfsmKernelSide); err != nil {
		d.Close()
		return nil, nil, nil, err
	}
	if err := setQueueLen(tcpfsmDevice); err != nil {
		d.Close()
		return nil, nil, nil, err
	}
	// The half-open backlog stays at tcpfsm's default (128): past it SYN
	// cookies keep no state, so a larger one only holds more memory
	// during a flood.
	// The first segments of a connection are ACKed at once, as Linux
	// does: a client's request is ACKed before the reply is ready, so its
	// tail loss probe does not fire (Config.QuickACKAtStart).
	h, err := host.New(d, host.Config{Addrs: []netip.Addr{TcpfsmAddr}, Stack: tcpstack.Config{
		AcceptQueue: ListenBacklog,
		Endpoint: tcpstack.EndpointConfig{
			SendBuffer: BufferSize,
			Config:     tcpfsm.Config{RecvBuffer: BufferSize, QuickACKAtStart: true},
		},
	}})
	if err != nil {
		d.Close()
		return nil, nil, nil, err
	}
	ln, err := h.ListenAddrPort(Tcpfsm.Addr())
	if err != nil {
		h.Close()
		return nil, nil, nil, err
	}
	counters := func() map[string]uint64 {
		m := structCounters(h.Stats())
		m["device_write_errors"] = d.WriteErrors.Load()
		m["device_large_writes"] = d.LargeWrites.Load()
		m["device_large_reads"] = d.LargeReads.Load()
		m["device_offload_reads"] = d.OffloadReads.Load()
		m["device_bad_headers"] = d.BadHeaders.Load()
		// Two readings, not one: a half-open connection that ends between
		// them must not wrap the difference around.
		half := h.HalfOpen()
		m[openConnections] = uint64(max(h.Conns()-half, 0))
		m["half_open"] = uint64(half)
		deviceCounters(tcpfsmDevice, m)
		clientCounters(m)
		return m
	}
	return ln, counters, func() { h.Close() }, nil
}

// structCounters turns a struct of counters into a map through its JSON
// form, so fields added to it later show up without changes here.
func structCounters(v any) map[string]uint64 {
	b, _ := json.Marshal(v)
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	m := map[string]uint64{}
	for k, x := range raw {
		if f, ok := x.(float64); ok {
			m[k] = uint64(f)
		}
	}
	return m
}

// listenGVisor serves on gVisor's netstack over a TUN device, the way an
// adopter of netstack would: an fdbased link endpoint, IPv4 and TCP, and
// gonet's net.Listener. SACK is turned on (netstack's default is off)
// and the buffers sized to BufferSize, as tcpfsm's are.
func listenGVisor() (net.Listener, func() map[string]uint64, func(), error) {
	fd, err := gvtun.Open(gvisorDevice)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TUN device: %w", err)
	}
	if err := configureTUN(gvisorDevice, GVisorKernelSide); err != nil {
		syscall.Close(fd)
		return nil, nil, nil, err
	}
	link, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: MTU})
	if err != nil {
		syscall.Close(fd)
		return nil, nil, nil, err
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	fail := func(e tcpip.Error) (net.Listener, func() map[string]uint64, func(), error) {
		s.Close()
		syscall.Close(fd)
		return nil, nil, nil, errors.New(e.String())
	}
	if e := s.CreateNIC(1, link); e != nil {
		return fail(e)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(GVisorAddr.As4()).WithPrefix()}
	if e := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); e != nil {
		return fail(e)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail(e)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: BufferSize, Max: BufferSize}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); e != nil {
		return fail(e)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: BufferSize, Max: BufferSize}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); e != nil {
		return fail(e)
	}
	ln, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(GVisorAddr.As4()), Port: Port},
		ipv4.ProtocolNumber)
	if err != nil {
		s.Close()
		syscall.Close(fd)
		return nil, nil, nil, err
	}
	counters := func() map[string]uint64 {
		st := s.Stats().TCP
		m := map[string]uint64{
			"ListenOverflowSynDrop":       st.ListenOverflowSynDrop.Value(),
			"ListenOverflowAckDrop":       st.ListenOverflowAckDrop.Value(),
			"ListenOverflowSynCookieSent": st.ListenOverflowSynCookieSent.Value(),
			"ListenOverflowSynCookieRcvd": st.ListenOverflowSynCookieRcvd.Value(),
			"ResetsSent":                  st.ResetsSent.Value(),
			"ResetsReceived":              st.ResetsReceived.Value(),
			"EstablishedResets":           st.EstablishedResets.Value(),
			"Timeouts":                    st.Timeouts.Value(),
		}
		deviceCounters(gvisorDevice, m)
		clientCounters(m)
		return m
	}
	stop := func() {
		ln.Close()
		s.Close()
		syscall.Close(fd)
	}
	return ln, counters, stop, nil
}

// configureTUN gives the kernel's side of a TUN device its address and
// brings the device up, with ip(8).
// TxQueueLen is both TUN devices' queue, in packets, from the kernel
// to the userspace stack. The default, 500, is a few milliseconds of a
// SYN flood: a stack that reads in batches absorbs the flood's bursts
// with a longer one, as a host running a userspace stack would set it.
const TxQueueLen = 10000

// setQueueLen sets a device's queue to TxQueueLen packets.
func setQueueLen(name string) error {
	if out, err := exec.Command("ip", "link", "set", "dev", name, "txqueuelen", strconv.Itoa(TxQueueLen)).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set txqueuelen: %v: %s", err, out)
	}
	return nil
}

func configureTUN(name string, kernelSide netip.Prefix) error {
	for _, args := range [][]string{
		{"addr", "add", kernelSide.String(), "dev", name},
		{"link", "set", "dev", name, "txqueuelen", strconv.Itoa(TxQueueLen)},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// kernelCounters reads the namespace's TCP counters about listen queues,
// cookies and resets from /proc/net/netstat and /proc/net/snmp. They
// count the clients' side too: both ends are the kernel's.
// deviceCounters adds a TUN device's drop counts to m: packets the
// kernel dropped because the userspace stack did not read them in time
// (tx_dropped, the kernel's side sending) or could not take them.
func deviceCounters(dev string, m map[string]uint64) {
	// The queueing discipline in front of the device drops first, when
	// the userspace stack reads too slowly: "Sent ... (dropped N, ...".
	if out, err := exec.Command("tc", "-s", "qdisc", "show", "dev", dev).Output(); err == nil {
		var drops uint64
		for _, f := range strings.Split(string(out), "(dropped ")[1:] {
			if v, err := strconv.ParseUint(strings.TrimRight(strings.Fields(f)[0], ","), 10, 64); err == nil {
				drops += v
			}
		}
		m["device_qdisc_dropped"] = drops
	}
	for _, name := range []string{"tx_dropped", "rx_dropped"} {
		b, err := os.ReadFile("/sys/class/net/" + dev + "/statistics/" + name)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			m["device_"+name] = v
		}
	}
}

// clientNames are the kernel's counters that clientCounters reports.
var clientNames = map[string]bool{"RetransSegs": true, "TCPTimeouts": true,
	"TCPLossProbes": true, "TCPFastRetrans": true, "TCPSynRetrans": true, "EstabResets": true,
	"AttemptFails": true, "OutRsts": true, "TCPDSACKRecv": true, "PAWSEstab": true}

// clientBase is the kernel's counters when this server started.
var clientBase map[string]uint64

// clientCounters adds to m, prefixed "clients_", the kernel's counts of
// retransmissions and timeouts since this server started: with a
// userspace server they are the clients' (every kernel socket in the
// namespace is a client's).
func clientCounters(m map[string]uint64) {
	for k, v := range netstat(clientNames) {
		m["clients_"+k] = v - clientBase[k]
	}
}

func kernelCounters() map[string]uint64 {
	return netstat(map[string]bool{
		"ListenOverflows": true, "ListenDrops": true, "SyncookiesSent": true, "SyncookiesRecv": true,
		"TCPReqQFullDoCookies": true, "TCPReqQFullDrop": true, "OutRsts": true, "EstabResets": true,
		"AttemptFails": true, "TCPTimeouts": true, "RetransSegs": true, "TCPLossProbes": true, "TCPDSACKRecv": true,
	})
}

// netstat returns the kernel's TCP counters named in want, from
// /proc/net/netstat and /proc/net/snmp.
func netstat(want map[string]bool) map[string]uint64 {
	m := map[string]uint64{}
	for _, file := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		// Each group is a line of names and a line of values, both
		// starting with the group's name.
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) != len(values) || len(names) == 0 || names[0] != values[0] {
				continue
			}
			if names[0] != "TcpExt:" && names[0] != "Tcp:" {
				continue
			}
			for j := 1; j < len(names); j++ {
				if v, err := strconv.ParseUint(values[j], 10, 64); err == nil && want[names[j]] {
					m[names[j]] = v
				}
			}
		}
	}
	return m
}

// RaiseFileLimit raises this process's open-file limit to its hard
// limit, for thousands of connections. Processes started after it
// inherit the raised limit.
func RaiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// Server is a server running in a child process.
type Server struct {
	Kind Kind
	// Addr is where it serves HTTP.
	Addr netip.AddrPort

	control string // its control server's address, for Heap and Counters
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logs    *tail
	done    chan error
}

// Start starts the kind's server in a child process: this test binary
// again, with ServeIfChild in its TestMain. It returns once the server
// accepts connections.
func Start(kind Kind) (*Server, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(kind))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s := &Server{Kind: kind, Addr: kind.Addr(), cmd: cmd, logs: &tail{max: 8 << 10}, done: make(chan error, 1)}
	cmd.Stderr = s.logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				ready <- addr
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case s.control = <-ready:
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("%s server exited before serving: %v: %s", kind, err, s.logs)
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-s.done
		return nil, fmt.Errorf("%s server not ready in 10 s: %s", kind, s.logs)
	}
}

// URL returns the server's URL for path.
func (s *Server) URL(path string) string { return "http://" + s.Addr.String() + path }

// Heap returns the server process's memory. With gc, it first collects
// garbage and returns freed memory to the system, so the figure is what
// the server holds on to.
func (s *Server) Heap(gc bool) (Heap, error) {
	var h Heap
	path := "/heap"
	if gc {
		path += "?gc=1"
	}
	return h, s.get(path, &h)
}

// Counters returns the server's stack counters (overflows, cookies,
// resets), named as that stack names them.
func (s *Server) Counters() (map[string]uint64, error) {
	var m map[string]uint64
	return m, s.get("/counters", &m)
}

var controlClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (s *Server) get(path string, v any) error {
	resp, err := controlClient.Get("http://" + s.control + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Logs returns the end of what the server wrote to stderr.
func (s *Server) Logs() string { return s.logs.String() }

// Stop ends the server process: it closes its stdin, then kills it if it
// has not exited after a few seconds.
func (s *Server) Stop() error {
	s.stdin.Close()
	select {
	case err := <-s.done:
		return err
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("%s server did not exit; killed (%v)", s.Kind, <-s.done)
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
