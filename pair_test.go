package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pair wires two TCBs back to back through an in-memory network with a
// fixed one-way delay, optional loss, and applications that read what
// arrives at once. It is the harness of end-to-end tests and of
// BenchmarkLifecycle, and allocates nothing once warmed up.
type pair struct {
	tcb    [2]TCB
	now    Time
	delay  time.Duration
	jitter bool // add 0, 1 or 2 ms to the delay, in turn
	q      []flight
	out    []Action
	lose   func(from int, s Segment) bool // nil: no loss
	trace  func(from int, s Segment)      // nil: no trace
	check  *testing.T                     // non-nil: check invariants every step
	got    [2]uint32                      // bytes each side received in order
	acked  [2]uint32                      // bytes of each side's data acknowledged
	notes  [2][]Note
	record bool // keep notes
	sent   [2]int
	script []recorded // when non-nil, every step is appended
}

// recorded is one step of a run, for replay.
type recorded struct {
	side int
	now  Time
	ev   Event
	seg  Segment
}

type flight struct {
	at  Time
	to  int
	seg Segment
}

var zeros [1 << 16]byte

func newPair(cfgA, cfgB Config) *pair {
	p := &pair{delay: 10 * time.Millisecond, q: make([]flight, 0, 64), out: make([]Action, 0, 64)}
	p.tcb[0], _ = NewTCB(cfgA)
	p.tcb[1], _ = NewTCB(cfgB)
	return p
}

// step applies ev to side i and carries out its actions.
func (p *pair) step(i int, ev Event) error {
	if p.script != nil {
		// Copy the event without its pointer (re-pointed at r.seg for
		// replay), so the caller's segment does not escape.
		r := recorded{side: i, now: p.now, ev: Event{Kind: ev.Kind, More: ev.More,
			LocalPort: ev.LocalPort, RemotePort: ev.RemotePort, ISS: ev.ISS, N: ev.N}}
		if ev.Seg != nil {
			r.seg = *ev.Seg
		}
		p.script = append(p.script, r)
	}
	var err error
	if p.check != nil {
		before := p.tcb[i]
		if p.out, err = p.tcb[i].Step(ev, p.now, p.out[:0]); err == nil {
			checkInvariants(p.check, &ev, &before, &p.tcb[i], p.out)
		}
	} else {
		p.out, err = p.tcb[i].Step(ev, p.now, p.out[:0])
	}
	if err != nil {
		return err
	}
	for j := range p.out {
		a := &p.out[j]
		switch a.Kind {
		case ActSend:
			s := p.tcb[i].SegmentOf(a)
			s.Payload = zeros[:a.DataLen]
			p.sent[i]++
			if p.trace != nil {
				p.trace(i, s)
			}
			if p.lose == nil || !p.lose(i, s) {
				d := p.delay
				if p.jitter {
					d += time.Duration(p.sent[i]%3) * time.Millisecond
				}
				at := p.now.Add(d)
				if n := len(p.q); n > 0 && p.q[n-1].at > at {
					at = p.q[n-1].at // the queue stays in order: no reordering
				}
				p.q = append(p.q, flight{at: at, to: 1 - i, seg: s})
			}
		case ActNotify:
			if p.record {
				p.notes[i] = append(p.notes[i], a.Note)
			}
			if a.Note == NoteSendAcked {
				p.acked[i] += a.N
			}
		}
	}
	// The application reads everything readable at once.
	if n := p.tcb[i].RcvNxt.Diff(p.tcb[i].rcvUser) - p.tcb[i].finBit(); n > 0 && p.tcb[i].State != Closed {
		p.got[i] += n
		return p.step(i, Receive(n))
	}
	return nil
}

// run delivers segments and fires timers until nothing is left to do or
// the clock passes limit.
func (p *pair) run(limit Time) {
	for {
		next := limit + 1
		for _, f := range p.q {
			next = min(next, f.at)
		}
		for i := range 2 {
			if d, ok := p.tcb[i].NextDeadline(); ok {
				next = min(next, d)
			}
		}
		if next > limit {
			p.now = max(p.now, limit)
			return
		}
		p.now = max(p.now, next)
		// Deliver the segments that have arrived, in order.
		k := 0
		for k < len(p.q) && p.q[k].at <= p.now {
			k++
		}
		if k > 0 {
			f := p.q[0]
			copy(p.q, p.q[1:])
			p.q = p.q[:len(p.q)-1]
			_ = p.step(f.to, Arrive(&f.seg, 5000))
			continue
		}
		for i := range 2 {
			if d, ok := p.tcb[i].NextDeadline(); ok && d <= p.now {
				_ = p.step(i, Tick())
			}
		}
	}
}

// lifecycle runs one whole connection: side 1 listens, side 0 opens, each
// sends n bytes, side 0 closes, then side 1, and both reach CLOSED.
func (p *pair) lifecycle(n uint32) {
	_ = p.step(1, ListenOn(80))
	_ = p.step(0, Open(40000, 80, 100))
	p.run(p.now.Add(time.Second))
	_ = p.step(0, Send(n))
	_ = p.step(1, Send(n))
	p.run(p.now.Add(time.Second))
	_ = p.step(0, Close())
	p.run(p.now.Add(time.Second))
	_ = p.step(1, Close())
	p.run(p.now.Add(10 * time.Minute))
}

func TestTwoTCBsLifecycle(t *testing.T) {
	p := newPair(Config{}, Config{})
	p.check, p.record = t, true
	p.lifecycle(1024)
	require.Equal(t, Closed, p.tcb[0].State)
	require.Equal(t, Closed, p.tcb[1].State)
	require.Equal(t, [2]uint32{1024, 1024}, p.got)
	require.Equal(t, [2]uint32{1024, 1024}, p.acked)
	require.Equal(t, []Note{NoteConnected, NoteReadable, NoteSendAcked, NoteCloseDone, NotePeerClosed, NoteClosed}, p.notes[0])
	require.Equal(t, []Note{NoteConnected, NoteReadable, NoteSendAcked, NotePeerClosed, NoteClosed}, p.notes[1])
}

func TestTwoTCBsEveryCloseOrder(t *testing.T) {
	for _, order := range []string{"client first", "server first", "simultaneous"} {
		t.Run(order, func(t *testing.T) {
			p := newPair(Config{}, Config{})
			p.check = t
			_ = p.step(1, ListenOn(80))
			_ = p.step(0, Open(40000, 80, 100))
			p.run(at(1))
			require.Equal(t, Established, p.tcb[0].State)
			require.Equal(t, Established, p.tcb[1].State)
			switch order {
			case "client first":
				require.NoError(t, p.step(0, Close()))
				p.run(at(2))
				require.Equal(t, FinWait2, p.tcb[0].State)
				require.Equal(t, CloseWait, p.tcb[1].State)
				require.NoError(t, p.step(1, Send(500))) // half-close: data still flows
				require.NoError(t, p.step(1, Close()))
			case "server first":
				require.NoError(t, p.step(1, Close()))
				p.run(at(2))
				require.NoError(t, p.step(0, Close()))
			case "simultaneous":
				require.NoError(t, p.step(0, Close()))
				require.NoError(t, p.step(1, Close()))
				p.run(p.now.Add(15 * time.Millisecond)) // the FINs have crossed, their ACKs not yet
				require.Equal(t, Closing, p.tcb[0].State)
				require.Equal(t, Closing, p.tcb[1].State)
			}
			p.run(at(30))
			tw := 0
			for i := range 2 {
				if p.tcb[i].State == TimeWait {
					tw++
				}
			}
			if order == "simultaneous" {
				require.Equal(t, 2, tw, "both ends pass through TIME-WAIT")
			} else {
				require.Equal(t, 1, tw, "the active closer waits")
			}
			p.run(at(600))
			require.Equal(t, Closed, p.tcb[0].State)
			require.Equal(t, Closed, p.tcb[1].State)
		})
	}
}

func TestTwoTCBsSimultaneousOpen(t *testing.T) {
	// MUST-10 with two instances whose SYNs cross.
	p := newPair(Config{}, Config{})
	p.check = t
	require.NoError(t, p.step(0, Open(1, 2, 100)))
	require.NoError(t, p.step(1, Open(2, 1, 300)))
	p.run(at(0.015))
	require.Equal(t, SynReceived, p.tcb[0].State)
	require.Equal(t, SynReceived, p.tcb[1].State)
	p.run(at(1))
	require.Equal(t, Established, p.tcb[0].State)
	require.Equal(t, Established, p.tcb[1].State)
}

func TestTwoTCBsBulkWithLoss(t *testing.T) {
	// Every byte arrives once, in order, despite 10% of segments lost
	// (a seeded generator, so the run is the same every time).
	p := newPair(Config{}, Config{})
	p.check = t
	rng := uint64(42)
	p.lose = func(from int, s Segment) bool {
		rng = rng*6364136223846793005 + 1442695040888963407
		return (rng>>33)%10 == 0 && s.Flags&FlagSYN == 0
	}
	_ = p.step(1, ListenOn(80))
	_ = p.step(0, Open(40000, 80, 100))
	p.run(at(5))
	require.Equal(t, Established, p.tcb[0].State)
	require.NoError(t, p.step(0, Send(200_000)))
	require.NoError(t, p.step(0, Close()))
	p.run(at(600))
	require.Equal(t, uint32(200_000), p.got[1])
	require.Equal(t, uint32(200_000), p.acked[0])
	require.Equal(t, CloseWait, p.tcb[1].State)
}

func TestLifecycleAllocatesNothing(t *testing.T) {
	p := newPair(Config{}, Config{})
	p.lifecycle(1024) // warm up
	allocs := testing.AllocsPerRun(50, func() {
		p.tcb[0].reset()
		p.tcb[1].reset()
		p.lifecycle(1024)
	})
	require.Zero(t, allocs)
}

// lifecycleScript records the steps of a pair run through a whole
// connection (handshake, 1 KiB each way, close, both ends to CLOSED), ready
// for replayLifecycle.
func lifecycleScript() []recorded {
	p := newPair(Config{}, Config{})
	p.script = []recorded{}
	p.lifecycle(1024)
	script := p.script
	for i := range script {
		if script[i].ev.Kind == EvSegment {
			script[i].ev.Seg = &script[i].seg
		}
	}
	return script
}

// freshPair is two TCBs as NewTCB(Config{}) makes them, for the replay to
// copy, as a Stack copies its listener's fresh TCB for each connection.
var freshPair = [2]TCB{{cfg: defaultSettings}, {cfg: defaultSettings}}

// replayLifecycle steps two fresh TCBs through script, in out's space.
func replayLifecycle(script []recorded, tcb *[2]TCB, out []Action) []Action {
	*tcb = freshPair
	for i := range script {
		r := &script[i]
		out, _ = tcb[r.side].Step(r.ev, r.now, out[:0])
	}
	return out
}

// BenchmarkLifecycle measures one whole connection through the transition
// function alone: handshake, 1 KiB each way, close, both ends to CLOSED.
// The steps (user calls, segments, ticks) of a pair run are recorded once
// and replayed, so the figure is the state machine's, not the harness's.
func BenchmarkLifecycle(b *testing.B) {
	script := lifecycleScript()
	var tcb [2]TCB
	out := make([]Action, 0, 64)
	run := func() { out = replayLifecycle(script, &tcb, out) }
	run()
	if tcb[0].State != Closed || tcb[1].State != Closed {
		b.Fatalf("replay ended in %v and %v", tcb[0].State, tcb[1].State)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.ReportMetric(float64(len(script)), "steps/op")
}
