package tcpfsm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestTimeWaitRecordAnswersAsTheTCB(t *testing.T) {
	// RFC9293 3.10.7.4, RFC 6191, RFC 1337, RFC 5961: a segment gets the
	// same answer (the same ACK or nothing; a new incarnation or not)
	// from a TCB in TIME-WAIT as from its compact TimeWaitRecord. Both
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
		rec, ok := tcb.TimeWaitRecord()
		require.True(rt, ok)
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
		var tcbAck *Segment
		tcbGone := c.tcb.State == Closed
		for i := range out {
			if a := &out[i]; a.Kind == ActSend && a.Header.Flags == FlagACK {
				s := c.tcb.SegmentOf(a)
				tcbAck = &s
			}
		}
		var reply Segment
		v := rec.Input(&seg, c.now, &reply)
		require.Equal(rt, tcbGone, v == TimeWaitReopen || v == TimeWaitClose, "gone: %v, verdict %d, actions %v", seg, v, out)
		if !tcbGone {
			require.Equal(rt, tcbAck != nil, v == TimeWaitReply, "ACK: %v, verdict %d, actions %v", seg, v, out)
		}
		if tcbAck != nil && v == TimeWaitReply {
			require.Equal(rt, tcbAck.Seq, reply.Seq)
			require.Equal(rt, tcbAck.Ack, reply.Ack)
			require.Equal(rt, tcbAck.Flags, reply.Flags)
			require.Equal(rt, tcbAck.Window, reply.Window)
			require.Equal(rt, tcbAck.Options.Has(OptTimestamps), reply.Options.Has(OptTimestamps))
			require.Equal(rt, tcbAck.Options.TSVal, reply.Options.TSVal)
			require.Equal(rt, tcbAck.Options.TSEcr, reply.Options.TSEcr)
			require.Equal(rt, seg.SrcPort, reply.DstPort)
		}
		d, _ := c.tcb.Deadline(TimerClose)
		if !tcbGone && c.tcb.State == TimeWait {
			require.Equal(rt, d, rec.Deadline(), "2*MSL restarted alike")
		}
	})
}

func TestTimeWaitRecordIsSmall(t *testing.T) {
	// What a host keeps per connection in TIME-WAIT instead of a TCB.
	require.LessOrEqual(t, unsafe.Sizeof(TimeWaitRecord{}), uintptr(40))
	require.Less(t, unsafe.Sizeof(TimeWaitRecord{})*6, unsafe.Sizeof(TCB{}))
}

func TestTimeWaitAnswersLikeLinux(t *testing.T) {
	// RFC9293 3.10.7.4: after the peer's FIN no sequence space is left, so
	// every segment with ACK is answered with an ACK, except a duplicate of
	// the peer's last ACK, as Linux (tcp_timewait_state_process) and
	// FreeBSD (tcp_twcheck) do. The TCB and its record answer alike.
	for _, tc := range []struct {
		name string
		seg  Segment
		ack  bool
	}{
		{"duplicate of the last ACK", pkt(".", 302, 102), false},
		{"bare ACK past RCV.NXT", pkt(".", 310, 102), true},
		{"data at RCV.NXT", pkt(".", 302, 102, data(10)), true},
		{"data past RCV.NXT", pkt(".", 400, 102, data(10)), true},
		{"a FIN after the FIN", pkt("F.", 302, 102), true},
		{"the FIN again", pkt("F.", 301, 102), true},
		{"an ACK of what was never sent", pkt(".", 302, 200), true},
		{"an old ACK", pkt(".", 302, 101), false},
	} {
		c := timeWait(t, Config{})
		rec, ok := c.tcb.TimeWaitRecord()
		require.True(t, ok)
		c.peer(tc.seg)
		sent := c.takeSent()
		if tc.ack {
			require.Len(t, sent, 1, tc.name)
			require.Equal(t, FlagACK, sent[0].Seg.Flags, tc.name)
			require.Equal(t, Seq(302), sent[0].Seg.Ack, tc.name)
		} else {
			require.Empty(t, sent, tc.name)
		}
		c.state(TimeWait)
		var reply Segment
		require.Equal(t, tc.ack, rec.Input(&tc.seg, c.now, &reply) == TimeWaitReply, tc.name)
	}
}
