// Command pktdrill runs scripts in packetdrill syntax against tcpfsm's
// state machine and prints one PASS or FAIL line per script, with the
// failing line and what was expected and seen. It exits 1 if any failed.
//
//	go run ./cmd/pktdrill pktdrill/testdata/*.pkt
//	go run ./cmd/pktdrill -ignore-window -ignore-options my-suite/*.pkt
//
// See package pktdrill for the supported subset of the language.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tcpfsm/tcpfsm/pktdrill"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("pktdrill", flag.ContinueOnError)
	fs.SetOutput(w)
	var o pktdrill.Options
	fs.BoolVar(&o.IgnoreWindow, "ignore-window", false, "do not compare window values")
	fs.BoolVar(&o.IgnoreOptions, "ignore-options", false, "do not compare TCP option lists")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(w, "usage: pktdrill [-ignore-window] [-ignore-options] script.pkt ...")
		return 2
	}
	failed := 0
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err == nil {
			err = pktdrill.Run(string(b), o)
		}
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAIL %s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(w, "PASS %s\n", path)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", fs.NArg()-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
