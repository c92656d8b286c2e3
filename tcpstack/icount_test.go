//go:build icount

package tcpstack

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// TestInstructionCountLoop runs BenchmarkStackConnection's connection
// ICOUNT_N times (ICOUNT_WHAT "stack"), or BenchmarkEndpointBulk's op
// ("bulk", "bulklarge"), and checks it did its work; tools/icount.sh
// counts its instructions under valgrind.
// Built only with the icount tag.
func TestInstructionCountLoop(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ICOUNT_N"))
	which := os.Getenv("ICOUNT_WHAT")
	if which == "bulk" || which == "bulklarge" {
		// BenchmarkEndpointBulk/segments or /large: 64 KiB per op.
		k := newBulk(t, which == "bulklarge")
		for range n {
			k.op()
		}
		k.drain()
		if k.read != k.moved || k.moved != n*len(k.data) {
			t.Fatalf("moved %d bytes, read %d, want %d", k.moved, k.read, n*len(k.data))
		}
		return
	}
	if n == 0 || which != "stack" {
		t.Skip("ICOUNT_N or ICOUNT_WHAT=stack not set")
	}
	short := Config{Endpoint: EndpointConfig{Config: tcpfsm.Config{MSL: time.Millisecond}}}
	sn := newStackNet(t, short, short)
	sn.delay = 0
	l, _ := sn.s[1].Listen(80)
	for range n {
		stackConnection(t, sn, l)
	}
	if got := sn.s[1].Stats().SegmentsIn; got < uint64(n)*5 {
		t.Fatalf("the server took %d segments for %d connections", got, n)
	}
}

// drain moves what is still in flight, until the receiver read it all.
func (k *bulk) drain() {
	for i := 0; i < 100 && k.read < k.moved; i++ {
		k.round()
	}
}
