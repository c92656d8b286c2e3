package tcpfsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// SACK on the receive side (RFC 2018 section 4).

func TestNoSACKBlocksWithoutPermission(t *testing.T) {
	// RFC2018 4 (gate).
	c := negotiated(t, Config{})
	c.peer(pkt(".", 401, 101, data(100)))
	a := c.takeSent()
	require.Len(t, a, 1)
	require.Zero(t, a[0].Seg.Options.NumSACK)
}

func TestFirstSACKBlockIsTheLatest(t *testing.T) {
	// RFC2018 4 (first block), (in dup ACKs).
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 401, 101, data(100))) // hole A [301,401), block [401,501)
	c.peer(pkt(".", 601, 101, data(100))) // hole B [501,601), block [601,701)
	c.clear()
	c.peer(pkt(".", 701, 101, data(100))) // extends the second block
	a := c.takeSent()
	require.Len(t, a, 1)
	require.Equal(t, []SACKBlock{{601, 801}, {401, 501}}, a[0].Seg.Options.SACKBlocks())
	c.peer(pkt(".", 401, 101, data(100))) // a duplicate: a D-SACK block, then the block holding it (RFC 2883)
	a = c.takeSent()
	require.Equal(t, []SACKBlock{{401, 501}, {401, 501}, {601, 801}}, a[0].Seg.Options.SACKBlocks())
	c.peer(pkt(".", 301, 101, data(100))) // fills hole A
	a = c.takeSent()
	require.Equal(t, ". seq=101 ack=501", ". seq=101 ack="+itoa(a[0].Seg.Ack))
	require.Equal(t, []SACKBlock{{601, 801}}, a[0].Seg.Options.SACKBlocks())
	c.peer(pkt(".", 501, 101, data(100)))
	a = c.takeSent()
	require.Equal(t, Seq(801), a[0].Seg.Ack)
	require.Zero(t, a[0].Seg.Options.NumSACK, "no holes, no SACK")
}

func TestSACKBlocksWithTimestamps(t *testing.T) {
	// At most 3 blocks beside timestamps (40 option bytes).
	c := negotiated(t, Config{}, sackOK(), tsopt(5000, 100))
	for i := range 3 {
		c.peer(pkt(".", Seq(401+200*i), 101, data(100), tsopt(5001, 100)))
	}
	a := c.takeSent()
	last := a[len(a)-1].Seg
	require.Equal(t, uint8(3), last.Options.NumSACK)
	require.True(t, last.Options.Has(OptTimestamps))
	require.LessOrEqual(t, last.HeaderLen(), HeaderLen+MaxOptionsLen)
	// A fourth hole does not fit: the segment is dropped and counted.
	c.peer(pkt(".", 1201, 101, data(100), tsopt(5001, 100)))
	c.drops(DropOutOfOrderFull)
}

func TestDSACKReportsDuplicate(t *testing.T) {
	// RFC2883 4: a segment of data already acknowledged is answered at
	// once by an ACK whose first SACK block is that segment (a D-SACK
	// block), before the blocks of data held out of order.
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 301, 101, data(100)))
	c.peer(pkt(".", 501, 101, data(100))) // held out of order: block [501,601)
	c.clear()
	c.peer(pkt(".", 301, 101, data(100))) // again
	c.drops(DropUnacceptable)
	c.sentACK(". seq=101 ack=401", SACKBlock{301, 401}, SACKBlock{501, 601})
	// The next ACK has the usual blocks only: a D-SACK block is reported once.
	c.peer(pkt(".", 701, 101, data(100)))
	a := c.takeSent()
	require.Equal(t, []SACKBlock{{701, 801}, {501, 601}}, a[0].Seg.Options.SACKBlocks())

	// A duplicate of data held out of order: the D-SACK block, then the
	// block holding it, then the others.
	c.peer(pkt(".", 601, 101, data(100))) // joins [501,601) and [701,801)
	c.clear()
	c.peer(pkt(".", 551, 101, data(100)))
	c.sentACK(". seq=101 ack=401", SACKBlock{551, 651}, SACKBlock{501, 801})

	// Without SACK agreed, a plain ACK.
	c = negotiated(t, Config{})
	c.peer(pkt(".", 301, 101, data(100)))
	c.clear()
	c.peer(pkt(".", 301, 101, data(100)))
	c.drops(DropUnacceptable)
	a = c.takeSent()
	require.Len(t, a, 1)
	require.Zero(t, a[0].Seg.Options.NumSACK)
}

func TestDSACKMakesRoom(t *testing.T) {
	// Beside timestamps three blocks fit: the D-SACK block, then the two
	// out-of-order blocks first in line (RFC 2883 section 4, RFC 2018
	// section 4).
	c := negotiated(t, Config{}, sackOK(), tsopt(5000, 100))
	c.peer(pkt(".", 301, 101, data(100), tsopt(5001, 100)))
	for i := range 3 {
		c.peer(pkt(".", Seq(501+200*i), 101, data(100), tsopt(5001, 100)))
	}
	c.clear()
	c.peer(pkt(".", 301, 101, data(100), tsopt(5002, 100)))
	a := c.takeSent()
	require.Len(t, a, 1)
	require.Equal(t, []SACKBlock{{301, 401}, {901, 1001}, {501, 601}}, a[0].Seg.Options.SACKBlocks())
	require.LessOrEqual(t, a[0].Seg.HeaderLen(), HeaderLen+MaxOptionsLen)
}

func TestDSACKReportsDuplicateHead(t *testing.T) {
	// RFC2883 4: a segment partly received already (its head below
	// RCV.NXT, say a retransmission cut differently) is accepted from
	// RCV.NXT on, and the ACK, sent at once, reports the duplicate head
	// in its first block, before the blocks of data held out of order.
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 301, 101, data(100)))
	c.peer(pkt(".", 601, 101, data(100))) // held out of order: [601,701)
	c.clear()
	c.peer(pkt(".", 351, 101, data(100))) // [351,401) again, [401,451) new
	acc := c.take(ActAccept)
	require.Len(t, acc, 1)
	require.Equal(t, Seq(401), acc[0].DataSeq)
	require.Equal(t, uint32(50), acc[0].DataLen)
	require.Equal(t, uint32(50), acc[0].Offset)
	c.sentACK(". seq=101 ack=451", SACKBlock{351, 401}, SACKBlock{601, 701})

	// With the FIN: the FIN is taken too, and the one ACK reports both.
	c = negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 301, 101, data(100)))
	c.clear()
	c.peer(pkt("F.", 351, 101, data(100)))
	c.state(CloseWait)
	c.sentACK(". seq=101 ack=452", SACKBlock{351, 401})

	// Without SACK agreed, the usual ACK, in its own time.
	c = negotiated(t, Config{})
	c.peer(pkt(".", 301, 101, data(100)))
	c.clear()
	c.peer(pkt(".", 351, 101, data(100)))
	for _, s := range c.takeSent() {
		require.Zero(t, s.Seg.Options.NumSACK)
	}
}

func TestDSACKReportsDuplicateWithFIN(t *testing.T) {
	// RFC2883 4: the peer's data and FIN again, after both were taken
	// (CLOSE-WAIT): the ACK reports the data in a D-SACK block.
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt("F.", 301, 101, data(100)))
	c.state(CloseWait)
	c.clear()
	c.peer(pkt("F.", 301, 101, data(100)))
	c.sentACK(". seq=101 ack=402", SACKBlock{301, 401})
	c.state(CloseWait)
}

func TestDSACKReportsPartOfOutOfOrderSegment(t *testing.T) {
	// RFC2883 4: an out-of-order segment whose first half is held
	// already: the ACK reports that half in a D-SACK block, then the
	// block that now holds the whole.
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 501, 101, data(100))) // held: [501,601)
	c.clear()
	c.peer(pkt(".", 551, 101, data(100))) // [551,601) again, [601,651) new
	c.sentACK(". seq=101 ack=301", SACKBlock{551, 601}, SACKBlock{501, 651})
}

func TestOverlap(t *testing.T) {
	r := rangeSet{{100, 200}, {300, 400}}
	for _, c := range []struct {
		l, h Seq
		want seqRange
		ok   bool
	}{
		{50, 100, seqRange{}, false}, // adjoins, does not overlap
		{50, 150, seqRange{100, 150}, true},
		{120, 180, seqRange{120, 180}, true},
		{150, 350, seqRange{150, 200}, true}, // the first range it overlaps
		{200, 300, seqRange{}, false},
		{390, 500, seqRange{390, 400}, true},
	} {
		got, ok := overlap(r[:], 10, c.l, c.h)
		require.Equal(t, c.ok, ok, "[%v,%v)", c.l, c.h)
		require.Equal(t, c.want, got, "[%v,%v)", c.l, c.h)
	}
}

// sentACK checks that exactly one segment went out since the last check:
// want (as matchSegment reads it), carrying these SACK blocks in order.
func (c *conn) sentACK(want string, blocks ...SACKBlock) {
	c.t.Helper()
	a := c.takeSent()
	require.Len(c.t, a, 1, "one ACK: %v", a)
	matchSegment(c.t, want, a[0])
	if len(blocks) == 0 {
		require.Zero(c.t, a[0].Seg.Options.NumSACK, "SACK blocks of %v", a[0])
		return
	}
	require.Equal(c.t, blocks, a[0].Seg.Options.SACKBlocks(), "SACK blocks of %v", a[0])
}

func TestDSACKForOutOfOrderSegmentWithFIN(t *testing.T) {
	// RFC2883 4: an out-of-order segment carrying the FIN, half of it held
	// already: the ACK reports that half, and the FIN waits beyond the
	// hole as usual until the hole fills.
	c := negotiated(t, Config{}, sackOK())
	c.peer(pkt(".", 501, 101, data(100))) // held: [501,601)
	c.clear()
	c.peer(pkt("F.", 551, 101, data(100))) // [551,601) again, then [601,651) and the FIN
	c.sentACK(". seq=101 ack=301", SACKBlock{551, 601}, SACKBlock{501, 651})
	c.state(Established)
	c.peer(pkt(".", 301, 101, data(200))) // the hole
	c.state(CloseWait)
	c.sentACK(". seq=101 ack=652")
}

func TestStatusReportsSACKedAndDupACKs(t *testing.T) {
	// Status shows what the scoreboard holds (RFC 2018 section 4) and the
	// duplicate ACKs so far (RFC 5681 section 2), before any recovery.
	c := inFlight(t, Config{}, 4, 0, sackOK())
	c.peer(pkt(".", 301, 101, win(60000), sackBlocks(1561, 4481)))
	st := mustStatus(t, c)
	require.Equal(t, uint32(2920), st.SACKed)
	require.Equal(t, 1, st.DupACKs)
	require.False(t, st.Recovery)
	c.peer(pkt(".", 301, 4481, win(60000)))
	st = mustStatus(t, c)
	require.Zero(t, st.SACKed)
	require.Zero(t, st.DupACKs)
}

func TestSACKDuplicateACKDefinition(t *testing.T) {
	// RFC6675 2: an ACK carrying SACK blocks is a duplicate when they
	// report data not SACKed before, whatever its window; repeating known
	// blocks is not. Three such ACKs with a new window each start fast
	// retransmit.
	c := inFlight(t, Config{}, 10, 0, sackOK())
	c.peer(pkt(".", 301, 101, win(50000), sackSegs(2, 3)))
	require.Equal(t, uint8(1), c.tcb.dupAcks, "new SACK information, another window")
	c.peer(pkt(".", 301, 101, win(50000), sackSegs(2, 3)))
	require.Equal(t, uint8(1), c.tcb.dupAcks, "nothing new")
	c.peer(pkt(".", 301, 101, win(40000), sackSegs(2, 3), sackSegs(6, 7)))
	c.peer(pkt(".", 301, 101, win(30000), sackSegs(2, 3), sackSegs(6, 7), sackSegs(8, 9)))
	require.True(t, c.tcb.flags&flagRecovery != 0)
	c.sent(". seq=101 len=1460")
}

func TestFullScoreboardKeepsItsRanges(t *testing.T) {
	// RFC2018 8: the sender may forget SACK information. With every slot
	// taken, a block that touches no range is forgotten, and the ranges
	// stay; the ACK that carried it still counts as a duplicate (RFC6675
	// 2), since the peer reported data not SACKed before.
	c := inFlight(t, Config{}, 10, 0, sackOK())
	c.peer(pkt(".", 301, 101, win(60000), sackSegs(2, 3), sackSegs(6, 7)))
	full := sackBoard{{Seq(101 + 2*1460), Seq(101 + 3*1460)}, {Seq(101 + 6*1460), Seq(101 + 7*1460)}}
	require.Equal(t, full, c.tcb.sacked)
	c.peer(pkt(".", 301, 101, win(60000), sackSegs(8, 9)))
	require.Equal(t, full, c.tcb.sacked)
	require.Equal(t, uint8(2), c.tcb.dupAcks)
}
