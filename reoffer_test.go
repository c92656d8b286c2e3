package tcpfsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fillRanges has the peer send three out-of-order segments (every range
// the TCB tracks: [401,501), [601,701), [801,901)) and a fourth that
// finds no range ([1001,1101), dropped for the host to keep). ack is the
// ACK field the peer sends.
func fillRanges(c *conn, ack Seq) {
	c.t.Helper()
	for _, seq := range []Seq{401, 601, 801} {
		c.peer(pkt(".", seq, ack, data(100)))
	}
	c.clear()
	c.peer(pkt(".", 1001, ack, data(100)))
	c.drops(DropOutOfOrderFull)
	c.clear()
}

func TestReofferWaitsForRoomAndSendsNothingMeanwhile(t *testing.T) {
	c := established(t, Config{})
	fillRanges(c, 101)

	// Still no room: refused again, and no duplicate ACK goes out.
	c.user(Reoffer(1001, 100))
	c.drops(DropOutOfOrderFull)
	c.nothing()
	require.Empty(t, c.acts)

	// The first hole fills and frees a range: the held bytes take it,
	// and the ACK reports the new range at once.
	c.peer(pkt(".", 301, 101, data(100)))
	c.clear()
	require.Equal(t, Seq(501), c.tcb.RcvNxt)
	c.user(Reoffer(1001, 100))
	acc := c.take(ActAccept)
	require.Len(t, acc, 1)
	require.Equal(t, Seq(1001), acc[0].DataSeq)
	require.Equal(t, uint32(100), acc[0].DataLen)
	c.sent(". seq=101 ack=501")
	c.drops()

	// Offered again once taken, or once below RCV.NXT: nothing at all.
	c.user(Reoffer(1001, 100))
	require.Empty(t, c.take(ActAccept))
	c.user(Reoffer(301, 100))
	require.Empty(t, c.acts)
}

func TestReofferInOrderIsReadable(t *testing.T) {
	c := established(t, Config{})
	fillRanges(c, 101)
	// The peer resends everything before the held bytes.
	for _, seq := range []Seq{301, 501, 701, 901} {
		c.peer(pkt(".", seq, 101, data(100)))
	}
	c.clear()
	require.Equal(t, Seq(1001), c.tcb.RcvNxt)
	// The held part that overlaps what arrived is trimmed off the front.
	c.user(Reoffer(951, 150))
	acc := c.take(ActAccept)
	require.Len(t, acc, 1)
	require.Equal(t, Seq(1001), acc[0].DataSeq)
	require.Equal(t, uint32(100), acc[0].DataLen)
	require.Equal(t, uint32(50), acc[0].Offset, "DataSeq less the offered seq")
	c.notes(NoteReadable)
	require.Equal(t, Seq(1101), c.tcb.RcvNxt)
	require.Equal(t, uint32(800), c.tcb.Unread())
}

// TestReofferReachesTheFIN: the held bytes are the last hole before the
// peer's FIN, so taking them processes the FIN (the table's OnReoffer
// rows, one per state that takes data).
func TestReofferReachesTheFIN(t *testing.T) {
	for _, tc := range []struct {
		from  func(testingT, Config) *conn
		ack   Seq
		want  State
		reply string
	}{
		{established, 101, CloseWait, ". seq=101 ack=1102"},
		{finWait1, 101, Closing, ". seq=102 ack=1102"},
		{finWait2, 102, TimeWait, ". seq=102 ack=1102"},
	} {
		c := tc.from(t, Config{})
		from := c.tcb.State
		fillRanges(c, tc.ack)
		c.peer(pkt("F.", 1101, tc.ack)) // the FIN waits beyond the holes
		for _, seq := range []Seq{301, 501, 701, 901} {
			c.peer(pkt(".", seq, tc.ack, data(100)))
		}
		c.clear()
		c.state(from)
		c.user(Reoffer(1001, 100))
		c.state(tc.want)
		c.sent(tc.reply)
		require.Contains(t, c.take(ActNotify), Action{Kind: ActNotify, Note: NotePeerClosed}, "%v", from)
	}
}

func TestReofferAfterCloseFullIsForgotten(t *testing.T) {
	c := established(t, Config{})
	fillRanges(c, 101)
	c.peer(pkt(".", 301, 101, data(100)))
	c.user(Receive(200))
	c.user(CloseFull())
	c.clear()
	c.user(Reoffer(1001, 100))
	require.Empty(t, c.take(ActAccept))
	require.Empty(t, c.take(ActDrop), "forgotten, not refused: the peer's retransmission resets (SHLD-3)")
	c.state(FinWait1)
}
