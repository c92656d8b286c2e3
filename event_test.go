package tcpfsm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// Step appends an Action for every output and zeroes each as it does: a
// small Action keeps that cheap. 64 bytes is one cache line.
func TestActionSize(t *testing.T) {
	if n := unsafe.Sizeof(Action{}); n > 64 {
		t.Fatalf("unsafe.Sizeof(Action{}) = %d, want at most 64", n)
	}
}

// Encoding an ActSend with SACK blocks, a D-SACK block among them,
// allocates nothing when the buffer has room.
func TestAppendSegmentAllocatesNothing(t *testing.T) {
	c := negotiated(t, Config{}, sackOK(), tsopt(5000, 100))
	c.peer(pkt(".", 301, 101, data(100), tsopt(5001, 100)))
	for i := range 3 {
		c.peer(pkt(".", Seq(501+200*i), 101, data(100), tsopt(5001, 100)))
	}
	c.clear()
	out, err := c.tcb.Step(Arrive(ptr(pkt(".", 301, 101, data(100), tsopt(5002, 100))), 0), c.now, nil)
	require.NoError(t, err)
	var a *Action
	for i := range out {
		if out[i].Kind == ActSend {
			a = &out[i]
		}
	}
	require.NotNil(t, a)
	require.True(t, a.Header.SACK)
	buf := make([]byte, 0, HeaderLen+MaxOptionsLen)
	var wire []byte
	require.Zero(t, testing.AllocsPerRun(100, func() { wire = c.tcb.AppendSegment(buf[:0], a, nil) }))
	s, err := ParseSegment(wire)
	require.NoError(t, err)
	require.Equal(t, []SACKBlock{{301, 401}, {901, 1001}, {501, 601}}, s.Options.SACKBlocks())
	require.Equal(t, len(wire), c.tcb.HeaderLen(a))
}

func ptr[T any](v T) *T { return &v }
