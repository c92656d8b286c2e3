package tcpfsm

import (
	"testing"
	"unsafe"
)

// Step appends an Action for every output and zeroes each as it does: a
// small Action keeps that cheap. 64 bytes is one cache line.
func TestActionSize(t *testing.T) {
	if n := unsafe.Sizeof(Action{}); n > 64 {
		t.Fatalf("unsafe.Sizeof(Action{}) = %d, want at most 64", n)
	}
}
