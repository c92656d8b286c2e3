package tcpfsm

import (
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func TestFixturesReachTheirStates(t *testing.T) {
	for _, f := range fixtures {
		c := f.make(t, Config{})
		require.Equal(t, f.state, c.tcb.State)
		st, err := c.tcb.Status()
		if f.state == Closed {
			require.ErrorIs(t, err, ErrConnectionDoesNotExist)
		} else {
			require.NoError(t, err)
			require.Equal(t, f.state, st.State)
			require.Equal(t, f.state.String(), stateNames[f.state])
		}
	}
	require.Equal(t, "SYN-RECEIVED", SynReceived.String())
	require.Equal(t, "State(42)", State(42).String())
}

// TestUserCallsInEveryState checks each user call in each state against
// RFC 9293 sections 3.10.1 to 3.10.5: refused calls return the RFC's
// error and change nothing (the harness checks that), allowed calls
// succeed.
func TestUserCallsInEveryState(t *testing.T) {
	E := func(e error) error { return e }
	ok := error(nil)
	// One row per state: OPEN, LISTEN, SEND, CLOSE, ABORT.
	want := map[State][5]error{
		Closed:      {ok, ok, E(ErrConnectionDoesNotExist), E(ErrConnectionDoesNotExist), E(ErrConnectionDoesNotExist)},
		Listen:      {ok, E(ErrConnectionExists), E(ErrRemoteUnspecified), ok, ok},
		SynSent:     {E(ErrConnectionExists), E(ErrConnectionExists), ok, ok, ok},
		SynReceived: {E(ErrConnectionExists), E(ErrConnectionExists), ok, ok, ok},
		Established: {E(ErrConnectionExists), E(ErrConnectionExists), ok, ok, ok},
		FinWait1:    {E(ErrConnectionExists), E(ErrConnectionExists), E(ErrConnectionClosing), E(ErrConnectionClosing), ok},
		FinWait2:    {E(ErrConnectionExists), E(ErrConnectionExists), E(ErrConnectionClosing), E(ErrConnectionClosing), ok},
		CloseWait:   {E(ErrConnectionExists), E(ErrConnectionExists), ok, ok, ok},
		Closing:     {E(ErrConnectionExists), E(ErrConnectionExists), E(ErrConnectionClosing), E(ErrConnectionClosing), ok},
		LastAck:     {E(ErrConnectionExists), E(ErrConnectionExists), E(ErrConnectionClosing), E(ErrConnectionClosing), ok},
		TimeWait:    {E(ErrConnectionExists), E(ErrConnectionExists), E(ErrConnectionClosing), E(ErrConnectionClosing), ok},
	}
	calls := [5]Event{Open(ourPort, peerPort, 7), ListenOn(ourPort), Send(10), Close(), Abort()}
	for _, f := range fixtures {
		for i, ev := range calls {
			c := f.make(t, Config{})
			err := c.step(ev)
			if w := want[f.state][i]; w != nil {
				require.ErrorIs(t, err, w, "%v in %v", ev.Kind, f.state)
			} else {
				require.NoError(t, err, "%v in %v", ev.Kind, f.state)
			}
		}
	}
}

func TestAbortFromEveryState(t *testing.T) {
	// RFC9293 3.10.5: RST in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2 and
	// CLOSE-WAIT; nothing sent elsewhere.
	rst := map[State]bool{SynReceived: true, Established: true, FinWait1: true, FinWait2: true, CloseWait: true}
	for _, f := range fixtures[1:] {
		c := f.make(t, Config{})
		sndNxt, rcvNxt := c.tcb.SndNxt, c.tcb.RcvNxt
		c.user(Abort())
		c.state(Closed)
		if rst[f.state] {
			c.sent("R. seq=" + itoa(sndNxt) + " ack=" + itoa(rcvNxt))
		} else {
			c.nothing()
		}
		c.notes(NoteAborted)
	}
}

func TestGiveUpFromEveryClosingState(t *testing.T) {
	// R2 applies to FIN retransmission as to data (MUST-20).
	for _, f := range fixtures {
		switch f.state {
		case FinWait1, CloseWait, Closing, LastAck:
		default:
			continue
		}
		t.Run(f.state.String(), func(t *testing.T) {
			c := f.make(t, Config{R2: 10 * time.Second})
			if f.state == CloseWait {
				c.user(Send(10))
			}
			c.advance(time.Minute)
			c.state(Closed)
			notes := c.take(ActNotify)
			require.Equal(t, NoteTimedOut, notes[len(notes)-1].Note)
		})
	}
}

func TestReceiveCall(t *testing.T) {
	// RFC9293 3.10.3: consume only what is on hand; CLOSE-WAIT with
	// nothing left says "connection closing".
	c := established(t, Config{RecvBuffer: 4000})
	c.peer(pkt("P.", 301, 101, data(3000)))
	c.clear()
	c.userErr(Receive(3001), ErrInsufficientResources)
	c.user(Receive(1000))
	c.nothing() // the window may move by 1000 but has not doubled
	c.user(Receive(2000))
	c.sent(". seq=101 ack=3301 win=4000") // a window update (3.8.6.2.2)
	c.peer(pkt("F.", 3301, 101))
	c.clear()
	c.userErr(Receive(1), ErrConnectionClosing)
	c = newConn(t, Config{})
	c.userErr(Receive(1), ErrConnectionDoesNotExist)
	c.user(ListenOn(ourPort))
	c.user(Receive(0))
	c.userErr(Receive(1), ErrInsufficientResources)
}

func TestBadEvents(t *testing.T) {
	c := established(t, Config{})
	require.ErrorIs(t, c.step(Event{}), ErrBadEvent)
	require.ErrorIs(t, c.step(Event{Kind: EvSegment}), ErrBadEvent)
	require.ErrorIs(t, c.step(Event{Kind: 99}), ErrBadEvent)
	require.Equal(t, "tcpfsm: connection closing", ErrConnectionClosing.Error())
	require.Equal(t, "tcpfsm: CallError(77)", CallError(77).Error())
	require.Equal(t, "EventKind(99)", EventKind(99).String())
	require.Equal(t, "segment", EvSegment.String())
	require.Equal(t, "send", ActSend.String())
	require.Equal(t, "ActionKind(0)", ActionKind(0).String())
	require.Equal(t, "peer-closed", NotePeerClosed.String())
	require.Equal(t, "Note(0)", Note(0).String())
	require.Equal(t, "unacceptable", DropUnacceptable.String())
	require.Equal(t, "DropReason(99)", DropReason(99).String())
	// Segments for other ports are not ours.
	s := pkt(".", 301, 101)
	s.SrcPort = 9
	c.peer(s)
	c.drops(DropNotOurs)
	c.nothing()
}

func TestActionString(t *testing.T) {
	for _, tc := range []struct {
		a    Action
		want string
	}{
		{Action{Kind: ActSend, DataSeq: 5, DataLen: 10, Header: Header{Ack: 7, Flags: FlagACK | FlagPSH, Window: 3}},
			"send Flags [P.], seq 5:15, ack 7, win 3, length 10"},
		{Action{Kind: ActSend, DataSeq: 5, Header: Header{Ack: 7, Flags: FlagACK, Window: 3, Options: OptTimestamps,
			TSVal: 1, TSEcr: 2, DSACK: SACKBlock{3, 5}, SACK: true}},
			"send Flags [.], ack 7, win 3, options [nop,nop,TS val 1 ecr 2,nop,nop,sack 1 {3:5}], length 0 +sack"},
		{Action{Kind: ActAccept, DataSeq: 9, DataLen: 4, Offset: 2}, "accept seq 9 len 4 from offset 2"},
		{Action{Kind: ActNotify, Note: NoteSendAcked, N: 12}, "notify send-acked 12"},
		{Action{Kind: ActTimer, Timer: TimerClose, Deadline: at(2)}, "timer close at 2s"},
		{Action{Kind: ActTimer, Timer: TimerUser}, "timer user stopped"},
		{Action{Kind: ActDrop, Drop: DropNoACK}, "drop no-ack"},
	} {
		require.Equal(t, tc.want, tc.a.String())
	}
}

// The held-FIN paths: a FIN that arrived beyond a hole is processed when
// data fills the hole, whatever the state.

func TestHeldFINInFinWait1(t *testing.T) {
	c := finWait1(t, Config{})
	c.peer(pkt("F.", 311, 101)) // FIN beyond a 10-byte hole, our FIN not acked
	c.peer(pkt(".", 301, 101, data(10)))
	c.state(Closing)
	c = finWait1(t, Config{})
	c.peer(pkt("F.", 311, 101))
	c.peer(pkt(".", 301, 102, data(10))) // fills the hole and acks our FIN
	c.state(TimeWait)
}

func TestHeldFINInFinWait2(t *testing.T) {
	c := finWait2(t, Config{})
	c.peer(pkt("F.", 311, 102))
	c.state(FinWait2)
	c.peer(pkt(".", 301, 102, data(10)))
	c.state(TimeWait)
}

func TestSynAckWithFIN(t *testing.T) {
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 100))
	c.clear()
	c.peer(pkt("FS.", 300, 101, data(5)))
	c.state(CloseWait)
	c.sent(". seq=101 ack=307")
	c.notes(NoteConnected, NoteReadable, NotePeerClosed)
}

func TestSynWithFINThenACK(t *testing.T) {
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("FS", 300, 0, data(4))
	require.NoError(t, c.step(Arrive(&s, 100)))
	c.sent("S. seq=100 ack=301")
	c.peer(pkt(".", 305, 101))
	c.state(CloseWait)
	c.sent(". seq=101 ack=306")
}

func TestThirdACKWithFINAndCloseQueued(t *testing.T) {
	c := synReceived(t, Config{})
	c.user(Close())
	c.peer(pkt("F.", 301, 101))
	c.state(Closing) // ESTABLISHED, then FIN-WAIT-1 for the queued CLOSE, then the peer's FIN
	c.sent("F. seq=101 ack=302")
}

// Rows of the table that a FIN or SYN-ACK segment takes because it also
// carries the ACK that matters, or because its FIN is held beyond a hole.

func TestHeldFINOnThirdACK(t *testing.T) {
	c := synReceived(t, Config{})
	c.peer(pkt("F.", 311, 101)) // acks our SYN; FIN beyond a 10-byte hole
	c.state(Established)
	c = synReceived(t, Config{})
	c.user(Close())
	c.peer(pkt("F.", 311, 101))
	c.state(FinWait1)
	c.sent("F. seq=101 ack=301")
}

func TestFINAckingOurFINHeld(t *testing.T) {
	c := finWait1(t, Config{})
	c.peer(pkt("F.", 311, 102))
	c.state(FinWait2)
}

func TestRepeatedFINAckingOurs(t *testing.T) {
	c := closing(t, Config{})
	c.peer(pkt("F.", 302, 102))
	c.state(TimeWait)
	c = lastAck(t, Config{})
	c.peer(pkt("F.", 302, 102))
	c.state(Closed)
	c.notes(NoteClosed)
}

// activeSynReceived is a simultaneous open: we sent SYN 100, got SYN 300.
func activeSynReceived(t testingT, cfg Config) *conn {
	c := newConn(t, cfg)
	c.user(Open(ourPort, peerPort, 100))
	c.peer(pkt("S", 300, 0))
	c.sent("S seq=100", "S. seq=100 ack=301")
	c.clear()
	return c
}

func TestSimultaneousOpenVariants(t *testing.T) {
	c := activeSynReceived(t, Config{})
	c.peer(pkt("FS.", 300, 101))
	c.state(CloseWait)
	c = activeSynReceived(t, Config{})
	c.user(Close())
	c.peer(pkt("S.", 300, 101))
	c.state(FinWait1)
	c.sent("F. seq=101 ack=301")
	c = activeSynReceived(t, Config{})
	c.user(Close())
	c.peer(pkt("FS.", 300, 101))
	c.state(Closing)
	// A SYN-ACK in a passive SYN-RECEIVED: back to LISTEN.
	c = synReceived(t, Config{})
	c.peer(pkt("S.", 350, 101))
	c.state(Listen)
}

func TestTCBSize(t *testing.T) {
	// The TCB is one plain value; keep it within four cache lines.
	require.LessOrEqual(t, unsafe.Sizeof(TCB{}), uintptr(256))
	t.Logf("unsafe.Sizeof(TCB{}) = %d bytes", unsafe.Sizeof(TCB{}))
}

func TestEveryValueHasAName(t *testing.T) {
	// The name tables are sized by their num… constants; every value
	// below it has a name of its own.
	for k := EventKind(1); k < numEventKinds; k++ {
		require.NotEmpty(t, eventNames[k], "event kind %d", k)
	}
	for n := Note(1); n < numNotes; n++ {
		require.NotEmpty(t, noteNames[n], "note %d", n)
	}
	for r := DropReason(1); r < NumDropReasons; r++ {
		require.NotEmpty(t, dropNames[r], "drop reason %d", r)
	}
	for c := EventClass(1); c < numClasses; c++ {
		require.NotEmpty(t, classNames[c], "event class %d", c)
	}
	for s := range numStates {
		require.NotEmpty(t, stateNames[s], "state %d", s)
	}
}

func TestNoteSet(t *testing.T) {
	var s NoteSet
	require.Equal(t, "", s.String())
	s = s.With(NoteConnected).With(NotePeerClosed).With(Note(200))
	require.True(t, s.Has(NoteConnected))
	require.True(t, s.Has(NotePeerClosed))
	require.False(t, s.Has(NoteReset))
	require.False(t, s.Has(Note(200)))
	require.Equal(t, "connected|peer-closed", s.String())
	for n := Note(1); n < numNotes; n++ {
		require.True(t, NoteSet(0).With(n).Has(n), "%v", n)
	}
}

func TestResetClearsAll(t *testing.T) {
	// reset zeroes the TCB field by field: every byte but the settings
	// must come out zero, whatever was there, so a field added to the TCB
	// and not to reset fails here.
	cfg := Config{RecvBuffer: 1 << 20, MSS: 1200}
	s, err := cfg.compile()
	require.NoError(t, err)
	for _, tc := range []struct {
		cfg, want settings
	}{
		{s, s},
		{settings{}, defaultSettings}, // the zero TCB's: the defaults
	} {
		var tcb TCB
		b := (*[unsafe.Sizeof(TCB{})]byte)(unsafe.Pointer(&tcb))
		for i := range b {
			b[i] = byte(i) | 0x81
		}
		tcb.cfg = tc.cfg
		tcb.reset()
		require.Equal(t, TCB{cfg: tc.want}, tcb)
	}
}
