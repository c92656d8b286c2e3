package tcpfsm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// checkTable verifies the table's invariants: n counts the entries, the
// load stays within bounds, and every entry sits in the probe chain from
// its home slot with no empty slot between (or get could not find it).
func checkTable(t require.TestingT, tb *connTable) {
	held := 0
	mask := uint64(len(tb.slots) - 1)
	for i, e := range tb.slots {
		if e == nil {
			continue
		}
		held++
		for j := tb.hash(&e.key) & mask; j != uint64(i); j = (j + 1) & mask {
			require.NotNil(t, tb.slots[j], "a gap between %v's home and its slot", e.key)
		}
	}
	require.Equal(t, tb.n, held)
	require.LessOrEqual(t, 4*tb.n, 3*len(tb.slots), "load at most 3/4")
	if len(tb.slots) > minSlots {
		require.GreaterOrEqual(t, 16*tb.n, 3*len(tb.slots)-16, "a mostly empty table shrinks")
	}
}

func TestConnTableMatchesMap(t *testing.T) {
	// Random puts and deletes over a small key space (so keys come back,
	// chains collide, and the table grows and shrinks across the wrap of
	// its slots) must agree with a Go map at every step.
	rapid.Check(t, func(rt *rapid.T) {
		tb := newConnTable()
		ref := map[tuple]*Endpoint{}
		keys := rapid.IntRange(1, 300).Draw(rt, "keys")
		key := func(i int) tuple {
			k := tuple{lport: uint16(i), rport: 80, v4: i%2 == 0}
			k.local[15], k.remote[15] = byte(i>>8), 7
			return k
		}
		for range rapid.IntRange(0, 2000).Draw(rt, "ops") {
			k := key(rapid.IntRange(0, keys).Draw(rt, "key"))
			if e, ok := ref[k]; ok {
				require.Same(rt, e, tb.get(&k))
				if rapid.IntRange(0, 2).Draw(rt, "del") > 0 {
					tb.del(e)
					delete(ref, k)
					require.Nil(rt, tb.get(&k))
				}
			} else {
				require.Nil(rt, tb.get(&k))
				e := &Endpoint{key: k}
				tb.put(e)
				ref[k] = e
			}
			require.Equal(rt, len(ref), tb.len())
		}
		checkTable(rt, &tb)
		for k, e := range ref {
			require.Same(rt, e, tb.get(&k))
		}
		for _, e := range ref {
			tb.del(e)
		}
		require.Zero(rt, tb.len())
		require.LessOrEqual(rt, len(tb.slots), 2*minSlots, "emptied, it shrank")
	})
}

func TestConnTableSeeds(t *testing.T) {
	// Two tables hash the same key differently: a peer cannot aim at one
	// probe chain without knowing the seed.
	a, b := newConnTable(), newConnTable()
	k := tuple{lport: 80, rport: 5555}
	require.NotEqual(t, a.hash(&k), b.hash(&k))
	// Every field of the key counts.
	h := a.hash(&k)
	for _, change := range []func(*tuple){
		func(k *tuple) { k.local[0] = 1 }, func(k *tuple) { k.local[15] = 1 },
		func(k *tuple) { k.remote[3] = 1 }, func(k *tuple) { k.remote[12] = 1 },
		func(k *tuple) { k.lport++ }, func(k *tuple) { k.rport++ }, func(k *tuple) { k.v4 = true },
	} {
		k2 := k
		change(&k2)
		require.NotEqual(t, h, a.hash(&k2), "%+v", k2)
	}
}

func TestConnTableLookupAllocatesNothing(t *testing.T) {
	tb := newConnTable()
	for i := range 1000 {
		tb.put(&Endpoint{key: tuple{lport: uint16(i), rport: 80}})
	}
	k := tuple{lport: 500, rport: 80}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		if tb.get(&k) == nil {
			t.Fatal("lost")
		}
	}))
}

func TestEndpointSize(t *testing.T) {
	// Issue 5: an idle connection in a Stack is its Endpoint plus about
	// 17 bytes of table; at 416 bytes (a Go size class) the Endpoint
	// leaves room under the 512-byte goal. The TCB takes 256 of them.
	require.LessOrEqual(t, unsafe.Sizeof(Endpoint{}), uintptr(416))
}
