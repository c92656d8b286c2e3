//go:build icount

package tcpfsm

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// TestInstructionCountLoop runs BenchmarkDataSegment's step (ICOUNT_WHAT
// "plain" or "options") or BenchmarkLifecycle's connection ("lifecycle")
// ICOUNT_N times, and checks the run moved the data; tools/icount.sh
// counts its instructions under valgrind, a measure that, unlike time, does
// not move with the host's load. Built only with the icount tag.
func TestInstructionCountLoop(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ICOUNT_N"))
	if n == 0 {
		t.Skip("ICOUNT_N not set")
	}
	which := os.Getenv("ICOUNT_WHAT")
	if which == "checksum" {
		// BenchmarkChecksum/64KiB's op.
		src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		var sink uint16
		for range n {
			sink += Checksum(src, dst, buf)
		}
		if want := uint16(n) * Checksum(src, dst, buf); sink != want {
			t.Fatalf("checksums summed to %#x, want %#x", sink, want)
		}
		return
	}
	if which == "lifecycle-prefix" {
		// The first ICOUNT_K steps of BenchmarkLifecycle's connection;
		// tools/icount.sh lifecycle-steps subtracts consecutive prefixes
		// to cost each step. ICOUNT_LIST prints the steps instead.
		script := lifecycleScript()
		if os.Getenv("ICOUNT_LIST") != "" {
			for i, r := range script {
				what := r.ev.Kind.String()
				if r.ev.Seg != nil {
					what += " " + r.ev.Seg.Flags.String()
				}
				fmt.Printf("step %d: %s, end %d in %v\n", i, what, r.side, lifecycleStates(script[:i+1]))
			}
			return
		}
		k, _ := strconv.Atoi(os.Getenv("ICOUNT_K"))
		var tcb [2]TCB
		out := make([]Action, 0, 64)
		for range n {
			out = replayLifecycle(script[:min(k, len(script))], &tcb, out)
		}
		return
	}
	if which == "lifecycle" {
		script := lifecycleScript()
		var tcb [2]TCB
		out := make([]Action, 0, 64)
		for range n {
			out = replayLifecycle(script, &tcb, out)
		}
		if tcb[0].State != Closed || tcb[1].State != Closed {
			t.Fatalf("replay ended in %v and %v", tcb[0].State, tcb[1].State)
		}
		return
	}
	tcb, seg := dataPath(t, which == "options")
	start := tcb.RcvNxt
	out := make([]Action, 0, 16)
	for range n {
		out = stepData(&tcb, &seg, out)
	}
	if got := tcb.RcvNxt.Diff(start); got != uint32(n)*1460 {
		t.Fatalf("received %d bytes, want %d", got, n*1460)
	}
}

// lifecycleStates replays script and returns the state of the end that
// took its last step.
func lifecycleStates(script []recorded) State {
	var tcb [2]TCB
	replayLifecycle(script, &tcb, nil)
	return tcb[script[len(script)-1].side].State
}
