package tcpstack

import (
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Errors an Endpoint reports for the end of a connection (RFC 9293 MUST-12)
// and for calls it refuses.
var (
	ErrReset       = errors.New("tcpfsm: connection reset")
	ErrRefused     = errors.New("tcpfsm: connection refused")
	ErrTimeout     = errors.New("tcpfsm: connection timed out")
	ErrUserTimeout = errors.New("tcpfsm: connection aborted due to user timeout")
	ErrAborted     = errors.New("tcpfsm: connection aborted")
	ErrClosed      = errors.New("tcpfsm: endpoint closed")
	ErrWouldBlock  = errors.New("tcpfsm: operation would block")
)

// EndpointConfig sizes an Endpoint.
type EndpointConfig struct {
	tcpfsm.Config // the connection's TCP settings; Config.RecvBuffer sizes the receive buffer

	// SendBuffer is the most bytes written but not yet acknowledged.
	// Default 64 KiB. Unless Endpoint.SetSendBuffer sets a size, Write
	// holds no more than twice the largest window the peer has offered,
	// and no less than 16 KiB, so a slow reader's small window keeps
	// the buffer small.
	SendBuffer int
	// ISN chooses initial sequence numbers (RFC 6528). Default: an
	// ISNGenerator with a random key. Simulations and examples can supply
	// fixed ones.
	ISN ISNSource
}

// ISNSource chooses the initial sequence number of a connection.
// *ISNGenerator is the RFC 6528 one.
type ISNSource interface {
	ISN(local, remote netip.AddrPort, now tcpfsm.Time) tcpfsm.Seq
}

// FixedISN is an ISNSource that gives every connection the same initial
// sequence number: for examples and tests that want fixed traces. Only
// for a single connection at a time: RFC 9293 section 3.4.1 wants ISNs
// that change, and two incarnations of a connection from one FixedISN can
// mistake each other's segments. Tests of a Stack want SequentialISN.
type FixedISN tcpfsm.Seq

// ISN returns f.
func (f FixedISN) ISN(_, _ netip.AddrPort, _ tcpfsm.Time) tcpfsm.Seq { return tcpfsm.Seq(f) }

// SequentialISN is an ISNSource for tests: the first connection gets
// Next, each later one Step more (RFC 9293 section 3.4.1's clock-driven
// ISNs, with a test's clock). The zero value starts at 0 with steps of
// 0x10000. Not safe for concurrent use, as a Stack is not.
type SequentialISN struct {
	Next tcpfsm.Seq
	Step uint32
}

// ISN returns the next number of the sequence.
func (q *SequentialISN) ISN(_, _ netip.AddrPort, _ tcpfsm.Time) tcpfsm.Seq {
	n := q.Next
	step := q.Step
	if step == 0 {
		step = 0x10000
	}
	q.Next = n.Add(step)
	return n
}

// EndpointStats counts what an Endpoint saw and did.
type EndpointStats struct {
	BytesIn, BytesOut       uint64 // payload bytes accepted / sent (retransmissions included)
	SegmentsIn, SegmentsOut uint32
	Retransmits             uint32 // data segments sent again
	// Packets given to Endpoint.Input and dropped because the checksum
	// failed (RFC 9293 MUST-3) or ParseSegment refused them. A Stack
	// checks both before it knows the connection, so it counts them in
	// Stats and these stay zero for its endpoints.
	BadChecksum, Malformed uint32
	Drops                  [tcpfsm.NumDropReasons]uint32 // by DropReason
}

// endpointCounters is what an Endpoint keeps of EndpointStats: the
// checksum and parse failures are kept in endpointShared (a standalone
// endpoint's own) and drop reason r is at drops[r-1], so an idle endpoint
// stays small.
type endpointCounters struct {
	bytesIn, bytesOut       uint64
	segmentsIn, segmentsOut uint32
	retransmits             uint32
	// Two fields that are not counters sit here, where the counters
	// leave four bytes of padding: sndLimitKiB is the send buffer's size
	// for this connection in KiB, if the application set one below the
	// configured size (SetSendBuffer), 0 if not; notes are the notes not
	// yet taken (TakeNotes).
	sndLimitKiB uint16
	notes       tcpfsm.NoteSet
	// drops counts drops by reason, drop reason r at [r-1]; made at the
	// first drop, so a connection that drops nothing keeps no counters.
	drops *[tcpfsm.NumDropReasons - 1]uint32
}

// Dropped returns how many segments were dropped for reason r.
func (s EndpointStats) Dropped(r tcpfsm.DropReason) uint32 {
	if int(r) < len(s.Drops) {
		return s.Drops[r]
	}
	return 0
}

// Endpoint is one TCP connection with its buffers: the state machine (a
// TCB), a send buffer and a receive buffer sized by the caller, and the
// wire format with checksums. It still does no I/O and starts no
// goroutines: the host hands it packets and asks it for packets.
//
// Host call order: Dial or Listen once; then, as things happen, Input
// every packet that arrives, Write and Read as the application does,
// Tick when the clock passes NextDeadline; after each of these, call
// Output until it returns 0 and send what it wrote. Every call takes the
// current time. An Endpoint is not safe for concurrent use.
//
// After the connection starts, nothing allocates: Input, Output, Write,
// Read and Tick work in the buffers made by NewEndpoint.
//
// The TCB tracks three ranges of out-of-order data; an Endpoint keeps up
// to 128 more out-of-order segments in its receive buffer and hands them to
// the TCB again when it can take them, so a sender does not have to
// resend them after heavy loss.
type Endpoint struct {
	tcb tcpfsm.TCB
	// key holds both ends' addresses and ports (without IPv6 zones): it is
	// also the endpoint's key in a stack's connection table.
	key  tuple
	bits epBits
	// status packs two small values into one byte, so an idle endpoint
	// stays in its allocation size class: in the low 4 bits why the
	// connection ended abnormally (an index into endErrors), in the high
	// 4 the Readiness the owning stack has yet to report (Stack.Ready).
	status uint8

	sh      *endpointShared // settings shared by a stack's endpoints
	io      *endpointIO     // buffers and output queue; a stack's idle endpoint has none
	timerAt tcpfsm.Time     // the deadline last armed on the owning stack's timing wheel; 0 if none

	stats endpointCounters

	value any // the host's (SetValue)
}

// epBits are an endpoint's conditions, packed: an idle connection in a
// stack is an Endpoint and little else, so every byte of it counts
// (the goal is at most 512 bytes a connection).
type epBits uint16

const (
	knownLocal  epBits = 1 << iota // key's local address is set
	knownRemote                    // key's remote address is set
	epConnected                    // the handshake completed
	epPeerFin                      // the peer's FIN arrived

	// The owning stack's bookkeeping; unused by a standalone endpoint.
	epOwned     // in the stack's connection table
	epInActive  // in the stack's list of endpoints with output waiting
	epHalfOpen  // counted in its port's listener backlog
	epForwarded // taken by the ListenAll listener (its backlog, not its port's)
	epReleased  // the application let go of it (Release): the stack may reuse it once it is done
	epPooled    // in the stack's list of endpoints to reuse

	knownBoth = knownLocal | knownRemote
)

// is reports whether all of b are set.
func (e *Endpoint) is(b epBits) bool { return e.bits&b == b }

// set sets or clears b.
func (e *Endpoint) set(b epBits, on bool) {
	if on {
		e.bits |= b
	} else {
		e.bits &^= b
	}
}

// setAddrs records the connection's two ends.
func (e *Endpoint) setAddrs(local, remote netip.AddrPort) {
	e.key = tupleOf(local, remote)
	e.bits |= knownBoth
}

// endpointIO is what an endpoint needs only while data moves: its two
// buffers and its output queue. A stack lends one to an endpoint while it
// holds data or has output waiting, and takes it back when it goes idle.
type endpointIO struct {
	snd ring // bytes from sndSeq: written, not yet acknowledged and released
	rcv ring // bytes from the TCB's rcvUser: received, not yet read

	// queue holds the segments to send, in order, from head on. Step
	// appends its actions here directly; stepWith keeps only the sends.
	queue []tcpfsm.Action
	head  int

	// sack holds, in queue order from sackHead on, the options of each
	// queued segment that carries SACK blocks (Header.SACK), taken from
	// the TCB right after the Step that sent it, as the TCB's contract
	// asks: its out-of-order data may change before Output encodes it.
	sack     []tcpfsm.Options
	sackHead int

	sndSeq   tcpfsm.Seq // sequence number of snd's first byte
	sentHigh tcpfsm.Seq // end of the highest data encoded so far (for Stats.Retransmits)

	// held is out-of-order data the TCB had no room for (its three ranges
	// were taken: DropOutOfOrderFull), kept in rcv at its place in the
	// stream and offered to the TCB again once it has moved on (replay).
	held      [maxHeld]heldRange
	nheld     uint8
	replaying bool       // a replay is under way: drops are not held again
	refused   bool       // the segment just replayed was dropped again
	mark      replayMark // what the TCB's answers depended on at the last replay

	// The owning stack keeps the buffers of a connection until keepUntil,
	// bufHold after its latest activity; listed says the endpoint is in
	// the stack's cooling list.
	keepUntil tcpfsm.Time
	listed    bool
}

// replayMark is what the TCB's answer to a Reoffer depends on: RCV.NXT
// and whether out-of-order ranges are taken.
type replayMark struct {
	rcvNxt tcpfsm.Seq
	ooo    bool
}

// maxHeld bounds the out-of-order segments an endpoint keeps beyond the
// TCB's ranges; more are dropped, as the TCB drops them.
const maxHeld = 128

// heldRange is one held segment's place in the stream.
type heldRange struct {
	seq tcpfsm.Seq
	n   uint32
}

// The errors an ended connection reports, by errCode.
var endErrors = [...]error{nil, ErrReset, ErrRefused, ErrTimeout, ErrUserTimeout, ErrAborted}

const (
	endReset uint8 = iota + 1
	endRefused
	endTimeout
	endUserTimeout
	endAborted
)

// endpointShared is what every endpoint of a Stack has in common (a
// standalone endpoint has its own): kept once, not per connection.
type endpointShared struct {
	isn     ISNSource
	sndSize int    // the send buffer's size
	rcvCap  int    // the receive buffer's size
	stack   *Stack // the owning stack, if any: it lends buffers only while they hold data

	// A standalone endpoint's EndpointStats.BadChecksum and Malformed
	// (a stack's endpoints share this, and count them in Stats).
	badChecksum, malformed uint32
}

// takeBuf returns a buffer of n bytes: from the owning stack's pool, or new.
func (e *Endpoint) takeBuf(n int) []byte {
	if s := e.sh.stack; s != nil {
		return s.takeBuf(n)
	}
	return make([]byte, n)
}

// signal records a change of readiness for the owning stack's report,
// unless the application released e.
func (e *Endpoint) signal(r Readiness) {
	if s := e.sh.stack; s != nil && s.cfg.Readiness && !e.is(epReleased) {
		s.signal(e, r)
	}
}

// minBuf is the size of the buffers a stack's endpoint first takes. They
// double as the data held needs, up to the configured sizes, so a
// connection that moves little data never costs the full buffers (nor
// the time to clear them).
const minBuf = 4096

// grow makes r's buffer hold at least need bytes (need is at most
// limit): the next power of two from minBuf, capped at limit, with the
// bytes held moved in order to its start. The old buffer goes back to
// the stack's pool.
func (e *Endpoint) grow(r *ring, need, limit int) {
	if need <= len(r.buf) {
		return
	}
	size := max(minBuf, len(r.buf))
	for size < need {
		size *= 2
	}
	nb := e.takeBuf(min(size, limit))
	if n := len(r.buf); n > 0 {
		i := r.start % n
		c := copy(nb, r.buf[i:])
		copy(nb[c:], r.buf[:i])
		if s := e.sh.stack; s != nil {
			s.putBuf(r.buf)
		}
	}
	r.end -= r.start
	r.start = 0
	r.buf = nb
}

// changed tells the owning stack that the application acted on the
// endpoint (output may wait, the deadline may have moved).
func (e *Endpoint) changed(now tcpfsm.Time) {
	if s := e.sh.stack; s != nil {
		s.after(e, now)
	}
}

// NewEndpoint returns an endpoint with buffers of the configured sizes.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	tcb, sh, err := compileEndpoint(cfg)
	if err != nil {
		return nil, err
	}
	return &Endpoint{
		tcb: tcb,
		sh:  sh,
		// A standalone endpoint makes its drop counters now: a drop
		// later allocates nothing.
		stats: endpointCounters{drops: new([tcpfsm.NumDropReasons - 1]uint32)},
		io: &endpointIO{
			snd:   ring{buf: make([]byte, sh.sndSize)},
			rcv:   ring{buf: make([]byte, sh.rcvCap)},
			queue: make([]tcpfsm.Action, 0, 8),
		},
	}, nil
}

// compileEndpoint checks cfg and returns a fresh TCB and the shared
// settings for endpoints made from it.
func compileEndpoint(cfg EndpointConfig) (tcpfsm.TCB, *endpointShared, error) {
	tcb, err := tcpfsm.NewTCB(cfg.Config)
	if err != nil {
		return tcpfsm.TCB{}, nil, err
	}
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = 64 << 10
	}
	if cfg.SendBuffer > tcpfsm.MaxSendBuffer {
		return tcpfsm.TCB{}, nil, tcpfsm.ErrConfigRange
	}
	if cfg.ISN == nil {
		cfg.ISN = tcpfsm.NewISNGenerator()
	}
	return tcb, &endpointShared{isn: cfg.ISN, sndSize: cfg.SendBuffer, rcvCap: tcb.RecvBuffer()}, nil
}

// Dial starts an active open from local to remote (RFC 9293 section
// 3.10.1). It returns ErrAddress if an address is invalid or the two are
// of different families.
func (e *Endpoint) Dial(local, remote netip.AddrPort, now tcpfsm.Time) error {
	if !local.IsValid() || !remote.IsValid() || !sameFamily(local.Addr(), remote.Addr()) {
		return tcpfsm.ErrAddress
	}
	if e.is(epOwned) {
		return tcpfsm.ErrConnectionExists // a stack's, until it lets go of it
	}
	iss := e.sh.isn.ISN(local, remote, now)
	if err := e.step(tcpfsm.Open(local.Port(), remote.Port(), iss), now); err != nil {
		return err
	}
	e.setAddrs(local, remote)
	e.sendFrom(iss.Add(1))
	return nil
}

// sendFrom says the send buffer starts at sequence number seq.
func (e *Endpoint) sendFrom(seq tcpfsm.Seq) {
	io := e.buffers()
	io.sndSeq, io.sentHigh = seq, seq
}

// Listen waits for a connection to local (a passive open). The first SYN
// that arrives fills in the remote address.
func (e *Endpoint) Listen(local netip.AddrPort, now tcpfsm.Time) error {
	if !local.IsValid() {
		return tcpfsm.ErrAddress
	}
	if e.is(epOwned) {
		return tcpfsm.ErrConnectionExists // a stack's, until it lets go of it
	}
	if err := e.step(tcpfsm.ListenOn(local.Port()), now); err != nil {
		return err
	}
	e.key = tupleOf(local, netip.AddrPort{})
	e.bits |= knownLocal
	return nil
}

// State returns the connection state.
func (e *Endpoint) State() tcpfsm.State { return e.tcb.State }

// TCB returns a copy of the connection's state machine.
func (e *Endpoint) TCB() tcpfsm.TCB { return e.tcb }

// LocalAddr returns the connection's local address (invalid until set).
// An IPv6 zone given to Dial or Listen is not kept.
func (e *Endpoint) LocalAddr() netip.AddrPort {
	if !e.is(knownLocal) {
		return netip.AddrPort{}
	}
	return e.key.Local()
}

// RemoteAddr returns the peer's address (invalid until known).
func (e *Endpoint) RemoteAddr() netip.AddrPort {
	if !e.is(knownRemote) {
		return netip.AddrPort{}
	}
	return e.key.Remote()
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() EndpointStats {
	c := &e.stats
	st := EndpointStats{BytesIn: c.bytesIn, BytesOut: c.bytesOut,
		SegmentsIn: c.segmentsIn, SegmentsOut: c.segmentsOut, Retransmits: c.retransmits}
	if c.drops != nil {
		copy(st.Drops[1:], c.drops[:])
	}
	if e.sh.stack == nil {
		st.BadChecksum, st.Malformed = e.sh.badChecksum, e.sh.malformed
	}
	return st
}

// SetValue keeps v with the connection, for the host: a host that wraps
// each Endpoint (as package host's Conn does) finds its wrapper again
// from the Endpoint a readiness report names, without a map.
func (e *Endpoint) SetValue(v any) { e.value = v }

// Value returns what SetValue kept, or nil.
func (e *Endpoint) Value() any { return e.value }

// Err returns why the connection ended abnormally: ErrReset, ErrRefused,
// ErrTimeout, ErrUserTimeout, ErrAborted; or nil.
func (e *Endpoint) Err() error { return endErrors[e.errCode()] }

// errCode returns why the connection ended abnormally, or 0.
func (e *Endpoint) errCode() uint8 { return e.status & 0x0f }

// pendingReady returns the readiness the owning stack has yet to report.
func (e *Endpoint) pendingReady() Readiness { return Readiness(e.status >> 4) }

// setPendingReady replaces it.
func (e *Endpoint) setPendingReady(r Readiness) { e.status = e.status&0x0f | uint8(r)<<4 }

// Connected reports whether the handshake has completed.
func (e *Endpoint) Connected() bool { return e.is(epConnected) }

// NextDeadline returns when the endpoint next needs a Tick.
func (e *Endpoint) NextDeadline() (tcpfsm.Time, bool) { return e.tcb.NextDeadline() }

// Tick fires the timers that are due at now.
func (e *Endpoint) Tick(now tcpfsm.Time) {
	_ = e.step(tcpfsm.Tick(), now)
}

// Input hands the endpoint one arriving TCP segment (from the TCP header
// on) with the IP addresses it came with. A segment with a bad checksum
// or malformed header is dropped and counted, and Input returns why; a
// segment the state machine drops is counted in Stats().Drops.
func (e *Endpoint) Input(tcp []byte, src, dst netip.Addr, now tcpfsm.Time) error {
	if !tcpfsm.VerifyChecksum(tcp, src, dst) {
		e.countBad(true)
		return errBadChecksum
	}
	seg, err := tcpfsm.ParseSegment(tcp)
	if err != nil {
		e.countBad(false)
		return err
	}
	return e.inputSegment(&seg, src, dst, now)
}

// InputVerified is Input for a segment whose checksum the link verified
// already (receive offload) or an authenticated tunnel vouches for; it may
// be a coalesced segment larger than the MSS (see Stack.InputVerified).
func (e *Endpoint) InputVerified(tcp []byte, src, dst netip.Addr, now tcpfsm.Time) error {
	if !sameFamily(src, dst) {
		e.countBad(false)
		return tcpfsm.ErrAddress
	}
	seg, err := tcpfsm.ParseSegment(tcp)
	if err != nil {
		e.countBad(false)
		return err
	}
	return e.inputSegment(&seg, src, dst, now)
}

// countBad counts a packet Input refused for a bad checksum or, if not
// checksum, a bad header: for a standalone endpoint in its own counters,
// for one of a stack's in the stack's.
func (e *Endpoint) countBad(checksum bool) {
	switch s := e.sh.stack; {
	case s != nil && checksum:
		s.stats.BadChecksum++
	case s != nil:
		s.stats.Malformed++
	case checksum:
		e.sh.badChecksum++
	default:
		e.sh.malformed++
	}
}

// inputSegment is Input after the checksum and parse.
func (e *Endpoint) inputSegment(seg *tcpfsm.Segment, src, dst netip.Addr, now tcpfsm.Time) error {
	e.stats.segmentsIn++
	if e.tcb.State == tcpfsm.Closed && !e.is(epOwned) {
		// No connection: the reset goes back where the segment came from
		// (RFC 9293 section 3.10.7.1). (A stack's endpoint keeps its key
		// while the stack holds it.)
		e.setAddrs(netip.AddrPortFrom(dst, seg.DstPort), netip.AddrPortFrom(src, seg.SrcPort))
	}
	if e.tcb.State == tcpfsm.Listen && seg.Flags&(tcpfsm.FlagSYN|tcpfsm.FlagACK|tcpfsm.FlagRST) == tcpfsm.FlagSYN {
		local := netip.AddrPortFrom(dst, e.key.lport)
		remote := netip.AddrPortFrom(src, seg.SrcPort)
		return e.acceptSYN(seg, local, remote, e.sh.isn.ISN(local, remote, now), now)
	}
	return e.stepSegment(seg, 0, now)
}

// acceptSYN takes a SYN in LISTEN, answering it from iss.
func (e *Endpoint) acceptSYN(seg *tcpfsm.Segment, local, remote netip.AddrPort, iss tcpfsm.Seq, now tcpfsm.Time) error {
	e.setAddrs(local, remote)
	e.sendFrom(iss.Add(1))
	return e.stepSegment(seg, iss, now)
}

// pending reports whether Output has a segment to write.
func (e *Endpoint) pending() bool { return e.io != nil && e.io.head < len(e.io.queue) }

// buffers returns the endpoint's buffers and queue, borrowing them from
// the stack if the endpoint is idle.
func (e *Endpoint) buffers() *endpointIO {
	if e.io == nil {
		// Only a stack's idle endpoints lack them, and an idle endpoint's
		// send buffer is empty: it starts at the end of the data written.
		e.io = e.sh.stack.takeIO()
		e.io.sndSeq, e.io.sentHigh = e.tcb.SndEnd(), e.tcb.SndEnd()
	}
	return e.io
}

var errBadChecksum = errors.New("tcpfsm: bad checksum")

func (e *Endpoint) stepSegment(seg *tcpfsm.Segment, iss tcpfsm.Seq, now tcpfsm.Time) error {
	return e.stepWith(tcpfsm.Arrive(seg, iss), seg, now)
}

// step applies a non-segment event.
func (e *Endpoint) step(ev tcpfsm.Event, now tcpfsm.Time) error { return e.stepWith(ev, nil, now) }

// stepWith steps the TCB and carries out its actions, q[base:] of the
// queue Step returns: data into the receive buffer, notes into the
// endpoint's state, counts. The actions are appended to the output queue
// itself, so the segments to send need no copy: they stay, moved down
// over the others.
func (e *Endpoint) stepWith(ev tcpfsm.Event, seg *tcpfsm.Segment, now tcpfsm.Time) error {
	io := e.buffers()
	base := len(io.queue)
	if base == 0 {
		if io.sack == nil {
			io.sack = make([]tcpfsm.Options, 0, 4) // once per buffer set, not during a loss
		}
		io.sack, io.sackHead = io.sack[:0], 0
	}
	q, err := e.tcb.Step(ev, now, io.queue)
	if err != nil {
		return err // Step added nothing
	}
	w := base
	for i := base; i < len(q); i++ {
		a := &q[i]
		switch a.Kind {
		case tcpfsm.ActSend:
			if a.Header.SACK {
				s := e.tcb.SegmentOf(a)
				io.sack = append(io.sack, s.Options)
			}
			if w != i {
				q[w] = *a
			}
			w++
		case tcpfsm.ActAccept:
			if !io.replaying { // a replayed segment's bytes are in place
				off := int(a.DataSeq.Diff(e.tcb.RcvUser()))
				e.grow(&io.rcv, off+int(a.DataLen), e.sh.rcvCap)
				io.rcv.writeAt(off, seg.Payload[a.Offset:a.Offset+a.DataLen])
			}
			e.stats.bytesIn += uint64(a.DataLen)
			e.signal(ReadyRead)
		case tcpfsm.ActNotify:
			e.stats.notes = e.stats.notes.With(a.Note)
			switch a.Note {
			case tcpfsm.NoteConnected:
				e.bits |= epConnected
				e.signal(ReadyWrite)
			case tcpfsm.NotePeerClosed:
				e.bits |= epPeerFin
				e.signal(ReadyRead)
			case tcpfsm.NoteSendAcked:
				// Released in Output, once no queued segment needs them.
				e.signal(ReadyWrite)
			case tcpfsm.NoteReset:
				e.fail(endReset)
			case tcpfsm.NoteRefused:
				e.fail(endRefused)
			case tcpfsm.NoteTimedOut:
				e.fail(endTimeout)
			case tcpfsm.NoteUserTimeout:
				e.fail(endUserTimeout)
			case tcpfsm.NoteAborted:
				e.fail(endAborted)
			}
		case tcpfsm.ActDrop:
			if a.Drop == tcpfsm.DropOutOfOrderFull {
				e.hold(seg)
				if io.replaying {
					continue // counted when it first arrived
				}
			}
			if r := int(a.Drop) - 1; uint(r) < uint(tcpfsm.NumDropReasons-1) {
				if e.stats.drops == nil {
					e.stats.drops = new([tcpfsm.NumDropReasons - 1]uint32)
				}
				e.stats.drops[r]++
			}
		}
	}
	io.queue = q[:w]
	if io.nheld > 0 && !io.replaying {
		e.replay(now)
	}
	return nil
}

// hold keeps seg, which the TCB dropped for want of an out-of-order range,
// in the receive buffer at its place in the stream, if it fits there.
func (e *Endpoint) hold(seg *tcpfsm.Segment) {
	io := e.io
	if io.replaying || seg == nil {
		io.refused = true
		return
	}
	n := uint32(len(seg.Payload))
	if n == 0 || int(io.nheld) == len(io.held) || seg.Seq.LessThan(e.tcb.RcvNxt) {
		return
	}
	off := seg.Seq.Diff(e.tcb.RcvUser())
	if uint64(off)+uint64(n) > uint64(e.sh.rcvCap) {
		return
	}
	e.grow(&io.rcv, int(off)+int(n), e.sh.rcvCap)
	io.rcv.writeAt(int(off), seg.Payload)
	io.held[io.nheld] = heldRange{seg.Seq, n}
	io.nheld++
}

// replay offers the held segments to the TCB again (Reoffer) while it
// takes any: each one it takes, or no longer wants, leaves the list; each
// it refuses for want of room stays. It runs only when RCV.NXT or the
// TCB's out-of-order data changed since the last pass, the only things
// the TCB's answer depends on.
func (e *Endpoint) replay(now tcpfsm.Time) {
	io := e.io
	mark := replayMark{e.tcb.RcvNxt, e.tcb.HoldsOutOfOrder()}
	if mark == io.mark {
		return
	}
	io.replaying = true
	defer func() { io.replaying = false }()
	for progress := true; progress && io.nheld > 0; {
		progress = false
		w := 0
		for _, h := range io.held[:io.nheld] {
			io.refused = false
			_ = e.stepWith(tcpfsm.Reoffer(h.seq, h.n), nil, now)
			if io.refused {
				io.held[w] = h
				w++
			} else {
				progress = true
			}
		}
		io.nheld = uint8(w)
	}
	io.mark = replayMark{e.tcb.RcvNxt, e.tcb.HoldsOutOfOrder()}
}

func (e *Endpoint) fail(code uint8) {
	if e.errCode() == 0 {
		e.status |= code
	}
	e.signal(ReadyRead | ReadyWrite | ReadyClosed)
	e.io.snd.reset() // fail runs inside stepWith, which lent the buffers
}

// Output encodes the next segment to send into buf, with its checksum,
// and returns its length and the addresses for its IP header, as
// Stack.Output does; 0 means nothing is waiting. buf must hold the
// largest segment: MSS plus 60 header bytes. The returned bytes are the
// TCP segment; the host adds the IP header.
func (e *Endpoint) Output(buf []byte, now tcpfsm.Time) (n int, src, dst netip.Addr) {
	if n = e.output(buf); n > 0 {
		src, dst = e.addrs()
	}
	return n, src, dst
}

// addrs returns the connection's local and remote addresses (invalid
// while unknown).
func (e *Endpoint) addrs() (local, remote netip.Addr) {
	if e.is(knownLocal) {
		local = e.key.addr(&e.key.local)
	}
	if e.is(knownRemote) {
		remote = e.key.addr(&e.key.remote)
	}
	return local, remote
}

// output is Output without the addresses.
func (e *Endpoint) output(buf []byte) int {
	io := e.io
	if io == nil {
		return 0
	}
	for io.head < len(io.queue) {
		a := &io.queue[io.head]
		io.head++
		if n := e.encode(buf, a); n > 0 {
			if io.head == len(io.queue) {
				io.queue, io.head = io.queue[:0], 0
			}
			e.release()
			return n
		}
	}
	io.queue = io.queue[:0]
	io.head = 0
	e.release()
	return 0
}

// encode writes one queued segment and returns its length, with its
// checksum for the connection's addresses if both are known; it skips
// (0) one whose data the buffer no longer holds because it was
// acknowledged meanwhile.
func (e *Endpoint) encode(buf []byte, a *tcpfsm.Action) int {
	var b []byte
	hl := 0
	if a.Header.SACK {
		if b, hl = e.encodeSACK(buf, a); b == nil {
			return 0
		}
	} else {
		// Any segment without the TCB's SACK blocks is encoded from
		// the action alone, which AppendSegment and HeaderLen take
		// without reading the TCB. Its length is known to fit if buf
		// holds the largest header and the data.
		if len(buf) < tcpfsm.HeaderLen+tcpfsm.MaxOptionsLen+int(a.DataLen) &&
			e.tcb.HeaderLen(a)+int(a.DataLen) > len(buf) {
			return 0
		}
		if a.DataLen > 0 && !e.holds(a) {
			return 0
		}
		b = e.tcb.AppendSegment(buf[:0], a, nil)
		hl = len(b)
	}
	if a.DataLen > 0 {
		b = b[:hl+int(a.DataLen)]
		io := e.io
		io.snd.readAt(int(a.DataSeq.Diff(io.sndSeq)), b[hl:])
		e.stats.bytesOut += uint64(a.DataLen)
		if end := a.DataSeq.Add(a.DataLen); end.LessThanEq(io.sentHigh) {
			e.stats.retransmits++
		} else {
			io.sentHigh = end
		}
	}
	if e.is(knownBoth) {
		_ = tcpfsm.SetChecksum(b, e.key.addr(&e.key.local), e.key.addr(&e.key.remote))
	}
	e.stats.segmentsOut++
	return len(b)
}

// encodeSACK writes the header of a segment with the TCB's SACK blocks,
// with the options stepWith kept for it, and returns it and its length;
// nil if the segment does not fit in buf or its data is gone (see encode).
func (e *Endpoint) encodeSACK(buf []byte, a *tcpfsm.Action) ([]byte, int) {
	s := e.io.segment(a, true)
	hl := s.HeaderLen()
	if hl+int(a.DataLen) > len(buf) || a.DataLen > 0 && !e.holds(a) {
		return nil, 0
	}
	return s.AppendTo(buf[:0]), hl
}

// holds reports whether the send buffer still holds the data of the
// queued segment a.
func (e *Endpoint) holds(a *tcpfsm.Action) bool {
	io := e.io
	return !a.DataSeq.LessThan(io.sndSeq) && int(a.DataSeq.Diff(io.sndSeq))+int(a.DataLen) <= io.snd.len()
}

// segment returns the segment the queued ActSend a, which carries SACK
// blocks, describes, with the options stepWith kept for it; take says a
// leaves the queue.
func (io *endpointIO) segment(a *tcpfsm.Action, take bool) tcpfsm.Segment {
	s := a.Segment()
	s.Options = io.sack[io.sackHead]
	if take {
		io.sackHead++
	}
	return s
}

// release frees the send buffer up to SND.UNA, keeping bytes a queued
// segment still needs. Small enough to inline: most calls find nothing
// acknowledged since the last.
func (e *Endpoint) release() {
	if io := e.io; io != nil && int32(io.sndSeq-e.tcb.SndUna) < 0 { // io.sndSeq.LessThan(SndUna), within the inlining budget
		e.releaseAcked()
	}
}

// releaseAcked is release when the send buffer starts before SND.UNA.
func (e *Endpoint) releaseAcked() {
	io := e.io
	keep := e.tcb.SndUna
	for i := io.head; i < len(io.queue); i++ {
		// A queued segment whose bytes were released already (it will be
		// skipped) must not pull keep below sndSeq.
		if a := &io.queue[i]; a.DataLen > 0 && a.DataSeq.LessThan(keep) && !a.DataSeq.LessThan(io.sndSeq) {
			keep = a.DataSeq
		}
	}
	if io.sndSeq.LessThan(keep) {
		n := min(int(keep.Diff(io.sndSeq)), io.snd.len())
		io.snd.discard(n)
		io.sndSeq = io.sndSeq.Add(uint32(n))
	}
}

// Write queues bytes of p for sending, as many as the send buffer has room
// for, and returns how many. It returns ErrWouldBlock if none fit, and
// the connection's error after it ended.
func (e *Endpoint) Write(p []byte, now tcpfsm.Time) (int, error) {
	if e.errCode() != 0 {
		return 0, e.Err()
	}
	e.release()
	io := e.buffers()
	n := min(len(p), max(e.sendBuffer()-io.snd.len(), 0))
	if n == 0 {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, ErrWouldBlock
	}
	if err := e.step(tcpfsm.Send(uint32(n)), now); err != nil {
		return 0, err
	}
	e.grow(&io.snd, io.snd.len()+n, e.sh.sndSize)
	io.snd.write(p[:n])
	e.changed(now)
	return n, nil
}

// Read copies received bytes into p and returns how many. It returns
// io.EOF once the peer has closed and everything was read, ErrWouldBlock
// when nothing is there yet, and the connection's error after a reset.
func (e *Endpoint) Read(p []byte, now tcpfsm.Time) (int, error) {
	avail := int(e.tcb.Unread())
	if avail == 0 || e.tcb.State == tcpfsm.Closed {
		switch {
		case e.errCode() != 0:
			return 0, e.Err()
		case e.is(epPeerFin):
			return 0, io.EOF
		case len(p) == 0:
			return 0, nil
		}
		return 0, ErrWouldBlock
	}
	n := min(len(p), avail)
	e.io.rcv.readAt(0, p[:n]) // unread data means the buffers are lent
	e.io.rcv.discard(n)
	if err := e.step(tcpfsm.Receive(uint32(n)), now); err != nil {
		return n, err
	}
	e.changed(now)
	return n, nil
}

// Buffered returns how many received bytes wait to be read.
func (e *Endpoint) Buffered() int {
	if e.tcb.State == tcpfsm.Closed || e.tcb.State == tcpfsm.Listen || e.tcb.State == tcpfsm.SynSent {
		return 0
	}
	return int(e.tcb.Unread())
}

// CloseWrite closes the sending half: a FIN follows the queued data, and
// the endpoint goes on receiving (RFC 9293 section 3.10.4, MAY-1).
func (e *Endpoint) CloseWrite(now tcpfsm.Time) error {
	err := e.step(tcpfsm.Close(), now)
	e.changed(now)
	return err
}

// Close closes both halves. Unread data, or data that arrives later,
// resets the connection instead (RFC 9293 SHLD-3).
func (e *Endpoint) Close(now tcpfsm.Time) error {
	err := e.step(tcpfsm.CloseFull(), now)
	e.changed(now)
	return err
}

// minSendBuffer is the least the send buffer shrinks to for a peer that
// offers small windows (see sendBuffer).
const minSendBuffer = 16 << 10

// sendBuffer returns the most bytes Write may hold unacknowledged: the
// size SetSendBuffer set, or else the configured size, held to twice the
// largest window the peer has offered (MAX.SND.WND, RFC 9293 section
// 3.8.6.2.1) but to no less than minSendBuffer (or the configured size,
// if that is less). At most a window's worth
// can be in flight, so twice it keeps a window queued behind the flight
// while the writer refills; more would only hold a slow reader's bytes in
// memory, as Linux's send-buffer autotuning also avoids.
func (e *Endpoint) sendBuffer() int {
	if e.stats.sndLimitKiB != 0 {
		return int(e.stats.sndLimitKiB) << 10
	}
	n := e.sh.sndSize
	if w := uint64(e.tcb.MaxSndWnd); w != 0 && 2*w < uint64(n) { // in 64 bits: a scaled window reaches 2^30
		n = max(int(2*w), min(minSendBuffer, n))
	}
	return n
}

// SetSendBuffer limits the bytes written but not yet acknowledged to n
// rounded up to a whole KiB, at most the configured
// EndpointConfig.SendBuffer, as SO_SNDBUF does for a socket: that size
// is then held in full, whatever the peer's window. A larger n, or 0,
// means the configured size, held to twice the peer's largest window as
// EndpointConfig.SendBuffer says. Data already written stays.
func (e *Endpoint) SetSendBuffer(n int) {
	if n <= 0 || n >= e.sh.sndSize || n > 0xffff<<10 {
		e.stats.sndLimitKiB = 0
		return
	}
	e.stats.sndLimitKiB = uint16((n + 1023) >> 10)
}

// TakeNotes returns the notes the state machine gave since the last call
// (connected, readable, peer-closed, close-done, stalled, reset, ...:
// RFC 9293 section 3.9.2), and forgets them.
func (e *Endpoint) TakeNotes() tcpfsm.NoteSet {
	n := e.stats.notes
	e.stats.notes = 0
	return n
}

// SetNoDelay turns the Nagle algorithm off (on true) or back on for this
// connection (RFC 9293 MUST-17); data it held may go at once.
func (e *Endpoint) SetNoDelay(on bool, now tcpfsm.Time) error {
	err := e.step(tcpfsm.SetNoDelay(on), now)
	e.changed(now)
	return err
}

// SetKeepAlive turns keep-alive probes on after idle without a segment
// from the peer, or off if idle is 0 (RFC 9293 section 3.8.4); probes
// then follow Config.KeepaliveInterval and KeepaliveCount.
func (e *Endpoint) SetKeepAlive(idle time.Duration, now tcpfsm.Time) error {
	err := e.step(tcpfsm.SetKeepAlive(idle), now)
	e.changed(now)
	return err
}

// Release says the application is done with e: it will make no more
// calls on e and keeps no reference to it, so the owning Stack may give
// e to a later connection (Dial, or a SYN at a listener) once this one
// no longer needs it, and a steady stream of connections then allocates
// none. A connection still open is first closed as Close closes it (RFC
// 9293 section 3.10.4); its FIN, the retransmissions and TIME-WAIT go on
// as before, with the Stack's own use of e. Data not yet read is
// discarded, as Close discards it. The Stack reports nothing more of e
// in Ready.
//
// Release only an endpoint the application got from Dial, DialFrom or
// Accept. As with sync.Pool's Put, a call on e after Release is a bug
// that the Stack cannot detect: e may already be another connection. A second
// Release does nothing. A standalone endpoint (NewEndpoint) is only
// closed; the garbage collector takes it once unreferenced.
func (e *Endpoint) Release(now tcpfsm.Time) {
	if e.is(epReleased) {
		return
	}
	e.bits |= epReleased
	switch e.tcb.State {
	case tcpfsm.Closing, tcpfsm.LastAck, tcpfsm.TimeWait, tcpfsm.Closed:
		// Both FINs are sent or the connection is over: Close would
		// change nothing unless data waits unread.
		if e.Buffered() == 0 {
			break
		}
		fallthrough
	default:
		_ = e.step(tcpfsm.CloseFull(), now)
	}
	if s := e.sh.stack; s != nil {
		s.after(e, now)
		s.reclaim(e)
	}
}

// Abort resets the connection (RFC 9293 section 3.10.5).
func (e *Endpoint) Abort(now tcpfsm.Time) error {
	err := e.step(tcpfsm.Abort(), now)
	e.changed(now)
	return err
}

// ring is a fixed-size byte ring.
type ring struct {
	buf        []byte
	start, end int // end-start bytes held; both grow forever, taken mod len
}

func (r *ring) len() int { return r.end - r.start }
func (r *ring) reset()   { r.start, r.end = 0, 0 }

// write appends p (the caller checked free space).
func (r *ring) write(p []byte) {
	r.copyIn(r.end, p)
	r.end += len(p)
}

// writeAt stores p at offset off from the start, extending the held
// length if it reaches past the end (out-of-order data leaves a gap that
// later bytes fill).
func (r *ring) writeAt(off int, p []byte) {
	if off < 0 || off+len(p) > len(r.buf) {
		return // outside the buffer: the TCB's window prevents this
	}
	r.copyIn(r.start+off, p)
}

func (r *ring) copyIn(pos int, p []byte) {
	n := len(r.buf)
	if n == 0 {
		return
	}
	i := pos % n
	if c := copy(r.buf[i:], p); c < len(p) {
		copy(r.buf, p[c:]) // wrapped around
	}
}

// readAt copies len(p) bytes from offset off.
func (r *ring) readAt(off int, p []byte) {
	n := len(r.buf)
	if n == 0 {
		return
	}
	i := (r.start + off) % n
	if c := copy(p, r.buf[i:]); c < len(p) {
		copy(p[c:], r.buf) // wrapped around
	}
}

// discard drops n bytes from the start.
func (r *ring) discard(n int) {
	r.start += n
	if r.end < r.start {
		r.end = r.start
	}
	if len(r.buf) > 0 && r.start >= len(r.buf) { // keep the counters small
		r.start -= len(r.buf)
		r.end -= len(r.buf)
	}
}

// sameFamily reports whether a and b are both valid and both IPv4 (or
// IPv4-mapped) or both IPv6, as a pseudo-header needs.
func sameFamily(a, b netip.Addr) bool {
	return a.IsValid() && b.IsValid() && a.Unmap().Is4() == b.Unmap().Is4()
}
