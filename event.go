package tcpfsm

import (
	"strconv"
	"time"
)

// EventKind says what happened: a user call, an arriving segment, or time
// passing (RFC 9293 section 3.10 lists these three kinds of event).
type EventKind uint8

// The events Step accepts.
const (
	// EvOpen is an active OPEN (RFC 9293 section 3.10.1): send a SYN with
	// Event.ISS to Event.RemotePort from Event.LocalPort.
	EvOpen EventKind = iota + 1
	// EvListen is a passive OPEN: wait in LISTEN on Event.LocalPort. A SYN
	// that arrives later needs Event.ISS on its EvSegment.
	EvListen
	// EvSend queues Event.N more bytes of the user's stream for sending
	// (RFC 9293 section 3.10.2). The host holds the bytes.
	EvSend
	// EvReceive says the user consumed Event.N bytes of received data,
	// which frees receive window (RFC 9293 section 3.10.3).
	EvReceive
	// EvClose closes our half of the connection: a FIN follows the queued
	// data (RFC 9293 section 3.10.4). With Event.Full the user reads no
	// more either: unread data, or new data that arrives later, resets the
	// connection (RFC 9293 SHLD-3).
	EvClose
	// EvAbort resets the connection (RFC 9293 section 3.10.5).
	EvAbort
	// EvSegment is a segment from the peer (RFC 9293 section 3.10.7).
	// Event.Seg holds it; its payload is not retained. Event.ISS is used if
	// the TCB is in LISTEN and the segment is a SYN. Event.More says more
	// segments of the same batch follow, so the ACK may wait for the last
	// (RFC 9293 MUST-58, MUST-59).
	EvSegment
	// EvTick says time has passed: timers due at or before now fire
	// (RFC 9293 section 3.10.8).
	EvTick
	// EvPathMTU says the path MTU fell: Event.N is the largest segment
	// payload the path now carries (the MTU less the IP and TCP headers).
	// Later segments, retransmissions included, fit it (RFC 9293 SHLD-6).
	// It never raises the MSS, and never below 64 bytes.
	EvPathMTU
	// EvReoffer offers again Event.N bytes of the peer's stream from
	// sequence number Event.Seq, which the host kept after an arriving
	// segment carrying them was dropped with DropOutOfOrderFull (the TCB
	// tracks a few out-of-order ranges; a host may keep more segments than
	// that, RFC 9293 SHLD-31). The bytes stay where the host put them, at
	// Seq less RcvUser in its receive buffer. If the TCB takes any, it
	// appends an ActAccept for them; if it still has no room, an ActDrop
	// with DropOutOfOrderFull, and nothing is sent, so the host may offer
	// them again later. Otherwise (the bytes arrived again meanwhile, or
	// the connection takes no more data) nothing: the host forgets them.
	EvReoffer
	// EvNoDelay turns the Nagle algorithm off (Event.N 1) or on (0) for
	// this connection, whatever Config said (RFC 9293 MUST-17: an
	// application must be able to turn it off per connection).
	EvNoDelay
	// EvKeepAlive turns keep-alives on, probing after Event.N seconds of
	// idleness (capped at 32767), or off (Event.N 0), whatever Config said
	// (RFC 9293 section 3.8.4, MUST-24: per connection, off by default).
	EvKeepAlive
	// EvFlush ends a batch of segments stepped with Event.More: the ACK
	// they are owed, and whatever else may be sent, goes now (RFC 9293
	// MUST-58, MUST-59: one ACK for a batch of segments).
	EvFlush

	numEventKinds // one past the last kind: the size of tables by kind
)

var eventNames = [numEventKinds]string{"", "open", "listen", "send", "receive", "close", "abort", "segment", "tick", "path-mtu", "reoffer", "no-delay", "keep-alive", "flush"}

// String returns the event kind's name, such as "segment".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is the input of one Step. It is a tagged struct: Kind says which
// fields matter. Building one does not allocate.
type Event struct {
	Kind       EventKind
	More       bool     // EvSegment: more input follows before output is wanted; hold the ACK
	Urgent     bool     // EvSend: the bytes are urgent data (RFC 9293 section 3.10.2)
	Full       bool     // EvClose: the user reads no more either (RFC 9293 SHLD-3)
	LocalPort  uint16   // EvOpen, EvListen
	RemotePort uint16   // EvOpen
	ISS        Seq      // EvOpen; EvSegment carrying a SYN to a TCB in LISTEN
	N          uint32   // EvSend, EvReceive, EvPathMTU, EvReoffer: a byte count
	Seq        Seq      // EvReoffer: the sequence number of the first byte offered
	Seg        *Segment // EvSegment: the arriving segment, read but not kept
}

// Open returns an active-open event.
func Open(localPort, remotePort uint16, iss Seq) Event {
	return Event{Kind: EvOpen, LocalPort: localPort, RemotePort: remotePort, ISS: iss}
}

// ListenOn returns a passive-open event for localPort.
func ListenOn(localPort uint16) Event { return Event{Kind: EvListen, LocalPort: localPort} }

// Send returns an event that queues n bytes for sending.
func Send(n uint32) Event { return Event{Kind: EvSend, N: n} }

// SendUrgent returns an event that queues n bytes of urgent data: the
// urgent pointer will point just past them (RFC 9293 MUST-30, MUST-62).
func SendUrgent(n uint32) Event { return Event{Kind: EvSend, N: n, Urgent: true} }

// PathMTU returns an event that lowers the send MSS to mss bytes.
func PathMTU(mss uint32) Event { return Event{Kind: EvPathMTU, N: mss} }

// Receive returns an event that says the user consumed n received bytes.
func Receive(n uint32) Event { return Event{Kind: EvReceive, N: n} }

// Close returns a CLOSE event: a FIN follows the queued data, and the
// user may go on receiving (RFC 9293 section 3.10.4).
func Close() Event { return Event{Kind: EvClose} }

// CloseFull returns a close event after which the user reads no more:
// unread data resets the connection at once, and so does new data that
// arrives later (RFC 9293 SHLD-3). It may follow a Close.
func CloseFull() Event { return Event{Kind: EvClose, Full: true} }

// Abort returns an ABORT event: the connection is reset (RFC 9293
// section 3.10.5).
func Abort() Event { return Event{Kind: EvAbort} }

// Arrive returns a segment-arrival event. iss is used only if the TCB is
// in LISTEN and s is a SYN.
func Arrive(s *Segment, iss Seq) Event { return Event{Kind: EvSegment, Seg: s, ISS: iss} }

// Reoffer returns an event that offers again n bytes of the peer's stream
// from seq, kept by the host after a DropOutOfOrderFull (EvReoffer).
func Reoffer(seq Seq, n uint32) Event { return Event{Kind: EvReoffer, Seq: seq, N: n} }

// SetNoDelay returns an event that turns the Nagle algorithm off (on
// true) or back on for this connection (RFC 9293 MUST-17).
func SetNoDelay(on bool) Event {
	ev := Event{Kind: EvNoDelay}
	if on {
		ev.N = 1
	}
	return ev
}

// SetKeepAlive returns an event that turns keep-alives on, probing after
// idle (whole seconds, at least 1, at most 32767), or off if idle is 0
// (RFC 9293 section 3.8.4).
func SetKeepAlive(idle time.Duration) Event {
	ev := Event{Kind: EvKeepAlive}
	if idle > 0 {
		ev.N = uint32(min(max((idle+time.Second-1)/time.Second, 1), 32767))
	}
	return ev
}

// Flush returns an event that ends a batch of segments stepped with
// Event.More (EvFlush).
func Flush() Event { return Event{Kind: EvFlush} }

// Tick returns a time-passing event.
func Tick() Event { return Event{Kind: EvTick} }

// ActionKind says what the host must do.
type ActionKind uint8

// The actions Step appends.
const (
	// ActSend: transmit the segment Action.Header describes, with
	// sequence number Action.DataSeq. Its payload is Action.DataLen bytes
	// of the send stream from Action.DataSeq on; the host copies them from
	// its send buffer (byte i of the stream, counted from 0, has sequence
	// number ISS+1+i). TCB.AppendSegment encodes it, TCB.SegmentOf
	// returns it as a Segment (RFC 9293 section 3.1).
	ActSend ActionKind = iota + 1
	// ActAccept: keep Action.DataLen bytes of the arriving segment's
	// payload, starting at Action.Offset, as stream bytes from sequence
	// number Action.DataSeq. Bytes below TCB.RcvNxt are readable in order;
	// bytes beyond it are out of order and become readable once the gap
	// before them fills.
	ActAccept
	// ActNotify: tell the user Action.Note (with Action.N for byte counts).
	ActNotify
	// ActTimer: timer Action.Timer now fires at Action.Deadline, or is
	// stopped if Action.Deadline is zero. Only with Config.TimerActions:
	// the TCB keeps the deadlines, and TCB.NextDeadline says when the next
	// one falls.
	ActTimer
	// ActDrop: the segment was dropped for Action.Drop. Hosts count these.
	ActDrop
)

var actionNames = [...]string{"", "send", "accept", "notify", "timer", "drop"}

// String returns the action kind's name, such as "send".
func (k ActionKind) String() string {
	if int(k) < len(actionNames) && k != 0 {
		return actionNames[k]
	}
	return "ActionKind(" + strconv.Itoa(int(k)) + ")"
}

// Note is a notification for the user (RFC 9293 section 3.9.2 and MUST-12).
type Note uint8

// The notifications.
const (
	NoteConnected   Note = iota + 1 // the connection reached ESTABLISHED
	NoteSendAcked                   // Action.N bytes of sent data were acknowledged
	NoteReadable                    // in-order data is ready to read (RCV.NXT moved)
	NotePeerClosed                  // the peer's FIN arrived: end of stream after the data already accepted
	NoteCloseDone                   // our FIN was acknowledged (the RFC's "ok" to CLOSE)
	NoteClosed                      // the connection ended normally (TIME-WAIT or LAST-ACK done)
	NoteReset                       // "connection reset": the peer reset the connection
	NoteRefused                     // "connection refused": a RST answered our SYN
	NoteTimedOut                    // retransmission gave up (R2) and the connection closed
	NoteUserTimeout                 // "connection aborted due to user timeout"
	NoteStalled                     // retransmissions reached R1: negative advice (MUST-20, SHLD-9)
	NoteReopen                      // a SYN in TIME-WAIT may start a new incarnation (RFC 6191)
	NoteAborted                     // our user aborted the connection
	NoteUrgent                      // the peer sent urgent data; Status.Urgent says how far (MUST-32)

	numNotes // one past the last note: the size of tables by note
)

var noteNames = [numNotes]string{"", "connected", "send-acked", "readable", "peer-closed", "close-done",
	"closed", "reset", "refused", "timed-out", "user-timeout", "stalled", "reopen", "aborted", "urgent"}

// NoteSet is a set of Notes, a bit each: what a host that does not act on
// every note as it comes keeps of them (RFC 9293 section 3.9.2 leaves
// how the user is told to the implementation).
type NoteSet uint16

// A NoteSet holds every Note.
var _ [16 - numNotes]struct{}

// Has reports whether n is in the set.
func (s NoteSet) Has(n Note) bool { return n < 16 && s&(1<<n) != 0 }

// With returns the set with n added.
func (s NoteSet) With(n Note) NoteSet {
	if n >= 16 {
		return s
	}
	return s | 1<<n
}

// String lists the notes, such as "connected|readable"; "" for none.
func (s NoteSet) String() string {
	var b []byte
	for n := Note(1); n < numNotes; n++ {
		if s.Has(n) {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, n.String()...)
		}
	}
	return string(b)
}

// String returns the note's name, such as "peer-closed".
func (n Note) String() string {
	if int(n) < len(noteNames) && n != 0 {
		return noteNames[n]
	}
	return "Note(" + strconv.Itoa(int(n)) + ")"
}

// DropReason says why an arriving segment was dropped. Each is documented
// behaviour of RFC 9293 section 3.10.7; hosts count them.
type DropReason uint8

// The drop reasons.
const (
	DropClosed          DropReason = iota + 1 // no connection (a RST is sent unless the segment was one)
	DropListenNotSYN                          // LISTEN: not a SYN (RST, ACK, or neither)
	DropSynSentBadACK                         // SYN-SENT: ACK outside (ISS, SND.NXT]
	DropSynSentNoSYN                          // SYN-SENT: neither SYN nor acceptable RST
	DropUnacceptable                          // sequence number outside the receive window
	DropRSTNotExact                           // RST in window but not at RCV.NXT (challenge ACK sent)
	DropSYNSynchronized                       // SYN in a synchronized state (challenge ACK sent)
	DropNoACK                                 // ACK bit off past the SYN check
	DropBadACK                                // ACK outside the acceptable range (RFC 5961 section 5.2)
	DropRateLimited                           // a challenge ACK was due but the rate limit held it back
	DropTimeWaitRST                           // RST in TIME-WAIT, ignored per RFC 1337
	DropAfterFIN                              // text after the peer's FIN, ignored
	DropOutOfOrderFull                        // out-of-order data with no free reassembly slot
	DropNotOurs                               // ports do not match this connection
	DropPAWS                                  // timestamp older than TS.Recent (RFC 7323 section 5)
	DropNoTimestamp                           // timestamps agreed but the segment has none (RFC 7323 section 3.2)

	NumDropReasons // one past the last reason: the size of tables by reason
)

var dropNames = [NumDropReasons]string{"", "closed", "listen-not-syn", "syn-sent-bad-ack", "syn-sent-no-syn",
	"unacceptable", "rst-not-exact", "syn-synchronized", "no-ack", "bad-ack", "rate-limited",
	"time-wait-rst", "after-fin", "out-of-order-full", "not-ours", "paws", "no-timestamp"}

// String returns the reason's name, such as "unacceptable".
func (r DropReason) String() string {
	if int(r) < len(dropNames) && r != 0 {
		return dropNames[r]
	}
	return "DropReason(" + strconv.Itoa(int(r)) + ")"
}

// Action is one output of Step, what RFC 9293 section 3.10 says to do in
// answer to an event: a tagged struct whose Kind says which fields matter. Actions are appended to a caller-supplied slice, so a
// Step allocates nothing once the slice has room. An Action is 64 bytes:
// an ActSend describes its segment by the header fields the TCB cannot
// work out again later (Header), and TCB.SegmentOf or TCB.AppendSegment
// adds the rest.
type Action struct {
	Deadline Time       // ActTimer: when the timer fires; zero if stopped
	Kind     ActionKind // what the host must do
	Note     Note       // ActNotify
	Timer    TimerKind  // ActTimer
	Drop     DropReason // ActDrop
	N        uint32     // ActNotify with NoteSendAcked: bytes acknowledged
	DataSeq  Seq        // ActAccept: sequence number of the first data byte; ActSend: SEG.SEQ, the first data byte's if DataLen > 0
	DataLen  uint32     // ActSend, ActAccept: data bytes
	Offset   uint32     // ActAccept: offset of the first byte in the arriving payload
	Header   Header     // ActSend: the segment's header
}

// Header is the header of a segment an ActSend sends (RFC 9293 section
// 3.1), but for three fields: the sequence number is Action.DataSeq, the
// checksum is the host's to compute over the encoded bytes (SetChecksum),
// and the SACK blocks that describe the TCB's out-of-order data (RFC 2018
// section 4) are only marked by SACK: TCB.SegmentOf and
// TCB.AppendSegment read them from the TCB when the host encodes the
// segment, which it must do before it steps that TCB again.
type Header struct {
	SrcPort, DstPort uint16    // the ports, as on the wire
	Ack              Seq       // SEG.ACK, if Flags has FlagACK
	TSVal, TSEcr     uint32    // the timestamps option's values (RFC 7323 section 3), if Options has OptTimestamps
	DSACK            SACKBlock // a D-SACK block, sent first among the SACK blocks (RFC 2883 section 4); none if empty
	Window           uint16    // SEG.WND as carried: the window shifted right by our scale (RFC 7323 section 2.3)
	Urgent           uint16    // SEG.UP, if Flags has FlagURG (RFC 9293 section 3.8.5)
	MSS              uint16    // the MSS option's value (RFC 9293 section 3.7.1), if Options has OptMSS
	Flags            Flags     // the control bits
	Options          OptionSet // the options carried, besides SACK blocks
	WindowScale      uint8     // the window scale option's shift (RFC 7323 section 2.2), if Options has OptWindowScale
	SACK             bool      // the segment carries SACK blocks for the TCB's out-of-order data (RFC 2018 section 4)
}

// Segment returns the segment a describes, an ActSend, without payload
// (RFC 9293 section 3.1). Its SACK blocks are only a's D-SACK block, if
// any: if a.Header.SACK is set, TCB.SegmentOf adds those of the TCB's
// out-of-order data.
func (a *Action) Segment() (s Segment) {
	a.fill(&s)
	return s
}

// fill sets the fields of s, a zero Segment, that a describes.
func (a *Action) fill(s *Segment) {
	h := &a.Header
	s.SrcPort, s.DstPort = h.SrcPort, h.DstPort
	s.Seq, s.Ack, s.Flags = a.DataSeq, h.Ack, h.Flags
	s.Window, s.Urgent = h.Window, h.Urgent
	s.Options.Present = h.Options
	s.Options.MSS, s.Options.WindowScale = h.MSS, h.WindowScale
	s.Options.TSVal, s.Options.TSEcr = h.TSVal, h.TSEcr
	if h.DSACK.Left != h.DSACK.Right {
		s.Options.SACK[0] = h.DSACK
		s.Options.NumSACK = 1
	}
}

// String describes the action in one line, for traces and test failures.
// An ActSend is shown as tcpdump shows its segment (Segment.String),
// with its D-SACK block but not the SACK blocks it takes from the TCB:
// " +sack" at the end says it has those (Header.SACK).
func (a Action) String() string {
	b := []byte(a.Kind.String())
	switch a.Kind {
	case ActSend:
		b = append(b, ' ')
		s := a.Segment()
		b = s.appendText(b, a.DataLen)
		if a.Header.SACK {
			b = append(b, " +sack"...)
		}
	case ActAccept:
		b = append(b, " seq "...)
		b = strconv.AppendUint(b, uint64(a.DataSeq), 10)
		b = append(b, " len "...)
		b = strconv.AppendUint(b, uint64(a.DataLen), 10)
		b = append(b, " from offset "...)
		b = strconv.AppendUint(b, uint64(a.Offset), 10)
	case ActNotify:
		b = append(b, ' ')
		b = append(b, a.Note.String()...)
		if a.Note == NoteSendAcked {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(a.N), 10)
		}
	case ActTimer:
		b = append(b, ' ')
		b = append(b, a.Timer.String()...)
		if a.Deadline == 0 {
			b = append(b, " stopped"...)
		} else {
			b = append(b, " at "...)
			b = append(b, a.Deadline.String()...)
		}
	case ActDrop:
		b = append(b, ' ')
		b = append(b, a.Drop.String()...)
	}
	return string(b)
}

// CallError is the error a user call returns when the current state does
// not allow it (RFC 9293 sections 3.10.1 to 3.10.6). The TCB is unchanged.
type CallError uint8

// The user-call errors, worded as RFC 9293 words them.
const (
	ErrConnectionExists       CallError = iota + 1 // "connection already exists"
	ErrConnectionDoesNotExist                      // "connection does not exist"
	ErrConnectionClosing                           // "connection closing"
	ErrInsufficientResources                       // "insufficient resources"
	ErrRemoteUnspecified                           // "remote socket unspecified"
	ErrBadEvent                                    // the event's Kind is not one Step knows
)

var callErrorText = [...]string{"", "connection already exists", "connection does not exist",
	"connection closing", "insufficient resources", "remote socket unspecified", "unknown event kind"}

// Error returns "tcpfsm: " and the RFC's wording, such as
// "tcpfsm: connection closing".
func (e CallError) Error() string {
	if int(e) < len(callErrorText) && e != 0 {
		return "tcpfsm: " + callErrorText[e]
	}
	return "tcpfsm: CallError(" + strconv.Itoa(int(e)) + ")"
}
