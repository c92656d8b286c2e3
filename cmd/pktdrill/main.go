// Command pktdrill runs scripts in packetdrill syntax against tcpfsm's
// state machine and prints one line per script: PASS, FAIL with the
// failing line and what was expected and seen, or UNSUPPORTED with the
// feature the script needs that tcpfsm lacks. A summary follows.
//
//	go run ./cmd/pktdrill pktdrill/testdata/*.pkt
//	go run ./cmd/pktdrill -ignore-window -ignore-options my-suite/*.pkt
//	go run ./cmd/pktdrill -profile linux -dir ../shared/packetdrill-linux/gtests/net/tcp
//	go run ./cmd/pktdrill -profile linux -dir DIR -markdown docs/packetdrill-linux.md
//
// -dir runs every .pkt file under a directory. -profile chooses the
// defaults the scripts assume (rfc, linux, freebsd; see
// pktdrill.ProfileConfig). -markdown also writes the table to a file;
// -splice writes it into a file between two marker lines.
// The exit status is 1 if a script failed, or, with -min-pass, only if
// the share of passing scripts among those not UNSUPPORTED fell below
// that percentage; 2 on bad usage.
//
// See package pktdrill for the supported subset of the language.
package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tcpfsm/tcpfsm/pktdrill"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

// outcome is one script's result, named as the table shows it.
type outcome struct {
	name string
	res  pktdrill.Result
}

func run(args []string, w io.Writer) int {
	fset := flag.NewFlagSet("pktdrill", flag.ContinueOnError)
	fset.SetOutput(w)
	var o pktdrill.Options
	fset.BoolVar(&o.IgnoreWindow, "ignore-window", false, "do not compare window values")
	fset.BoolVar(&o.IgnoreOptions, "ignore-options", false, "do not compare TCP option lists")
	fset.BoolVar(&o.IgnorePush, "ignore-push", false, "do not compare the PSH flag")
	fset.BoolVar(&o.IgnoreUnexpected, "ignore-unexpected", false, "as packetdrill: a packet no line expects fails only if a later expected one differs")
	fset.StringVar(&o.Profile, "profile", "rfc", "the defaults scripts assume: "+strings.Join(pktdrill.Profiles, ", "))
	dir := fset.String("dir", "", "run every .pkt file under this directory")
	md := fset.String("markdown", "", "also write the results as a Markdown table to this file")
	splice := fset.String("splice", "", "also write the table into this file, between the lines "+spliceBegin+" and "+spliceEnd)
	minPass := fset.Float64("min-pass", -1, "exit 1 only if fewer than this percentage of the scripts in scope (not UNSUPPORTED) pass")
	quiet := fset.Bool("q", false, "print only the summary and the scripts that did not pass")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	if _, err := pktdrill.ProfileConfig(o.Profile); err != nil {
		fmt.Fprintln(w, err)
		return 2
	}
	files := fset.Args()
	if *dir != "" {
		found, err := scripts(*dir)
		if err != nil {
			fmt.Fprintln(w, err)
			return 2
		}
		files = append(files, found...)
	}
	if len(files) == 0 {
		fmt.Fprintln(w, "usage: pktdrill [-profile rfc|linux|freebsd] [-ignore-window] [-ignore-options] [-dir DIR] [-markdown FILE] [-splice FILE] [-min-pass PCT] [script.pkt ...]")
		return 2
	}
	var results []outcome
	count := map[pktdrill.Verdict]int{}
	for _, path := range files {
		name := path
		if *dir != "" {
			if rel, err := filepath.Rel(*dir, path); err == nil && !strings.HasPrefix(rel, "..") {
				name = rel
			}
		}
		var res pktdrill.Result
		b, err := os.ReadFile(path)
		if err != nil {
			res = pktdrill.Result{Verdict: pktdrill.Fail, Err: err}
		} else {
			so := o
			so.Dir = filepath.Dir(path)
			res = pktdrill.RunScript(string(b), so)
		}
		count[res.Verdict]++
		results = append(results, outcome{name, res})
		switch {
		case res.Verdict == pktdrill.Pass && !*quiet:
			fmt.Fprintf(w, "PASS %s\n", name)
		case res.Verdict == pktdrill.Fail:
			fmt.Fprintf(w, "FAIL %s: %v\n", name, res.Err)
		case res.Verdict == pktdrill.Unsupported:
			fmt.Fprintf(w, "UNSUPPORTED %s: %s\n", name, res.Reason())
		}
	}
	summary := summarize(count)
	fmt.Fprintln(w, summary)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(markdown(results, summary, o.Profile, args)), 0o644); err != nil {
			fmt.Fprintln(w, err)
			return 2
		}
	}
	if *splice != "" {
		if err := spliceTable(*splice, table(results, summary)); err != nil {
			fmt.Fprintln(w, err)
			return 2
		}
	}
	if *minPass >= 0 {
		if share(count) < *minPass {
			fmt.Fprintf(w, "the pass share %.1f%% is below -min-pass %.1f%%\n", share(count), *minPass)
			return 1
		}
		return 0
	}
	if count[pktdrill.Fail] > 0 {
		return 1
	}
	return 0
}

// scripts lists the .pkt files under dir, sorted.
func scripts(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".pkt") {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// share is the percentage of in-scope scripts (not UNSUPPORTED) that pass.
func share(count map[pktdrill.Verdict]int) float64 {
	in := count[pktdrill.Pass] + count[pktdrill.Fail]
	if in == 0 {
		return 100
	}
	return 100 * float64(count[pktdrill.Pass]) / float64(in)
}

func summarize(count map[pktdrill.Verdict]int) string {
	return fmt.Sprintf("%d passed, %d failed, %d unsupported; %.1f%% of the %d scripts in scope pass",
		count[pktdrill.Pass], count[pktdrill.Fail], count[pktdrill.Unsupported], share(count),
		count[pktdrill.Pass]+count[pktdrill.Fail])
}

// markdown renders the results as a document that says how to make it
// again.
func markdown(results []outcome, summary, profile string, args []string) string {
	var b strings.Builder
	b.WriteString("# Linux's packetdrill suite against tcpfsm\n\n")
	b.WriteString("Generated by `go run ./cmd/pktdrill " + strings.Join(args, " ") + "` (`make pktdrill-linux`); do not edit by hand.\n")
	b.WriteString("Profile: `" + profile + "`. Scripts are read from the suite's directory and never copied here.\n\n")
	b.WriteString(table(results, summary))
	return b.String()
}

// table renders the summary and one row per script.
func table(results []outcome, summary string) string {
	var b strings.Builder
	b.WriteString("**" + summary + ".**\n\n")
	b.WriteString("UNSUPPORTED scripts need a feature tcpfsm (or this runner) does not have; FAIL scripts show the first mismatch.\n\n")
	b.WriteString("| Script | Verdict | Reason |\n|---|---|---|\n")
	for _, r := range results {
		reason := strings.ReplaceAll(r.res.Reason(), "|", `\|`)
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, r.res.Verdict, reason)
	}
	return b.String()
}

// The lines between which -splice writes the table.
const (
	spliceBegin = "<!-- pktdrill table: begin -->"
	spliceEnd   = "<!-- pktdrill table: end -->"
)

// spliceTable replaces what lies between the marker lines in path with
// tbl, leaving the rest of the file as it was.
func spliceTable(path, tbl string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, spliceBegin+"\n")
	j := strings.Index(s, spliceEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s line followed by %s", path, spliceBegin, spliceEnd)
	}
	i += len(spliceBegin) + 1
	return os.WriteFile(path, []byte(s[:i]+tbl+s[j:]), 0o644)
}
