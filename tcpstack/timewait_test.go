package tcpstack

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"pgregory.net/rapid"
)

// check reports the first way in which the table disagrees with itself
// (see twPart.check).
func (t *twTable) check() error {
	if err := t.v4.check(); err != nil {
		return err
	}
	return t.v6.check()
}

// check reports the first way in which the part disagrees with itself:
// every record found by its key at its own place, and between the head
// and the end of the ring; a record at the head; the counts right; and
// the index at most half full.
func (t *twPart[K]) check() error {
	used := 0
	for s := range t.ring {
		sl := &t.ring[s]
		if !sl.used {
			continue
		}
		used++
		if (s-t.head+len(t.ring))%len(t.ring) >= t.count {
			return fmt.Errorf("TIME-WAIT record %v at %d, outside the %d places from %d", sl.key, s, t.count, t.head)
		}
		got, _, ok := t.find(&sl.key)
		if !ok || got != uint32(s) {
			return fmt.Errorf("TIME-WAIT record %v not found at its place", sl.key)
		}
	}
	if used != t.n || t.count > len(t.ring) || (t.n > 0) != (t.count > 0) {
		return fmt.Errorf("TIME-WAIT part counts %d records, holds %d, %d places used of %d", t.n, used, t.count, len(t.ring))
	}
	if t.n > 0 && !t.ring[t.head].used {
		return fmt.Errorf("TIME-WAIT part has no record at its head")
	}
	if t.n > 0 && 2*t.n > len(t.index) {
		return fmt.Errorf("TIME-WAIT index %d places for %d records", len(t.index), t.n)
	}
	return nil
}

// someTimeWaitKey returns the key of one of s's TIME-WAIT records.
func someTimeWaitKey(s *Stack) (k tuple) {
	s.tw.each(func(t *tuple, _ *tcpfsm.TimeWaitRecord) bool {
		k = *t
		return false
	})
	return k
}

// recordUntil returns the TIME-WAIT record of a connection that closed
// (the peer's FIN last) 2*MSL (2 ms here) before deadline.
func recordUntil(t require.TestingT, deadline tcpfsm.Time) tcpfsm.TimeWaitRecord {
	const msl = time.Millisecond
	now := deadline.Add(-2 * msl)
	tcb, err := tcpfsm.NewTCB(tcpfsm.Config{MSL: msl})
	require.NoError(t, err)
	peer := func(f tcpfsm.Flags, seq, ack tcpfsm.Seq) {
		seg := tcpfsm.Segment{SrcPort: 80, DstPort: 1000, Seq: seq, Ack: ack, Flags: f, Window: 65535}
		_, err := tcb.Step(tcpfsm.Arrive(&seg, 0), now, nil)
		require.NoError(t, err)
	}
	for _, ev := range []tcpfsm.Event{tcpfsm.Open(1000, 80, 100)} {
		_, err := tcb.Step(ev, now, nil)
		require.NoError(t, err)
	}
	peer(tcpfsm.FlagSYN|tcpfsm.FlagACK, 300, 101)
	_, err = tcb.Step(tcpfsm.Close(), now, nil)
	require.NoError(t, err)
	peer(tcpfsm.FlagACK, 301, 102)
	peer(tcpfsm.FlagFIN|tcpfsm.FlagACK, 301, 102)
	r, ok := tcb.TimeWaitRecord()
	require.True(t, ok, "in %v", tcb.State)
	require.Equal(t, deadline, r.Deadline())
	return r
}

func TestTimeWaitTableMatchesAModel(t *testing.T) {
	// Random puts, deletes and expiries agree with a model: per address
	// family, a list of the records in the order they were put (a record
	// whose deadline moved goes to the end), whose expiry takes records
	// from the front while their deadline has come. So a record put out
	// of order ends with the one before it, never before its own
	// deadline. The table stays consistent after each step.
	rapid.Check(t, func(rt *rapid.T) {
		ct := newConnTable()
		var tbl twTable
		tbl.init(&ct)
		type entry struct {
			k tuple
			r tcpfsm.TimeWaitRecord
		}
		model := map[bool][]entry{} // by k.v4
		find := func(k tuple) int {
			for i, e := range model[k.v4] {
				if e.k == k {
					return i
				}
			}
			return -1
		}
		key := func(i int) tuple {
			if i%3 == 0 { // IPv6, in the other part
				return tupleOf(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 80),
					netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 1000))
			}
			return tupleOf(netip.AddrPortFrom(ipB, 80), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1000))
		}
		now := tcpfsm.Time(0)
		for range rapid.IntRange(1, 300).Draw(rt, "ops") {
			i := rapid.IntRange(0, 400).Draw(rt, "key")
			k := key(i)
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0, 1:
				r := recordUntil(rt, now+tcpfsm.Time(rapid.IntRange(1, 1000).Draw(rt, "wait")))
				tbl.put(k, r)
				l := model[k.v4]
				if j := find(k); j >= 0 && l[j].r.Deadline() == r.Deadline() {
					l[j].r = r
				} else {
					if j >= 0 {
						l = append(l[:j], l[j+1:]...)
					}
					model[k.v4] = append(l, entry{k, r})
				}
			case 2:
				tbl.del(&k)
				if j := find(k); j >= 0 {
					model[k.v4] = append(model[k.v4][:j], model[k.v4][j+1:]...)
				}
			case 3:
				now += tcpfsm.Time(rapid.IntRange(0, 300).Draw(rt, "time"))
				tbl.expire(now)
				for v4, l := range model {
					for len(l) > 0 && l[0].r.Deadline() <= now {
						l = l[1:]
					}
					model[v4] = l
				}
			}
			require.NoError(rt, tbl.check())
			want := map[tuple]tcpfsm.TimeWaitRecord{}
			var first tcpfsm.Time
			for _, l := range model {
				for _, e := range l {
					want[e.k] = e.r
				}
				if len(l) > 0 && (first == 0 || l[0].r.Deadline() < first) {
					first = l[0].r.Deadline()
				}
			}
			require.Equal(rt, len(want), tbl.len())
			for mk, mr := range want {
				got, ok := tbl.get(&mk)
				require.True(rt, ok)
				require.Equal(rt, mr, got)
			}
			_, ok := tbl.get(&k)
			_, held := want[k]
			require.Equal(rt, held, ok)
			next, ok := tbl.next()
			require.Equal(rt, len(want) > 0, ok)
			require.Equal(rt, first, next)
			seen := map[tuple]tcpfsm.TimeWaitRecord{}
			tbl.each(func(k *tuple, r *tcpfsm.TimeWaitRecord) bool {
				seen[*k] = *r
				return true
			})
			require.Equal(rt, want, seen)
		}
	})
}

func TestTimeWaitRecordsGiveMemoryBack(t *testing.T) {
	// 60,000 records hold a few MiB (IPv4 records less than IPv6 ones),
	// and once they expire the table holds nothing.
	for _, c := range []struct {
		name  string
		local netip.Addr
		most  float64 // bytes a record
	}{
		{"IPv4", ipB, 82},
		{"IPv6", netip.MustParseAddr("2001:db8::2"), 115},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := newConnTable()
			var tbl twTable
			tbl.init(&ct)
			var before, held, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			const n = 60000
			for i := range n {
				remote := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
				if !c.local.Is4() {
					remote = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 13: 1, 14: byte(i >> 8), 15: byte(i)})
				}
				k := tupleOf(netip.AddrPortFrom(c.local, 80), netip.AddrPortFrom(remote, uint16(i)))
				tbl.put(k, recordUntil(t, tcpfsm.Time(time.Minute)+tcpfsm.Time(i)))
			}
			runtime.GC()
			runtime.ReadMemStats(&held)
			per := float64(held.HeapInuse-before.HeapInuse) / n
			t.Logf("%d TIME-WAIT records: %.0f bytes each", n, per)
			require.Less(t, per, c.most)
			tbl.expire(tcpfsm.Time(time.Hour))
			require.Zero(t, tbl.len())
			runtime.GC()
			runtime.ReadMemStats(&after)
			require.Less(t, int64(after.HeapInuse)-int64(before.HeapInuse), int64(256<<10), "given back")
			runtime.KeepAlive(&tbl)
		})
	}
}

func TestKey4RoundTrip(t *testing.T) {
	// An IPv4 tuple's key4 stands for it: back to the same tuple, and to
	// the same hash.
	ct := newConnTable()
	k := tupleOf(netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("198.51.100.7:40000"))
	k4 := key4Of(&k)
	require.Equal(t, k, k4.tuple())
	require.Equal(t, ct.hash(&k), k4.twHash(&ct))
}

func TestTwoTimeWaitRecordsTradeNoACKs(t *testing.T) {
	// A simultaneous close leaves both Stacks with a TIME-WAIT record of
	// the connection. Each record's last ACK reaches the other, which
	// finds it acceptable and says nothing: the two do not trade ACKs
	// for 2*MSL.
	n := newStackNet(t, Config{}, Config{})
	c, srv := n.connect(t)
	require.NoError(t, c.Close(n.now))
	require.NoError(t, srv.Close(n.now))
	n.run(n.now.Add(time.Second), func() bool { return n.s[0].TimeWaits() == 1 && n.s[1].TimeWaits() == 1 })
	require.Equal(t, 1, n.s[0].TimeWaits())
	require.Equal(t, 1, n.s[1].TimeWaits())
	sent := 0
	n.drop = func(int, []byte) bool { sent++; return false }
	// A duplicate of the client's last ACK reaches the server's record.
	k := someTimeWaitKey(n.s[0])
	r := c.TCB() // as it was when the Stack made the record
	dup := tcpfsm.Segment{SrcPort: k.lport, DstPort: k.rport, Seq: r.SndNxt, Ack: r.RcvNxt, Flags: tcpfsm.FlagACK,
		Options: tcpfsm.Options{Present: tcpfsm.OptTimestamps, TSVal: n.now.Millis() + uint32(r.Iss), TSEcr: r.TSRecent()}}
	b := dup.AppendTo(nil)
	require.NoError(t, tcpfsm.SetChecksum(b, ipA, ipB))
	require.NoError(t, n.s[1].Input(b, ipA, ipB, n.now))
	n.run(n.now.Add(10*time.Second), nil)
	require.Zero(t, sent, "segments traded in the 10 s after both entered TIME-WAIT")
	n.run(n.now.Add(5*time.Minute), nil)
	require.Zero(t, n.s[0].TimeWaits()+n.s[1].TimeWaits())
}

func TestTimeWaitChurnAllocatesNothing(t *testing.T) {
	// A steady churn of records (one begins per step, one in three is
	// deleted soon after by a reopening SYN, the oldest expire) reuses
	// the ring and the index: nothing is allocated once the table has
	// grown to the churn's size.
	ct := newConnTable()
	var tbl twTable
	tbl.init(&ct)
	const live, total = 5000, 60000
	recs := make([]tcpfsm.TimeWaitRecord, total)
	keys := make([]tuple, total)
	for j := range recs {
		recs[j] = recordUntil(t, tcpfsm.Time((j+live)*1000))
		keys[j] = tupleOf(netip.AddrPortFrom(ipB, 80), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(j >> 8), byte(j)}), uint16(j)))
	}
	i := 0
	step := func() {
		tbl.put(keys[i], recs[i])
		if i%3 == 0 && i >= 7 {
			tbl.del(&keys[i-7])
		}
		tbl.expire(tcpfsm.Time(i * 1000))
		i++
	}
	for range 20000 {
		step()
	}
	// Counted over all the steps, as AllocsPerRun's average would round
	// an occasional rebuild away.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 30000 {
		step()
	}
	runtime.ReadMemStats(&after)
	require.Zero(t, after.Mallocs-before.Mallocs, "allocations in 30,000 steps")
	require.NoError(t, tbl.check())
	require.Less(t, tbl.len(), live)
}
