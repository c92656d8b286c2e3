package tcpfsm
import ("testing";"fmt")
func BenchmarkPerStep(b *testing.B) {
	p := newPair(Config{}, Config{})
	p.script = []recorded{}
	p.lifecycle(1024)
	script := p.script
	var tcb [2]TCB
	tcb[0], tcb[1] = TCB{cfg: defaultSettings}, TCB{cfg: defaultSettings}
	out := make([]Action, 0, 64)
	for i := range script {
		r := &script[i]
		if r.ev.Kind == EvSegment { r.ev.Seg = &r.seg }
		snap := tcb[r.side]
		b.Run(fmt.Sprintf("%02d-%d-%v", i, r.side, r.ev.Kind), func(b *testing.B) {
			for b.Loop() { x := snap; out, _ = x.Step(r.ev, r.now, out[:0]) }
		})
		out, _ = tcb[r.side].Step(r.ev, r.now, out[:0])
	}
}
var sinkT TCB
func BenchmarkCopyTCB(b *testing.B) {
	var snap TCB
	snap.cfg = defaultSettings
	for b.Loop() { x := snap; x.SndNxt++; sinkT = x }
}
func BenchmarkNoopStep(b *testing.B) {
	var snap TCB
	snap.cfg = defaultSettings
	out := make([]Action, 0, 64)
	for b.Loop() { out, _ = snap.Step(Receive(0), 0, out[:0]) }
}
