//go:build linux

package load

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Result is one load's outcome on one server.
type Result struct {
	Rate     float64       // in Unit: requests/s, MiB/s or percent of probes that succeeded
	Unit     string        // "req/s", "MiB/s" or "% ok"
	P99, Max time.Duration // per request (or probe, or download)
	Failed   int           // requests or probes that failed, were reset or timed out
	Aborted  string        // why the client stopped early, if it did
	Detail   string        // what the failures were, and other notes
}

// ServerReport is everything measured on one server.
type ServerReport struct {
	Kind    Kind
	Results map[string]Result // by load name
	// The server process's HeapInuse: after start and a GC, the most
	// sampled during the loads, and after the loads, an idle period and
	// a GC.
	HeapBefore, HeapPeak, HeapAfter uint64
	// GoroutinesAfter is the server's goroutine count at the end: net/http
	// holds one per open connection, so more than at the start are
	// connections that never closed.
	GoroutinesBefore, GoroutinesAfter int
	// Counters are the stack's own counters after the loads.
	Counters map[string]uint64
	// Err says why the server could not be measured, if so.
	Err string
}

// Report is the side-by-side comparison of the servers.
type Report struct {
	Title   string
	Loads   []string // load names, in the order they ran
	Servers []*ServerReport
	Notes   []string // the setup, shown under the table
}

// server returns the report of kind, or nil.
func (r *Report) server(kind Kind) *ServerReport {
	for _, s := range r.Servers {
		if s.Kind == kind {
			return s
		}
	}
	return nil
}

// Markdown returns the report as a markdown table with one row per load
// and measure, a column per server and the ratios of tcpfsm to gVisor
// and to the kernel, followed by the failures and counters in words.
func (r *Report) Markdown() string {
	var b strings.Builder
	if r.Title != "" {
		fmt.Fprintf(&b, "### %s\n\n", r.Title)
	}
	b.WriteString("| load | measure |")
	for _, k := range Kinds {
		fmt.Fprintf(&b, " %s |", k)
	}
	b.WriteString(" tcpfsm/gVisor | tcpfsm/kernel |\n|---|---|")
	b.WriteString(strings.Repeat("--:|", len(Kinds)+2) + "\n")

	// row writes one line of the table, unless it would be empty: cell
	// returns a server's text and, if ok, the number for the ratios.
	row := func(load, measure string, cell func(*ServerReport) (text string, v float64, ok bool)) {
		var line strings.Builder
		fmt.Fprintf(&line, "| %s | %s |", load, measure)
		vals := map[Kind]float64{}
		ok := map[Kind]bool{}
		empty := true
		for _, k := range Kinds {
			s := r.server(k)
			text := "n/a"
			if s != nil && (s.Err == "" || len(s.Results) > 0) {
				var v float64
				text, v, ok[k] = cell(s)
				vals[k] = v
				empty = empty && text == ""
			}
			fmt.Fprintf(&line, " %s |", text)
		}
		if empty {
			return
		}
		for _, base := range []Kind{GVisor, Kernel} {
			if ok[Tcpfsm] && ok[base] && vals[base] != 0 {
				fmt.Fprintf(&line, " %.2f |", vals[Tcpfsm]/vals[base])
			} else {
				line.WriteString(" |")
			}
		}
		b.WriteString(line.String() + "\n")
	}
	for _, load := range r.Loads {
		unit := "rate"
		for _, s := range r.Servers {
			if res, ok := s.Results[load]; ok && res.Unit != "" {
				unit = res.Unit
				break
			}
		}
		result := func(s *ServerReport) (Result, bool) {
			res, ok := s.Results[load]
			return res, ok
		}
		row(load, unit, func(s *ServerReport) (string, float64, bool) {
			res, ok := result(s)
			if !ok || res.Aborted != "" {
				return "aborted", 0, false
			}
			return formatRate(res.Rate), res.Rate, true
		})
		row("", "p99 ms", func(s *ServerReport) (string, float64, bool) {
			res, ok := result(s)
			if !ok || res.Aborted != "" || res.P99 == 0 {
				return "", 0, false
			}
			return formatMs(res.P99), float64(res.P99), true
		})
		row("", "max ms", func(s *ServerReport) (string, float64, bool) {
			res, ok := result(s)
			if !ok || res.Aborted != "" || res.Max == 0 {
				return "", 0, false
			}
			return formatMs(res.Max), float64(res.Max), true
		})
		row("", "failed/reset", func(s *ServerReport) (string, float64, bool) {
			res, ok := result(s)
			if !ok {
				return "", 0, false
			}
			if res.Aborted != "" {
				return fmt.Sprintf("%d, aborted", res.Failed), 0, false
			}
			return fmt.Sprint(res.Failed), 0, false
		})
	}
	heap := func(name string, f func(*ServerReport) uint64) {
		row("heap", name, func(s *ServerReport) (string, float64, bool) {
			v := f(s)
			if v == 0 {
				return "?", 0, false
			}
			return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)), float64(v), true
		})
	}
	heap("before", func(s *ServerReport) uint64 { return s.HeapBefore })
	heap("peak", func(s *ServerReport) uint64 { return s.HeapPeak })
	heap("after", func(s *ServerReport) uint64 { return s.HeapAfter })
	row("goroutines", "before / after", func(s *ServerReport) (string, float64, bool) {
		return fmt.Sprintf("%d / %d", s.GoroutinesBefore, s.GoroutinesAfter), 0, false
	})

	var details []string
	for _, s := range r.Servers {
		if s.Err != "" {
			details = append(details, fmt.Sprintf("%s: %s", s.Kind, s.Err))
		}
		for _, load := range r.Loads {
			if res, ok := s.Results[load]; ok && res.Detail != "" {
				details = append(details, fmt.Sprintf("%s, %s: %s", s.Kind, load, res.Detail))
			}
		}
	}
	for _, s := range r.Servers {
		if len(s.Counters) == 0 {
			continue
		}
		var cs []string
		for _, name := range slices.Sorted(maps.Keys(s.Counters)) {
			if v := s.Counters[name]; v != 0 {
				cs = append(cs, fmt.Sprintf("%s %d", name, v))
			}
		}
		if len(cs) > 0 {
			details = append(details, fmt.Sprintf("%s counters: %s", s.Kind, strings.Join(cs, ", ")))
		}
	}
	if len(details) > 0 {
		b.WriteString("\n")
		for _, d := range details {
			fmt.Fprintf(&b, "- %s\n", d)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "%s\n", n)
		}
	}
	return b.String()
}

func formatRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func formatMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms >= 100 {
		return fmt.Sprintf("%.0f", ms)
	}
	return fmt.Sprintf("%.1f", ms)
}
