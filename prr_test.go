package tcpfsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// sackSegs returns SACK blocks for segments [from, to) of 1460 bytes
// counted from sequence number 101.
func sackSegs(from, to int) func(*Segment) {
	return sackBlocks(Seq(101+from*1460), Seq(101+to*1460))
}

func TestPRRProportionalReduction(t *testing.T) {
	// RFC6937 3.1: segment 0 of 20 is lost. While pipe is above
	// ssthresh (half the flight, NewReno's), PRR sends one segment for
	// every two the peer reports delivered, instead of RFC 5681's
	// silence until the inflated window passes the flight; recovery ends
	// at ssthresh.
	c := inFlight(t, Config{PRR: true}, 20, 0, sackOK())
	smss := c.tcb.effMSS()
	for i := 2; i <= 4; i++ {
		c.peer(pkt(".", 301, 101, win(60000), sackSegs(1, i)))
	}
	c.sent(". seq=101 len=1460") // the fast retransmit
	require.Equal(t, 10*smss, c.tcb.ssthresh)
	require.Equal(t, 17*smss, c.tcb.cwnd, "pipe (20 - 3 SACKed - 1 lost) + the retransmission")
	c.user(Send(20 * 1460))
	c.nothing()
	var pattern []int
	for i := 5; i <= 12; i++ {
		c.peer(pkt(".", 301, 101, win(60000), sackSegs(1, i)))
		pattern = append(pattern, len(c.take(ActSend)))
	}
	require.Equal(t, []int{0, 0, 1, 0, 1, 0, 1, 0}, pattern, "ceil(prr_delivered*ssthresh/RecoverFS) - prr_out")
	c.peer(pkt(".", 301, c.tcb.SndNxt, win(60000)))
	require.False(t, c.tcb.flags&flagRecovery != 0)
	require.Equal(t, c.tcb.ssthresh, c.tcb.cwnd, "recovery ends at ssthresh")

	// Without PRR, the same ACKs send nothing until the window inflated
	// by one segment per duplicate ACK passes the flight.
	c = inFlight(t, Config{}, 20, 0, sackOK())
	for i := 2; i <= 4; i++ {
		c.peer(pkt(".", 301, 101, win(60000), sackSegs(1, i)))
	}
	c.sent(". seq=101 len=1460")
	c.user(Send(20 * 1460))
	c.nothing()
	pattern = pattern[:0]
	for i := 5; i <= 12; i++ {
		c.peer(pkt(".", 301, 101, win(60000), sackSegs(1, i)))
		pattern = append(pattern, len(c.take(ActSend)))
	}
	require.Equal(t, []int{0, 0, 0, 0, 0, 0, 0, 1}, pattern)
}

func TestPRRSlowStartReductionBound(t *testing.T) {
	// RFC6937 3.1: with pipe below ssthresh, an ACK that advances
	// SND.UNA and shows no new loss lets one segment more go than it
	// delivered. Holes below the highest SACK count as lost (RACK,
	// RFC8985 6.2): segments 0 to 3 of 10 here.
	c := inFlight(t, Config{PRR: true}, 10, 0, sackOK())
	smss := c.tcb.effMSS()
	for i := 5; i <= 7; i++ {
		c.peer(pkt(".", 301, 101, win(60000), sackSegs(4, i)))
	}
	c.sent(". seq=101 len=1460")
	require.Equal(t, 4*smss, c.tcb.pipe(), "10 - 3 SACKed - 3 lost and not yet resent")
	c.peer(pkt(".", 301, 101+1460, win(60000), sackSegs(4, 7)))
	c.sent(". seq=1561 len=1460", ". seq=3021 len=1460") // one delivered, two sent
	c.peer(pkt(".", 301, 101+1460, win(60000), sackSegs(4, 8)))
	c.sent(". seq=4481 len=1460") // packet conservation: no SND.UNA advance
}

func TestPRRNeedsSACK(t *testing.T) {
	// Without SACK there is no pipe to measure: recovery stays RFC 6582's.
	c := inFlight(t, Config{PRR: true}, 10, 0)
	for range 3 {
		c.peer(pkt(".", 301, 101, win(60000)))
	}
	c.sent(". seq=101 len=1460")
	require.Equal(t, c.tcb.ssthresh+3*c.tcb.effMSS(), c.tcb.cwnd)
}
