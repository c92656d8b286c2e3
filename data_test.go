package tcpfsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSequenceWrap(t *testing.T) {
	// RFC9293 3.4: ISS=0xFFFFFF00, 0x200 bytes, ACK=0x00000100.
	c := newConn(t, Config{})
	c.user(Open(ourPort, peerPort, 0xFFFFFF00))
	c.peer(pkt("S.", 300, 0xFFFFFF01, win(5000)))
	c.clear()
	c.user(Send(0x1ff))
	c.peer(pkt(".", 301, 0x00000100, win(5000)))
	require.Equal(t, Seq(0x100), c.tcb.SndUna)
	require.Equal(t, c.tcb.SndNxt, c.tcb.SndUna)
	c.timer(TimerRetransmit, 0)
	c.notes(NoteSendAcked)
	st, _ := c.tcb.Status()
	require.Zero(t, st.InFlight)
	require.Zero(t, st.Unsent)
}

func TestAcceptableACKRange(t *testing.T) {
	// RFC9293 3.3.1: SND.UNA < SEG.ACK =< SND.NXT.
	c := established(t, Config{})
	c.user(Send(100))
	c.clear()
	c.peer(pkt(".", 301, 101)) // duplicate
	require.Equal(t, Seq(101), c.tcb.SndUna)
	c.nothing()
	c.peer(pkt(".", 301, 151)) // advances
	require.Equal(t, Seq(151), c.tcb.SndUna)
	c.peer(pkt(".", 301, 202)) // beyond SND.NXT
	c.sent(". seq=201 ack=301")
	require.Equal(t, Seq(151), c.tcb.SndUna)
}

func TestDefaultPeerMSS(t *testing.T) {
	// MUST-15: 536 for IPv4, 1220 for IPv6 without an MSS option.
	for _, tc := range []struct {
		v6   bool
		want uint32
	}{{false, 536}, {true, 1220}} {
		c := newConn(t, Config{IPv6: tc.v6})
		c.user(Open(ourPort, peerPort, 100))
		if tc.v6 {
			c.sent("S seq=100 mss=1440")
		} else {
			c.sent("S seq=100 mss=1460")
		}
		c.peer(pkt("S.", 300, 101, win(60000)))
		c.clear()
		c.user(Send(10_000))
		for _, a := range c.takeSent() {
			require.LessOrEqual(t, a.DataLen, tc.want)
			require.False(t, a.Seg.Options.Has(OptMSS), "MUST-65: no MSS on non-SYN segments")
		}
	}
}

func TestOptionsOnDataSegmentsAccepted(t *testing.T) {
	// MUST-5: options on any segment.
	c := established(t, Config{})
	s := pkt("P.", 301, 101, data(10))
	s.Options = Options{Present: OptTimestamps, TSVal: 1, TSEcr: 2}
	s.Options.AddSACK(SACKBlock{1, 2})
	c.peer(s)
	require.Equal(t, Seq(311), c.tcb.RcvNxt)
}

func TestShrinkingWindow(t *testing.T) {
	// MUST-34, SHLD-15/16: the peer moves its right edge left below SND.NXT.
	c := established(t, Config{NoDelay: true})
	c.peer(pkt(".", 301, 101, win(3000)))
	c.user(Send(5000))
	// 80 more bytes fit, but sender SWS avoidance holds them (MUST-38).
	c.sent(". seq=101 len=1460", ". seq=1561 len=1460")
	c.peer(pkt(".", 301, 1561, win(100))) // right edge now 1661 < SND.NXT 3021
	c.nothing()
	require.Equal(t, uint32(100), c.tcb.SndWnd)
	st, _ := c.tcb.Status()
	require.Equal(t, uint32(5000-2920), st.Unsent)
	c.advance(time.Second) // the RTO retransmits only what fits
	c.sent(". seq=1561 len=100")
}

func TestKeepBackoffUntilCleanSample(t *testing.T) {
	// RFC9293 3.8.1: after two timeouts and the ACK of the retransmission,
	// the next segment still uses the backed-off RTO.
	c := established(t, Config{})
	c.user(Send(10))
	c.advanceTo(at(3)) // two timeouts: RTO 4 s
	c.peer(pkt(".", 301, 111))
	c.clear()
	c.user(Send(10))
	c.timer(TimerRetransmit, at(3).Add(4*time.Second))
	c.advanceTo(at(3.1))
	c.peer(pkt(".", 301, 121)) // a clean sample of 100 ms
	c.user(Send(10))
	c.timer(TimerRetransmit, at(3.1).Add(time.Second))
}

func TestR2PerConnection(t *testing.T) {
	// MUST-21: one connection with R2=5 s gives up; the default one lives on.
	short := established(t, Config{R2: 5 * time.Second})
	long := established(t, Config{})
	for _, c := range []*conn{short, long} {
		c.user(Send(10))
		c.advanceTo(at(8))
	}
	short.state(Closed)
	long.state(Established)
}

func TestCongestionWindowGrowth(t *testing.T) {
	// RFC5681 3.1: IW, no growth from the handshake, slow start by at most
	// SMSS per ACK (ABC), then at most SMSS per RTT.
	c := established(t, Config{})
	require.Equal(t, uint32(3*1460), c.tcb.cwnd, "IW for SMSS 1460, unchanged by the SYN-ACK")
	require.GreaterOrEqual(t, c.tcb.ssthresh, uint32(1<<30), "ssthresh starts arbitrarily high")
	p := synReceived(t, Config{})
	p.peer(pkt(".", 301, 101))
	require.Equal(t, uint32(4*536), p.tcb.cwnd, "passive side: IW for SMSS 536")

	c.peer(pkt(".", 301, 101, win(60000)))
	c.user(Send(3 * 1460))
	c.clear()
	c.peer(pkt(".", 301, 101+3*1460, win(60000)))
	require.Equal(t, uint32(4*1460), c.tcb.cwnd, "one ACK for 3 SMSS adds 1 SMSS")

	c.tcb.ssthresh = 2 * 1460 // into congestion avoidance
	cw := c.tcb.cwnd
	una := c.tcb.SndUna
	c.user(Send(4 * 1460))
	for i := range 4 {
		c.peer(pkt(".", 301, una.Add(uint32(i+1)*1460), win(60000)))
	}
	require.LessOrEqual(t, c.tcb.cwnd-cw, uint32(1460), "at most SMSS per RTT")
	require.Greater(t, c.tcb.cwnd, cw)
}

func TestInitialWindowSizes(t *testing.T) {
	// RFC5681 3.1 (IW): 4, 3 or 2 segments by SMSS.
	for _, tc := range []struct {
		mss  uint16
		want uint32
	}{{1000, 4000}, {1460, 3 * 1460}, {4000, 8000}} {
		c := newConn(t, Config{MSS: 9000})
		c.user(Open(ourPort, peerPort, 100))
		c.peer(pkt("S.", 300, 101, mss(tc.mss)))
		require.Equal(t, tc.want, c.tcb.cwnd, "SMSS %d", tc.mss)
	}
}

func TestRTTSampledEveryRTT(t *testing.T) {
	// RFC6298 3 (rate): a steady transfer takes a sample per round trip.
	p := newPair(Config{}, Config{})
	p.check, p.jitter = t, true
	_ = p.step(1, ListenOn(80))
	_ = p.step(0, Open(40000, 80, 100))
	p.run(at(1))
	samples := 0
	last := p.tcb[0].srtt
	require.NoError(t, p.step(0, Send(2_000_000)))
	for range 2000 {
		p.run(p.now.Add(5 * time.Millisecond))
		if p.tcb[0].srtt != last {
			samples++
			last = p.tcb[0].srtt
		}
	}
	require.GreaterOrEqual(t, samples, 10)
	require.Equal(t, uint32(2_000_000), p.got[1])
}

func TestForgetRTTAtR1(t *testing.T) {
	// RFC6298 5 (MAY): with ForgetRTTAtR1, SRTT and RTTVAR are cleared
	// when one segment's retransmissions reach R1 (3), and the next clean
	// sample R starts them afresh: SRTT=R, RTTVAR=R/2 (2.2). Without it the
	// sample is averaged into the old estimate (2.3).
	for _, forget := range []bool{false, true} {
		c := established(t, Config{ForgetRTTAtR1: forget})
		c.advanceTo(at(1))
		c.user(Send(10))
		c.advanceTo(at(1.2))
		c.peer(pkt(".", 301, 111)) // a sample of 200 ms
		c.clear()
		c.user(Send(10))
		c.advanceTo(at(8.25)) // timeouts at 2.2, 4.2 and 8.2 s: R1
		c.notes(NoteStalled)
		st, err := c.tcb.Status()
		require.NoError(t, err)
		require.Equal(t, forget, st.SRTT == 0, "forget=%v: SRTT %v after R1", forget, st.SRTT)
		c.advance(50 * time.Millisecond)
		c.peer(pkt(".", 301, 121)) // the retransmission's ACK: no sample (Karn)
		c.user(Send(10))
		c.advance(100 * time.Millisecond)
		c.peer(pkt(".", 301, 131)) // a clean sample of 100 ms
		st, err = c.tcb.Status()
		require.NoError(t, err)
		if forget {
			require.Equal(t, 100*time.Millisecond, st.SRTT)
			require.Equal(t, 50*time.Millisecond, st.RTTVar)
		} else {
			// 7/8 of the old SRTT (25 ms: a handshake sample of 0 and the
			// 200 ms one) plus 1/8 of 100 ms.
			require.Equal(t, 34375*time.Microsecond, st.SRTT, "averaged into the old estimate")
		}
	}
}
