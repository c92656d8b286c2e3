package tcpfsm

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// check reports the first way in which the table disagrees with itself:
// every record found by its key at its own slot, every free slot unused,
// the counts right, and every record's deadline live in the queue.
func (t *twTable) check() error {
	used := 0
	for s := range t.slots {
		sl := &t.slots[s]
		if !sl.used {
			continue
		}
		used++
		got, _, ok := t.find(&sl.key)
		if !ok || got != uint32(s) {
			return fmt.Errorf("TIME-WAIT record %v not found at its slot", sl.key.Remote())
		}
		live := false
		for i := t.queue.head; i < len(t.queue.q); i++ {
			if e := t.queue.q[i]; e.slot == uint32(s) && e.at == sl.rec.deadline {
				live = true
			}
		}
		if !live {
			return fmt.Errorf("TIME-WAIT record %v has no live expiry", sl.key.Remote())
		}
	}
	if used != t.n || used+len(t.free) != len(t.slots) {
		return fmt.Errorf("TIME-WAIT table counts %d records, holds %d, %d free of %d", t.n, used, len(t.free), len(t.slots))
	}
	if t.n > 0 && 2*t.n > len(t.index) {
		return fmt.Errorf("TIME-WAIT index %d places for %d records", len(t.index), t.n)
	}
	return nil
}

func TestTimeWaitTableMatchesAMap(t *testing.T) {
	// Random puts, deletes and expiries agree with a map and a scan, and
	// the table stays consistent after each.
	rapid.Check(t, func(rt *rapid.T) {
		ct := newConnTable()
		tbl := twTable{hash: ct.hash}
		model := map[tuple]twRecord{}
		key := func(i int) tuple {
			return tupleOf(netip.AddrPortFrom(ipB, 80), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1000))
		}
		now := Time(0)
		for range rapid.IntRange(1, 300).Draw(rt, "ops") {
			i := rapid.IntRange(0, 400).Draw(rt, "key")
			k := key(i)
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0, 1:
				r := twRecord{rcvNxt: Seq(i), deadline: now + Time(rapid.IntRange(1, 1000).Draw(rt, "wait"))}
				tbl.put(k, r)
				model[k] = r
			case 2:
				tbl.del(&k)
				delete(model, k)
			case 3:
				now += Time(rapid.IntRange(0, 300).Draw(rt, "time"))
				tbl.expire(now)
				for mk, mr := range model {
					if mr.deadline <= now {
						delete(model, mk)
					}
				}
			}
			require.NoError(rt, tbl.check())
			require.Equal(rt, len(model), tbl.len())
			for mk, mr := range model {
				got, ok := tbl.get(&mk)
				require.True(rt, ok)
				require.Equal(rt, mr, got)
			}
			_, ok := tbl.get(&k)
			_, want := model[k]
			require.Equal(rt, want, ok)
			next, ok := tbl.next()
			require.Equal(rt, len(model) > 0, ok)
			for _, mr := range model {
				require.LessOrEqual(rt, next, mr.deadline)
			}
		}
	})
}

func TestTimeWaitRecordsGiveMemoryBack(t *testing.T) {
	// 60,000 records hold a few MiB, and once they expire the table
	// holds nothing.
	ct := newConnTable()
	tbl := twTable{hash: ct.hash}
	var before, held, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 60000
	for i := range n {
		k := tupleOf(netip.AddrPortFrom(ipB, 80), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(i)))
		tbl.put(k, twRecord{deadline: Time(time.Minute) + Time(i)})
	}
	runtime.GC()
	runtime.ReadMemStats(&held)
	per := float64(held.HeapInuse-before.HeapInuse) / n
	t.Logf("%d TIME-WAIT records: %.0f bytes each", n, per)
	require.Less(t, per, 160.0)
	tbl.expire(Time(time.Hour))
	require.Zero(t, tbl.len())
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Less(t, int64(after.HeapInuse)-int64(before.HeapInuse), int64(256<<10), "given back")
	runtime.KeepAlive(&tbl)
}
