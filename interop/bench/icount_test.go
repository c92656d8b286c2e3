//go:build icount

package bench

import (
	"os"
	"strconv"
	"testing"
)

// TestInstructionCountLoop runs ICOUNT_N ops of one side of
// BenchmarkLifecycle or BenchmarkSegment (ICOUNT_WHAT "lifecycle/tcpfsm",
// "lifecycle/seqs", "segment/tcpfsm" or "segment/seqs"), the same code the
// benchmarks time, and checks the last op did its work; tools/icount.sh
// counts its instructions under valgrind. Built only with the icount tag.
func TestInstructionCountLoop(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ICOUNT_N"))
	if n == 0 {
		t.Skip("ICOUNT_N not set")
	}
	switch what := os.Getenv("ICOUNT_WHAT"); what {
	case "lifecycle/tcpfsm":
		p := newFsmPair(t)
		fresh := p.t
		for range n {
			p.lifecycle(t, &fresh) // fails the test if a connection ends wrong
		}
	case "lifecycle/seqs":
		var p seqsPair
		for range n {
			p.lifecycle(t)
		}
	case "segment/tcpfsm":
		p := newFsmPair(t)
		p.open(t)
		start := p.t[1].RcvNxt
		for range n {
			p.segment()
		}
		if got := p.t[1].RcvNxt.Diff(start); got != uint32(n)*1460 || p.t[0].SndUna != p.t[0].SndNxt {
			t.Fatalf("the server received %d bytes, want %d, or data is unacknowledged", got, n*1460)
		}
	case "segment/seqs":
		var p seqsPair
		p.open(t)
		start := p.c[1].RecvNext()
		for range n {
			p.segment(t)
		}
		if got := p.c[1].RecvNext() - start; uint32(got) != uint32(n)*1460 {
			t.Fatalf("the server received %d bytes, want %d", got, n*1460)
		}
	default:
		t.Fatalf("ICOUNT_WHAT %q: want lifecycle/tcpfsm, lifecycle/seqs, segment/tcpfsm or segment/seqs", what)
	}
}
