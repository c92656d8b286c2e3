package tcpfsm

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// A peer that knows roughly where the connection stands: it draws
// sequence and acknowledgment numbers near the TCB's own (in window, just
// outside, far away) and any combination of flags.
func drawSegment(t *rapid.T, tcb *TCB) Segment {
	near := func(base Seq, label string) Seq {
		return rapid.OneOf(
			rapid.Just(base),
			rapid.Custom(func(t *rapid.T) Seq { return base.Add(uint32(rapid.IntRange(-3000, 70000).Draw(t, "d"))) }),
			rapid.Custom(func(t *rapid.T) Seq { return Seq(rapid.Uint32().Draw(t, "any")) }),
		).Draw(t, label)
	}
	s := Segment{
		SrcPort: peerPort, DstPort: ourPort,
		Seq:    near(tcb.RcvNxt, "seq"),
		Ack:    near(tcb.SndNxt, "ack"),
		Flags:  Flags(rapid.SampledFrom([]uint8{0x10, 0x10, 0x18, 0x11, 0x02, 0x12, 0x04, 0x14, 0x01, 0x00, 0x13}).Draw(t, "flags")),
		Window: uint16(rapid.IntRange(0, 65535).Draw(t, "win")),
	}
	if rapid.IntRange(0, 9).Draw(t, "ports") == 0 {
		s.SrcPort = 1
	}
	if n := rapid.SampledFrom([]int{0, 0, 1, 10, 536, 1460, 3000}).Draw(t, "len"); n > 0 {
		s.Payload = zeros[:n]
	}
	if rapid.Bool().Draw(t, "mss") {
		s.Options.Present = OptMSS
		s.Options.MSS = uint16(rapid.IntRange(0, 9000).Draw(t, "mssv"))
	}
	return s
}

func drawEvent(t *rapid.T, tcb *TCB, seg *Segment) Event {
	switch rapid.IntRange(0, 13).Draw(t, "kind") {
	case 0:
		return Open(ourPort, peerPort, Seq(rapid.Uint32().Draw(t, "iss")))
	case 1:
		return ListenOn(ourPort)
	case 2:
		return Send(uint32(rapid.IntRange(0, 5000).Draw(t, "n")))
	case 3:
		return Receive(uint32(rapid.IntRange(0, 5000).Draw(t, "n")))
	case 4:
		if rapid.Bool().Draw(t, "full") {
			return CloseFull()
		}
		return Close()
	case 5:
		return Abort()
	case 6:
		return Tick()
	case 8:
		return Flush()
	case 7:
		return Reoffer(tcb.RcvNxt.Add(uint32(rapid.IntRange(-200, 5000).Draw(t, "d"))),
			uint32(rapid.SampledFrom([]int{0, 1, 100, 1460}).Draw(t, "n")))
	}
	*seg = drawSegment(t, tcb)
	ev := Arrive(seg, Seq(rapid.Uint32().Draw(t, "iss")))
	ev.More = rapid.IntRange(0, 5).Draw(t, "more") == 0
	return ev
}

// TestRandomEventsKeepInvariants is the model-based test: random user
// calls, segments and clock moves on one TCB, starting from every state.
// Every step must take a transition the table has, keep the invariants
// (checkInvariants), be pure, and allocate nothing.
func TestRandomEventsKeepInvariants(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{RecvBuffer: uint32(rapid.SampledFrom([]int{0, 100, 5000, 1 << 20}).Draw(rt, "rbuf")),
			TailLossProbe: rapid.Bool().Draw(rt, "tlp"), PRR: rapid.Bool().Draw(rt, "prr"),
			DropACKOfUnsent:    rapid.Bool().Draw(rt, "dropunsent"),
			SlowStartLimit:     rapid.SampledFrom([]int{0, -1}).Draw(rt, "sslimit"),
			HyStart:            rapid.Bool().Draw(rt, "hystart"),
			NoRestartAfterIdle: rapid.Bool().Draw(rt, "noidlerestart"),
			Congestion:         rapid.SampledFrom([]CongestionAlgorithm{NewReno, CUBIC}).Draw(rt, "cc")}
		var c *conn
		if rapid.IntRange(0, 3).Draw(rt, "opts") == 0 {
			// Every option negotiated: window scaling, timestamps, SACK.
			c = negotiated(rt, cfg, wsopt(uint8(rapid.IntRange(0, 14).Draw(rt, "ws"))), tsopt(5000, 100), sackOK())
		} else {
			f := fixtures[rapid.IntRange(0, len(fixtures)-1).Draw(rt, "fixture")]
			c = f.make(rt, cfg)
		}
		c.clear()
		for range rapid.IntRange(1, 60).Draw(rt, "steps") {
			var seg Segment
			ev := drawEvent(rt, &c.tcb, &seg)
			if ev.Kind == EvTick {
				d, ok := c.tcb.NextDeadline()
				if ok && rapid.Bool().Draw(rt, "jump") {
					c.now = max(c.now, d)
				} else {
					c.now = c.now.Add(time.Duration(rapid.IntRange(0, 5000).Draw(rt, "ms")) * time.Millisecond)
				}
			}
			_ = c.step(ev) // purity, invariants and the table are checked inside
			c.clear()
		}
	})
}

func TestStepAllocatesNothing(t *testing.T) {
	out := make([]Action, 0, 64)
	for _, f := range fixtures {
		c := f.make(t, Config{})
		base := c.tcb
		segs := []Segment{
			pkt(".", c.tcb.RcvNxt, c.tcb.SndNxt, data(100)),
			pkt("F.", c.tcb.RcvNxt, c.tcb.SndNxt),
			pkt("S", c.tcb.RcvNxt, 0),
			pkt("S.", 5, c.tcb.SndNxt),
			pkt("R", c.tcb.RcvNxt, 0),
			pkt(".", c.tcb.RcvNxt.Add(50), c.tcb.SndNxt, data(10)),
		}
		evs := []Event{Open(1, 2, 3), ListenOn(1), Send(100), Receive(0), Close(), CloseFull(), Abort(), Tick()}
		for i := range segs {
			evs = append(evs, Arrive(&segs[i], 9))
		}
		for _, ev := range evs {
			allocs := testing.AllocsPerRun(20, func() {
				tcb := base
				out, _ = tcb.Step(ev, at(500), out[:0])
			})
			require.Zero(t, allocs, "%v in %v", ev.Kind, f.state)
		}
	}
}

// FuzzStep feeds arbitrary events to a TCB in every state: no panic, no
// transition the table lacks, invariants kept.
func FuzzStep(f *testing.F) {
	f.Add(uint8(4), []byte{7, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add(uint8(1), []byte{7, 0x02, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 1})
	f.Add(uint8(2), []byte{7, 0x12, 0, 0, 0, 0, 0, 0, 0, 101, 0, 10, 0, 0})
	f.Fuzz(func(t *testing.T, state uint8, prog []byte) {
		fx := fixtures[int(state&0x1f)%len(fixtures)]
		cfg := Config{TailLossProbe: state&0x80 != 0, PRR: state&0x40 != 0}
		if state&0x20 != 0 {
			cfg.SlowStartLimit, cfg.Congestion, cfg.DropACKOfUnsent, cfg.HyStart, cfg.NoRestartAfterIdle = -1, CUBIC, true, true, true // as Linux
		}
		c := fx.make(t, cfg)
		c.clear()
		for len(prog) > 0 {
			op := prog[0]
			prog = prog[1:]
			arg := func(n int) []byte {
				var b [16]byte
				m := copy(b[:n], prog)
				prog = prog[m:]
				return b[:n]
			}
			var ev Event
			var seg Segment
			switch op % 8 {
			case 0:
				ev = Open(ourPort, peerPort, Seq(binary.BigEndian.Uint32(arg(4))))
			case 1:
				ev = ListenOn(ourPort)
			case 2:
				ev = Send(uint32(binary.BigEndian.Uint16(arg(2))))
			case 3:
				ev = Receive(uint32(binary.BigEndian.Uint16(arg(2))))
				// Step's shortcut for a RECEIVE must come to what receive does.
				step, full := c.tcb, c.tcb
				got, err := step.Step(ev, c.now, nil)
				want, werr := full.receive(c.now, nil, ev.N)
				require.Equal(t, werr, err, "error of a receive")
				require.Equal(t, want, got, "actions of a receive")
				require.Equal(t, full, step, "TCB after a receive")
			case 4:
				ev = Close()
				if arg(1)[0]&1 != 0 {
					ev = CloseFull()
				}
			case 5:
				ev = Abort()
				if b := arg(4); b[0]&1 != 0 {
					// Held bytes offered again: near RCV.NXT, up to 4 KiB.
					ev = Reoffer(c.tcb.RcvNxt.Add(uint32(int32(int8(b[1]))*16)), uint32(binary.BigEndian.Uint16(b[2:]))&0xfff)
				}
			case 6:
				c.now = c.now.Add(time.Duration(binary.BigEndian.Uint16(arg(2))) * time.Millisecond * 10)
				ev = Tick()
				// Step's shortcut for a tick must come to what tick does.
				step, full := c.tcb, c.tcb
				got, err := step.Step(ev, c.now, nil)
				require.NoError(t, err)
				require.Equal(t, full.tick(c.now, nil), got, "actions of a tick")
				require.Equal(t, full, step, "TCB after a tick")
			case 7:
				b := arg(12)
				seg = Segment{SrcPort: peerPort, DstPort: ourPort, Flags: Flags(b[0]),
					Seq:    c.tcb.RcvNxt.Add(uint32(int32(int16(binary.BigEndian.Uint16(b[1:]))) * 16)),
					Ack:    c.tcb.SndNxt.Add(uint32(int32(int16(binary.BigEndian.Uint16(b[3:]))))),
					Window: binary.BigEndian.Uint16(b[5:])}
				if n := int(binary.BigEndian.Uint16(b[7:])) % 3000; n > 0 {
					seg.Payload = zeros[:n]
				}
				if b[9]&1 != 0 {
					seg.Options.Present = OptMSS
					seg.Options.MSS = binary.BigEndian.Uint16(b[10:])
				}
				ev = Arrive(&seg, 77)
				ev.More = b[9]&2 != 0
				// Step's shortcuts must come to what the full path does.
				requireStepIsFullPath(t, c.tcb, ev, c.now)
			}
			_ = c.step(ev)
			c.clear()
		}
	})
}

// TestNoEarlyRetransmission: whatever the ACK and clock schedule, a
// retransmission the timer makes comes at least one RTO (here at least
// the 1 s floor) after that data was last sent (RFC 6298 section 5), and
// cwnd and ssthresh keep their floors (RFC 5681).
func TestNoEarlyRetransmission(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		opts := []func(*Segment){}
		if rapid.Bool().Draw(rt, "ts") {
			opts = append(opts, tsopt(5000, 100))
		}
		if rapid.Bool().Draw(rt, "sack") {
			opts = append(opts, sackOK())
		}
		c := negotiated(rt, Config{NoDelay: rapid.Bool().Draw(rt, "nodelay")}, opts...)
		lastSent := map[Seq]Time{}
		tsv := uint32(5000)
		for range rapid.IntRange(1, 80).Draw(rt, "steps") {
			var ev Event
			var seg Segment
			switch rapid.IntRange(0, 3).Draw(rt, "what") {
			case 0:
				ev = Send(uint32(rapid.IntRange(1, 6000).Draw(rt, "n")))
			case 1:
				d, ok := c.tcb.NextDeadline()
				if ok && rapid.Bool().Draw(rt, "jump") {
					c.now = max(c.now, d)
				} else {
					c.now = c.now.Add(time.Duration(rapid.IntRange(1, 3000).Draw(rt, "ms")) * time.Millisecond)
				}
				ev = Tick()
			default:
				span := c.tcb.SndNxt.Diff(c.tcb.SndUna)
				ack := c.tcb.SndUna.Add(uint32(rapid.IntRange(0, int(span)).Draw(rt, "ack")))
				tsv++
				seg = pkt(".", c.tcb.RcvNxt, ack, win(uint16(rapid.IntRange(0, 65535).Draw(rt, "win"))))
				for _, o := range opts {
					o(&seg)
				}
				seg.Options.TSVal = tsv
				ev = Arrive(&seg, 0)
			}
			before := c.tcb
			if c.step(ev) != nil {
				continue // e.g. SEND after the connection gave up
			}
			for _, a := range c.takeSent() {
				if a.DataLen == 0 {
					continue
				}
				if prev, ok := lastSent[a.DataSeq]; ok && ev.Kind == EvTick && a.DataSeq.LessThan(before.SndNxt) {
					require.GreaterOrEqual(rt, c.now.Sub(prev), time.Second, "retransmission of %v too early", a.DataSeq)
				}
				lastSent[a.DataSeq] = c.now
			}
			c.clear()
			if c.tcb.State == Established {
				smss := c.tcb.effMSS()
				require.GreaterOrEqual(rt, c.tcb.cwnd, smss, "cwnd floor")
				require.GreaterOrEqual(rt, c.tcb.ssthresh, 2*smss, "ssthresh floor")
			}
		}
	})
}

// TestStateMachineModel uses rapid's state-machine runner: each action is
// a user call, a segment or a tick on one TCB, and after every action the
// harness has checked purity, the invariants and the transition table
// (conn.step); here the model also tracks what the user was promised.
func TestStateMachineModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := newConn(rt, Config{})
		var seg Segment
		step := func(ev Event) { _ = c.step(ev); c.clear() }
		rt.Repeat(map[string]func(*rapid.T){
			"open":       func(rt *rapid.T) { step(Open(ourPort, peerPort, Seq(rapid.Uint32().Draw(rt, "iss")))) },
			"listen":     func(rt *rapid.T) { step(ListenOn(ourPort)) },
			"send":       func(rt *rapid.T) { step(Send(uint32(rapid.IntRange(0, 4000).Draw(rt, "n")))) },
			"receive":    func(rt *rapid.T) { step(Receive(uint32(rapid.IntRange(0, 4000).Draw(rt, "n")))) },
			"close":      func(rt *rapid.T) { step(Close()) },
			"close full": func(rt *rapid.T) { step(CloseFull()) },
			"abort":      func(rt *rapid.T) { step(Abort()) },
			"tick": func(rt *rapid.T) {
				if d, ok := c.tcb.NextDeadline(); ok {
					c.now = max(c.now, d)
				}
				step(Tick())
			},
			"segment": func(rt *rapid.T) {
				seg = drawSegment(rt, &c.tcb)
				step(Arrive(&seg, Seq(rapid.Uint32().Draw(rt, "iss"))))
			},
			"": func(rt *rapid.T) {
				// The connection never holds more in flight than it queued.
				if st, err := c.tcb.Status(); err == nil {
					require.LessOrEqual(rt, st.InFlight, uint32(maxQueued)+2)
				}
			},
		})
	})
}
