package tcpfsm

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stretchr/testify/require"
)

// The scripted-exchange harness. A test reads top to bottom as the
// exchange happens:
//
//	h := newConn(t, Config{})
//	h.user(Open(ourPort, peerPort, 100))
//	h.sent("S seq=100 mss=1460")          // exactly this segment went out
//	h.peer(pkt("S.", 300, 101))            // the peer sends a SYN-ACK
//	h.sent(". seq=101 ack=301")
//	h.state(Established)
//	h.nothing()                            // and no other segment
//
// Expectations name the flags the way tcpdump prints them, then only the
// fields the test cares about: seq, ack, win, len, mss.

const (
	ourPort  = 1000
	peerPort = 2000
)

// testingT is what the harness needs of *testing.T, so that rapid's T
// (which shrinks failures) can drive it too.
type testingT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	FailNow()
}

type conn struct {
	t    testingT
	tcb  TCB
	now  Time
	acts []act // actions not yet consumed by an expectation
}

// act is an action as the harness keeps it: an ActSend's segment is
// resolved (TCB.SegmentOf) right after its Step, as a host encodes it.
type act struct {
	Action
	Seg Segment // ActSend: the segment, without payload
}

func newConn(t testingT, cfg Config) *conn {
	t.Helper()
	tcb, err := NewTCB(cfg)
	require.NoError(t, err)
	return &conn{t: t, tcb: tcb}
}

// step applies an event, checks purity, and collects the actions.
func (c *conn) step(ev Event) error {
	c.t.Helper()
	before := c.tcb
	var out []Action
	after, out, err := Step(before, ev, c.now, out)
	require.Equal(c.t, before, c.tcb, "Step must not change its input")
	again, out2, err2 := Step(before, ev, c.now, nil)
	require.Equal(c.t, after, again, "Step must be deterministic")
	require.Equal(c.t, out, out2)
	require.Equal(c.t, err, err2)
	if err != nil {
		require.Equal(c.t, before, after, "a refused call must leave the TCB unchanged")
		require.Empty(c.t, out, "a refused call must produce no actions")
		return err
	}
	checkInvariants(c.t, &ev, &before, &after, out)
	c.tcb = after
	for i := range out {
		x := act{Action: out[i]}
		if x.Kind == ActSend {
			x.Seg = after.SegmentOf(&out[i])
			checkEncoding(c.t, &after, &out[i], &x.Seg)
		}
		c.acts = append(c.acts, x)
	}
	return nil
}

// user makes a user call that must succeed.
func (c *conn) user(ev Event) {
	c.t.Helper()
	require.NoError(c.t, c.step(ev), "user call %v", ev.Kind)
}

// userErr makes a user call that must fail with want.
func (c *conn) userErr(ev Event, want error) {
	c.t.Helper()
	require.ErrorIs(c.t, c.step(ev), want)
}

// peer delivers a segment from the peer.
func (c *conn) peer(s Segment) {
	c.t.Helper()
	require.NoError(c.t, c.step(Arrive(&s, 0)))
}

// peerBatch delivers segments as one batch (Event.More on all but the last).
func (c *conn) peerBatch(segs ...Segment) {
	c.t.Helper()
	for i := range segs {
		ev := Arrive(&segs[i], 0)
		ev.More = i < len(segs)-1
		require.NoError(c.t, c.step(ev))
	}
}

// advanceTo moves the clock to at, firing every timer due on the way.
func (c *conn) advanceTo(at Time) {
	c.t.Helper()
	for {
		d, ok := c.tcb.NextDeadline()
		if !ok || d > at {
			break
		}
		c.now = max(c.now, d)
		require.NoError(c.t, c.step(Tick()))
	}
	c.now = max(c.now, at)
}

// advance moves the clock forward by d.
func (c *conn) advance(d time.Duration) { c.t.Helper(); c.advanceTo(c.now.Add(d)) }

// at returns a time in seconds since the start of the test.
func at(sec float64) Time { return Time(sec * float64(time.Second)) }

// checkEncoding checks that t encodes the ActSend a as the segment s it
// returned for it: AppendSegment writes what Segment.AppendTo does, and
// HeaderLen says how long the header is.
func checkEncoding(tt testingT, t *TCB, a *Action, s *Segment) {
	tt.Helper()
	payload := make([]byte, a.DataLen)
	want := *s
	want.Payload = payload
	wire := t.AppendSegment(nil, a, payload)
	require.Equal(tt, want.AppendTo(nil), wire, "AppendSegment of %v", a)
	require.Equal(tt, s.HeaderLen(), t.HeaderLen(a), "HeaderLen of %v", a)
	require.Equal(tt, len(wire)-int(a.DataLen), t.HeaderLen(a), "HeaderLen of %v", a)
}

// take removes and returns the actions of one kind, in order.
func (c *conn) take(k ActionKind) []Action {
	var got []Action
	for _, a := range c.takeActs(k) {
		got = append(got, a.Action)
	}
	return got
}

// takeSent removes and returns the ActSend actions, with their segments.
func (c *conn) takeSent() []act { return c.takeActs(ActSend) }

// takeActs removes and returns the actions of one kind, in order.
func (c *conn) takeActs(k ActionKind) []act {
	var got, rest []act
	for _, a := range c.acts {
		if a.Kind == k {
			got = append(got, a)
		} else {
			rest = append(rest, a)
		}
	}
	c.acts = rest
	return got
}

// sent checks that exactly these segments went out since the last check.
func (c *conn) sent(want ...string) {
	c.t.Helper()
	got := c.takeSent()
	var gs []string
	for _, a := range got {
		gs = append(gs, a.String())
	}
	require.Len(c.t, got, len(want), "segments sent: %q", gs)
	for i, w := range want {
		matchSegment(c.t, w, got[i])
	}
}

// nothing checks that no segment went out since the last check.
func (c *conn) nothing() { c.t.Helper(); c.sent() }

// notes checks the notifications since the last check, in order.
func (c *conn) notes(want ...Note) {
	c.t.Helper()
	var got []Note
	for _, a := range c.take(ActNotify) {
		got = append(got, a.Note)
	}
	require.Equal(c.t, want, got, "notifications")
}

// drops checks the drop reasons since the last check.
func (c *conn) drops(want ...DropReason) {
	c.t.Helper()
	var got []DropReason
	for _, a := range c.take(ActDrop) {
		got = append(got, a.Drop)
	}
	require.Equal(c.t, want, got, "drops")
}

// state checks the connection state.
func (c *conn) state(s State) {
	c.t.Helper()
	require.Equal(c.t, s, c.tcb.State, "state")
}

// timer checks that timer k is due at the given time (zero: stopped).
func (c *conn) timer(k TimerKind, want Time) {
	c.t.Helper()
	d, _ := c.tcb.Deadline(k)
	require.Equal(c.t, want, d, "%v timer deadline", k)
}

// clear forgets unconsumed actions.
func (c *conn) clear() { c.acts = nil }

// matchSegment checks a sent segment against "FLAGS key=value ...".
func matchSegment(t testingT, want string, a act) {
	t.Helper()
	fields := strings.Fields(want)
	s := a.Seg
	require.Equal(t, fields[0], s.Flags.String(), "flags of %v (want %q)", a, want)
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "bad expectation %q", f)
		n, err := strconv.ParseUint(v, 10, 32)
		require.NoError(t, err)
		var got uint64
		switch k {
		case "seq":
			got = uint64(s.Seq)
		case "ack":
			got = uint64(s.Ack)
		case "win":
			got = uint64(s.Window)
		case "len":
			got = uint64(a.DataLen)
		case "mss":
			require.True(t, s.Options.Has(OptMSS), "%v has no MSS option", a)
			got = uint64(s.Options.MSS)
		default:
			t.Fatalf("unknown field %q", k)
		}
		require.Equal(t, n, got, "%s of %v (want %q)", k, a, want)
	}
}

// pkt builds a segment from the peer: flags as tcpdump prints them.
func pkt(flags string, seq, ack Seq, opts ...func(*Segment)) Segment {
	s := Segment{SrcPort: peerPort, DstPort: ourPort, Seq: seq, Ack: ack, Window: 1000}
	for _, c := range flags {
		for _, l := range flagLetters {
			if rune(l.c) == c {
				s.Flags |= l.f
			}
		}
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func data(n int) func(*Segment) {
	return func(s *Segment) { s.Payload = make([]byte, n) }
}

func win(w uint16) func(*Segment) { return func(s *Segment) { s.Window = w } }

func mss(m uint16) func(*Segment) {
	return func(s *Segment) { s.Options.Present |= OptMSS; s.Options.MSS = m }
}

// observed records every (state, event class, state) a test step took,
// for the check that every row of the transition table is exercised.
var observed = map[Transition]bool{}

// checkInvariants holds after every step of every test.
func checkInvariants(t testingT, ev *Event, before, after *TCB, out []Action) {
	t.Helper()
	class := Classify(ev)
	require.True(t, Allowed(before.State, class, after.State),
		"transition %v --%v--> %v is not in the table", before.State, class, after.State)
	observed[Transition{From: before.State, On: class, To: after.State}] = true
	a := after
	if a.State != Closed && a.State != Listen {
		require.True(t, a.SndUna.LessThanEq(a.SndNxt), "SND.UNA <= SND.NXT (%v > %v)", a.SndUna, a.SndNxt)
		require.True(t, a.SndNxt.LessThanEq(a.sndEnd.Add(1)), "SND.NXT <= end of queue + FIN")
		require.True(t, a.SndUna.LessThanEq(a.sndRtx) && a.sndRtx.LessThanEq(a.SndNxt), "SND.UNA <= rtx <= SND.NXT")
	}
	if a.State.IsSynchronized() || a.State == SynReceived {
		bufEnd := a.rcvUser.Add(a.finBit() + a.cfg.rcvBuf)
		require.True(t, a.rcvAdv.LessThanEq(bufEnd), "the window never promises more than the buffer holds (%v > %v)", a.rcvAdv, bufEnd)
	}
	if before.State.IsSynchronized() && after.State.IsSynchronized() && after.Irs == before.Irs {
		require.True(t, before.rcvAdv.LessThanEq(after.rcvAdv), "the advertised right edge never moves left (SHLD-14)")
	}
	// A TCB in CLOSED holds nothing but its settings, and one in LISTEN
	// its local port too, as reset leaves them: open and listen rely on it.
	switch a.State {
	case Closed:
		require.Equal(t, TCB{cfg: a.cfg}, *a, "a CLOSED TCB holds no connection variables")
	case Listen:
		require.Equal(t, TCB{cfg: a.cfg, LocalPort: a.LocalPort, State: Listen}, *a, "a LISTEN TCB holds no connection variables")
	}
	closedNotes := 0
	for _, x := range out {
		if x.Kind == ActNotify {
			switch x.Note {
			case NoteClosed, NoteReset, NoteRefused, NoteTimedOut, NoteUserTimeout, NoteReopen, NoteAborted:
				closedNotes++
			}
		}
		// New data stays within the peer's window; old data may be
		// resent beyond a window that shrank (RFC 9293 section 3.8.6.2.1,
		// MAY), as a retransmission at SND.UNA into a zero window is.
		if x.Kind == ActSend && after.State.IsSynchronized() && x.Header.Flags&(FlagSYN|FlagRST) == 0 && x.DataLen > 0 &&
			before.SndNxt.LessThan(x.DataSeq.Add(x.DataLen)) {
			require.True(t, x.DataSeq.Add(x.DataLen).LessThanEq(before.SndUna.Add(max(before.SndWnd, after.SndWnd))) ||
				x.DataSeq.Add(x.DataLen).LessThanEq(after.SndUna.Add(after.SndWnd)),
				"no data beyond the peer's window: %v", x)
		}
	}
	if after.State == Closed && before.State != Closed {
		require.Equal(t, 1, closedNotes, "entering CLOSED gives exactly one final note: %v", out)
		_, running := after.NextDeadline()
		require.False(t, running, "no timer runs in CLOSED")
	} else {
		require.Zero(t, closedNotes, "final notes only on entering CLOSED: %v", out)
	}
}

func (c *conn) String() string { return fmt.Sprintf("%v at %v", c.tcb.State, c.now) }
