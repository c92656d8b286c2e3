// Command statemachine plays the worked exercise the project grew from between
// two TCP state machines wired together in memory, and prints it as a
// sequence diagram with each side's state:
//
//	"Send 312 bytes over TCP with a window of 100 bytes and 100-byte
//	segments; the sender's initial sequence number is 100, the receiver's
//	200. Draw the connection set-up, the data transfer and the release."
//
// It shows the host side of tcpfsm: the program owns the clock and the
// network; the state machine (tcpfsm.TCB) only decides. Every 10 ms of
// one-way delay, every loss and every timer is the program's doing.
//
//	go run ./examples/statemachine                # the exchange, CLOSED to CLOSED
//	go run ./examples/statemachine -lose 4          # lose the 4th segment: see it retransmitted
//	go run ./examples/statemachine -simultaneous    # both sides close at once (CLOSING)
//	go run ./examples/statemachine -options         # with timestamps, SACK and window scaling
//
// By default the segments carry only the MSS option, as in the textbook;
// -options turns on what a modern stack negotiates (RFC 7323, RFC 2018).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

func main() {
	var o options
	flag.IntVar(&o.lose, "lose", 0, "lose the Nth segment on the wire (1-based; 0 loses none)")
	flag.BoolVar(&o.simultaneous, "simultaneous", false, "close both sides at the same moment")
	flag.IntVar(&o.bytes, "bytes", 312, "bytes the client sends")
	flag.BoolVar(&o.modern, "options", false, "negotiate timestamps, SACK and window scaling")
	flag.Parse()
	if err := run(os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "statemachine:", err)
		os.Exit(1)
	}
}

type options struct {
	lose         int
	simultaneous bool
	bytes        int
	modern       bool
}

// side is one host: its TCB and what its application has seen.
type side struct {
	name  string
	tcb   tcpfsm.TCB
	read  int
	state tcpfsm.State
}

type packet struct {
	arrive tcpfsm.Time
	to     int
	seg    tcpfsm.Segment
}

type host struct {
	w     io.Writer
	o     options
	now   tcpfsm.Time
	sides [2]*side
	wire  []packet
	count int
	out   []tcpfsm.Action
}

const delay = 10 * time.Millisecond

var payload [1 << 16]byte // the bytes themselves do not matter here

func run(w io.Writer, o options) error {
	// Window 100 (the receive buffer) and MSS 100 on both sides.
	cfg := tcpfsm.Config{RecvBuffer: 100, MSS: 100, MSL: 30 * time.Second}
	if !o.modern {
		cfg.NoTimestamps, cfg.NoSACK, cfg.NoWindowScale = true, true, true
	}
	h := &host{w: w, o: o}
	for i, name := range []string{"client", "server"} {
		tcb, err := tcpfsm.NewTCB(cfg)
		if err != nil {
			return err
		}
		h.sides[i] = &side{name: name, tcb: tcb}
	}
	fmt.Fprintf(w, "%8s  %-13s %-66s %s\n", "time", "client", "", "server")
	h.call(1, tcpfsm.ListenOn(80))
	h.call(0, tcpfsm.Open(40000, 80, 100)) // ISN 100; the server's (200) is chosen on its SYN
	h.runUntil(func() bool { return h.sides[0].tcb.State == tcpfsm.Established })
	h.call(0, tcpfsm.Send(uint32(o.bytes)))
	if o.simultaneous {
		h.runUntil(func() bool { return h.sides[1].read == o.bytes && h.idle() })
		h.call(0, tcpfsm.Close())
		h.call(1, tcpfsm.Close())
	} else {
		h.call(0, tcpfsm.Close()) // the FIN follows the data
		// The server closes once it has read everything and seen the FIN.
		h.runUntil(func() bool { return h.sides[1].tcb.State == tcpfsm.CloseWait && h.idle() })
		h.call(1, tcpfsm.Close())
	}
	h.runUntil(func() bool {
		return h.sides[0].tcb.State == tcpfsm.Closed && h.sides[1].tcb.State == tcpfsm.Closed
	})
	fmt.Fprintf(w, "\nclient sent %d bytes, server read %d; %d segments on the wire\n", o.bytes, h.sides[1].read, h.count)
	if h.sides[1].read != o.bytes {
		return fmt.Errorf("server read %d bytes, want %d", h.sides[1].read, o.bytes)
	}
	return nil
}

func (h *host) idle() bool { return len(h.wire) == 0 }

// call makes a user call on side i.
func (h *host) call(i int, ev tcpfsm.Event) {
	h.step(i, ev, fmt.Sprintf("%s calls %s", h.sides[i].name, strings.ToUpper(ev.Kind.String())))
}

// step hands one event to side i's state machine and carries out what it
// says: this is the host call order of the library.
func (h *host) step(i int, ev tcpfsm.Event, why string) {
	s := h.sides[i]
	var err error
	h.out, err = s.tcb.Step(ev, h.now, h.out[:0])
	if err != nil {
		h.line(i, why+": "+err.Error(), "")
		return
	}
	if why != "" {
		h.line(i, why, "")
	}
	readable := false
	for _, a := range h.out {
		switch a.Kind {
		case tcpfsm.ActSend:
			h.count++
			seg := s.tcb.SegmentOf(&a) // encoded before the next Step, as SACK blocks need
			seg.Payload = payload[:a.DataLen]
			lost := h.count == h.o.lose
			h.arrow(i, &seg, lost)
			if !lost {
				h.wire = append(h.wire, packet{arrive: h.now.Add(delay), to: 1 - i, seg: seg})
			}
		case tcpfsm.ActNotify:
			if a.Note == tcpfsm.NoteReadable {
				readable = true
			}
			if a.Note != tcpfsm.NoteSendAcked && a.Note != tcpfsm.NoteReadable {
				h.line(i, s.name+" is told: "+a.Note.String(), "")
			}
		}
	}
	h.showState(i)
	if readable {
		// The application reads at once, which reopens the window.
		st, _ := s.tcb.Status()
		s.read += int(st.Unread)
		h.step(i, tcpfsm.Receive(st.Unread), fmt.Sprintf("%s reads %d bytes", s.name, st.Unread))
	}
}

// runUntil delivers packets and fires timers in time order until done.
func (h *host) runUntil(done func() bool) {
	for !done() {
		next := tcpfsm.Time(-1)
		for _, p := range h.wire {
			if next < 0 || p.arrive < next {
				next = p.arrive
			}
		}
		for _, s := range h.sides {
			if d, ok := s.tcb.NextDeadline(); ok && (next < 0 || d < next) {
				next = d
			}
		}
		if next < 0 {
			return
		}
		h.now = max(h.now, next)
		if len(h.wire) > 0 && h.wire[0].arrive <= h.now {
			p := h.wire[0]
			h.wire = h.wire[1:]
			// More: hold the reply until the application has read, so one
			// ACK both acknowledges the data and reopens the window.
			ev := tcpfsm.Arrive(&p.seg, 200)
			ev.More = len(p.seg.Payload) > 0
			h.step(p.to, ev, "")
			if ev.More && h.sides[p.to].tcb.State != tcpfsm.Closed {
				h.step(p.to, tcpfsm.Receive(0), "")
			}
			continue
		}
		for i, s := range h.sides {
			if d, ok := s.tcb.NextDeadline(); ok && d <= h.now {
				h.step(i, tcpfsm.Tick(), "timer fires at "+s.name)
			}
		}
	}
}

func (h *host) arrow(from int, seg *tcpfsm.Segment, lost bool) {
	text := seg.String()
	mark := ""
	if lost {
		mark = "  LOST"
	}
	if from == 0 {
		h.line(-1, fmt.Sprintf("──▶ %s%s", text, mark), "")
	} else {
		h.line(-1, fmt.Sprintf("◀── %s%s", text, mark), "")
	}
}

func (h *host) showState(i int) {
	s := h.sides[i]
	if s.tcb.State == s.state {
		return
	}
	s.state = s.tcb.State
	h.line(i, "", s.state.String())
}

// line prints one row: time, the client column, the middle, the server column.
func (h *host) line(i int, middle, state string) {
	left, right := "", ""
	switch i {
	case 0:
		left = state
	case 1:
		right = state
	}
	if state == "" && middle != "" && i >= 0 {
		middle = "(" + middle + ")"
	}
	ms := time.Duration(h.now).Milliseconds()
	fmt.Fprintf(h.w, "%6dms  %-13s %-66s %s\n", ms, left, middle, right)
}
