package bench

import (
	"net/netip"
	"testing"

	"github.com/soypat/seqs"
	"github.com/soypat/seqs/stacks"

	"github.com/tcpfsm/tcpfsm"
)

// This file sets tcpfsm's transition function beside soypat/seqs'
// ControlBlock: sequence-space bookkeeping only, two control blocks joined
// in memory. Each side does only what a host must do to move segments
// between the two ends, and nothing on the wire: neither side encodes,
// parses or checksums a header, and no payload byte is copied (the
// segments carry their lengths; tcpfsm's point at one shared buffer).
//
// tcpfsm: the host steps an event and gets Actions appended to its slice;
// it builds each ActSend's segment from the action and the sender's TCB
// (TCB.SegmentOf, a copy of the header fields, no encoding), points its
// Payload at DataLen bytes of the shared buffer, passes it to the peer's
// Step by pointer, and skips every other action on its Kind. A data segment that arrives is
// read at once (a Receive event). The TCBs run with options off (no window
// scaling, timestamps or SACK), every ACK immediate (QuickACK) and no
// timer actions (the default), the closest setting to ControlBlock's; they
// still run RFC 9293 section 3.10.7's checks, RTT sampling,
// congestion-window arithmetic, the retransmission and TIME-WAIT
// deadlines, and the reassembly list's check (empty, as every segment
// arrives in order). The host never reads NextDeadline: the clock does not
// move.
//
// seqs: the host asks PendingSegment for the next segment, commits it with
// Send, and hands it by value to the peer's Recv; after a segment with
// data, the reader sets its window again (SetRecvWindow), seqs' form of
// the read. ControlBlock accepts only the next in-order segment and has no
// options, timers, RTT estimation, congestion control or reassembly.

// fsmPair is two TCBs and each one's actions not yet carried out.
type fsmPair struct {
	t       [2]tcpfsm.TCB
	out     [2][]tcpfsm.Action
	payload []byte
	now     tcpfsm.Time
	segs    int // segments moved
}

func newFsmPair(tb testing.TB) *fsmPair {
	cfg := tcpfsm.Config{QuickACK: true, NoWindowScale: true, NoTimestamps: true, NoSACK: true, RecvBuffer: 65535}
	p := &fsmPair{payload: make([]byte, 1460), now: 1}
	for i := range p.t {
		t, err := tcpfsm.NewTCB(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		p.t[i] = t
		p.out[i] = make([]tcpfsm.Action, 0, 16)
	}
	return p
}

// do steps ev on side i; its actions wait in p.out[i] for exchange.
func (p *fsmPair) do(i int, ev tcpfsm.Event) {
	p.out[i], _ = p.t[i].Step(ev, p.now, p.out[i])
}

// exchange delivers each side's segments to the other until neither has
// one to send. The receiver's actions are appended to its own slice, so
// the segment passed by pointer stays in place while the receiver steps.
func (p *fsmPair) exchange() {
	i, from, to := 0, p.out[0], p.out[1]
	segs := 0
	for idle := 0; idle < 2; {
		idle++
		for k := range from {
			a := &from[k]
			if a.Kind != tcpfsm.ActSend {
				continue
			}
			idle = 0
			segs++
			n := a.DataLen
			seg := p.t[i].SegmentOf(a)
			if n > 0 {
				seg.Payload = p.payload[:n]
			}
			to, _ = p.t[1-i].Step(tcpfsm.Arrive(&seg, 5000), p.now, to)
			if n > 0 {
				to, _ = p.t[1-i].Step(tcpfsm.Receive(n), p.now, to)
			}
		}
		i, from, to = 1-i, to, from[:0]
	}
	p.out[i], p.out[1-i] = from[:0], to[:0]
	p.segs += segs
}

func (p *fsmPair) open(tb testing.TB) {
	p.do(1, tcpfsm.ListenOn(80))
	p.do(0, tcpfsm.Open(40000, 80, 100))
	p.exchange()
	if p.t[0].State != tcpfsm.Established || p.t[1].State != tcpfsm.Established {
		tb.Fatalf("handshake ended in %v and %v", p.t[0].State, p.t[1].State)
	}
}

// segment is one op of BenchmarkSegment: the client writes 1460 bytes,
// the segment goes to the server, which reads it and ACKs, and the ACK
// comes back.
func (p *fsmPair) segment() {
	p.do(0, tcpfsm.Send(1460))
	p.exchange()
}

// lifecycle is one op of BenchmarkLifecycle, from the TCBs in fresh.
func (p *fsmPair) lifecycle(tb testing.TB, fresh *[2]tcpfsm.TCB) {
	p.t = *fresh
	p.open(tb)
	p.do(0, tcpfsm.Send(1024))
	p.do(1, tcpfsm.Send(1024))
	p.exchange()
	p.do(0, tcpfsm.Close())
	p.exchange()
	p.do(1, tcpfsm.Close())
	p.exchange()
	if p.t[0].State != tcpfsm.TimeWait || p.t[1].State != tcpfsm.Closed {
		tb.Fatalf("ended in %v and %v", p.t[0].State, p.t[1].State)
	}
}

// seqsPair is two seqs ControlBlocks joined in memory.
type seqsPair struct {
	c    [2]seqs.ControlBlock
	wnd  seqs.Size
	segs int // segments moved
}

// flush moves side i's pending segment (with up to n data bytes) to the
// other side; it reports whether there was one.
func (p *seqsPair) flush(tb testing.TB, i int, n int) bool {
	seg, ok := p.c[i].PendingSegment(n)
	if !ok {
		return false
	}
	if err := p.c[i].Send(seg); err != nil {
		tb.Fatalf("seqs Send: %v", err)
	}
	if err := p.c[1-i].Recv(seg); err != nil {
		tb.Fatalf("seqs Recv %+v: %v", seg, err)
	}
	p.segs++
	if seg.DATALEN > 0 {
		p.c[1-i].SetRecvWindow(p.wnd) // the application read it all
	}
	return true
}

func (p *seqsPair) pump(tb testing.TB) {
	for moved := true; moved; {
		moved = p.flush(tb, 0, 0)
		moved = p.flush(tb, 1, 0) || moved
	}
}

func (p *seqsPair) open(tb testing.TB) {
	p.wnd = 65535
	if err := p.c[1].Open(300, p.wnd, seqs.StateListen); err != nil {
		tb.Fatal(err)
	}
	if err := p.c[0].Open(100, p.wnd, seqs.StateSynSent); err != nil {
		tb.Fatal(err)
	}
	p.pump(tb)
	if p.c[0].State() != seqs.StateEstablished || p.c[1].State() != seqs.StateEstablished {
		tb.Fatalf("seqs handshake ended in %v and %v", p.c[0].State(), p.c[1].State())
	}
}

// segment is one op of BenchmarkSegment: 1460 bytes from the client to the
// server, and the server's ACK back.
func (p *seqsPair) segment(tb testing.TB) {
	if !p.flush(tb, 0, 1460) {
		tb.Fatal("seqs would not send")
	}
	if !p.flush(tb, 1, 0) {
		tb.Fatal("seqs would not ACK")
	}
}

// lifecycle is one op of BenchmarkLifecycle, from two zero ControlBlocks.
func (p *seqsPair) lifecycle(tb testing.TB) {
	*p = seqsPair{}
	p.open(tb)
	p.flush(tb, 0, 1024)
	p.flush(tb, 1, 1024) // carries the ACK of the client's data
	p.pump(tb)
	if err := p.c[0].Close(); err != nil {
		tb.Fatal(err)
	}
	// ControlBlock answers the FIN with its own at once (it holds no
	// CLOSE-WAIT open for the application), so the server needs no Close
	// of its own.
	p.pump(tb)
	if p.c[0].State() != seqs.StateTimeWait || p.c[1].State() != seqs.StateClosed {
		tb.Fatalf("seqs ended in %v and %v", p.c[0].State(), p.c[1].State())
	}
}

// TestControlBlockWorkloads checks the segments each side moves in one op
// of BenchmarkSegment and BenchmarkLifecycle, as their comments give them.
func TestControlBlockWorkloads(t *testing.T) {
	f := newFsmPair(t)
	fresh := f.t
	f.lifecycle(t, &fresh)
	if f.segs != 11 {
		t.Errorf("tcpfsm's lifecycle moved %d segments, want 11", f.segs)
	}
	f.segs = 0
	f.t = fresh
	f.open(t)
	f.segs = 0
	f.segment()
	if f.segs != 2 || f.t[0].SndUna != f.t[0].SndNxt {
		t.Errorf("tcpfsm's segment op moved %d segments, want 2, and left %d bytes unacknowledged",
			f.segs, f.t[0].SndNxt.Diff(f.t[0].SndUna))
	}
	var s seqsPair
	s.lifecycle(t)
	if s.segs != 11 {
		t.Errorf("seqs' lifecycle moved %d segments, want 11", s.segs)
	}
	s = seqsPair{}
	s.open(t)
	s.segs = 0
	s.segment(t)
	if s.segs != 2 {
		t.Errorf("seqs' segment op moved %d segments, want 2", s.segs)
	}
}

// BenchmarkSegment is one 1460-byte data segment sent, received, read and
// ACKed, and the ACK processed by the sender: a full round of the data
// path through each control block, two segments.
func BenchmarkSegment(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		p := newFsmPair(b)
		p.open(b)
		b.ReportAllocs()
		for b.Loop() {
			p.segment()
		}
		if p.t[0].SndUna != p.t[0].SndNxt {
			b.Fatal("data left unacknowledged")
		}
	})
	b.Run("seqs", func(b *testing.B) {
		var p seqsPair
		p.open(b)
		b.ReportAllocs()
		for b.Loop() {
			p.segment(b)
		}
	})
}

// BenchmarkLifecycle is one whole connection through each control block:
// handshake, 1 KiB each way, the client closes, then the server; it ends
// with the client in TIME-WAIT and the server CLOSED. Each side moves 11
// segments, not quite the same ones: tcpfsm ACKs the client's data on its
// own (the server's data was sent before it arrived), where seqs' server
// data carries that ACK; seqs' client ACKs the ACK of its FIN once more.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		p := newFsmPair(b)
		fresh := p.t
		b.ReportAllocs()
		for b.Loop() {
			p.lifecycle(b, &fresh)
		}
	})
	b.Run("seqs", func(b *testing.B) {
		var p seqsPair
		b.ReportAllocs()
		for b.Loop() {
			p.lifecycle(b)
		}
	})
}

// seqsStacks is two soypat/seqs PortStacks (Ethernet, IPv4, TCP) joined
// in memory, one connection between them.
type seqsStacks struct {
	s              [2]*stacks.PortStack
	client, server *stacks.TCPConn
	frame          []byte
}

func newSeqsStacks(b testing.TB, bufSize uint16) *seqsStacks {
	p := &seqsStacks{frame: make([]byte, 1514)}
	for i := range p.s {
		p.s[i] = stacks.NewPortStack(stacks.PortStackConfig{MAC: [6]byte{2, 0, 0, 0, 0, byte(i + 1)},
			MaxOpenPortsTCP: 1, MaxOpenPortsUDP: 1, MTU: 1514}) // seqs counts the Ethernet header in its MTU
		p.s[i].SetAddr(netip.AddrFrom4([4]byte{10, 9, 0, byte(i + 1)}))
	}
	var err error
	cfg := stacks.TCPConnConfig{TxBufSize: bufSize, RxBufSize: bufSize}
	if p.server, err = stacks.NewTCPConn(p.s[1], cfg); err != nil {
		b.Fatal(err)
	}
	if err = p.server.OpenListenTCP(80, 300); err != nil {
		b.Fatal(err)
	}
	if p.client, err = stacks.NewTCPConn(p.s[0], cfg); err != nil {
		b.Fatal(err)
	}
	if err = p.client.OpenDialTCP(40000, p.s[1].HardwareAddr6(), netip.AddrPortFrom(p.s[1].Addr(), 80), 100); err != nil {
		b.Fatal(err)
	}
	p.pump(b, nil)
	if p.client.State() != seqs.StateEstablished || p.server.State() != seqs.StateEstablished {
		b.Fatalf("seqs stacks did not connect: %v, %v", p.client.State(), p.server.State())
	}
	return p
}

// pump moves frames until neither stack has one to send; the server's
// application reads into rbuf as data arrives, and the count is returned.
func (p *seqsStacks) pump(b testing.TB, rbuf []byte) (read int) {
	for moved := true; moved; {
		moved = false
		for i := range p.s {
			n, err := p.s[i].HandleEth(p.frame)
			if err != nil {
				b.Fatalf("seqs HandleEth: %v", err)
			}
			if n == 0 {
				continue
			}
			moved = true
			if err := p.s[1-i].RecvEth(p.frame[:n]); err != nil {
				b.Fatalf("seqs RecvEth: %v", err)
			}
		}
		for rbuf != nil && p.server.BufferedInput() > 0 {
			k, _ := p.server.Read(rbuf)
			read += k
		}
	}
	return read
}
