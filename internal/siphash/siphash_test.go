package siphash

import (
	"encoding/binary"
	"testing"
)

func TestSipHashReferenceVector(t *testing.T) {
	// The SipHash paper, appendix A: key 00..0f, message 00..0e.
	var key, msg [16]byte
	for i := range key {
		key[i], msg[i] = byte(i), byte(i)
	}
	k0 := binary.LittleEndian.Uint64(key[:8])
	k1 := binary.LittleEndian.Uint64(key[8:])
	if got := Sum64(k0, k1, msg[:15]); got != 0xa129ca6149be45e5 {
		t.Fatalf("Sum64 = %#x, want 0xa129ca6149be45e5", got)
	}
}
