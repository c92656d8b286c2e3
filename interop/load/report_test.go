//go:build linux

package load

import (
	"strings"
	"testing"
	"time"
)

func TestMarkdown(t *testing.T) {
	ms := time.Millisecond
	r := &Report{Loads: []string{"ab", "curl"}}
	for _, s := range []struct {
		kind Kind
		rate float64
	}{{Kernel, 400}, {GVisor, 100}, {Tcpfsm, 200}} {
		r.Servers = append(r.Servers, &ServerReport{Kind: s.kind, HeapBefore: 1 << 20, HeapPeak: 4 << 20, HeapAfter: 2 << 20,
			Results: map[string]Result{
				"ab":   {Rate: s.rate, Unit: "req/s", P99: 10 * ms, Max: 20 * ms},
				"curl": {Rate: s.rate / 10, Unit: "MiB/s", Max: 30 * ms},
			}})
	}
	tr := r.server(Tcpfsm)
	tr.Results["ab"] = Result{Unit: "req/s", Failed: 3, Aborted: "timeout", Detail: "ab aborted after 7 requests"}
	got := r.Markdown()
	for _, want := range []string{
		"| load | measure | kernel | gVisor | tcpfsm | tcpfsm/gVisor | tcpfsm/kernel |",
		"| ab | req/s | 400 | 100 | aborted | | |",
		"|  | failed/reset | 0 | 0 | 3, aborted | | |",
		"| curl | MiB/s | 40.0 | 10.0 | 20.0 | 2.00 | 0.50 |",
		"| heap | after | 2.0 MiB | 2.0 MiB | 2.0 MiB | 1.00 | 1.00 |",
		"- tcpfsm, ab: ab aborted after 7 requests",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("no line %q in\n%s", want, got)
		}
	}
	// curl has no p99: the row is left out.
	if strings.Count(got, "p99 ms") != 1 {
		t.Errorf("want one p99 row (ab's), got\n%s", got)
	}
}
