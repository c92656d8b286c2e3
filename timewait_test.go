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
	queued := map[twEntry]bool{}
	for i := t.queue.head; i < len(t.queue.q); i++ {
		queued[t.queue.q[i]] = true
	}
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
		if !queued[twEntry{at: sl.rec.deadline, slot: uint32(s)}] {
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
		tbl := twTable{keys: &ct}
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
	tbl := twTable{keys: &ct}
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

func TestTimeWaitRecordAnswersAsTheTCB(t *testing.T) {
	// RFC9293 3.10.7.4, RFC 6191, RFC 1337, RFC 5961: a segment gets the
	// same answer (an ACK or nothing; a new incarnation or not) from a
	// TCB in TIME-WAIT as from the Stack's compact record of it. Both
	// call judgeTimeWait for what they share; this checks the rest.
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{TimeWaitRST: rapid.Bool().Draw(rt, "rst"), TimeWaitChallenge: rapid.Bool().Draw(rt, "challenge")}
		useTS := rapid.Bool().Draw(rt, "ts")
		var c *conn
		if useTS {
			c = negotiated(rt, cfg, tsopt(5000, 100))
			c.user(Close())
			c.peer(pkt(".", 301, 102, tsopt(5001, 100)))
			c.peer(pkt("F.", 301, 102, tsopt(5002, 100)))
		} else {
			c = timeWait(rt, cfg)
		}
		c.state(TimeWait)
		c.clear()
		tcb := c.tcb
		rec := twRecord{sndNxt: tcb.SndNxt, rcvNxt: tcb.RcvNxt, iss: tcb.Iss, tsRecent: tcb.tsRecent,
			rcvWnd: tcb.RcvWnd(), ts: tcb.flags&flagTS != 0}
		var flags Flags
		for _, f := range []Flags{FlagSYN, FlagACK, FlagRST, FlagFIN, FlagPSH} {
			if rapid.Bool().Draw(rt, "flag "+f.String()) {
				flags |= f
			}
		}
		seg := Segment{SrcPort: peerPort, DstPort: ourPort, Flags: flags, Window: 1000,
			Seq: tcb.RcvNxt.Add(uint32(rapid.IntRange(-3, 3).Draw(rt, "seq"))),
			Ack: tcb.SndNxt.Add(uint32(rapid.IntRange(-3, 3).Draw(rt, "ack")))}
		if rapid.Bool().Draw(rt, "far") {
			seg.Seq = seg.Seq.Add(uint32(rapid.IntRange(-1<<20, 1<<20).Draw(rt, "far seq")))
		}
		if n := rapid.IntRange(0, 3).Draw(rt, "len"); n > 0 {
			seg.Payload = make([]byte, n)
		}
		if rapid.Bool().Draw(rt, "with ts") {
			seg.Options = Options{Present: OptTimestamps, TSVal: tcb.tsRecent + uint32(rapid.IntRange(-2, 2).Draw(rt, "tsval")), TSEcr: 1}
		}

		out, err := c.tcb.Step(Arrive(&seg, 0), c.now, nil)
		require.NoError(rt, err)
		tcbAck, tcbGone := false, c.tcb.State == Closed
		for _, a := range out {
			if a.Kind == ActSend && a.Seg.Flags == FlagACK {
				tcbAck = true
			}
		}
		w := twView{sndNxt: rec.sndNxt, rcvNxt: rec.rcvNxt, rcvWnd: rec.rcvWnd, tsRecent: rec.tsRecent, ts: rec.ts, opts: tcb.cfg.opts}
		v := judgeTimeWait(&w, &seg)
		recAck := v == twAck || v == twAckFIN || v == twChallenge
		recGone := v == twReopen || v == twClose
		require.Equal(rt, tcbGone, recGone, "gone: %v, verdict %d, actions %v", seg, v, out)
		if !tcbGone {
			require.Equal(rt, tcbAck, recAck, "ACK: %v, verdict %d, actions %v", seg, v, out)
		}
	})
}

func TestTwoTimeWaitRecordsTradeNoACKs(t *testing.T) {
	// A simultaneous close leaves both Stacks with a TIME-WAIT record of
	// the connection. Each record's last ACK reaches the other, which
	// finds it acceptable and says nothing: the two do not trade ACKs
	// for 2*MSL.
	n := newStackNet(t, StackConfig{}, StackConfig{})
	c, srv := n.connect(t)
	require.NoError(t, c.Close(n.now))
	require.NoError(t, srv.Close(n.now))
	n.run(n.now.Add(time.Second), func() bool { return n.s[0].TimeWaits() == 1 && n.s[1].TimeWaits() == 1 })
	require.Equal(t, 1, n.s[0].TimeWaits())
	require.Equal(t, 1, n.s[1].TimeWaits())
	sent := 0
	n.drop = func(int, []byte) bool { sent++; return false }
	// A duplicate of the client's last ACK reaches the server's record.
	var r twRecord
	var k tuple
	for _, sl := range n.s[0].tw.slots {
		if sl.used {
			k, r = sl.key, sl.rec
		}
	}
	dup := Segment{SrcPort: k.lport, DstPort: k.rport, Seq: r.sndNxt, Ack: r.rcvNxt, Flags: FlagACK,
		Options: Options{Present: OptTimestamps, TSVal: msOf(n.now) + uint32(r.iss), TSEcr: r.tsRecent}}
	b := dup.AppendTo(nil)
	require.NoError(t, SetChecksum(b, ipA, ipB))
	require.NoError(t, n.s[1].Input(b, ipA, ipB, n.now))
	n.run(n.now.Add(10*time.Second), nil)
	require.Zero(t, sent, "segments traded in the 10 s after both entered TIME-WAIT")
	n.run(n.now.Add(5*time.Minute), nil)
	require.Zero(t, n.s[0].TimeWaits()+n.s[1].TimeWaits())
}
