//go:build linux

package load

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm/interop/tun"
)

// What the tcpfsm server must achieve; gVisor and the kernel are only
// reported.
const (
	// maxRequestTime bounds every connection and request (ab's longest
	// request, wrk's slowest, each probe).
	maxRequestTime = 3 * time.Second
	// minFloodSuccess is the least fraction of legitimate probes that
	// must succeed during a flood. After the floods, every probe must.
	minFloodSuccess = 0.99
	// maxSlowReadWait bounds a slow reader's download beyond the time it
	// spends not reading: the transfers of all of them, one after the
	// other, at a fraction of a TUN device's rate. A window update lost
	// and left to the persist timer's backoff, or to the 60 s of its
	// cap, would take longer.
	maxSlowReadWait = 15 * time.Second
	// maxHeapGrowth bounds how much more heap the server holds after the
	// loads and an idle period than before them.
	maxHeapGrowth = 10 << 20
)

var fullFlag = flag.Bool("load.full", false, "run the full load suite (also LOAD_FULL=1)")

// full reports whether to run the full suite rather than the short one.
func full() bool { return *fullFlag || os.Getenv("LOAD_FULL") == "1" }

func TestMain(m *testing.M) {
	ServeIfChild()
	os.Exit(m.Run())
}

// abLoad is one ab run.
type abLoad struct {
	c, n      int
	keepAlive bool
}

// plan is the size of a run.
type plan struct {
	ab          []abLoad
	wrkConns    int
	wrkFor      time.Duration
	curlBytes   int64
	slow        SlowReadPlan
	slowUp      SlowReadPlan // the server reads slowly: RcvBuf unused
	aborts      int          // clients that read the start of a download and reset
	floodFor    time.Duration
	floodProbes int           // probes during the flood, spread over it
	afterProbes int           // probes once it is over
	idle        time.Duration // wait after the loads before the last heap figure
	clientLimit time.Duration // hard limit on any one client run
}

func shortPlan() plan {
	return plan{
		ab: []abLoad{
			{c: 100, n: 2000}, {c: 100, n: 5000, keepAlive: true},
			{c: 1000, n: 3000}, {c: 1000, n: 5000, keepAlive: true},
		},
		wrkConns: 1000, wrkFor: 3 * time.Second,
		curlBytes: 16 << 20,
		slow: SlowReadPlan{Conns: 200, Size: 256 << 10, RcvBuf: 16 << 10, First: 32 << 10, Stall: 1500 * time.Millisecond,
			Chunk: 16 << 10, Pause: 2 * time.Millisecond},
		slowUp: SlowReadPlan{Conns: 200, Size: 512 << 10, First: 32 << 10, Stall: 1500 * time.Millisecond,
			Chunk: 16 << 10, Pause: time.Millisecond},
		aborts:   500,
		floodFor: 3 * time.Second, floodProbes: 10, afterProbes: 10,
		idle:        5 * time.Second,
		clientLimit: 15 * time.Second,
	}
}

func fullPlan() plan {
	return plan{
		ab: []abLoad{
			{c: 100, n: 20000}, {c: 100, n: 50000, keepAlive: true},
			{c: 1000, n: 20000}, {c: 1000, n: 50000, keepAlive: true},
			{c: 5000, n: 20000}, {c: 5000, n: 50000, keepAlive: true},
		},
		wrkConns: 1000, wrkFor: 10 * time.Second,
		curlBytes: 64 << 20,
		slow: SlowReadPlan{Conns: 1000, Size: 1 << 20, RcvBuf: 16 << 10, First: 32 << 10, Stall: 2 * time.Second,
			Chunk: 16 << 10, Pause: 2 * time.Millisecond},
		slowUp: SlowReadPlan{Conns: 500, Size: 1 << 20, First: 32 << 10, Stall: 2 * time.Second,
			Chunk: 16 << 10, Pause: time.Millisecond},
		aborts:   2000,
		floodFor: 5 * time.Second, floodProbes: 100, afterProbes: 20,
		idle:        30 * time.Second,
		clientLimit: 90 * time.Second,
	}
}

// load is one measurement: run drives the server, check lists what in
// the result breaks the tcpfsm limits.
type load struct {
	name  string
	run   func(ctx context.Context, s *Server) Result
	check func(Result) []string
}

// requestChecks is the check of ab, wrk and curl: nothing fails, nothing
// takes over maxRequestTime, the client runs to the end.
func requestChecks(r Result) []string {
	bad := requestChecksN(r)
	if r.Max > maxRequestTime {
		bad = append(bad, fmt.Sprintf("slowest request took %v (limit %v)", r.Max, maxRequestTime))
	}
	return bad
}

// requestChecksN is requestChecks without its bound on a request's
// time, for loads whose requests are long by design.
func requestChecksN(r Result) []string {
	var bad []string
	if r.Aborted != "" {
		bad = append(bad, "client aborted: "+r.Aborted)
	}
	if r.Failed > 0 {
		bad = append(bad, fmt.Sprintf("%d failed: %s", r.Failed, r.Detail))
	}
	return bad
}

// stallChecks is the check of slow readers and uploads, which stall for
// stall on purpose: nothing fails, and none takes longer than its stall
// and maxSlowReadWait.
func stallChecks(stall time.Duration, what string) func(Result) []string {
	return func(r Result) []string {
		bad := requestChecksN(r)
		if limit := stall + maxSlowReadWait; r.Max > limit {
			bad = append(bad, fmt.Sprintf("slowest %s took %v (limit %v)", what, r.Max, limit))
		}
		return bad
	}
}

// probeChecks is the check of probes: at least min of them succeed and
// none takes over maxRequestTime.
func probeChecks(min float64) func(Result) []string {
	return func(r Result) []string {
		var bad []string
		if r.Rate < 100*min {
			bad = append(bad, fmt.Sprintf("%.1f%% of probes succeeded (limit %.0f%%): %s", r.Rate, 100*min, r.Detail))
		}
		if r.Max > maxRequestTime {
			bad = append(bad, fmt.Sprintf("slowest probe took %v (limit %v)", r.Max, maxRequestTime))
		}
		return bad
	}
}

// loads returns the measurements of plan p, in the order they run: the
// floods last, and the SYN flood last of them, as it leaves half-open
// connections behind.
func loads(p plan) []load {
	var ls []load
	for _, a := range p.ab {
		name := fmt.Sprintf("ab -c %d -n %d", a.c, max(a.n, a.c))
		if a.keepAlive {
			name += " -k"
		}
		ls = append(ls, load{name: name, check: requestChecks, run: func(ctx context.Context, s *Server) Result {
			r, err := RunAB(ctx, s.URL("/"), a.c, a.n, a.keepAlive, maxRequestTime)
			if err != nil {
				return Result{Unit: "req/s", Aborted: err.Error()}
			}
			return r.Result()
		}})
	}
	ls = append(ls, load{name: fmt.Sprintf("wrk -c %d %v", p.wrkConns, p.wrkFor), check: requestChecks,
		run: func(ctx context.Context, s *Server) Result {
			r, err := RunWrk(ctx, s.URL("/"), p.wrkConns, p.wrkFor, maxRequestTime)
			if err != nil {
				return Result{Unit: "req/s", Aborted: err.Error()}
			}
			return r.Result()
		}})
	ls = append(ls, load{name: fmt.Sprintf("curl %d MiB", p.curlBytes>>20),
		// A download is one request, but a long one: only its failures
		// and digest count here, not its duration.
		check: func(r Result) []string {
			if r.Failed > 0 {
				return []string{r.Detail}
			}
			return nil
		},
		run: func(ctx context.Context, s *Server) Result {
			return RunCurl(ctx, s.URL(fmt.Sprintf("/bulk?n=%d", p.curlBytes)), p.curlBytes).Result()
		}})
	ls = append(ls, load{name: fmt.Sprintf("curl upload %d MiB", p.curlBytes>>20),
		check: func(r Result) []string {
			if r.Failed > 0 {
				return []string{r.Detail}
			}
			return nil
		},
		run: func(ctx context.Context, s *Server) Result {
			return RunCurlUpload(ctx, s.URL("/sink"), p.curlBytes).Result()
		}})
	ls = append(ls, load{name: fmt.Sprintf("%d slow readers, %d KiB each", p.slow.Conns, p.slow.Size>>10),
		// Each client stalls for a while with the server's window to it
		// full, then reads on: nothing may fail, and none may wait for
		// long after it reads again.
		check: stallChecks(p.slow.Stall, "download"),
		run: func(ctx context.Context, s *Server) Result {
			return SlowReadResult(RunSlowReaders(ctx, s.Addr, p.slow, p.clientLimit))
		}})
	ls = append(ls, load{name: fmt.Sprintf("%d slow uploads, %d KiB each", p.slowUp.Conns, p.slowUp.Size>>10),
		// The server's handler stalls with its receive window full, then
		// reads on: the window updates must bring the data on at once.
		check: stallChecks(p.slowUp.Stall, "upload"),
		run: func(ctx context.Context, s *Server) Result {
			return SlowReadResult(RunSlowUploads(ctx, s.Addr, p.slowUp, p.clientLimit))
		}})
	ls = append(ls, load{name: fmt.Sprintf("%d readers that reset", p.aborts),
		// What counts is what the server holds afterwards (checked after
		// the loads), not how fast so many downloads start at once: each
		// client has the run's whole limit.
		check: func(r Result) []string {
			if r.Failed > 0 {
				return []string{fmt.Sprintf("%d failed: %s", r.Failed, r.Detail)}
			}
			return nil
		},
		run: func(ctx context.Context, s *Server) Result {
			return ProbeResult(RunAbortingReaders(ctx, s.Addr, p.aborts, 64<<20, 64<<10, p.clientLimit))
		}})
	for _, f := range []struct {
		name string
		flag FloodFlag
	}{{"ACK", FloodACK}, {"SYN", FloodSYN}} {
		ls = append(ls, load{name: fmt.Sprintf("probes during %v %s flood", p.floodFor, f.name), check: probeChecks(minFloodSuccess),
			run: func(ctx context.Context, s *Server) Result {
				var flood FloodResult
				var floodErr error
				var wg sync.WaitGroup
				wg.Go(func() { flood, floodErr = Flood(ctx, s.Addr, SpoofedSource, f.flag, p.floodFor) })
				// The first probe starts half a spacing into the flood, the
				// last half a spacing before its end.
				spacing := p.floodFor / time.Duration(p.floodProbes)
				time.Sleep(spacing / 2)
				r := ProbeResult(ProbeSeries(s.Addr, p.floodProbes, spacing, maxRequestTime))
				wg.Wait()
				note := fmt.Sprintf("hping3 sent %d %ss (%.0f/s)", flood.Packets, f.name, flood.PacketsPerSec())
				if floodErr != nil {
					note = "flood: " + floodErr.Error()
				}
				r.Detail = strings.TrimPrefix(r.Detail+"; "+note, "; ")
				return r
			}})
	}
	ls = append(ls, load{name: "probes after the flood", check: probeChecks(1),
		run: func(ctx context.Context, s *Server) Result {
			return ProbeResult(ProbeSeries(s.Addr, p.afterProbes, 100*time.Millisecond, maxRequestTime))
		}})
	return ls
}

// TestLoad serves HTTP from tcpfsm, gVisor's netstack and the kernel in
// turn, drives each with the same clients, prints the side-by-side
// table, and fails if tcpfsm breaks the limits above.
func TestLoad(t *testing.T) {
	requireTools(t)
	if !inNetns(t) {
		return
	}
	requireTUN(t)
	start := time.Now()
	p, size := shortPlan(), "short"
	if full() {
		p, size = fullPlan(), "full"
	}
	if d, err := time.ParseDuration(os.Getenv("LOAD_IDLE")); err == nil {
		p.idle = d
	}
	if err := RaiseFileLimit(); err != nil {
		t.Logf("open-file limit not raised: %v", err)
	}
	notes := setupNamespace(t)
	ls := loads(p)
	if only := os.Getenv("LOAD_LOADS"); only != "" {
		ls = slices.DeleteFunc(ls, func(l load) bool { return !strings.Contains(l.name, only) })
	}
	rep := &Report{Title: fmt.Sprintf("Load suite (%s): net/http on the kernel, gVisor and tcpfsm", size)}
	for _, l := range ls {
		rep.Loads = append(rep.Loads, l.name)
	}
	for _, kind := range Kinds {
		if only := os.Getenv("LOAD_ONLY"); only != "" && !slices.Contains(strings.Split(only, ","), string(kind)) {
			continue
		}
		rep.Servers = append(rep.Servers, measure(t, kind, p, ls))
	}
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	uname := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		uname = strings.TrimSpace(string(b))
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("Setup: %s, GOMAXPROCS %d, %d CPUs, Linux %s, open files %d. Clients ab, wrk (2 threads), curl, hping3 "+
			"and Go probes on the kernel's side of one network namespace; each server in a child process. "+
			"tcpfsm and gVisor on TUN devices (MTU %d) with %d KiB buffers each way; listen backlog %d everywhere; "+
			"the kernel with its own buffer defaults. Ratios are tcpfsm's figure over the other's: "+
			"above 1 is better for rates, worse for times and heap. Heap is HeapInuse of the server process "+
			"(before and after: after a GC; after: also after %v idle). The whole run took %v.",
			runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), uname, lim.Cur, MTU, BufferSize>>10,
			ListenBacklog, p.idle, time.Since(start).Round(time.Second)))
	rep.Notes = append(rep.Notes, notes...)

	table := rep.Markdown()
	fmt.Printf("\n%s\n", table)
	if path := os.Getenv("LOAD_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("writing LOAD_REPORT: %v", err)
		}
	}

	// tcpfsm's limits. gVisor and the kernel are the comparison, only
	// reported.
	tr := rep.server(Tcpfsm)
	if tr == nil {
		return // not run: LOAD_ONLY
	}
	if tr.Err != "" {
		t.Errorf("tcpfsm server: %s", tr.Err)
	}
	for _, l := range ls {
		res, ok := tr.Results[l.name]
		if !ok {
			continue
		}
		for _, bad := range l.check(res) {
			t.Errorf("tcpfsm, %s: %s", l.name, bad)
		}
	}
	// Nothing may outlive the loads: every connection closed, its
	// handler's goroutine gone.
	if tr.GoroutinesAfter > tr.GoroutinesBefore {
		t.Errorf("tcpfsm: %d goroutines after the loads and %v idle, %d before", tr.GoroutinesAfter, p.idle, tr.GoroutinesBefore)
	}
	if n, ok := tr.Counters[openConnections]; !ok || n != 0 {
		t.Errorf("tcpfsm: %d connections open after the loads and %v idle (counted: %v)", n, p.idle, ok)
	}
	if tr.HeapAfter != 0 && tr.HeapAfter > tr.HeapBefore+maxHeapGrowth {
		t.Errorf("tcpfsm heap: %.1f MiB after the loads and %v idle, %.1f MiB before (limit +%d MiB)",
			float64(tr.HeapAfter)/(1<<20), p.idle, float64(tr.HeapBefore)/(1<<20), maxHeapGrowth>>20)
	}
}

// measure runs the loads against kind's server in a child process, and
// samples its heap before, during and after them.
func measure(t *testing.T, kind Kind, p plan, ls []load) *ServerReport {
	sr := &ServerReport{Kind: kind, Results: map[string]Result{}}
	s, err := Start(kind)
	if err != nil {
		sr.Err = err.Error()
		t.Logf("%s: %v", kind, err)
		return sr
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Logf("%s server exit: %v", kind, err)
		}
		if logs := s.Logs(); logs != "" {
			t.Logf("%s server's log (its end):\n%s", kind, logs)
		}
	}()
	before, err := s.Heap(true)
	if err != nil {
		sr.Err = "heap: " + err.Error()
		return sr
	}
	sr.HeapBefore, sr.GoroutinesBefore = before.HeapInuse, before.Goroutines
	peak := sampleHeap(s, 100*time.Millisecond)
	for _, l := range ls {
		ctx, cancel := context.WithTimeout(context.Background(), p.clientLimit)
		began := time.Now()
		res := l.run(ctx, s)
		cancel()
		sr.Results[l.name] = res
		took := time.Since(began)
		// The heap the server holds after each load (after a GC), to
		// tell which load leaves memory behind.
		held := "?"
		if h, err := s.Heap(true); err == nil {
			held = fmt.Sprintf("%.1f MiB", float64(h.HeapInuse)/(1<<20))
		}
		t.Logf("%s, %s: %s %s, p99 %v, max %v, failed %d, took %v, heap held %s. %s", kind, l.name,
			formatRate(res.Rate), res.Unit, res.P99, res.Max, res.Failed, took.Round(time.Millisecond), held, res.Detail)
	}
	sr.HeapPeak = peak()
	// The server settles (connections in TIME-WAIT expire, idle
	// keep-alive connections close) before the last figure.
	time.Sleep(p.idle)
	after, err := s.Heap(true)
	if err != nil {
		sr.Err = "heap: " + err.Error()
		return sr
	}
	sr.HeapAfter, sr.GoroutinesAfter = after.HeapInuse, after.Goroutines
	sr.HeapPeak = max(sr.HeapPeak, sr.HeapBefore, sr.HeapAfter)
	if sr.Counters, err = s.Counters(); err != nil {
		t.Logf("%s counters: %v", kind, err)
	}
	t.Logf("%s heap in use: %.1f MiB before, %.1f MiB peak, %.1f MiB after (%.1f MiB of objects, %d goroutines)", kind,
		float64(sr.HeapBefore)/(1<<20), float64(sr.HeapPeak)/(1<<20), float64(sr.HeapAfter)/(1<<20),
		float64(after.HeapAlloc)/(1<<20), after.Goroutines)
	return sr
}

// sampleHeap polls the server's HeapInuse every interval (without a GC)
// until the returned function is called; that returns the largest.
func sampleHeap(s *Server, interval time.Duration) (stop func() uint64) {
	var mu sync.Mutex
	var most uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if h, err := s.Heap(false); err == nil {
				mu.Lock()
				most = max(most, h.HeapInuse)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// setupNamespace brings loopback up, makes the kernel server's device,
// and sizes the kernel's listen queues like the other servers' (and
// widens the clients' ephemeral ports), inside the test's own namespace.
// It returns notes on what it could and could not set.
func setupNamespace(t *testing.T) []string {
	dev, err := OpenKernelDevice()
	if err != nil {
		t.Fatalf("kernel server's device: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	var set, failed []string
	for _, s := range []struct{ key, value string }{
		{"net/core/somaxconn", fmt.Sprint(ListenBacklog)},
		{"net/ipv4/tcp_max_syn_backlog", fmt.Sprint(ListenBacklog)},
		// Client side: ports enough for the connections in TIME-WAIT of
		// the runs without keep-alive.
		{"net/ipv4/ip_local_port_range", "1024 65535"},
		{"net/ipv4/tcp_tw_reuse", "1"},
	} {
		name := strings.ReplaceAll(s.key, "/", ".")
		if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", name, err))
		} else {
			set = append(set, name+"="+s.value)
		}
	}
	var notes []string
	if len(set) > 0 {
		notes = append(notes, "Set in the namespace: "+strings.Join(set, ", ")+".")
	}
	if len(failed) > 0 {
		notes = append(notes, "Could not set: "+strings.Join(failed, ", ")+"; the kernel's defaults apply.")
	}
	return notes
}

// requireTools skips the test when a client program is missing, or
// fails it under CI (CI=true), which must install them.
func requireTools(t *testing.T) {
	var missing []string
	for _, tool := range Tools {
		if _, err := LookTool(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("load clients missing: %s (apt-get install apache2-utils wrk hping3 curl iproute2)",
		strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// netnsEnv marks the run of a test inside its namespace.
const netnsEnv = "LOAD_NETNS"

// skipMarker in the inner run's output says it found no TUN device.
const skipMarker = "SKIP-NETNS"

// requireTUN stops the inner run, with skipMarker, if it cannot make a
// TUN device.
func requireTUN(t *testing.T) {
	d, err := tun.Open("loadcheck0")
	if err != nil {
		t.Log(skipMarker, err)
		t.FailNow()
	}
	d.Close()
}

// inNetns runs the calling test again in a fresh user and network
// namespace, where it may make TUN devices and talk only to addresses of
// its own, and reports whether this is that inner run. The inner run's
// output goes to this one's stdout as it comes.
func inNetns(t *testing.T) bool {
	if os.Getenv(netnsEnv) == t.Name() {
		return true
	}
	timeout := "240s"
	args := []string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}
	if full() {
		timeout = "30m"
		args = append(args, "-load.full")
	}
	cmd := exec.Command(os.Args[0], append(args, "-test.timeout="+timeout)...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if err != nil && bytes.Contains(out.Bytes(), []byte(skipMarker)) {
		t.Skip("no TUN device here")
	}
	var ee *exec.Error
	if errors.As(err, &ee) || (err != nil && out.Len() == 0) {
		t.Skipf("cannot create a user and network namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("inner run failed: %v", err)
	}
	return false
}
