package tcpstack

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// checkTable verifies the table's invariants: the directory's entries
// for each segment are the span its depth gives, every entry is in the
// segment its hash picks and in the probe chain from its home slot with
// no empty slot between (or get could not find it), the counts add up,
// and no segment is fuller than the split point.
func checkTable(t require.TestingT, tb *connTable) (segments int) {
	require.Len(t, tb.dir, 1<<tb.depth)
	total := 0
	for i := 0; i < len(tb.dir); {
		s := tb.dir[i]
		require.LessOrEqual(t, s.depth, tb.depth)
		w := 1 << (tb.depth - s.depth)
		require.Zero(t, i%w, "a segment's span is aligned")
		for j := i; j < i+w; j++ {
			require.Same(t, s, tb.dir[j], "a segment's span is contiguous")
		}
		held := 0
		for k, e := range s.slots {
			if e == nil {
				continue
			}
			held++
			h := tb.hash(&e.key)
			require.Same(t, s, tb.seg(h), "%v is in its segment", e.key)
			for j := h % segSlots; j != uint64(k); j = (j + 1) % segSlots {
				require.NotNil(t, s.slots[j], "a gap between %v's home and its slot", e.key)
			}
		}
		require.Equal(t, s.n, held)
		require.LessOrEqual(t, s.n, splitAt)
		total += held
		segments++
		i += w
	}
	require.Equal(t, tb.n, total)
	return segments
}

func TestConnTableMatchesMap(t *testing.T) {
	// Random puts and deletes over a key space small enough that keys
	// come back and chains collide, and large enough that segments split
	// and merge, must agree with a Go map at every step.
	rapid.Check(t, func(rt *rapid.T) {
		tb := newConnTable()
		ref := map[tuple]*Endpoint{}
		keys := rapid.IntRange(1, 4000).Draw(rt, "keys")
		key := func(i int) tuple {
			k := tuple{lport: uint16(i), rport: 80, v4: i%2 == 0}
			k.local[15], k.remote[15] = byte(i>>8), 7
			return k
		}
		ops := rapid.IntRange(0, 12000).Draw(rt, "ops")
		delPct := rapid.IntRange(0, 100).Draw(rt, "delPct")
		for op := range ops {
			// A growing phase, then a shrinking one.
			grow := op < ops/2
			k := key(rapid.IntRange(0, keys).Draw(rt, "key"))
			if e, ok := ref[k]; ok {
				require.Same(rt, e, tb.get(&k))
				if !grow || rapid.IntRange(1, 100).Draw(rt, "del") <= delPct {
					tb.del(e)
					delete(ref, k)
					require.Nil(rt, tb.get(&k))
				}
			} else if grow {
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
		seen := map[*Endpoint]bool{}
		tb.each(func(e *Endpoint) bool {
			require.False(rt, seen[e], "each visits an endpoint once")
			seen[e] = true
			return true
		})
		require.Len(rt, seen, len(ref), "each visits every endpoint")
		for _, e := range ref {
			tb.del(e)
		}
		require.Zero(rt, tb.len())
		require.Equal(rt, 1, checkTable(rt, &tb), "emptied, it merged back into one segment")
	})
}

func TestConnTableGrowsBySegments(t *testing.T) {
	// 100,000 entries: the table splits segment by segment, each at most
	// 3/4 full, and the memory per entry stays near a pointer's at half
	// load; deleting them all merges it back.
	tb := newConnTable()
	eps := make([]*Endpoint, 100_000)
	for i := range eps {
		eps[i] = &Endpoint{key: tuple{lport: uint16(i), rport: uint16(i >> 16), v4: true}}
		tb.put(eps[i])
	}
	segs := checkTable(t, &tb)
	perEntry := float64(segs*int(unsafe.Sizeof(connSeg{}))+8*len(tb.dir)) / float64(len(eps))
	t.Logf("%d segments, directory of %d: %.1f bytes an entry", segs, len(tb.dir), perEntry)
	require.Less(t, perEntry, 24.0, "segments stay between 3/8 and 3/4 full")
	for _, e := range eps {
		require.Same(t, e, tb.get(&e.key))
	}
	for _, e := range eps {
		tb.del(e)
	}
	require.Equal(t, 1, checkTable(t, &tb))
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
	for i := range 5000 {
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
	// An idle connection in a Stack is its Endpoint plus about
	// 17 bytes of table; at 384 bytes (a Go size class) the Endpoint
	// leaves room under the 512-byte goal. The TCB takes 256 of them.
	require.LessOrEqual(t, unsafe.Sizeof(Endpoint{}), uintptr(384), "a Go size class of 384 bytes")
}

func TestConnTableDeleteAbsent(t *testing.T) {
	// Deleting an endpoint the table does not hold (or one whose key
	// changed) ends, and changes nothing.
	tb := newConnTable()
	in := &Endpoint{key: tuple{lport: 1}}
	tb.put(in)
	tb.del(&Endpoint{key: tuple{lport: 2}})
	tb.del(&Endpoint{key: tuple{lport: 1}}) // same key, another endpoint
	require.Equal(t, 1, tb.len())
	require.Same(t, in, tb.get(&in.key))
}
