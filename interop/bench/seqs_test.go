package bench

import (
	"net/netip"
	"testing"

	"github.com/soypat/seqs"
	"github.com/soypat/seqs/stacks"

	"github.com/tcpfsm/tcpfsm"
)

// This file sets tcpfsm's transition function beside soypat/seqs'
// ControlBlock: sequence-space bookkeeping only, no buffers, no wire
// format, two control blocks joined in memory. ControlBlock accepts only
// in-order segments and has no timers, options or congestion control, so
// tcpfsm runs with options off (no window scaling, timestamps or SACK)
// and every ACK immediate, the closest like-for-like setting; it still
// does its full RFC 9293 section 3.10.7 checks, RTT sampling and
// congestion window arithmetic.

// fsmPair is two TCBs and the segments in flight between them.
type fsmPair struct {
	t       [2]tcpfsm.TCB
	out     [2][]tcpfsm.Action
	q       [2][]tcpfsm.Segment // segments on their way to side i
	payload []byte
	now     tcpfsm.Time
}

func newFsmPair(b testing.TB) *fsmPair {
	cfg := tcpfsm.Config{QuickACK: true, NoWindowScale: true, NoTimestamps: true, NoSACK: true, RecvBuffer: 65535}
	p := &fsmPair{payload: make([]byte, 1460), now: 1}
	for i := range p.t {
		t, err := tcpfsm.NewTCB(cfg)
		if err != nil {
			b.Fatal(err)
		}
		p.t[i] = t
		p.out[i] = make([]tcpfsm.Action, 0, 16)
		p.q[i] = make([]tcpfsm.Segment, 0, 16)
	}
	return p
}

func (p *fsmPair) step(i int, ev tcpfsm.Event) {
	out, _ := p.t[i].Step(ev, p.now, p.out[i][:0])
	p.out[i] = out
	for k := range out {
		if out[k].Kind == tcpfsm.ActSend {
			q := append(p.q[1-i], out[k].Seg) // the one copy: out is reused
			if n := out[k].DataLen; n > 0 {
				q[len(q)-1].Payload = p.payload[:n]
			}
			p.q[1-i] = q
		}
	}
}

// pump delivers segments until none are in flight; the receiving
// application reads whatever arrives.
func (p *fsmPair) pump() {
	for len(p.q[0])+len(p.q[1]) > 0 {
		for i := range p.q {
			for k := 0; k < len(p.q[i]); k++ {
				s := &p.q[i][k] // stable: steps of side i append to the other queue
				p.step(i, tcpfsm.Arrive(s, 5000))
				if n := len(s.Payload); n > 0 {
					p.step(i, tcpfsm.Receive(uint32(n)))
				}
			}
			p.q[i] = p.q[i][:0]
		}
	}
}

func (p *fsmPair) open(b testing.TB) {
	p.step(1, tcpfsm.ListenOn(80))
	p.step(0, tcpfsm.Open(40000, 80, 100))
	p.pump()
	if p.t[0].State != tcpfsm.Established || p.t[1].State != tcpfsm.Established {
		b.Fatalf("handshake ended in %v and %v", p.t[0].State, p.t[1].State)
	}
}

// seqsPair is two seqs ControlBlocks joined in memory.
type seqsPair struct {
	c   [2]seqs.ControlBlock
	wnd seqs.Size
}

// flush moves side i's pending segment (with up to n data bytes) to the
// other side; it reports whether there was one.
func (p *seqsPair) flush(b testing.TB, i int, n int) bool {
	seg, ok := p.c[i].PendingSegment(n)
	if !ok {
		return false
	}
	if err := p.c[i].Send(seg); err != nil {
		b.Fatalf("seqs Send: %v", err)
	}
	if err := p.c[1-i].Recv(seg); err != nil {
		b.Fatalf("seqs Recv %+v: %v", seg, err)
	}
	p.c[1-i].SetRecvWindow(p.wnd) // the application read it all
	return true
}

func (p *seqsPair) pump(b testing.TB) {
	for moved := true; moved; {
		moved = p.flush(b, 0, 0)
		moved = p.flush(b, 1, 0) || moved
	}
}

func (p *seqsPair) open(b testing.TB) {
	p.wnd = 65535
	if err := p.c[1].Open(300, p.wnd, seqs.StateListen); err != nil {
		b.Fatal(err)
	}
	if err := p.c[0].Open(100, p.wnd, seqs.StateSynSent); err != nil {
		b.Fatal(err)
	}
	p.pump(b)
	if p.c[0].State() != seqs.StateEstablished || p.c[1].State() != seqs.StateEstablished {
		b.Fatalf("seqs handshake ended in %v and %v", p.c[0].State(), p.c[1].State())
	}
}

// BenchmarkSegment is one 1460-byte data segment sent, received, read and
// ACKed, and the ACK processed by the sender: a full round of the data
// path through each control block.
func BenchmarkSegment(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		p := newFsmPair(b)
		p.open(b)
		b.ReportAllocs()
		for b.Loop() {
			p.step(0, tcpfsm.Send(1460))
			p.pump()
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
			if !p.flush(b, 0, 1460) {
				b.Fatal("seqs would not send")
			}
			if !p.flush(b, 1, 0) {
				b.Fatal("seqs would not ACK")
			}
		}
	})
}

// BenchmarkLifecycle is one whole connection through each control block:
// handshake, 1 KiB each way, the client closes, then the server; it ends
// with the client in TIME-WAIT and the server CLOSED.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("tcpfsm", func(b *testing.B) {
		p := newFsmPair(b)
		fresh := p.t
		b.ReportAllocs()
		for b.Loop() {
			p.t = fresh
			p.open(b)
			p.step(0, tcpfsm.Send(1024))
			p.step(1, tcpfsm.Send(1024))
			p.pump()
			p.step(0, tcpfsm.Close())
			p.pump()
			p.step(1, tcpfsm.Close())
			p.pump()
			if p.t[0].State != tcpfsm.TimeWait || p.t[1].State != tcpfsm.Closed {
				b.Fatalf("ended in %v and %v", p.t[0].State, p.t[1].State)
			}
		}
	})
	b.Run("seqs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p seqsPair
			p.open(b)
			p.flush(b, 0, 1024)
			p.flush(b, 1, 1024)
			p.pump(b)
			if err := p.c[0].Close(); err != nil {
				b.Fatal(err)
			}
			// ControlBlock answers the FIN with its own at once (it
			// holds no CLOSE-WAIT open for the application), so the
			// server needs no Close of its own.
			p.pump(b)
			if p.c[0].State() != seqs.StateTimeWait || p.c[1].State() != seqs.StateClosed {
				b.Fatalf("seqs ended in %v and %v", p.c[0].State(), p.c[1].State())
			}
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
