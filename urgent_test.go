package tcpfsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Urgent data (RFC 9293 sections 3.8.5 and 3.10.7.4 step six).

func TestUrgentReceive(t *testing.T) {
	// MUST-30/31/62, MUST-32/33, and one signal per run.
	c := established(t, Config{})
	s := pkt("P.U", 301, 101, data(1000))
	s.Urgent = 3000 // the urgent data runs past this segment
	c.peer(s)
	c.notes(NoteUrgent, NoteReadable)
	st, _ := c.tcb.Status()
	require.Equal(t, uint32(3000), st.Urgent, "the mark is at offset 3000, not 2999")
	s = pkt("P.U", 1301, 101, data(1000))
	s.Urgent = 2000 // the same run
	c.peer(s)
	c.notes(NoteReadable)
	c.user(Receive(2000))
	c.user(Receive(0))
	st, _ = c.tcb.Status()
	require.Equal(t, uint32(1000), st.Urgent)
	c.peer(pkt("P.", 2301, 101, data(1000)))
	c.user(Receive(1000))
	st, _ = c.tcb.Status()
	require.Zero(t, st.Urgent)
	s = pkt("P.U", 3301, 101, data(10))
	s.Urgent = 5 // a new run: signalled again
	c.peer(s)
	c.notes(NoteReadable, NoteUrgent, NoteReadable)
}

func TestUrgentIgnoredAfterFIN(t *testing.T) {
	// RFC9293 3.10.7.4 (URG): none in CLOSE-WAIT.
	c := closeWait(t, Config{})
	s := pkt(".U", 302, 101)
	s.Urgent = 10
	c.peer(s)
	c.notes()
}

func TestUrgentWithZeroWindow(t *testing.T) {
	// MUST-66: URG is processed with a zero window.
	c := established(t, Config{RecvBuffer: 100})
	c.peer(pkt(".", 301, 101, data(100)))
	c.clear()
	s := pkt(".U", 401, 101)
	s.Urgent = 7
	c.peer(s)
	c.notes(NoteUrgent)
}

func TestUrgentSend(t *testing.T) {
	// MUST-30, MUST-62: SEG.UP points one past the last urgent byte.
	c := established(t, Config{NoDelay: true})
	c.peer(pkt(".", 301, 101, win(60000)))
	c.user(SendUrgent(3000))
	sent := c.takeSent()
	require.Len(t, sent, 3)
	for _, a := range sent {
		require.True(t, a.Seg.Flags.Has(FlagURG))
		require.Equal(t, Seq(3101), a.Seg.Seq.Add(uint32(a.Seg.Urgent)))
	}
	c.peer(pkt(".", 301, 3101, win(60000)))
	c.user(Send(10))
	require.False(t, c.takeSent()[0].Seg.Flags.Has(FlagURG), "urgent mode ends once acknowledged")
}
