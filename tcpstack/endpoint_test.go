package tcpstack

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"pgregory.net/rapid"
)

// wire carries packets between two endpoints in memory, with a delay and
// an optional loss, duplication and reordering pattern from a seed.
type wire struct {
	t       testing.TB
	ep      [2]*Endpoint
	now     tcpfsm.Time
	delay   time.Duration
	q       []packet
	buf     []byte
	rng     *rand.Rand
	loss    float64 // probability a packet is lost
	reorder float64 // probability a packet is held back one more delay
	corrupt float64 // probability a byte is flipped (the checksum must catch it)
}

type packet struct {
	at   tcpfsm.Time
	to   int
	data []byte
}

func newWire(t testing.TB, a, b EndpointConfig, seed uint64) *wire {
	w := &wire{t: t, delay: 5 * time.Millisecond, buf: make([]byte, 65536), rng: rand.New(rand.NewPCG(seed, 1))}
	var err error
	w.ep[0], err = NewEndpoint(a)
	require.NoError(t, err)
	w.ep[1], err = NewEndpoint(b)
	require.NoError(t, err)
	return w
}

var (
	addrA = netip.MustParseAddrPort("192.0.2.1:40000")
	addrB = netip.MustParseAddrPort("192.0.2.2:80")
)

// flush takes every packet side i wants to send onto the wire.
func (w *wire) flush(i int) {
	for {
		n, _, _ := w.ep[i].Output(w.buf, w.now)
		if n == 0 {
			return
		}
		if w.rng.Float64() < w.loss {
			continue
		}
		p := packet{at: w.now.Add(w.delay), to: 1 - i, data: append([]byte(nil), w.buf[:n]...)}
		if w.rng.Float64() < w.reorder {
			p.at = p.at.Add(w.delay)
		}
		if w.rng.Float64() < w.corrupt {
			p.data[w.rng.IntN(len(p.data))] ^= 0x20
		}
		w.q = append(w.q, p)
	}
}

// run moves time forward, delivering packets and firing timers, until
// done says stop or the clock passes limit.
func (w *wire) run(limit tcpfsm.Time, done func() bool) {
	w.flush(0)
	w.flush(1)
	for !done() {
		next := tcpfsm.Time(-1)
		for _, p := range w.q {
			if next < 0 || p.at < next {
				next = p.at
			}
		}
		for _, e := range w.ep {
			if d, ok := e.NextDeadline(); ok && (next < 0 || d < next) {
				next = d
			}
		}
		if next < 0 || next > limit {
			return
		}
		w.now = max(w.now, next)
		delivered := false
		for k := 0; k < len(w.q); k++ {
			if p := w.q[k]; p.at <= w.now {
				w.q = append(w.q[:k], w.q[k+1:]...)
				src, dst := addrA.Addr(), addrB.Addr()
				if p.to == 0 {
					src, dst = dst, src
				}
				_ = w.ep[p.to].Input(p.data, src, dst, w.now)
				w.flush(p.to)
				delivered = true
				break
			}
		}
		if delivered {
			continue
		}
		for i, e := range w.ep {
			if d, ok := e.NextDeadline(); ok && d <= w.now {
				e.Tick(w.now)
				w.flush(i)
			}
		}
	}
}

func connect(t testing.TB, w *wire) {
	require.NoError(t, w.ep[1].Listen(addrB, w.now))
	require.NoError(t, w.ep[0].Dial(addrA, addrB, w.now))
	w.run(at(10), func() bool { return w.ep[0].Connected() && w.ep[1].Connected() })
	require.Equal(t, tcpfsm.Established, w.ep[0].State())
	require.Equal(t, tcpfsm.Established, w.ep[1].State())
}

// transfer sends data from side 0 to side 1 (and back if echo), reading
// as it arrives, then half-closes, and returns what side 1 read.
func transfer(t testing.TB, w *wire, data []byte, limit tcpfsm.Time) []byte {
	var got []byte
	rbuf := make([]byte, 8192)
	sent := 0
	closed := false
	w.run(limit, func() bool {
		for sent < len(data) {
			n, err := w.ep[0].Write(data[sent:], w.now)
			if err != nil {
				break
			}
			sent += n
		}
		if sent == len(data) && !closed {
			require.NoError(t, w.ep[0].CloseWrite(w.now))
			closed = true
		}
		for {
			n, err := w.ep[1].Read(rbuf, w.now)
			got = append(got, rbuf[:n]...)
			if err != nil {
				if err == io.EOF {
					return true
				}
				break
			}
		}
		w.flush(0)
		w.flush(1)
		return false
	})
	return got
}

func TestEndpointTransfer(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		loss, reorder, corrupt float64
	}{
		{"clean", 0, 0, 0},
		{"loss 5%", 0.05, 0, 0},
		{"loss and reordering", 0.05, 0.1, 0},
		{"corruption", 0, 0, 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWire(t, EndpointConfig{}, EndpointConfig{}, 7)
			w.loss, w.reorder, w.corrupt = tc.loss, tc.reorder, tc.corrupt
			connect(t, w)
			data := make([]byte, 300_000)
			src := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(src.Uint32())
			}
			got := transfer(t, w, data, at(600))
			require.True(t, bytes.Equal(data, got), "%d of %d bytes, in order", len(got), len(data))
			if tc.corrupt > 0 {
				require.Positive(t, w.ep[0].Stats().BadChecksum+w.ep[1].Stats().BadChecksum, "the checksum caught the corruption")
			}
			if tc.loss > 0 {
				require.Positive(t, w.ep[0].Stats().Retransmits)
			}
			// The other half closes too, and both ends finish.
			require.NoError(t, w.ep[1].Close(w.now))
			w.run(w.now.Add(10*time.Minute), func() bool {
				return w.ep[0].State() == tcpfsm.Closed && w.ep[1].State() == tcpfsm.Closed
			})
			require.Equal(t, tcpfsm.Closed, w.ep[0].State())
			require.Equal(t, tcpfsm.Closed, w.ep[1].State())
			require.NoError(t, w.ep[0].Err())
		})
	}
}

func TestEndpointBadInputCounted(t *testing.T) {
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	e := w.ep[1]
	require.ErrorIs(t, e.Input([]byte{1, 2, 3}, addrA.Addr(), addrB.Addr(), w.now), errBadChecksum)
	seg := tcpfsm.Segment{SrcPort: 40000, DstPort: 80, Flags: tcpfsm.FlagACK}
	b := seg.AppendTo(nil)
	b[12] = 4 << 4 // data offset 4
	require.NoError(t, tcpfsm.SetChecksum(b, addrA.Addr(), addrB.Addr()))
	require.ErrorIs(t, e.Input(b, addrA.Addr(), addrB.Addr(), w.now), tcpfsm.ErrDataOffset)
	other := tcpfsm.Segment{SrcPort: 1, DstPort: 80, Flags: tcpfsm.FlagACK}
	b = other.AppendTo(nil)
	require.NoError(t, tcpfsm.SetChecksum(b, addrA.Addr(), addrB.Addr()))
	require.NoError(t, e.Input(b, addrA.Addr(), addrB.Addr(), w.now))
	st := e.Stats()
	require.Equal(t, uint32(1), st.BadChecksum)
	require.Equal(t, uint32(1), st.Malformed)
	require.Equal(t, uint32(1), st.Dropped(tcpfsm.DropNotOurs))
	require.Equal(t, tcpfsm.Established, e.State(), "bad input changes nothing")
}

func TestEndpointCloseWithUnreadDataResets(t *testing.T) {
	// RFC9293 SHLD-3.
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	_, err := w.ep[0].Write(make([]byte, 50), w.now)
	require.NoError(t, err)
	w.run(w.now.Add(time.Second), func() bool { return w.ep[1].Buffered() == 50 })
	require.NoError(t, w.ep[1].Close(w.now))
	require.Equal(t, tcpfsm.Closed, w.ep[1].State())
	w.run(w.now.Add(time.Second), func() bool { return w.ep[0].State() == tcpfsm.Closed })
	require.ErrorIs(t, w.ep[0].Err(), ErrReset)
	_, err = w.ep[0].Write([]byte{1}, w.now)
	require.ErrorIs(t, err, ErrReset)
	_, err = w.ep[0].Read(make([]byte, 1), w.now)
	require.ErrorIs(t, err, ErrReset)
}

func TestEndpointDataAfterFullCloseResets(t *testing.T) {
	// RFC9293 SHLD-3: data arriving after a full close gets a RST.
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	require.NoError(t, w.ep[1].Close(w.now))
	w.run(w.now.Add(time.Second), func() bool { return w.ep[1].State() == tcpfsm.FinWait2 })
	_, err := w.ep[0].Write([]byte("late"), w.now)
	require.NoError(t, err)
	w.run(w.now.Add(time.Second), func() bool { return w.ep[0].State() == tcpfsm.Closed })
	require.ErrorIs(t, w.ep[0].Err(), ErrReset)
	require.Equal(t, tcpfsm.Closed, w.ep[1].State())
}

func TestEndpointWriteBlocksWhenFull(t *testing.T) {
	w := newWire(t, EndpointConfig{SendBuffer: 1000}, EndpointConfig{}, 1)
	connect(t, w)
	n, err := w.ep[0].Write(make([]byte, 3000), w.now)
	require.NoError(t, err)
	require.Equal(t, 1000, n)
	_, err = w.ep[0].Write(make([]byte, 1), w.now)
	require.ErrorIs(t, err, ErrWouldBlock)
	_, err = w.ep[1].Read(make([]byte, 1), w.now)
	require.ErrorIs(t, err, ErrWouldBlock)
}

func TestEndpointRefused(t *testing.T) {
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	require.NoError(t, w.ep[0].Dial(addrA, addrB, w.now)) // nobody listens: side 1 is CLOSED
	w.run(at(5), func() bool { return w.ep[0].State() == tcpfsm.Closed })
	require.ErrorIs(t, w.ep[0].Err(), ErrRefused)
}

func TestEndpointSteadyStateAllocatesNothing(t *testing.T) {
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	a, b := w.ep[0], w.ep[1]
	data := make([]byte, 1460)
	rbuf := make([]byte, 4096)
	pkt := make([]byte, 2048)
	round := func() {
		_, _ = a.Write(data, w.now)
		for n, _, _ := a.Output(pkt, w.now); n > 0; n, _, _ = a.Output(pkt, w.now) {
			_ = b.Input(pkt[:n], addrA.Addr(), addrB.Addr(), w.now)
		}
		_, _ = b.Read(rbuf, w.now)
		for n, _, _ := b.Output(pkt, w.now); n > 0; n, _, _ = b.Output(pkt, w.now) {
			_ = a.Input(pkt[:n], addrB.Addr(), addrA.Addr(), w.now)
		}
		w.now = w.now.Add(time.Millisecond)
	}
	for range 100 {
		round()
	}
	require.Zero(t, testing.AllocsPerRun(200, round))
	require.Equal(t, tcpfsm.Established, a.State())
}

// BenchmarkEndpointBulk moves data between two endpoints in memory in
// 1460-byte segments, with checksums, encode and decode: MB/s of payload.
// BenchmarkEndpointBulk moves 64 KiB per op between two Endpoints:
// "segments" as 1460-byte segments, each checksummed, verified and
// parsed; "large" as a link with segmentation and receive offload moves
// them (OutputLarge merges what continues, InputVerified takes the whole
// without summing it, as a TSO and GRO path does).
func BenchmarkEndpointBulk(b *testing.B) {
	for _, large := range []bool{false, true} {
		name := "segments"
		if large {
			name = "large"
		}
		b.Run(name, func(b *testing.B) {
			bulk := newBulk(b, large)
			b.SetBytes(int64(len(bulk.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				bulk.op()
			}
		})
	}
}

// bulk is BenchmarkEndpointBulk's pair of Endpoints and buffers.
type bulk struct {
	w           *wire
	large       bool
	data, rbuf  []byte
	pkt         []byte
	moved, read int
}

func newBulk(t testing.TB, large bool) *bulk {
	w := newWire(t, EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 1 << 20}, SendBuffer: 1 << 20},
		EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 1 << 20}}, 1)
	connect(t, w)
	pkt := make([]byte, 2048)
	if large {
		pkt = make([]byte, 64<<10)
	}
	return &bulk{w: w, large: large, data: make([]byte, 64<<10), rbuf: make([]byte, 64<<10), pkt: pkt}
}

// op moves the 64 KiB of data from one end to the other (the last
// segments may arrive in the next op).
func (k *bulk) op() {
	for off := 0; off < len(k.data); {
		n, _ := k.w.ep[0].Write(k.data[off:], k.w.now)
		off += n
		k.moved += n
		k.round()
	}
}

// round moves the sender's segments, reads, and moves the ACKs back.
func (k *bulk) round() {
	a, r, now := k.w.ep[0], k.w.ep[1], k.w.now
	if k.large {
		for m, _, _, _ := a.OutputLarge(k.pkt, now); m > 0; m, _, _, _ = a.OutputLarge(k.pkt, now) {
			_ = r.InputVerified(k.pkt[:m], addrA.Addr(), addrB.Addr(), now)
		}
	} else {
		for m, _, _ := a.Output(k.pkt, now); m > 0; m, _, _ = a.Output(k.pkt, now) {
			_ = r.Input(k.pkt[:m], addrA.Addr(), addrB.Addr(), now)
		}
	}
	for {
		n, err := r.Read(k.rbuf, now)
		if err != nil || n == 0 {
			break
		}
		k.read += n
	}
	for m, _, _ := r.Output(k.pkt, now); m > 0; m, _, _ = r.Output(k.pkt, now) {
		_ = a.Input(k.pkt[:m], addrB.Addr(), addrA.Addr(), now)
	}
}

// FuzzEndpointPair moves a transfer between two endpoints over a network
// the fuzzer controls: each input byte drops, duplicates, delays or
// delivers a packet, or moves the clock. Whatever happens: no panic, and
// the receiver reads a prefix of what was sent, in order, exactly once.
func FuzzEndpointPair(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 2, 0, 3, 0, 4, 4, 4, 0, 0, 1, 1})
	f.Add([]byte{5, 5, 5, 5, 0, 0, 2, 2, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var a, b *Endpoint
		a, _ = NewEndpoint(EndpointConfig{SendBuffer: 8192, ISN: FixedISN(1000)})
		b, _ = NewEndpoint(EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 4096}, ISN: FixedISN(5000)})
		now := tcpfsm.Time(0)
		_ = b.Listen(addrB, now)
		_ = a.Dial(addrA, addrB, now)
		data := make([]byte, 20000)
		for i := range data {
			data[i] = byte(i * 31)
		}
		var got []byte
		var wire [][]byte
		var toA []bool
		corrupted := map[*byte]bool{}
		sent := 0
		buf := make([]byte, 4096)
		rbuf := make([]byte, 3000)
		collect := func() {
			for _, e := range []*Endpoint{a, b} {
				for n, _, _ := e.Output(buf, now); n > 0; n, _, _ = e.Output(buf, now) {
					wire = append(wire, append([]byte(nil), buf[:n]...))
					toA = append(toA, e == b)
				}
			}
		}
		for i := 0; i < len(prog)*4 && i < 4000; i++ {
			op := prog[i%len(prog)] % 6
			if n, err := a.Write(data[sent:], now); err == nil {
				sent += n
			}
			if n, _ := b.Read(rbuf, now); n > 0 {
				got = append(got, rbuf[:n]...)
			}
			collect()
			switch {
			case op == 0 && len(wire) > 0: // deliver the first packet
				p, dst := wire[0], toA[0]
				wire, toA = wire[1:], toA[1:]
				if dst {
					_ = a.Input(p, addrB.Addr(), addrA.Addr(), now)
				} else {
					_ = b.Input(p, addrA.Addr(), addrB.Addr(), now)
				}
			case op == 1 && len(wire) > 0: // lose it
				wire, toA = wire[1:], toA[1:]
			case op == 2 && len(wire) > 1: // reorder
				wire[0], wire[1] = wire[1], wire[0]
				toA[0], toA[1] = toA[1], toA[0]
			case op == 3 && len(wire) > 0: // duplicate
				wire = append(wire, wire[0])
				toA = append(toA, toA[0])
			case op == 4 && len(wire) > 0 && !corrupted[&wire[0][0]]: // corrupt one byte
				// Once per packet: two compensating flips can fool the
				// Internet checksum, as they can on a real wire.
				p := append([]byte(nil), wire[0]...)
				p[int(prog[(i+1)%len(prog)])%len(p)] ^= 0x55
				wire[0] = p
				corrupted[&p[0]] = true
			default: // time passes
				now = now.Add(200 * time.Millisecond)
				for _, e := range []*Endpoint{a, b} {
					if d, ok := e.NextDeadline(); ok && d <= now {
						e.Tick(now)
					}
				}
			}
		}
		if len(got) > sent || !bytes.Equal(got, data[:len(got)]) {
			k := 0
			for k < len(got) && k < len(data) && got[k] == data[k] {
				k++
			}
			t.Fatalf("read %d bytes that are not a prefix of the %d sent: first difference at %d", len(got), sent, k)
		}
	})
}

func TestEndpointHoldsOutOfOrderDataBeyondTheTCBsRanges(t *testing.T) {
	// Ten 1000-byte segments, every other one of the first eight lost:
	// the TCB's three out-of-order ranges fill with segments 2, 4 and 6,
	// so it drops 8 and 9 (DropOutOfOrderFull). The endpoint keeps them
	// in its receive buffer and offers them again once the holes fill, so
	// the retransmitted 1, 3, 5 and 7 complete the stream without 8 and
	// 9 being sent again.
	//
	// The allocations are counted process-wide, so another goroutine's
	// can land in the count on a busy machine: the least of a few runs
	// counts.
	var w *wire
	var rcv *Endpoint
	var start tcpfsm.Seq
	var data []byte
	var mallocs uint64
	for range 3 {
		w, rcv, start, data, mallocs = holdAndReplay(t)
		if mallocs == 0 {
			break
		}
	}
	require.Zero(t, mallocs, "holding and replaying allocate nothing")
	require.Equal(t, start.Add(10_000), rcv.TCB().RcvNxt, "8 and 9 taken from the buffer")
	got := make([]byte, 20_000)
	n, err := rcv.Read(got, w.now)
	require.NoError(t, err)
	require.Equal(t, data, got[:n])
	require.Equal(t, uint64(10_000), rcv.Stats().BytesIn, "each byte counted once")
	require.Equal(t, uint32(2), rcv.Stats().Dropped(tcpfsm.DropOutOfOrderFull), "the replays are not counted as drops")
}

// holdAndReplay is TestEndpointHoldsOutOfOrderDataBeyondTheTCBsRanges' run:
// the segments sent out of order to a fresh pair, and the allocations
// counted while the endpoint held and replayed them.
func holdAndReplay(t *testing.T) (w *wire, rcv *Endpoint, start tcpfsm.Seq, data []byte, mallocs uint64) {
	t.Helper()
	w = newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	rcv = w.ep[1]
	start = w.ep[0].TCB().SndNxt
	data = make([]byte, 10_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var packets [10][]byte
	tcb := rcv.TCB()
	for i := range packets {
		seg := tcpfsm.Segment{SrcPort: addrA.Port(), DstPort: addrB.Port(), Seq: start.Add(uint32(1000 * i)),
			Ack: tcb.SndNxt, Flags: tcpfsm.FlagACK, Window: 0xffff, Payload: data[1000*i : 1000*(i+1)],
			Options: tcpfsm.Options{Present: tcpfsm.OptTimestamps, TSVal: tcb.TSRecent() + 1}}
		packets[i] = seg.AppendTo(nil)
		require.NoError(t, tcpfsm.SetChecksum(packets[i], addrA.Addr(), addrB.Addr()))
	}
	send := func(i int) { // the host's call order: Input, then Output until nothing is left
		if err := rcv.Input(packets[i], addrA.Addr(), addrB.Addr(), w.now); err != nil {
			t.Fatal(err)
		}
		for n, _, _ := rcv.Output(w.buf, w.now); n > 0; n, _, _ = rcv.Output(w.buf, w.now) {
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, i := range []int{0, 2, 4, 6, 8, 9} {
		send(i)
	}
	st := rcv.Stats()
	require.Equal(t, uint32(2), st.Dropped(tcpfsm.DropOutOfOrderFull), "8 and 9 found no range in the TCB")
	for _, i := range []int{1, 3, 5, 7} {
		send(i)
	}
	runtime.ReadMemStats(&after)
	return w, rcv, start, data, after.Mallocs - before.Mallocs
}

func TestEndpointDialRefusesBadAddresses(t *testing.T) {
	// An invalid address, or one of each family, could not be
	// checksummed: Dial says so and the endpoint stays CLOSED.
	for _, c := range []struct{ local, remote netip.AddrPort }{
		{netip.AddrPort{}, addrB},
		{addrA, netip.AddrPort{}},
		{addrA, netip.MustParseAddrPort("[2001:db8::2]:80")},
	} {
		e, err := NewEndpoint(EndpointConfig{})
		require.NoError(t, err)
		require.ErrorIs(t, e.Dial(c.local, c.remote, 0), tcpfsm.ErrAddress, "%v -> %v", c.local, c.remote)
		require.Equal(t, tcpfsm.Closed, e.State())
	}
}

func TestBufferGrowsKeepingItsBytes(t *testing.T) {
	// A stack's endpoint starts with small buffers and doubles them as
	// data needs, up to the configured size: the bytes held, wrapped
	// around the ring's end and out of order beyond it, keep their places
	// in the stream.
	rapid.Check(t, func(rt *rapid.T) {
		s, err := New(Config{})
		require.NoError(rt, err)
		e := s.newEndpoint()
		limit := rapid.IntRange(minBuf, 1<<20).Draw(rt, "limit")
		var r ring
		var model []byte // the stream from r.start on; 0 where nothing was written
		for range rapid.IntRange(1, 20).Draw(rt, "ops") {
			switch rapid.IntRange(0, 2).Draw(rt, "op") {
			case 0: // write at an offset, as out-of-order data arrives
				off := rapid.IntRange(0, limit-1).Draw(rt, "off")
				n := rapid.IntRange(1, min(3000, limit-off)).Draw(rt, "n")
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(rapid.IntRange(1, 255).Draw(rt, "b"))
				}
				e.grow(&r, off+n, limit)
				require.LessOrEqual(rt, len(r.buf), limit)
				r.writeAt(off, p)
				for len(model) < off+n {
					model = append(model, 0)
				}
				copy(model[off:], p)
			case 1: // consume from the front, as the user reads
				k := rapid.IntRange(0, len(model)).Draw(rt, "k")
				r.discard(k)
				model = model[k:]
			case 2: // grow the buffer
				e.grow(&r, rapid.IntRange(0, limit).Draw(rt, "need"), limit)
			}
			got := make([]byte, len(model))
			if len(got) > 0 {
				r.readAt(0, got)
			}
			for i := range model {
				if model[i] != 0 {
					require.Equal(rt, model[i], got[i], "byte %d", i)
				}
			}
		}
	})
}

func TestEndpointSettingsPerConnection(t *testing.T) {
	// SO_SNDBUF, TCP_NODELAY and SO_KEEPALIVE as a socket has them: the
	// send buffer limit holds Write back, Nagle goes off, keep-alives run.
	w := newWire(t, EndpointConfig{SendBuffer: 8192}, EndpointConfig{}, 1)
	connect(t, w)
	ep := w.ep[0]
	ep.SetSendBuffer(1000) // a whole KiB
	n, err := ep.Write(make([]byte, 3000), w.now)
	require.NoError(t, err)
	require.Equal(t, 1024, n)
	_, err = ep.Write([]byte{1}, w.now)
	require.ErrorIs(t, err, ErrWouldBlock)
	ep.SetSendBuffer(0) // back to the configured 8192
	n, err = ep.Write(make([]byte, 9000), w.now)
	require.NoError(t, err)
	require.Equal(t, 8192-1024, n)
	require.NoError(t, ep.SetNoDelay(true, w.now))
	require.NoError(t, ep.SetKeepAlive(time.Minute, w.now))
	require.LessOrEqual(t, unsafe.Sizeof(Endpoint{}), uintptr(384), "the limit fits in padding")
}

func TestSendBufferFollowsPeerWindow(t *testing.T) {
	// A peer that offers an 8 KiB window and does not read: Write holds
	// 16 KiB (twice the window, raised to the least send buffer), not the
	// 256 KiB configured, so a slow reader does not pin the whole buffer.
	// The bytes all arrive once it reads.
	w := newWire(t, EndpointConfig{SendBuffer: 256 << 10}, EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 8 << 10}}, 1)
	connect(t, w)
	ep := w.ep[0]
	require.Equal(t, uint32(8<<10), ep.tcb.MaxSndWnd)
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	n, err := ep.Write(data, w.now)
	require.NoError(t, err)
	require.Equal(t, minSendBuffer, n)
	w.run(w.now.Add(time.Second), func() bool { return false }) // the window fills and stays shut
	acked := minSendBuffer - ep.io.snd.len()                    // into the peer's buffer: most of its window
	require.Greater(t, acked, 4<<10)
	k, err := ep.Write(data[n:], w.now)
	require.NoError(t, err)
	require.Equal(t, acked, k, "room for what the peer acknowledged")
	n += k
	_, err = ep.Write(data[n:], w.now)
	require.ErrorIs(t, err, ErrWouldBlock)
	require.Equal(t, minSendBuffer, ep.io.snd.len(), "held while the peer does not read")
	require.Equal(t, data, transfer(t, w, data[n:], w.now.Add(time.Minute)))

	// A peer with a large window: the configured size, once the peer's
	// first ACK has shown the window beyond its SYN's 64 KiB.
	w = newWire(t, EndpointConfig{SendBuffer: 256 << 10}, EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 1 << 20}}, 1)
	connect(t, w)
	ep = w.ep[0]
	n, err = ep.Write(data, w.now)
	require.NoError(t, err)
	require.Equal(t, 2*0xffff, n, "twice the SYN's window")
	w.run(w.now.Add(time.Second), func() bool { return false })
	n, err = ep.Write(data, w.now)
	require.NoError(t, err)
	require.Equal(t, 256<<10, n, "the configured size, the peer's window being larger")

	// A configured size below the least send buffer stays the limit.
	w = newWire(t, EndpointConfig{SendBuffer: 8 << 10}, EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 2 << 10}}, 1)
	connect(t, w)
	n, err = w.ep[0].Write(data, w.now)
	require.NoError(t, err)
	require.Equal(t, 8<<10, n, "the configured 8 KiB, not the least of 16 KiB")

	// A size set with SetSendBuffer is held in full, as SO_SNDBUF locks
	// a socket's.
	w = newWire(t, EndpointConfig{SendBuffer: 256 << 10}, EndpointConfig{Config: tcpfsm.Config{RecvBuffer: 8 << 10}}, 1)
	connect(t, w)
	w.ep[0].SetSendBuffer(200 << 10)
	n, err = w.ep[0].Write(data, w.now)
	require.NoError(t, err)
	require.Equal(t, 200<<10, n)
}

func TestEndpointTellsWhatHappened(t *testing.T) {
	// The notes of RFC 9293 section 3.9.2, kept as a set; the counters
	// usable as returned; Output says where the segment goes.
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	require.True(t, w.ep[0].TakeNotes().Has(tcpfsm.NoteConnected))
	require.Zero(t, w.ep[0].TakeNotes(), "taken")
	require.NoError(t, w.ep[1].CloseWrite(w.now))
	n, src, dst := w.ep[1].Output(w.buf, w.now)
	require.NotZero(t, n)
	require.Equal(t, addrB.Addr(), src)
	require.Equal(t, addrA.Addr(), dst)
	require.NoError(t, w.ep[0].Input(w.buf[:n], src, dst, w.now))
	require.True(t, w.ep[0].TakeNotes().Has(tcpfsm.NotePeerClosed))
	require.Zero(t, w.ep[0].Stats().Dropped(tcpfsm.DropUnacceptable))
	fresh, _ := NewEndpoint(EndpointConfig{})
	n, src, dst = fresh.Output(w.buf, w.now)
	require.Zero(t, n)
	require.False(t, src.IsValid() || dst.IsValid())
}

func TestSequentialISN(t *testing.T) {
	q := &SequentialISN{Next: 1000, Step: 10}
	require.Equal(t, tcpfsm.Seq(1000), q.ISN(addrA, addrB, 0))
	require.Equal(t, tcpfsm.Seq(1010), q.ISN(addrA, addrB, 0))
	var z SequentialISN
	require.Equal(t, tcpfsm.Seq(0), z.ISN(addrA, addrB, 0))
	require.Equal(t, tcpfsm.Seq(0x10000), z.ISN(addrA, addrB, 0))
	require.Equal(t, tcpfsm.Seq(7), FixedISN(7).ISN(addrA, addrB, 0))
}

func TestEndpointBulkLargeMovesTheStream(t *testing.T) {
	// The large-segment path of BenchmarkEndpointBulk delivers every byte
	// in order, allocating nothing once running; a coalesced segment with
	// any checksum is taken by InputVerified, and refused by Input.
	k := newBulk(t, true)
	for i := range k.data {
		k.data[i] = byte(i * 7)
	}
	var got []byte
	a, r, now := k.w.ep[0], k.w.ep[1], k.w.now
	large := 0
	move := func() {
		m, segSize, src, dst := a.OutputLarge(k.pkt, now)
		for ; m > 0; m, segSize, src, dst = a.OutputLarge(k.pkt, now) {
			if segSize > 0 {
				large++
				require.Error(t, r.Input(k.pkt[:m], src, dst, now), "a merged segment's checksum is the link's to compute")
			}
			require.NoError(t, r.InputVerified(k.pkt[:m], src, dst, now))
		}
		for {
			n, err := r.Read(k.rbuf, now)
			if err != nil || n == 0 {
				break
			}
			got = append(got, k.rbuf[:n]...)
		}
		for m, _, _ := r.Output(k.pkt, now); m > 0; m, _, _ = r.Output(k.pkt, now) {
			require.NoError(t, a.Input(k.pkt[:m], addrB.Addr(), addrA.Addr(), now))
		}
	}
	for off := 0; off < len(k.data); {
		n, _ := a.Write(k.data[off:], now)
		off += n
		move()
	}
	for i := 0; i < 10 && len(got) < len(k.data); i++ {
		move()
	}
	require.Len(t, got, len(k.data))
	require.True(t, bytes.Equal(k.data, got), "the stream arrived as written")
	require.Greater(t, large, 0, "merged segments went")
	require.Zero(t, testing.AllocsPerRun(20, k.op))
	require.ErrorIs(t, r.InputVerified(k.pkt[:40], addrA.Addr(), netip.MustParseAddr("::1"), now), tcpfsm.ErrAddress)
}

// A segment queued for Output carries the SACK blocks of the Step that
// sent it, even if more segments arrive before Output runs (RFC 2018
// section 4: each ACK reports the out-of-order data held when it was
// made; the TCB's Action leaves those blocks to be read right after the
// Step).
func TestEndpointQueuedACKsKeepTheirSACKBlocks(t *testing.T) {
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	connect(t, w)
	rcv := w.ep[1]
	start := w.ep[0].TCB().SndNxt
	tcb := rcv.TCB()
	packet := func(i int) []byte {
		seg := tcpfsm.Segment{SrcPort: addrA.Port(), DstPort: addrB.Port(), Seq: start.Add(uint32(100 * i)),
			Ack: tcb.SndNxt, Flags: tcpfsm.FlagACK, Window: 0xffff, Payload: make([]byte, 100),
			Options: tcpfsm.Options{Present: tcpfsm.OptTimestamps, TSVal: tcb.TSRecent() + 1}}
		b := seg.AppendTo(nil)
		require.NoError(t, tcpfsm.SetChecksum(b, addrA.Addr(), addrB.Addr()))
		return b
	}
	for _, i := range []int{1, 3, 2} { // two holes, then the second fills: no Output in between
		require.NoError(t, rcv.Input(packet(i), addrA.Addr(), addrB.Addr(), w.now))
	}
	var got [][]tcpfsm.SACKBlock
	for n, _, _ := rcv.Output(w.buf, w.now); n > 0; n, _, _ = rcv.Output(w.buf, w.now) {
		s, err := tcpfsm.ParseSegment(w.buf[:n])
		require.NoError(t, err)
		got = append(got, append([]tcpfsm.SACKBlock(nil), s.Options.SACKBlocks()...))
	}
	b := func(i, j int) tcpfsm.SACKBlock {
		return tcpfsm.SACKBlock{Left: start.Add(uint32(100 * i)), Right: start.Add(uint32(100 * j))}
	}
	require.Equal(t, [][]tcpfsm.SACKBlock{
		{b(1, 2)},
		{b(3, 4), b(1, 2)},
		{b(1, 4)},
	}, got)
}
