// Command exercise is tcpfsm's main example. It plays the worked exercise
// the project grew from between two tcpfsm.Endpoints wired together in
// memory, and prints every segment as a sequence diagram with each side's
// state, from CLOSED through the handshake, the data, the teardown and
// TIME-WAIT:
//
//	"Send 312 bytes over TCP with a window of 100 bytes and 100-byte
//	segments; the sender's initial sequence number is 100, the receiver's
//	200. Draw the connection set-up, the data transfer and the release."
//
// The program is the host: it owns the clock (virtual, so the run takes no
// time), the network (a queue with 10 ms of delay) and the application
// (the server reads at once, the client writes 312 bytes and closes).
//
//	go run ./examples/exercise                    # the exchange, CLOSED to CLOSED
//	go run ./examples/exercise -lose 4            # lose the 4th segment: see it retransmitted after one RTO
//	go run ./examples/exercise -lose 10 -tlp      # lose the last data segment, with SACK and the tail loss
//	                                              # probe on: it goes again after about two RTTs, not one RTO
//	go run ./examples/exercise -simultaneous      # both sides close at once (CLOSING on both)
//	go run ./examples/exercise -pcap out.pcap     # also write the packets for Wireshark or tcpdump
//	go run ./examples/exercise -mermaid           # print the diagram as Mermaid instead
package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
	"github.com/tcpfsm/tcpfsm/trace"
)

type options struct {
	lose         int
	simultaneous bool
	bytes        int
	pcap         io.Writer
	mermaid      bool
	tlp          bool
}

func main() {
	var o options
	var pcapPath string
	flag.IntVar(&o.lose, "lose", 0, "lose the Nth segment on the wire (1-based; 0 loses none)")
	flag.BoolVar(&o.simultaneous, "simultaneous", false, "close both sides at the same moment")
	flag.IntVar(&o.bytes, "bytes", 312, "bytes the client sends")
	flag.StringVar(&pcapPath, "pcap", "", "write the packets to this pcap file")
	flag.BoolVar(&o.mermaid, "mermaid", false, "print the diagram as a Mermaid sequence diagram")
	flag.BoolVar(&o.tlp, "tlp", false, "turn on SACK and the tail loss probe (RFC 8985 section 7)")
	flag.Parse()
	if pcapPath != "" {
		f, err := os.Create(pcapPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "exercise:", err)
			os.Exit(1)
		}
		defer f.Close()
		o.pcap = f
	}
	if err := run(os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "exercise:", err)
		os.Exit(1)
	}
}

// fixedISN gives each side the exercise's initial sequence number.
type fixedISN tcpfsm.Seq

func (f fixedISN) ISN(_, _ netip.AddrPort, _ tcpfsm.Time) tcpfsm.Seq { return tcpfsm.Seq(f) }

var addr = [2]netip.AddrPort{
	netip.MustParseAddrPort("192.0.2.1:40000"), // client
	netip.MustParseAddrPort("192.0.2.2:80"),    // server
}

type packet struct {
	at   tcpfsm.Time
	to   int
	data []byte
}

type host struct {
	o     options
	now   tcpfsm.Time
	ep    [2]*tcpstack.Endpoint
	wire  []packet
	count int
	diag  *trace.Diagram
	pcap  *trace.PcapWriter
	buf   []byte
	read  int
}

func run(w io.Writer, o options) error {
	h := &host{o: o, diag: trace.NewDiagram("client", "server"), buf: make([]byte, 2048)}
	if o.pcap != nil {
		var err error
		if h.pcap, err = trace.NewPcapWriter(o.pcap, time.Unix(1_700_000_000, 0)); err != nil {
			return err
		}
	}
	for i, iss := range []tcpfsm.Seq{100, 200} {
		// Window 100 (the receive buffer) and MSS 100; no timestamps, SACK
		// or window scaling, as in the textbook.
		cfg := tcpstack.EndpointConfig{
			Config: tcpfsm.Config{RecvBuffer: 100, MSS: 100, MSL: 30 * time.Second,
				NoTimestamps: true, NoSACK: !o.tlp, NoWindowScale: true, TailLossProbe: o.tlp},
			ISN: fixedISN(iss),
		}
		ep, err := tcpstack.NewEndpoint(cfg)
		if err != nil {
			return err
		}
		h.ep[i] = ep
	}
	h.state()
	if err := h.ep[1].Listen(addr[1], h.now); err != nil {
		return err
	}
	h.note(1, "Listen")
	if err := h.ep[0].Dial(addr[0], addr[1], h.now); err != nil {
		return err
	}
	h.note(0, "Dial")
	h.runUntil(func() bool { return h.ep[0].Connected() && h.ep[1].Connected() })

	data := make([]byte, o.bytes)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	sent := 0
	h.runUntil(func() bool {
		for sent < len(data) {
			n, err := h.ep[0].Write(data[sent:], h.now)
			if err != nil {
				break
			}
			if sent == 0 {
				h.note(0, fmt.Sprintf("Write(%d bytes)", len(data)))
			}
			sent += n
		}
		return sent == len(data)
	})
	if o.simultaneous {
		h.runUntil(func() bool { return h.read == len(data) && len(h.wire) == 0 })
		h.close(0)
		h.close(1)
	} else {
		h.close(0)
		// The server closes once it has read everything and seen the FIN.
		h.runUntil(func() bool { return h.ep[1].State() == tcpfsm.CloseWait && len(h.wire) == 0 })
		h.close(1)
	}
	h.runUntil(func() bool {
		return h.ep[0].State() == tcpfsm.Closed && h.ep[1].State() == tcpfsm.Closed
	})
	var err error
	if o.mermaid {
		err = h.diag.WriteMermaid(w)
	} else {
		err = h.diag.WriteText(w)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nclient sent %d bytes, server read %d; %d segments on the wire\n", len(data), h.read, h.count)
	if h.read != len(data) {
		return fmt.Errorf("server read %d bytes, want %d", h.read, len(data))
	}
	return nil
}

func (h *host) note(i int, text string) { h.diag.Note(h.now, i, text); h.state() }

func (h *host) close(i int) {
	if err := h.ep[i].Close(h.now); err != nil {
		h.note(i, "Close: "+err.Error())
		return
	}
	h.note(i, "Close")
	h.flush(i)
}

func (h *host) state() {
	for i, ep := range h.ep {
		h.diag.State(h.now, i, ep.State())
	}
}

// flush sends everything side i has to send.
func (h *host) flush(i int) {
	for {
		n, _, _ := h.ep[i].Output(h.buf, h.now)
		if n == 0 {
			break
		}
		h.count++
		pkt := append([]byte(nil), h.buf[:n]...)
		seg, err := tcpfsm.ParseSegment(pkt)
		if err != nil {
			panic(err) // our own encoder produced it
		}
		lost := h.count == h.o.lose
		h.diag.Segment(h.now, i, seg, lost)
		if h.pcap != nil {
			_ = h.pcap.WriteSegment(h.now, addr[i].Addr(), addr[1-i].Addr(), pkt)
		}
		if !lost {
			h.wire = append(h.wire, packet{at: h.now.Add(10 * time.Millisecond), to: 1 - i, data: pkt})
		}
	}
	h.state()
}

// runUntil delivers packets and fires timers in time order until done.
func (h *host) runUntil(done func() bool) {
	for {
		h.flush(0)
		h.flush(1)
		if done() {
			return
		}
		next := tcpfsm.Time(-1)
		if len(h.wire) > 0 {
			next = h.wire[0].at
		}
		for _, ep := range h.ep {
			if d, ok := ep.NextDeadline(); ok && (next < 0 || d < next) {
				next = d
			}
		}
		if next < 0 {
			return
		}
		h.now = max(h.now, next)
		if len(h.wire) > 0 && h.wire[0].at <= h.now {
			p := h.wire[0]
			h.wire = h.wire[1:]
			_ = h.ep[p.to].Input(p.data, addr[1-p.to].Addr(), addr[p.to].Addr(), h.now)
			h.state()
			if p.to == 1 {
				h.readAll()
			}
			continue
		}
		for i, ep := range h.ep {
			if d, ok := ep.NextDeadline(); ok && d <= h.now {
				h.diag.Note(h.now, i, "timer fires")
				ep.Tick(h.now)
				h.state()
			}
		}
	}
}

// readAll is the server application: it reads whatever has arrived.
func (h *host) readAll() {
	buf := make([]byte, 512)
	for {
		n, err := h.ep[1].Read(buf, h.now)
		if n > 0 {
			h.read += n
			h.diag.Note(h.now, 1, fmt.Sprintf("Read(%d bytes)", n))
		}
		if err != nil || n == 0 {
			return
		}
	}
}
