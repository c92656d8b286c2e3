package tcpfsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// dataPath is an ESTABLISHED receiver, optionally with timestamps and
// SACK, and the next in-order 1460-byte segment for it.
func dataPath(t testing.TB, options bool) (TCB, Segment) {
	cfg := Config{QuickACK: true}
	var opts []func(*Segment)
	if options {
		opts = []func(*Segment){tsopt(5000, 100), sackOK(), wsopt(7)}
		cfg.RecvBuffer = 1 << 22
	}
	var tt testingT
	switch x := t.(type) {
	case *testing.T:
		tt = x
	case *testing.B:
		tt = benchT{x}
	}
	c := negotiated(tt, cfg, opts...)
	seg := pkt("P.", c.tcb.RcvNxt, c.tcb.SndNxt, data(1460))
	if options {
		tsopt(6000, 100)(&seg)
	}
	return c.tcb, seg
}

type benchT struct{ *testing.B }

func (b benchT) Errorf(f string, a ...any) { b.B.Errorf(f, a...) }

// stepData delivers seg and advances it to the next segment; the
// application consumes the data (without a Step) so the window stays open.
func stepData(tcb *TCB, seg *Segment, out []Action) []Action {
	out, _ = tcb.Step(Arrive(seg, 0), 1, out[:0])
	seg.Seq = seg.Seq.Add(1460)
	seg.Options.TSVal++
	tcb.rcvUser = tcb.RcvNxt
	return out
}

func TestDataPathAllocatesNothing(t *testing.T) {
	for _, options := range []bool{false, true} {
		tcb, seg := dataPath(t, options)
		out := make([]Action, 0, 16)
		out = stepData(&tcb, &seg, out)
		require.Len(t, out, 3, "accept, readable, the ACK: %v", out)
		require.Equal(t, ActSend, out[2].Kind)
		require.Equal(t, options, out[2].Header.Options&OptTimestamps != 0)
		require.Zero(t, testing.AllocsPerRun(1000, func() { out = stepData(&tcb, &seg, out) }), "options=%v", options)
		// Sending too: a write and the ACK that frees it.
		require.Zero(t, testing.AllocsPerRun(1000, func() {
			out, _ = tcb.Step(Send(1460), 1, out[:0])
			ack := Segment{SrcPort: peerPort, DstPort: ourPort, Seq: tcb.RcvNxt, Ack: tcb.SndNxt,
				Flags: FlagACK, Window: 0xffff}
			if options {
				ack.Options = Options{Present: OptTimestamps, TSVal: seg.Options.TSVal, TSEcr: 100}
			}
			out, _ = tcb.Step(Arrive(&ack, 0), 1, out[:0])
		}), "options=%v", options)
	}
}

// BenchmarkDataSegment is one in-order 1460-byte data segment received in
// ESTABLISHED and its ACK produced, through the transition function.
func BenchmarkDataSegment(b *testing.B) {
	for _, bc := range []struct {
		name    string
		options bool
	}{{"plain", false}, {"ts+sack+ws", true}} {
		b.Run(bc.name, func(b *testing.B) {
			tcb, seg := dataPath(b, bc.options)
			out := make([]Action, 0, 16)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				out = stepData(&tcb, &seg, out)
			}
		})
	}
}
