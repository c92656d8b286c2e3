//go:build linux

package load

import (
	"crypto/sha256"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// The samples in testdata are the tools' own output, captured against
// small local servers (one answering, one refusing, one stalling and
// resetting, one answering 404).

func sample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseAB(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		file string
		want ABResult
	}{
		{"ab-ok.txt", ABResult{Complete: 200, RequestsPerSec: 481.16, P99: 27 * ms, Longest: 28 * ms}},
		{"ab-failed.txt", ABResult{Complete: 100, Failed: 150, FailedReceive: 100, FailedExcept: 50, RequestsPerSec: 33112.58}},
		{"ab-non2xx.txt", ABResult{Complete: 20, Non2xx: 20, RequestsPerSec: 878.50, P99: 7 * ms, Longest: 7 * ms}},
		{"ab-aborted.txt", ABResult{Complete: 9, Aborted: "apr_pollset_poll: The timeout specified has expired (70007)"}},
	} {
		got, err := ParseAB(sample(t, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
	if _, err := ParseAB("ab: invalid option -- 'x'\n"); err == nil {
		t.Error("no error for output without results")
	}
}

func TestABResult(t *testing.T) {
	r := ABResult{Complete: 100, Failed: 150, FailedReceive: 100, FailedExcept: 50, Non2xx: 3}.Result()
	if r.Failed != 153 || !strings.Contains(r.Detail, "receive 100") || !strings.Contains(r.Detail, "non-2xx 3") {
		t.Errorf("got %+v", r)
	}
	r = ABResult{Complete: 9, Aborted: "timeout"}.Result()
	if r.Aborted == "" || !strings.Contains(r.Detail, "after 9 requests") {
		t.Errorf("got %+v", r)
	}
}

func TestParseWrk(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, tc := range []struct {
		file string
		want WrkResult
	}{
		{"wrk-ok.txt", WrkResult{Requests: 618, Duration: time.Second, RequestsPerSec: 617.19,
			P50: ms(11.24), P99: ms(19.44), Max: ms(21.29)}},
		{"wrk-errors.txt", WrkResult{Requests: 20, Duration: 2 * time.Second, RequestsPerSec: 9.98,
			P50: ms(1.14), P99: ms(2.10), Max: ms(2.10), ReadErrors: 39}},
		{"wrk-non2xx.txt", WrkResult{Requests: 1719, Duration: 1100 * time.Millisecond, RequestsPerSec: 1563.71,
			P50: ms(2.33), P99: ms(4.69), Max: ms(7.25), Non2xx: 1719}},
	} {
		got, err := ParseWrk(sample(t, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:8001 Connection refused\n"); err == nil {
		t.Error("no error for output without results")
	}
	r := WrkResult{ReadErrors: 39, Timeouts: 2, Non2xx: 1}.Result()
	if r.Failed != 42 || !strings.Contains(r.Detail, "read 39") || !strings.Contains(r.Detail, "non-2xx 1") {
		t.Errorf("got %+v", r)
	}
}

func TestParseHping(t *testing.T) {
	n, err := ParseHping(sample(t, "hping3.txt"))
	if err != nil || n != 171550 {
		t.Errorf("got %d, %v", n, err)
	}
}

func TestProbeResult(t *testing.T) {
	var probes []Probe
	for i := range 100 {
		p := Probe{Took: time.Duration(i+1) * time.Millisecond}
		if i == 99 {
			p.Err = io.ErrUnexpectedEOF
		}
		probes = append(probes, p)
	}
	r := ProbeResult(probes)
	if r.Rate != 99 || r.Failed != 1 || r.P99 != 99*time.Millisecond || r.Max != 100*time.Millisecond {
		t.Errorf("got %+v", r)
	}
}

func TestBulkReaderRepeats(t *testing.T) {
	sum := func() [32]byte {
		h := sha256.New()
		if n, _ := io.Copy(h, BulkReader(1<<20)); n != 1<<20 {
			t.Fatalf("read %d bytes", n)
		}
		return [32]byte(h.Sum(nil))
	}
	if a, b := sum(), sum(); a != b {
		t.Error("BulkReader differs between calls")
	}
}
