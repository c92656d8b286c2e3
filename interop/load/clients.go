//go:build linux

package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tools lists the client programs the suite runs.
var Tools = []string{"ab", "wrk", "curl", "hping3", "timeout", "ip"}

// LookTool finds a client program in PATH, or in /usr/sbin and /sbin
// (where hping3 and ip live, often outside a user's PATH).
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err := exec.LookPath(dir + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// run runs a client program and returns its output, stdout then stderr.
// A non-zero exit is not an error here: ab and timeout report through
// their output and exit codes both, and the parsers judge the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	path, err := LookTool(name)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out := stdout.String() + stderr.String()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return out, err
	}
	return out, nil
}

// ABResult is what ab(1) reported.
type ABResult struct {
	Complete       int     // requests done, failed ones included
	Failed         int     // "Failed requests"
	FailedConnect  int     // its breakdown: connect errors,
	FailedReceive  int     // receive errors (resets, early closes),
	FailedLength   int     // responses of another length than the first,
	FailedExcept   int     // and other exceptions
	WriteErrors    int     // "Write errors"
	Non2xx         int     // "Non-2xx responses"
	RequestsPerSec float64 // "Requests per second"
	P99, Longest   time.Duration
	// Aborted is ab's reason for stopping before the end ("" if it ran
	// to the end); Complete is then from its "Total of N requests
	// completed" line.
	Aborted string
}

var (
	abFailBreakdown = regexp.MustCompile(`\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)`)
	abTotalOf       = regexp.MustCompile(`Total of (\d+) requests completed`)
	abPercentile    = regexp.MustCompile(`^\s*(\d+)%\s+(\d+)`)
)

// ParseAB parses ab's output (without -v or -w).
func ParseAB(out string) (ABResult, error) {
	var r ABResult
	seen := false
	var lastError string
	for _, line := range strings.Split(out, "\n") {
		field := func(prefix string) (string, bool) {
			v, ok := strings.CutPrefix(line, prefix)
			return strings.TrimSpace(v), ok
		}
		if v, ok := field("Complete requests:"); ok {
			r.Complete, seen = atoi(v), true
		} else if v, ok := field("Failed requests:"); ok {
			r.Failed = atoi(v)
		} else if m := abFailBreakdown.FindStringSubmatch(line); m != nil {
			r.FailedConnect, r.FailedReceive, r.FailedLength, r.FailedExcept = atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4])
		} else if v, ok := field("Write errors:"); ok {
			r.WriteErrors = atoi(v)
		} else if v, ok := field("Non-2xx responses:"); ok {
			r.Non2xx = atoi(v)
		} else if v, ok := field("Requests per second:"); ok {
			r.RequestsPerSec, _ = strconv.ParseFloat(strings.Fields(v + " 0")[0], 64)
		} else if m := abPercentile.FindStringSubmatch(line); m != nil {
			ms := time.Duration(atoi(m[2])) * time.Millisecond
			switch m[1] {
			case "99":
				r.P99 = ms
			case "100":
				r.Longest = ms
			}
		} else if m := abTotalOf.FindStringSubmatch(line); m != nil {
			r.Complete, seen = atoi(m[1]), true
			r.Aborted = lastError
			if r.Aborted == "" {
				r.Aborted = "stopped early"
			}
		} else if i := fatalAt(line); i >= 0 {
			lastError = line[i:]
		}
	}
	if !seen {
		if lastError != "" {
			return ABResult{Aborted: lastError}, nil
		}
		return r, fmt.Errorf("unrecognized ab output: %q", out)
	}
	return r, nil
}

// fatalAt returns where ab's fatal error starts in line ("apr_...: why
// (code)" or "Test aborted after..."; progress dots may precede it on the
// same line), or -1.
func fatalAt(line string) int {
	if i := strings.Index(line, "apr_"); i >= 0 {
		return i
	}
	return strings.Index(line, "Test aborted")
}

// ABArgs returns ab's arguments for n requests, c at a time, each socket
// wait bounded by timeout, with keep-alive or a connection per request.
// -r keeps ab going after a receive error (a reset, say) so that it
// counts them all.
func ABArgs(url string, c, n int, keepAlive bool, timeout time.Duration) []string {
	args := []string{"-q", "-r", "-s", strconv.Itoa(int(timeout.Round(time.Second) / time.Second)),
		"-c", strconv.Itoa(c), "-n", strconv.Itoa(max(n, c))}
	if keepAlive {
		args = append(args, "-k")
	}
	return append(args, url)
}

// RunAB runs ab with ABArgs and parses its output.
func RunAB(ctx context.Context, url string, c, n int, keepAlive bool, timeout time.Duration) (ABResult, error) {
	out, err := run(ctx, "ab", ABArgs(url, c, n, keepAlive, timeout)...)
	if err != nil {
		return ABResult{}, fmt.Errorf("ab: %v: %s", err, out)
	}
	if ctx.Err() != nil {
		return ABResult{Aborted: "killed: ran past its time limit"}, nil
	}
	return ParseAB(out)
}

// Result returns ab's figures in the report's terms.
func (r ABResult) Result() Result {
	res := Result{Rate: r.RequestsPerSec, Unit: "req/s", P99: r.P99, Max: r.Longest, Aborted: r.Aborted,
		Failed: r.Failed + r.WriteErrors + r.Non2xx}
	var d []string
	if r.Failed > 0 {
		d = append(d, fmt.Sprintf("failed %d (connect %d, receive %d, length %d, exceptions %d)",
			r.Failed, r.FailedConnect, r.FailedReceive, r.FailedLength, r.FailedExcept))
	}
	if r.WriteErrors > 0 {
		d = append(d, fmt.Sprintf("write errors %d", r.WriteErrors))
	}
	if r.Non2xx > 0 {
		d = append(d, fmt.Sprintf("non-2xx %d", r.Non2xx))
	}
	if r.Aborted != "" {
		d = append(d, fmt.Sprintf("ab aborted after %d requests: %s", r.Complete, r.Aborted))
	}
	res.Detail = strings.Join(d, "; ")
	return res
}

// WrkResult is what wrk(1) reported.
type WrkResult struct {
	Requests       int
	Duration       time.Duration
	RequestsPerSec float64
	P50, P99, Max  time.Duration
	ConnectErrors  int
	ReadErrors     int
	WriteErrors    int
	Timeouts       int
	Non2xx         int // "Non-2xx or 3xx responses"
}

var (
	wrkRequests = regexp.MustCompile(`^\s*(\d+) requests in ([0-9.]+[a-z]+),`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLatency  = regexp.MustCompile(`^\s*(50|99)%\s+([0-9.]+[a-z]+)`)
)

// ParseWrk parses wrk's output with --latency.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	seen := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[0] == "Latency":
			r.Max = duration(f[3])
		case wrkLatency.MatchString(line):
			m := wrkLatency.FindStringSubmatch(line)
			if m[1] == "50" {
				r.P50 = duration(m[2])
			} else {
				r.P99 = duration(m[2])
			}
		case wrkRequests.MatchString(line):
			m := wrkRequests.FindStringSubmatch(line)
			r.Requests, r.Duration, seen = atoi(m[1]), duration(m[2]), true
		case wrkSocket.MatchString(line):
			m := wrkSocket.FindStringSubmatch(line)
			r.ConnectErrors, r.ReadErrors, r.WriteErrors, r.Timeouts = atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4])
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.RequestsPerSec, _ = strconv.ParseFloat(f[1], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			r.Non2xx = atoi(f[len(f)-1])
		}
	}
	if !seen {
		return r, fmt.Errorf("unrecognized wrk output: %q", out)
	}
	return r, nil
}

// RunWrk runs wrk with two threads, conns connections for d, counting a
// request that takes longer than timeout as a timeout error.
func RunWrk(ctx context.Context, url string, conns int, d, timeout time.Duration) (WrkResult, error) {
	out, err := run(ctx, "wrk", "-t", "2", "-c", strconv.Itoa(conns), "-d", secs(d), "--timeout", secs(timeout), "--latency", url)
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return ParseWrk(out)
}

// SocketErrors returns the sum of wrk's socket errors.
func (r WrkResult) SocketErrors() int {
	return r.ConnectErrors + r.ReadErrors + r.WriteErrors + r.Timeouts
}

// Result returns wrk's figures in the report's terms.
func (r WrkResult) Result() Result {
	res := Result{Rate: r.RequestsPerSec, Unit: "req/s", P99: r.P99, Max: r.Max, Failed: r.SocketErrors() + r.Non2xx}
	if r.SocketErrors() > 0 {
		res.Detail = fmt.Sprintf("socket errors: connect %d, read %d, write %d, timeout %d",
			r.ConnectErrors, r.ReadErrors, r.WriteErrors, r.Timeouts)
	}
	if r.Non2xx > 0 {
		res.Detail = strings.TrimPrefix(res.Detail+fmt.Sprintf("; non-2xx %d", r.Non2xx), "; ")
	}
	return res
}

// CurlResult is one download of "/bulk", or upload to "/sink", with
// curl(1).
type CurlResult struct {
	Bytes int64
	Took  time.Duration
	// SumOK reports whether the bytes' digest was that of BulkReader's:
	// SHA-256 for a download, the length and CRC-32C for an upload.
	SumOK bool
	Err   error // curl's failure, if it failed
}

// RunCurl downloads n bytes from url (a "/bulk" URL) with curl, hashing
// what it writes to stdout, and checks the digest.
func RunCurl(ctx context.Context, url string, n int64) CurlResult {
	want := sha256.New()
	_, _ = io.Copy(want, BulkReader(n))
	path, err := LookTool("curl")
	if err != nil {
		return CurlResult{Err: err}
	}
	cmd := exec.CommandContext(ctx, path, "-sS", "-o", "-", url)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return CurlResult{Err: err}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return CurlResult{Err: err}
	}
	got := sha256.New()
	m, _ := io.Copy(got, stdout)
	err = cmd.Wait()
	r := CurlResult{Bytes: m, Took: time.Since(start), SumOK: m == n && bytes.Equal(got.Sum(nil), want.Sum(nil))}
	if err != nil {
		r.Err = fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return r
}

// Result returns the download in the report's terms: MiB/s, and one
// failure if curl failed or the digest differs.
func (r CurlResult) Result() Result {
	res := Result{Unit: "MiB/s", Max: r.Took}
	if r.Took > 0 {
		res.Rate = float64(r.Bytes) / (1 << 20) / r.Took.Seconds()
	}
	switch {
	case r.Err != nil:
		res.Failed, res.Detail = 1, fmt.Sprintf("%v (after %d bytes)", r.Err, r.Bytes)
	case !r.SumOK:
		res.Failed, res.Detail = 1, fmt.Sprintf("digest mismatch (%d bytes)", r.Bytes)
	}
	return res
}

// RunCurlUpload uploads n bytes of BulkReader to url (a "/sink" URL)
// with curl, from a file written beforehand so that producing the bytes
// costs nothing during the transfer, and checks the length and CRC-32C
// the server returns.
func RunCurlUpload(ctx context.Context, url string, n int64) CurlResult {
	path, err := LookTool("curl")
	if err != nil {
		return CurlResult{Err: err}
	}
	f, err := os.CreateTemp("", "load-upload-*")
	if err != nil {
		return CurlResult{Err: err}
	}
	defer os.Remove(f.Name())
	h := crc32.New(castagnoli)
	_, err = io.Copy(io.MultiWriter(f, h), BulkReader(n))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return CurlResult{Err: err}
	}
	want := fmt.Sprintf("%d %08x", n, h.Sum32())
	// No "Expect: 100-continue": curl would wait for the server's
	// interim response before sending.
	cmd := exec.CommandContext(ctx, path, "-sS", "-H", "Expect:", "-T", f.Name(), url)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	got := strings.TrimSpace(stdout.String())
	r := CurlResult{Took: time.Since(start), SumOK: got == want}
	if r.SumOK {
		r.Bytes = n
	} else if k, _, ok := strings.Cut(got, " "); ok {
		r.Bytes, _ = strconv.ParseInt(k, 10, 64)
	}
	if err != nil {
		r.Err = fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return r
}

// Probe is one legitimate connection: connect, one HTTP request, the
// whole response.
type Probe struct {
	Took time.Duration
	Err  error
}

// ProbeHTTP connects to addr within timeout, then sends one GET / and
// reads the response within timeout more, checking it is Body.
func ProbeHTTP(addr netip.AddrPort, timeout time.Duration) Probe {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		return Probe{Took: time.Since(start), Err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	err = func() error {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+addr.String()+"\r\nConnection: close\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(body) != Body {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, body)
		}
		return nil
	}()
	return Probe{Took: time.Since(start), Err: err}
}

// ProbeSeries starts n probes of addr, one every spacing, each in its
// own goroutine so a slow one does not delay the next, and returns them
// all once they are done.
func ProbeSeries(addr netip.AddrPort, n int, spacing, timeout time.Duration) []Probe {
	probes := make([]Probe, n)
	var wg sync.WaitGroup
	tick := time.NewTicker(spacing)
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		wg.Go(func() { probes[i] = ProbeHTTP(addr, timeout) })
	}
	wg.Wait()
	return probes
}

// ProbeResult sums probes up in the report's terms: the percentage that
// succeeded, their p99 and longest time, and the first error.
func ProbeResult(probes []Probe) Result {
	res := Result{Unit: "% ok"}
	var took []time.Duration
	for _, p := range probes {
		took = append(took, p.Took)
		if p.Err != nil {
			if res.Failed == 0 {
				res.Detail = "first failure: " + p.Err.Error()
			}
			res.Failed++
		}
	}
	if len(probes) == 0 {
		return res
	}
	res.Rate = 100 * float64(len(probes)-res.Failed) / float64(len(probes))
	slices.Sort(took)
	res.P99 = took[(len(took)*99+99)/100-1]
	res.Max = took[len(took)-1]
	return res
}

// FloodResult is what hping3 sent.
type FloodResult struct {
	Packets  int
	Duration time.Duration
}

var hpingSent = regexp.MustCompile(`(\d+) packets transmitted`)

// ParseHping returns the packet count of hping3's closing statistics.
func ParseHping(out string) (int, error) {
	m := hpingSent.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognized hping3 output: %q", out)
	}
	return atoi(m[1]), nil
}

// FloodFlag is the TCP flag a flood's segments carry.
type FloodFlag string

// The floods: SYNs, as for a connection (a listener answers with a
// SYN-ACK, a SYN cookie past its backlog), and bare ACKs, as for a
// connection that does not exist (a listener checks each for a SYN
// cookie, then answers with a reset).
const (
	FloodSYN FloodFlag = "-S"
	FloodACK FloodFlag = "-A"
)

// Flood sends segments with flag to target as fast as hping3 can for d,
// from the address spoof (with a new source port each), and returns how
// many it sent. timeout(1) interrupts hping3, which then prints its count.
func Flood(ctx context.Context, target netip.AddrPort, spoof netip.Addr, flag FloodFlag, d time.Duration) (FloodResult, error) {
	hping, err := LookTool("hping3")
	if err != nil {
		return FloodResult{}, err
	}
	start := time.Now()
	out, err := run(ctx, "timeout", "-k", "2", "-s", "INT", secs(d), hping,
		string(flag), "-p", strconv.Itoa(int(target.Port())), "--flood", "-a", spoof.String(), target.Addr().String())
	took := time.Since(start)
	if err != nil {
		return FloodResult{}, fmt.Errorf("hping3: %v: %s", err, out)
	}
	n, err := ParseHping(out)
	return FloodResult{Packets: n, Duration: took}, err
}

// PacketsPerSec returns the flood's rate.
func (f FloodResult) PacketsPerSec() float64 {
	if f.Duration <= 0 {
		return 0
	}
	return float64(f.Packets) / f.Duration.Seconds()
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// duration parses wrk's durations ("607.54us", "1.14ms", "2.10s", "1.00m").
func duration(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// secs formats d as whole seconds, at least 1, for the tools' flags.
func secs(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s"
}

// SlowReader is one download by a client that reads slowly: see
// RunSlowReaders.
type SlowReader struct {
	Bytes int64
	Took  time.Duration
	Err   error
}

// SlowReadPlan is the shape of RunSlowReaders' clients.
type SlowReadPlan struct {
	Conns int   // concurrent clients
	Size  int64 // bytes each downloads from "/bulk"
	// RcvBuf is each client's SO_RCVBUF, set before it connects so that
	// the window it offers stays small.
	RcvBuf int
	// First is how much of the body a client reads before it stops
	// reading for Stall, long enough for the server to fill the window
	// and probe it while it is zero (RFC 9293 section 3.8.6.1).
	First int64
	Stall time.Duration
	// Chunk and Pause pace the rest: Chunk bytes per read, Pause after
	// each.
	Chunk int
	Pause time.Duration
}

// RunSlowReaders starts p.Conns downloads of p.Size bytes from addr's
// "/bulk" at once, each from a client with a small receive buffer that
// reads p.First bytes, stops reading for p.Stall, then reads the rest in
// p.Chunk pieces with p.Pause between them, and checks the bytes' CRC-32C
// against BulkReader's. Every client gives up after timeout.
func RunSlowReaders(ctx context.Context, addr netip.AddrPort, p SlowReadPlan, timeout time.Duration) []SlowReader {
	want := crc32.New(castagnoli)
	_, _ = io.Copy(want, BulkReader(p.Size))
	sum := want.Sum32()
	out := make([]SlowReader, p.Conns)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = slowRead(ctx, addr, p, sum, timeout) })
	}
	wg.Wait()
	return out
}

func slowRead(ctx context.Context, addr netip.AddrPort, p SlowReadPlan, sum uint32, timeout time.Duration) SlowReader {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, p.RcvBuf)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return SlowReader{Took: time.Since(start), Err: err}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var n int64
	err = func() error {
		if _, err := fmt.Fprintf(c, "GET /bulk?n=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", p.Size, addr); err != nil {
			return err
		}
		br := bufio.NewReaderSize(c, p.Chunk)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		h := crc32.New(castagnoli)
		m, err := io.CopyN(h, resp.Body, p.First)
		n += m
		if err != nil {
			return err
		}
		select {
		case <-time.After(p.Stall):
		case <-ctx.Done():
			return ctx.Err()
		}
		buf := make([]byte, p.Chunk)
		for {
			k, err := resp.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			time.Sleep(p.Pause)
		}
		if n != p.Size || h.Sum32() != sum {
			return fmt.Errorf("got %d bytes, CRC-32C %08x; want %d, %08x", n, h.Sum32(), p.Size, sum)
		}
		return nil
	}()
	r := SlowReader{Bytes: n, Took: time.Since(start), Err: err}
	if err != nil {
		r.Err = fmt.Errorf("after %d bytes: %w", n, err)
	}
	return r
}

// SlowReadResult sums slow readers up in the report's terms: the MiB/s
// of all of them together, the p99 and longest download, and the first
// failure.
func SlowReadResult(rs []SlowReader) Result {
	res := Result{Unit: "MiB/s"}
	var took []time.Duration
	var bytes int64
	var longest time.Duration
	for _, r := range rs {
		took = append(took, r.Took)
		bytes += r.Bytes
		longest = max(longest, r.Took)
		if r.Err != nil {
			if res.Failed == 0 {
				res.Detail = "first failure: " + r.Err.Error()
			}
			res.Failed++
		}
	}
	if len(rs) == 0 {
		return res
	}
	slices.Sort(took)
	res.P99 = took[(len(took)*99+99)/100-1]
	res.Max = longest
	if longest > 0 {
		res.Rate = float64(bytes) / (1 << 20) / longest.Seconds()
	}
	return res
}

// RunAbortingReaders starts conns downloads of size bytes from addr's
// "/bulk" at once. Each client reads the first first bytes of the body
// and goes away while the server is still writing: every other one with
// a reset (SO_LINGER 0), the rest with a close that, as it leaves unread
// data behind, the kernel turns into a reset too. Each is a Probe: it
// fails if it could not read its first bytes within timeout.
func RunAbortingReaders(ctx context.Context, addr netip.AddrPort, conns int, size, first int64, timeout time.Duration) []Probe {
	out := make([]Probe, conns)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = abortingRead(ctx, addr, size, first, i%2 == 0, timeout) })
	}
	wg.Wait()
	return out
}

func abortingRead(ctx context.Context, addr netip.AddrPort, size, first int64, reset bool, timeout time.Duration) Probe {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return Probe{Took: time.Since(start), Err: err}
	}
	defer c.Close()
	if reset {
		_ = c.(*net.TCPConn).SetLinger(0)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	err = func() error {
		if _, err := fmt.Fprintf(c, "GET /bulk?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n", size, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		_, err = io.CopyN(io.Discard, resp.Body, first)
		return err
	}()
	return Probe{Took: time.Since(start), Err: err}
}

// RunSlowUploads starts p.Conns uploads of p.Size bytes of BulkReader to
// addr's "/slowsink" at once, which reads p.First bytes, stops reading
// for p.Stall (the server's receive window fills and shuts), then reads
// the rest p.Chunk bytes at a time with p.Pause after each; each upload
// checks the length and CRC-32C the server returns. p.RcvBuf is not used.
func RunSlowUploads(ctx context.Context, addr netip.AddrPort, p SlowReadPlan, timeout time.Duration) []SlowReader {
	h := crc32.New(castagnoli)
	_, _ = io.Copy(h, BulkReader(p.Size))
	want := fmt.Sprintf("%d %08x", p.Size, h.Sum32())
	url := fmt.Sprintf("http://%s/slowsink?first=%d&stall=%v&chunk=%d&pause=%v", addr, p.First, p.Stall, p.Chunk, p.Pause)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	out := make([]SlowReader, p.Conns)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			start := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, BulkReader(p.Size))
			if err != nil {
				out[i] = SlowReader{Err: err}
				return
			}
			req.ContentLength = p.Size
			resp, err := client.Do(req)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if got := strings.TrimSpace(string(b)); err == nil && (resp.StatusCode != http.StatusOK || got != want) {
					err = fmt.Errorf("status %d, %q, want %q", resp.StatusCode, got, want)
				}
			}
			out[i] = SlowReader{Took: time.Since(start), Err: err}
			if err == nil {
				out[i].Bytes = p.Size
			}
		})
	}
	wg.Wait()
	return out
}
