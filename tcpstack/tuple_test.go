package tcpstack

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTupleEqualIsEquality(t *testing.T) {
	// equal agrees with == for equal tuples and for tuples that differ in
	// any one byte of either address, either port, or the family flag.
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var a tuple
		for i := range a.local {
			a.local[i], a.remote[i] = byte(r.Uint32()), byte(r.Uint32())
		}
		a.lport, a.rport, a.v4 = uint16(r.Uint32()), uint16(r.Uint32()), r.IntN(2) == 0
		b := a
		require.True(t, a.equal(&b))
		muts := []func(*tuple){
			func(k *tuple) { k.lport++ },
			func(k *tuple) { k.rport ^= 0x100 },
			func(k *tuple) { k.v4 = !k.v4 },
		}
		for i := range 16 {
			muts = append(muts,
				func(k *tuple) { k.local[i] ^= 1 << (i % 8) },
				func(k *tuple) { k.remote[i] ^= 0x80 })
		}
		for _, m := range muts {
			c := a
			m(&c)
			require.Equal(t, a == c, a.equal(&c))
			require.False(t, a.equal(&c))
		}
	}
}
