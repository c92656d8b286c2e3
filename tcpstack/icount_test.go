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
// ICOUNT_N times (ICOUNT_WHAT "stack"), and checks the server took its
// segments; tools/icount.sh counts its instructions under valgrind.
// Built only with the icount tag.
func TestInstructionCountLoop(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ICOUNT_N"))
	if n == 0 || os.Getenv("ICOUNT_WHAT") != "stack" {
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
