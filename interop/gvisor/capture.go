package gvisor

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/trace"
)

// Dir is the way a segment crosses the link.
type Dir uint8

const (
	ToGVisor Dir = iota // sent by tcpfsm, toward netstack
	ToTcpfsm            // sent by netstack (or injected), toward tcpfsm
)

func (d Dir) String() string {
	if d == ToGVisor {
		return "tcpfsm>gvisor"
	}
	return "gvisor>tcpfsm"
}

// Fate is what happened to a segment at one point of the link.
type Fate uint8

const (
	Sent      Fate = iota // its sender handed it to the link
	Lost                  // the link dropped it
	Delivered             // the link handed it to the receiver
	Probe                 // not a segment: netstack's sender state after it processed one
)

func (f Fate) String() string {
	return [...]string{"sent", "LOST", "dlvd", "state"}[f]
}

// Event is one record of a Capture.
type Event struct {
	At    time.Duration // since the Capture started
	Dir   Dir
	Fate  Fate
	Seg   []byte       // the TCP segment, from its header on (nil for Probe)
	State *SenderState // for Probe
}

// SenderState is the part of netstack's endpoint state (as its TCP probe
// reports it after each segment it processes) that decides whether it
// retransmits.
type SenderState struct {
	SndUna, SndNxt uint32
	Outstanding    int // packets netstack counts in flight; postXmit arms its retransmission timer only while this is above zero
	SackedOut      int
	SndCwnd        int
	Ssthresh       int
	DupAckCount    int
	RTO            time.Duration
	FastRecovery   bool
	RecoveryFirst  uint32
	RecoveryLast   uint32
	HighRxt        uint32
	Reord          bool
	DSACKSeen      bool
	RackRTT        time.Duration // RACK's RTT of the segment last acknowledged
	ReoWnd         time.Duration // RACK's reordering window
	RcvNxt         uint32
	Scoreboard     []header.SACKBlock // SACKed ranges netstack holds
	SndWnd         uint32
	Closed         bool
	LastSendTime   time.Duration // when it last sent, since the Capture started (to a few microseconds)
}

// Capture records every segment that crosses a Peer's link, both ways,
// with its fate and time, and netstack's sender state after each segment
// it processes. It keeps everything in memory; the test writes it out
// when a transfer fails or is slow.
type Capture struct {
	mu     sync.Mutex
	queued []time.Duration // when netstack queued each packet the link has not read yet
	early  int             // packets read before their queueing was stamped
	start  time.Time
	mono   tcpip.MonotonicTime // netstack's clock when its probe first ran
	monoAt time.Duration       // and the Capture's then
	monoOK bool
	events []Event
}

// NewCapture returns an empty Capture whose times count from now.
func NewCapture() *Capture { return &Capture{start: time.Now()} }

func (c *Capture) add(d Dir, f Fate, seg []byte) {
	if c == nil {
		return
	}
	c.addAt(time.Since(c.start), d, f, seg)
}

func (c *Capture) addAt(at time.Duration, d Dir, f Fate, seg []byte) {
	b := append([]byte(nil), seg...)
	c.mu.Lock()
	c.events = append(c.events, Event{At: at, Dir: d, Fate: f, Seg: b})
	c.mu.Unlock()
}

// stampQueued notes that netstack has just queued a packet on the link
// (its channel endpoint calls the link's WriteNotify then, on the
// sending goroutine): the time the packet left netstack.
func (c *Capture) stampQueued() {
	if c == nil {
		return
	}
	at := time.Since(c.start)
	c.mu.Lock()
	if c.early > 0 {
		c.early-- // the link read it already, and stamped it then
	} else {
		c.queued = append(c.queued, at)
	}
	c.mu.Unlock()
}

// takeQueued returns when netstack queued the packet the link has just
// read (packets are read in the order they were queued).
func (c *Capture) takeQueued() time.Duration {
	at := time.Since(c.start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queued) == 0 {
		c.early++ // read between queueing and its notification
		return at
	}
	at = c.queued[0]
	c.queued = c.queued[1:]
	return at
}

// probe is netstack's TCP probe: it runs on netstack's goroutine, with
// the endpoint locked, after each segment the endpoint processes.
func (c *Capture) probe(s *tcp.TCPEndpointState) {
	at := time.Since(c.start)
	snd := &s.Sender
	st := &SenderState{
		SndUna: uint32(snd.SndUna), SndNxt: uint32(snd.SndNxt), Outstanding: snd.Outstanding,
		SackedOut: snd.SackedOut, SndCwnd: snd.SndCwnd, Ssthresh: snd.Ssthresh, DupAckCount: snd.DupAckCount,
		RTO: snd.RTO, FastRecovery: snd.FastRecovery.Active, RecoveryFirst: uint32(snd.FastRecovery.First),
		RecoveryLast: uint32(snd.FastRecovery.Last), HighRxt: uint32(snd.FastRecovery.HighRxt),
		Reord: snd.RACKState.Reord, DSACKSeen: snd.RACKState.DSACKSeen, RackRTT: snd.RACKState.RTT,
		ReoWnd: snd.RACKState.ReoWnd, RcvNxt: uint32(s.Receiver.RcvNxt),
		Scoreboard: s.SACK.ReceivedBlocks, SndWnd: uint32(snd.SndWnd), Closed: snd.Closed,
	}
	c.mu.Lock()
	if !c.monoOK {
		c.mono, c.monoAt, c.monoOK = s.SegTime, at, true
	}
	st.LastSendTime = c.monoAt + snd.LastSendTime.Sub(c.mono)
	c.events = append(c.events, Event{At: at, Fate: Probe, State: st})
	c.mu.Unlock()
}

// Events returns a copy of the records so far, in the order of their
// times (netstack's packets are recorded when the link reads them, with
// the earlier time netstack queued them).
func (c *Capture) Events() []Event {
	c.mu.Lock()
	events := append([]Event(nil), c.events...)
	c.mu.Unlock()
	slices.SortStableFunc(events, func(a, b Event) int { return cmp.Compare(a.At, b.At) })
	return events
}

// A pcap view: which records a pcap file holds.
const (
	TcpfsmView = iota // what tcpfsm sent and what it received
	GVisorView        // what netstack sent and what it received
)

// WritePcap writes the segments one side saw, as raw IPv4 packets
// between peer (netstack) and us (tcpfsm), at the times they crossed
// that side's edge of the link.
func (c *Capture) WritePcap(w io.Writer, view int, peer, us netip.Addr) error {
	pw, err := trace.NewPcapWriter(w, c.start)
	if err != nil {
		return err
	}
	for _, e := range c.Events() {
		src, dst := us, peer
		if e.Dir == ToTcpfsm {
			src, dst = peer, us
		}
		ours := (e.Dir == ToGVisor) == (view == TcpfsmView)
		if e.Fate == Probe || ours && e.Fate != Sent || !ours && e.Fate != Delivered {
			continue
		}
		if err := pw.WriteSegment(tcpfsm.Time(e.At), src, dst, e.Seg); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes every record, one a line, with sequence and
// acknowledgment numbers relative to each side's initial sequence number
// (taken from the SYNs, when the capture holds them).
func (c *Capture) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	events := c.Events()
	var isn [2]uint32 // by the Dir of the SYN's sender
	var seen [2]bool
	for _, e := range events {
		if e.Fate != Sent && e.Fate != Delivered {
			continue
		}
		if s, err := tcpfsm.ParseSegment(e.Seg); err == nil && s.Flags&tcpfsm.FlagSYN != 0 && !seen[e.Dir] {
			isn[e.Dir], seen[e.Dir] = uint32(s.Seq), true
		}
	}
	fmt.Fprintf(bw, "# ISN tcpfsm %d, gVisor %d; numbers below are relative to them\n", isn[ToGVisor], isn[ToTcpfsm])
	for _, e := range events {
		fmt.Fprintf(bw, "%12.6f ", e.At.Seconds())
		if e.Fate == Probe {
			writeState(bw, e.State, isn[ToTcpfsm], isn[ToGVisor])
			continue
		}
		fmt.Fprintf(bw, "%s %s ", e.Dir, e.Fate)
		s, err := tcpfsm.ParseSegment(e.Seg)
		if err != nil {
			fmt.Fprintf(bw, "unparsable: %v\n", err)
			continue
		}
		own, other := isn[e.Dir], isn[1-e.Dir]
		fmt.Fprintf(bw, "[%v]", s.Flags)
		if n := len(s.Payload); n > 0 || s.Flags&(tcpfsm.FlagSYN|tcpfsm.FlagFIN) != 0 {
			fmt.Fprintf(bw, " seq %d:%d", uint32(s.Seq)-own, uint32(s.Seq)-own+uint32(n))
		}
		if s.Flags&tcpfsm.FlagACK != 0 {
			fmt.Fprintf(bw, " ack %d", uint32(s.Ack)-other)
		}
		fmt.Fprintf(bw, " win %d", s.Window)
		o := &s.Options
		if o.Has(tcpfsm.OptTimestamps) {
			fmt.Fprintf(bw, " ts %d/%d", o.TSVal, o.TSEcr)
		}
		if o.NumSACK > 0 {
			fmt.Fprint(bw, " sack")
			for _, b := range o.SACKBlocks() {
				fmt.Fprintf(bw, " %d-%d", uint32(b.Left)-other, uint32(b.Right)-other)
			}
		}
		fmt.Fprintf(bw, " len %d\n", len(s.Payload))
	}
	return bw.Flush()
}

func writeState(w io.Writer, s *SenderState, sndISN, rcvISN uint32) {
	fmt.Fprintf(w, "  gvisor sender: una %d nxt %d outstanding %d sackedOut %d cwnd %d ssthresh %d dupacks %d rto %v recovery %v",
		s.SndUna-sndISN, s.SndNxt-sndISN, s.Outstanding, s.SackedOut, s.SndCwnd, s.Ssthresh, s.DupAckCount, s.RTO, s.FastRecovery)
	if s.FastRecovery {
		fmt.Fprintf(w, " [%d,%d] highRxt %d", s.RecoveryFirst-sndISN, s.RecoveryLast-sndISN, s.HighRxt-sndISN)
	}
	fmt.Fprintf(w, " reord %v dsack %v rackrtt %v reownd %v sndwnd %d rcvnxt %d",
		s.Reord, s.DSACKSeen, s.RackRTT, s.ReoWnd, s.SndWnd, s.RcvNxt-rcvISN)
	if len(s.Scoreboard) > 0 {
		fmt.Fprint(w, " scoreboard")
		for _, b := range s.Scoreboard {
			fmt.Fprintf(w, " %d-%d", uint32(b.Start)-sndISN, uint32(b.End)-sndISN)
		}
	}
	fmt.Fprintf(w, " lastsend %.6f\n", s.LastSendTime.Seconds())
}

// WriteReplay writes what a replay of netstack's side of the capture
// needs (see TestGVisorLosesItsRetransmissionTimer): to pw, a pcap file
// of the segments netstack sent and received, timed as they left it and
// reached it, from the handshake and then from tcpfsm's first FIN on,
// each cut after its TCP header; to sw, netstack's sender state after
// each segment it processed from that FIN on, one a line: the time, when
// it last sent, SND.UNA and SND.NXT relative to its ISN, Outstanding,
// SackedOut, cwnd and whether it was in recovery. Times are seconds
// since the first segment.
func (c *Capture) WriteReplay(pw, sw io.Writer, peer, us netip.Addr) error {
	events := c.Events()
	var view []Event // netstack's side
	for _, e := range events {
		if e.Fate == Sent && e.Dir == ToTcpfsm || e.Fate == Delivered && e.Dir == ToGVisor {
			view = append(view, e)
		}
	}
	if len(view) < 3 {
		return fmt.Errorf("the capture holds %d segments on netstack's side, not a handshake", len(view))
	}
	syn, err := tcpfsm.ParseSegment(view[0].Seg)
	if err != nil {
		return err
	}
	var synAck tcpfsm.Segment
	if synAck, err = tcpfsm.ParseSegment(view[1].Seg); err != nil {
		return err
	}
	gISN := uint32(synAck.Seq)
	if view[0].Dir == ToTcpfsm {
		gISN = uint32(syn.Seq)
	}
	finAt, finEnd := time.Duration(-1), uint32(0)
	for _, e := range view {
		s, err := tcpfsm.ParseSegment(e.Seg)
		if err == nil && e.Dir == ToGVisor && s.Flags&tcpfsm.FlagFIN != 0 {
			finAt, finEnd = e.At, uint32(s.Seq)+uint32(len(s.Payload))+1
			break
		}
	}
	if finAt < 0 {
		return errors.New("the capture holds no FIN from tcpfsm")
	}
	t0 := view[0].At
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 80) // snap length: IPv4 and TCP headers
	binary.LittleEndian.PutUint32(h[20:], trace.LinkTypeRaw)
	if _, err := pw.Write(h[:]); err != nil {
		return err
	}
	for i, e := range view {
		if i >= 3 && e.At < finAt {
			continue
		}
		src, dst := us, peer
		if e.Dir == ToTcpfsm {
			src, dst = peer, us
		}
		doff := int(e.Seg[12]>>4) * 4
		total := 20 + len(e.Seg)
		ip := []byte{0x45, 0, byte(total >> 8), byte(total), 0, 0, 0x40, 0, 64, tcpfsm.ProtocolTCP, 0, 0}
		a, b := src.As4(), dst.As4()
		ip = append(append(ip, a[:]...), b[:]...)
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
		rec := append(ip, e.Seg[:doff]...)
		at := e.At - t0
		var rh [16]byte
		binary.LittleEndian.PutUint32(rh[0:], uint32(at/time.Second))
		binary.LittleEndian.PutUint32(rh[4:], uint32(at%time.Second/time.Microsecond))
		binary.LittleEndian.PutUint32(rh[8:], uint32(len(rec)))
		binary.LittleEndian.PutUint32(rh[12:], uint32(total))
		if _, err := pw.Write(append(rh[:], rec...)); err != nil {
			return err
		}
	}
	bw := bufio.NewWriter(sw)
	fmt.Fprintln(bw, "# netstack's sender after each segment it processed from tcpfsm's FIN on, from its TCP probe:")
	fmt.Fprintln(bw, "# seconds since the first segment, when it last sent, SND.UNA, SND.NXT (relative to its ISN), Outstanding, SackedOut, cwnd, in recovery")
	started := false
	for _, e := range events {
		if e.Fate != Probe {
			continue
		}
		st := e.State
		if !started && st.RcvNxt != finEnd {
			continue
		}
		started = true
		fmt.Fprintf(bw, "%.6f %.6f %d %d %d %d %d %v\n", (e.At - t0).Seconds(), (st.LastSendTime - t0).Seconds(),
			st.SndUna-gISN, st.SndNxt-gISN, st.Outstanding, st.SackedOut, st.SndCwnd, st.FastRecovery)
	}
	return bw.Flush()
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// LastState returns netstack's sender state after the last segment it
// processed, or nil.
func (c *Capture) LastState() *SenderState {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.events) - 1; i >= 0; i-- {
		if c.events[i].Fate == Probe {
			return c.events[i].State
		}
	}
	return nil
}

// SinceSent returns how long ago netstack last sent a segment, or since
// the capture started.
func (c *Capture) SinceSent() time.Duration {
	now := time.Since(c.start)
	c.mu.Lock()
	defer c.mu.Unlock()
	last := time.Duration(0)
	for _, e := range c.events {
		if e.Dir == ToTcpfsm && e.Fate == Sent && e.At > last {
			last = e.At
		}
	}
	return now - last
}
