package tcpfsm

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// Peer segment options.

func tsopt(val, ecr uint32) func(*Segment) {
	return func(s *Segment) {
		s.Options.Present |= OptTimestamps
		s.Options.TSVal, s.Options.TSEcr = val, ecr
	}
}

func wsopt(shift uint8) func(*Segment) {
	return func(s *Segment) { s.Options.Present |= OptWindowScale; s.Options.WindowScale = shift }
}

func sackOK() func(*Segment) { return func(s *Segment) { s.Options.Present |= OptSACKPermitted } }

func sackBlocks(b ...Seq) func(*Segment) {
	return func(s *Segment) {
		for i := 0; i+1 < len(b); i += 2 {
			s.Options.AddSACK(SACKBlock{b[i], b[i+1]})
		}
	}
}

// negotiated is ESTABLISHED (ISS 100, peer ISS 300) with the options the
// peer's SYN-ACK carried. Our TSval clock starts at ISS (100) at time 0.
func negotiated(t testingT, cfg Config, opts ...func(*Segment)) *conn {
	c := newConn(t, cfg)
	c.user(Open(ourPort, peerPort, 100))
	c.peer(pkt("S.", 300, 101, append([]func(*Segment){mss(1460)}, opts...)...))
	c.state(Established)
	c.clear()
	return c
}

func TestOurSYNOffersEveryOption(t *testing.T) {
	c := newConn(t, Config{RecvBuffer: 1 << 20})
	c.user(Open(ourPort, peerPort, 100))
	s := c.takeSent()[0].Seg
	require.True(t, s.Options.Has(OptMSS|OptWindowScale|OptSACKPermitted|OptTimestamps))
	require.Equal(t, uint8(5), s.Options.WindowScale, "the shift a 1 MiB buffer needs")
	require.Equal(t, uint16(0xffff), s.Window, "the SYN's window is never scaled (RFC 7323 2.2)")
	require.Equal(t, uint32(100), s.Options.TSVal)
	require.Zero(t, s.Options.TSEcr)

	c = newConn(t, Config{NoWindowScale: true, NoTimestamps: true, NoSACK: true})
	c.user(Open(ourPort, peerPort, 100))
	require.Equal(t, OptMSS, c.takeSent()[0].Seg.Options.Present)
}

func TestSynAckEchoesOnlyWhatTheSYNOffered(t *testing.T) {
	// RFC7323 2.2 (both sides), 3.2 (TS negotiate), RFC2018 2.
	c := newConn(t, Config{})
	c.user(ListenOn(ourPort))
	s := pkt("S", 300, 0)
	require.NoError(t, c.step(Arrive(&s, 100)))
	require.Equal(t, OptMSS, c.takeSent()[0].Seg.Options.Present)
	require.Zero(t, c.tcb.shifts)

	c = newConn(t, Config{RecvBuffer: 1 << 20})
	c.user(ListenOn(ourPort))
	s = pkt("S", 300, 0, wsopt(3), tsopt(777, 123456), sackOK())
	require.NoError(t, c.step(Arrive(&s, 100)))
	sa := c.takeSent()[0].Seg
	require.True(t, sa.Options.Has(OptMSS|OptWindowScale|OptSACKPermitted|OptTimestamps))
	require.Equal(t, uint32(777), sa.Options.TSEcr, "TSecr echoes the SYN's TSval; its garbage TSecr is ignored")
	require.Equal(t, uint16(0xffff), sa.Window)
	st, _ := c.tcb.Status()
	require.Equal(t, uint8(3), st.SndShift)
	require.Equal(t, uint8(5), st.RcvShift)
}

func TestWindowScaleOnlyOnSYN(t *testing.T) {
	// RFC7323 2.2 (SYN only), (cap 14), MUST-1, REC-1.
	c := negotiated(t, Config{RecvBuffer: 1 << 20}, wsopt(15), tsopt(5000, 100))
	require.Equal(t, uint8(14), c.tcb.sndShift(), "a shift above 14 counts as 14")
	c.peer(pkt(".", 301, 101, win(0xffff), tsopt(5001, 100)))
	require.Equal(t, uint32(0xffff)<<14, c.tcb.SndWnd, "no truncation, no sign extension")
	c.peer(pkt(".", 301, 101, win(0xffff), tsopt(5002, 100), wsopt(2)))
	require.Equal(t, uint8(14), c.tcb.sndShift(), "WS on a non-SYN segment is ignored")
	c.user(Send(100_000))
	for _, a := range c.takeSent() {
		require.False(t, a.Seg.Options.Has(OptWindowScale), "no WS on non-SYN segments")
		require.False(t, a.Seg.Options.Has(OptSACKPermitted), "SACK-permitted only on SYNs (RFC 2018 2)")
	}
}

func TestScaledWindows(t *testing.T) {
	// RFC7323 2.3: incoming windows shift left, outgoing right, rounded up.
	c := negotiated(t, Config{RecvBuffer: 1 << 20}, wsopt(7))
	require.Equal(t, uint8(5), c.tcb.rcvShift())
	c.peer(pkt(".", 301, 101, win(100)))
	require.Equal(t, uint32(12800), c.tcb.SndWnd)
	c.tcb.rcvAdv = c.tcb.RcvNxt.Add(1000)                    // RCV.WND=1000 with shift 5
	c.tcb.rcvUser = Seq(uint32(c.tcb.RcvNxt) - 1<<20 + 1031) // the buffer allows no more
	f := c.tcb.advertise()
	require.Equal(t, uint16(32), f, "1000>>5 rounds up to 32")
	require.Equal(t, c.tcb.RcvNxt.Add(32<<5), c.tcb.rcvAdv, "the edge we accept up to is the edge the peer sees")
}

func TestWindowRetractionByScaling(t *testing.T) {
	// RFC7323 2.4 / RFC1122 4.2.2.16: the right edge moves left by less
	// than 2^shift: no error, data past it held.
	c := negotiated(t, Config{NoDelay: true}, wsopt(4))
	c.peer(pkt(".", 301, 101, win(200))) // 3200 bytes
	c.user(Send(5000))
	c.clear()
	c.peer(pkt(".", 301, 1561, win(100))) // edge 1561+1600=3161 < 3301 sent
	c.state(Established)
	c.nothing()
}

func TestTimestampsOnEverySegment(t *testing.T) {
	// RFC7323 3.2 (TS negotiate), (TSecr), (RST TS).
	c := negotiated(t, Config{QuickACK: true}, tsopt(5000, 100))
	c.advanceTo(at(1))
	c.user(Send(10))
	c.peer(pkt("P.", 301, 111, data(5), tsopt(5100, 1100)))
	c.user(Close())
	for _, a := range c.takeSent() {
		require.True(t, a.Seg.Options.Has(OptTimestamps), "%v", a)
		require.Equal(t, uint32(1100), a.Seg.Options.TSVal)
	}
	require.Equal(t, uint32(5100), c.tcb.tsRecent)
	c.user(Abort())
	rst := c.takeSent()[0].Seg
	require.Equal(t, FlagRST|FlagACK, rst.Flags)
	require.True(t, rst.Options.Has(OptTimestamps), "RST carries TS")

	c = negotiated(t, Config{QuickACK: true}) // no TS from the peer
	c.user(Send(10))
	c.peer(pkt("P.", 301, 111, data(5)))
	for _, a := range c.takeSent() {
		require.False(t, a.Seg.Options.Has(OptTimestamps))
	}
}

func TestMissingTimestampDropped(t *testing.T) {
	// RFC7323 3.2 (missing TS): silently dropped, never reset.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	c.peer(pkt("P.", 301, 101, data(10)))
	c.drops(DropNoTimestamp)
	require.Empty(t, c.take(ActAccept))
	c.nothing()
	c.state(Established)
	c.peer(pkt("R", 301, 0)) // a RST needs no TS
	c.state(Closed)
}

func TestTSRecentUpdateRule(t *testing.T) {
	// RFC7323 4.3: with delayed ACKs the echo is the earliest unACKed
	// segment's; an out-of-order segment does not update TS.Recent.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	c.peer(pkt(".", 301, 101, data(100), tsopt(6000, 100)))
	c.peer(pkt(".", 401, 101, data(100), tsopt(6001, 100)))
	c.advance(200 * time.Millisecond)
	ack := c.takeSent()
	require.Len(t, ack, 1)
	require.Equal(t, uint32(6000), ack[0].Seg.Options.TSEcr)
	c.peer(pkt(".", 701, 101, data(100), tsopt(7000, 100))) // out of order
	require.Equal(t, uint32(6000), c.tcb.tsRecent)
}

func TestRTTFromTimestamps(t *testing.T) {
	// RFC7323 4 (RTTM): only ACKs that advance SND.UNA; a retransmitted
	// segment's echo counts.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	srtt := c.tcb.srtt
	c.advanceTo(at(1))
	c.user(Send(10)) // TSval 1100
	c.advanceTo(at(1.05))
	c.peer(pkt(".", 301, 101, win(1001), tsopt(5001, 1100))) // a window update, not new data
	require.Equal(t, srtt, c.tcb.srtt, "a duplicate ACK's echo is no sample")
	c.advanceTo(at(2)) // the RTO retransmits; TSval 2100
	c.clear()
	c.advanceTo(at(2.3))
	c.peer(pkt(".", 301, 111, tsopt(5002, 2100)))
	require.Equal(t, (7*srtt+300_000)/8, c.tcb.srtt, "a 300 ms sample from the retransmission's echo")
}

func TestRTTIgnoresEchoesNeverSent(t *testing.T) {
	// RFC7323 4 (RTTM): an echo from the future, or one older than any
	// unacknowledged segment can be, is no timestamp sample; the timed
	// segment measures instead, and the RTO stays near the real RTT.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	srtt := c.tcb.srtt
	c.advanceTo(at(1))
	c.user(Send(10)) // TSval 1100, timed
	c.advanceTo(at(1.05))
	c.peer(pkt(".", 301, 111, tsopt(5001, 1181))) // 31 ms ahead of our clock (1150)
	want := (7*srtt + 50_000) / 8
	require.Equal(t, want, c.tcb.srtt, "the timed segment's 50 ms, not a wrapped echo")
	st, _ := c.tcb.Status()
	require.Less(t, st.RTO, 2*time.Second)

	c.advanceTo(at(2))
	c.user(Send(10)) // TSval 2100, timed
	c.advanceTo(at(2.02))
	c.peer(pkt(".", 301, 121, tsopt(5002, 2100+(1<<32-70_000)))) // 72 s old: never ours
	want = want - want/8 + 20_000/8
	require.InDelta(t, want, c.tcb.srtt, 1, "the timed segment's 20 ms")
	st, _ = c.tcb.Status()
	require.Less(t, st.RTO, 2*time.Second)
}

func TestPAWS(t *testing.T) {
	// RFC7323 5.3 R1, 5.2 (RST & PAWS), 5.5 (idle > 24 days).
	c := negotiated(t, Config{}, tsopt(5000, 100))
	c.peer(pkt(".", 301, 101, data(10), tsopt(6000, 100)))
	c.clear()
	c.peer(pkt(".", 311, 101, data(10), tsopt(5500, 100))) // old TSval, in window
	c.sent(". seq=101 ack=311")
	c.drops(DropPAWS)
	require.Empty(t, c.take(ActAccept))
	c.peer(pkt("R", 311, 0, tsopt(1, 0))) // a stale RST still resets
	c.state(Closed)

	c = negotiated(t, Config{}, tsopt(5000, 100))
	c.peer(pkt("R", 400, 0, tsopt(9999, 0))) // in window, not exact: challenge ACK
	require.Equal(t, uint32(5000), c.tcb.tsRecent, "no RST updates TS.Recent")

	c = negotiated(t, Config{}, tsopt(5000, 100))
	c.advance(25 * 24 * time.Hour)
	c.peer(pkt(".", 301, 101, data(10), tsopt(10, 100)))
	require.Len(t, c.take(ActAccept), 1, "after 25 idle days TS.Recent is not trusted")
	require.Equal(t, uint32(10), c.tcb.tsRecent)
}

func TestUnacceptableACKLeavesTSRecent(t *testing.T) {
	// RFC7323 4.3 with RFC9293 3.10.7.4 / RFC5961 5.2: a segment dropped
	// for its ACK field (data never sent, or older than SND.UNA by more
	// than MAX.SND.WND) is not the one the next ACK acknowledges, so its
	// TSval does not become TS.Recent; else a forged one with a high TSval
	// would have PAWS drop the peer's real segments.
	for _, ack := range []Seq{9999, Seq(1 << 31)} {
		c := negotiated(t, Config{}, tsopt(5000, 100))
		c.peer(pkt("F.", 301, ack, tsopt(200000, 100)))
		c.drops(DropBadACK)
		require.Equal(t, uint32(5000), c.tcb.tsRecent, "ack %d", ack)
		c.clear()
		c.peer(pkt(".", 301, 101, data(10), tsopt(5001, 100)))
		require.Len(t, c.take(ActAccept), 1, "the peer's next segment passes PAWS")
	}
}

func TestEffectiveMSSWithTimestamps(t *testing.T) {
	// MUST-16: peer MSS 1460 with timestamps: 1448-byte payloads.
	c := negotiated(t, Config{}, tsopt(5000, 100))
	c.peer(pkt(".", 301, 101, win(60000), tsopt(5001, 100)))
	c.user(Send(5000))
	sent := c.takeSent()
	require.Equal(t, uint32(1448), sent[0].DataLen)
	st, _ := c.tcb.Status()
	require.True(t, st.Timestamps)
}

func TestPathMTU(t *testing.T) {
	// SHLD-6: later segments fit, and retransmissions are re-segmented.
	c := negotiated(t, Config{NoDelay: true})
	c.peer(pkt(".", 301, 101, win(60000)))
	c.user(Send(4000))
	c.clear()
	cwnd := c.tcb.cwnd
	c.user(PathMTU(1240)) // at once, not at the RTO: SND.UNA on in the new size
	sent := c.takeSent()
	require.NotEmpty(t, sent)
	require.Equal(t, Seq(101), sent[0].DataSeq)
	for _, a := range sent {
		require.LessOrEqual(t, a.DataLen, uint32(1240))
	}
	require.Equal(t, cwnd, c.tcb.cwnd, "no congestion response")
	c.user(PathMTU(1240)) // the same again: nothing more
	require.Empty(t, c.takeSent())
	c.user(PathMTU(1)) // clamps to 64
	require.Equal(t, uint16(64), c.tcb.sndMSS)
	c = newConn(t, Config{})
	c.userErr(PathMTU(1000), ErrConnectionDoesNotExist)
}

func TestTimeWaitSYNWithTimestamps(t *testing.T) {
	// SHLD-4 / RFC 6191: with timestamps, a newer TSval reopens even with
	// a lower sequence number; a stale one gets a challenge ACK.
	tw := func() *conn {
		c := negotiated(t, Config{}, tsopt(5000, 100))
		c.user(Close())
		c.peer(pkt("F.", 301, 102, tsopt(5001, 100)))
		c.state(TimeWait)
		c.clear()
		return c
	}
	c := tw()
	c.peer(pkt("S", 100, 0, tsopt(6000, 0))) // seq below RCV.NXT, TSval newer
	c.state(Closed)
	c.notes(NoteReopen)
	c = tw()
	c.peer(pkt("S", 9000, 0, tsopt(4000, 0))) // seq above, TSval stale
	c.state(TimeWait)
	c.sent(". seq=102 ack=302")
}

func TestScaledWindowNeverExceedsBuffer(t *testing.T) {
	// Rounding the scaled window up at every ACK must not creep past the
	// buffer (the harness checks RCV.NXT+RCV.WND =< the buffer's end after
	// every step); found by the Linux interop test.
	c := negotiated(t, Config{RecvBuffer: 1 << 20, QuickACK: true}, wsopt(7))
	seq := Seq(301)
	for c.tcb.RcvWnd() > 0 {
		n := int(min(1447, c.tcb.RcvWnd()))
		c.peer(pkt(".", seq, 101, data(n)))
		seq = seq.Add(uint32(n))
		c.clear()
	}
	st, _ := c.tcb.Status()
	require.Equal(t, uint32(1<<20), st.Unread, "exactly the buffer, no more")
}

func TestHasDSACK(t *testing.T) {
	// RFC2883 4: the first block is a D-SACK if it lies below the
	// cumulative ACK, or inside the second block.
	for _, c := range []struct {
		blocks []Seq
		want   bool
	}{
		{nil, false},
		{[]Seq{1000, 2000}, false},            // an ordinary block above ACK 500
		{[]Seq{100, 200}, true},               // below ACK 500
		{[]Seq{400, 600}, true},               // starts below it
		{[]Seq{1200, 1400, 1000, 2000}, true}, // inside the second block
		{[]Seq{900, 1400, 1000, 2000}, false}, // overlaps, not inside
		{[]Seq{3000, 3100, 1000, 2000}, false},
	} {
		var s Segment
		sackBlocks(c.blocks...)(&s)
		require.Equal(t, c.want, s.Options.hasDSACK(500), "blocks %v", c.blocks)
	}
}

// optionLayouts are the layouts parse reads directly, with values to vary.
func optionLayouts(a, b uint32, mss uint16, ws uint8) [][]byte {
	ts := []byte{OptKindNOP, OptKindNOP, OptKindTimestamps, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(ts[4:], a)
	binary.BigEndian.PutUint32(ts[8:], b)
	syn := []byte{OptKindMSS, 4, 0, 0, OptKindSACKPermitted, 2, OptKindTimestamps, 10, 0, 0, 0, 0, 0, 0, 0, 0,
		OptKindNOP, OptKindWindowScale, 3, ws}
	binary.BigEndian.PutUint16(syn[2:], mss)
	binary.BigEndian.PutUint32(syn[8:], a)
	binary.BigEndian.PutUint32(syn[12:], b)
	return [][]byte{ts, syn}
}

func TestOptionFastPathsMatchTheGeneralParser(t *testing.T) {
	// The layouts parse reads directly give exactly what reading them in
	// any order gives; so does every variation fuzzing finds.
	rapid.Check(t, func(rt *rapid.T) {
		for _, b := range optionLayouts(rapid.Uint32().Draw(rt, "a"), rapid.Uint32().Draw(rt, "b"),
			rapid.Uint16().Draw(rt, "mss"), rapid.Uint8().Draw(rt, "ws")) {
			var fast, general Options
			require.NoError(rt, fast.parse(b))
			require.NoError(rt, general.parseAny(b))
			require.Equal(rt, general, fast)
			require.NotZero(rt, fast.Present)
		}
	})
}

func FuzzOptionFastPaths(f *testing.F) {
	for _, b := range optionLayouts(1, 2, 1460, 7) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, general Options
		errFast, errGeneral := fast.parse(b), general.parseAny(b)
		require.Equal(t, errGeneral == nil, errFast == nil, "%x", b)
		if errFast == nil {
			require.Equal(t, general, fast, "%x", b)
		}
	})
}
