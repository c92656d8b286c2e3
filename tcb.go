package tcpfsm

import (
	"time"
)

// TCB is the transmission control block of one connection (RFC 9293
// section 3.3.1): every variable of the connection's state, as a plain value
// with no pointers. Copy it to snapshot a connection, compare copies to test
// it, replay events into a copy to reproduce a run.
//
// The exported fields carry the RFC's names and are there to be read:
// Step maintains them, and changing one by hand breaks its invariants. The
// zero TCB is a CLOSED connection with the default Config; NewTCB makes one
// with other settings.
type TCB struct {
	// Send sequence variables (RFC 9293 section 3.3.1).
	Iss       Seq    // ISS: initial send sequence number
	SndUna    Seq    // SND.UNA: oldest unacknowledged sequence number
	SndNxt    Seq    // SND.NXT: next new sequence number to send
	SndWnd    uint32 // SND.WND: the peer's window, scaled
	SndWl1    Seq    // SND.WL1: SEG.SEQ of the segment last used to update SND.WND
	SndWl2    Seq    // SND.WL2: SEG.ACK of the segment last used to update SND.WND
	MaxSndWnd uint32 // MAX.SND.WND: the largest window the peer offered (RFC 5961 section 5.2)

	// Receive sequence variables.
	Irs    Seq // IRS: the peer's initial sequence number
	RcvNxt Seq // RCV.NXT: next sequence number expected

	sndEnd      Seq       // sequence number after the last byte the user queued
	sndRtx      Seq       // where retransmission resumes; equals SndNxt when none is pending
	rcvUser     Seq       // next sequence number the user will consume
	rcvAdv      Seq       // right edge of the window last advertised: RCV.NXT+RCV.WND
	finSeq      Seq       // sequence number of the peer's FIN, when flagFinPending
	lastAckSent Seq       // RCV.NXT in the last ACK sent (Last.ACK.sent, RFC 7323 section 4.3)
	tsRecent    uint32    // TS.Recent (RFC 7323 section 4.3)
	recover     Seq       // the recovery point (RFC 6582 section 3.2)
	rcvUp       Seq       // RCV.UP: the peer's urgent pointer (RFC 9293 section 3.10.7.4)
	sndUp       Seq       // SND.UP: our urgent pointer (RFC 9293 section 3.10.2)
	rttSeq      Seq       // the ACK that ends the RTT measurement
	srtt        uint32    // SRTT in microseconds (RFC 6298)
	rttvar      uint32    // RTTVAR in microseconds
	rto         uint32    // current RTO in microseconds, with backoff
	cwnd        uint32    // congestion window in bytes (RFC 5681)
	ssthresh    uint32    // slow-start threshold in bytes
	cubicWMax   uint32    // CUBIC W_max in bytes (RFC 9438); the window at the latest loss (before any, with HyStart, its RTT record: hystart.go)
	cubicEpoch  uint32    // CUBIC epoch start in milliseconds; 0 when none (in recovery with PRR, its counts: prr.go)
	rtxStart    uint32    // when the segment being retransmitted was first sent, in ms
	rttStart    uint32    // when the timed segment was sent, in µs
	lastSend    uint32    // when data was last sent, in ms (RFC 5681 section 4.1)
	ooo         rangeSet  // out-of-order data held by the host, beyond RCV.NXT
	sacked      sackBoard // ranges the peer reported by SACK, beyond SND.UNA

	timers  [numSlots]Time      // deadlines; zero means stopped
	lastRcv Time                // when the last segment arrived
	tkind   [numSlots]TimerKind // which timer each slot holds

	State      State  // the connection state
	retries    uint8  // timeouts of the segment at SND.UNA, or zero-window probes sent
	chCount    uint8  // challenge ACKs sent in the current second
	chSec      uint8  // the second (mod 256) chCount counts
	keepProbes uint8  // unanswered keep-alive probes
	dupAcks    uint8  // duplicate ACKs in a row (RFC 5681 section 2)
	shifts     uint8  // window scale shifts: ours (Rcv.Wind.Shift) low, the peer's high
	oooLast    uint8  // index in ooo of the range the latest out-of-order segment joined
	quickAcks  uint8  // in-order segments still to be ACKed at once after out-of-order data
	flags      flags  // conditions of the connection
	sndMSS     uint16 // effective send MSS (RFC 9293 MUST-16)
	LocalPort  uint16 // our port
	RemotePort uint16 // the peer's port
	rcvMSS     uint16 // the largest segment text received: the peer's full size, as seen
	cfg        settings
	// mark is a sequence number two loss detectors remember, which never
	// run at once: with flagProbe, the first sequence number of the tail
	// loss probe of new data, or with flagProbeRtx too, SND.NXT when the
	// retransmitted probe went (TLPHighRxt); with flagRtxMark (only in
	// recovery, when no probe is outstanding), SND.NXT at the latest
	// retransmission, so data from there on was sent after every
	// retransmission so far. With neither, in the initial slow start
	// with Config.HyStart, it is the end of HyStart's round (hystart.go).
	mark Seq
}

type flags uint32

const (
	flagPassive     flags = 1 << iota // SYN-RECEIVED came from LISTEN (MUST-11)
	flagAckNow                        // an ACK is owed and goes out with the next output
	flagAckDelayed                    // an ACK is owed and may wait for the delayed-ACK timer
	flagCloseCalled                   // the user called CLOSE: a FIN follows the queued data
	flagFinSent                       // our FIN has been sent; it holds sequence number sndEnd
	flagFinRcvd                       // the peer's FIN has been processed
	flagFinPending                    // the peer's FIN arrived beyond a hole, at finSeq
	flagSynRetx                       // our SYN or SYN-ACK was retransmitted (RFC 6298 5.7, RFC 5681 3.1)
	flagRttTiming                     // a segment is being timed for an RTT sample
	flagHaveRtt                       // SRTT and RTTVAR hold a sample
	flagTS                            // timestamps are in use (RFC 7323 section 3.2)
	flagSACK                          // the peer sent SACK-permitted (RFC 2018 section 2)
	flagPeerWS                        // the peer's SYN carried window scale
	flagPeerTS                        // the peer's SYN carried timestamps
	flagRecovery                      // in fast recovery (RFC 6582)
	flagUrgSignaled                   // the user was told of the current urgent data
	flagUrgPending                    // SND.UP is ahead of SND.UNA: send URG
	flagSmallSent                     // a sub-MSS segment is unacknowledged (Nagle, with Minshall's variant)
	flagProbe                         // a tail loss probe is outstanding, from mark (RFC 8985 section 7.3)
	flagRtxMark                       // in recovery, mark is SND.NXT at the latest retransmission
	flagProbeRtx                      // with flagProbe: the probe was a retransmission and mark is SND.NXT when it went (RFC 8985 section 7.4)
	flagReadShut                      // the user closed with CloseFull: new data resets the connection (RFC 9293 SHLD-3)
	flagFinAlone                      // with flagFinSent: our FIN went in a segment of its own, the highest one sent
)

// MaxSendBuffer is the largest send buffer a host may keep: the most
// data a connection holds in sequence space (sent but unacknowledged
// plus queued), so every window stays below 2^30 and sequence
// comparisons stay exact (RFC 7323 section 2.3).
const MaxSendBuffer = maxQueued

// maxQueued bounds the data a connection holds in sequence space (sent but
// unacknowledged plus queued), so every window stays below 2^30 and
// sequence comparisons stay exact (RFC 7323 section 2.3).
const maxQueued = 1 << 30

// NewTCB returns a CLOSED TCB with the settings of cfg, or an error if cfg
// breaks a requirement (see Config.Validate).
func NewTCB(cfg Config) (TCB, error) {
	s, err := cfg.compile()
	if err != nil {
		return TCB{}, err
	}
	return TCB{cfg: s}, nil
}

// RcvWnd returns RCV.WND, the receive window last advertised: how far past
// RCV.NXT the peer may send (RFC 9293 section 3.3.1).
func (t *TCB) RcvWnd() uint32 {
	if t.rcvAdv.LessThan(t.RcvNxt) {
		return 0
	}
	return t.rcvAdv.Diff(t.RcvNxt)
}

// The accessors below are what a host that keeps the connection's bytes
// (its send and receive buffers) reads from the TCB. They change nothing.

// SndEnd returns the sequence number after the last byte the user queued
// with Send: the host's send buffer holds the bytes from SND.UNA (or the
// first byte it has not released) up to here (RFC 9293 section 3.3.1,
// figure 3, and section 3.10.2).
func (t *TCB) SndEnd() Seq { return t.sndEnd }

// RcvUser returns the sequence number of the next received byte the user
// will consume (the bytes from here to RCV.NXT were accepted and wait in
// the host's receive buffer; RFC 9293 section 3.3.1, figure 4, and
// section 3.10.3). An ActAccept's data goes at its DataSeq less RcvUser
// in that buffer.
func (t *TCB) RcvUser() Seq { return t.rcvUser }

// Unread returns how many bytes were received in order and not yet
// consumed with Receive (RFC 9293 section 3.10.3): RCV.NXT less RcvUser,
// not counting the peer's FIN.
func (t *TCB) Unread() uint32 { return t.RcvNxt.Diff(t.rcvUser) - t.finBit() }

// HoldsOutOfOrder reports whether the TCB tracks out-of-order data beyond
// RCV.NXT, whose bytes the host keeps in its receive buffer (RFC 9293
// SHLD-31).
func (t *TCB) HoldsOutOfOrder() bool { return count(t.ooo[:]) > 0 }

// TSRecent returns TS.Recent, the timestamp the peer sent last in a
// segment that advanced the left edge of the window (RFC 7323 section
// 4.3); 0 without timestamps.
func (t *TCB) TSRecent() uint32 { return t.tsRecent }

// RecvBuffer returns the size of receive buffer the TCB's windows assume
// (Config.RecvBuffer, or its default): the host's receive buffer must
// hold this many bytes from RcvUser on (RFC 9293 section 3.8.6).
func (t *TCB) RecvBuffer() int { return int(t.cfg.rcvBuf) }

// WindowScale returns the window scale the TCB offers in its SYN or
// SYN-ACK (Rcv.Wind.Shift, RFC 7323 section 2.2): the smallest that lets
// RecvBuffer be advertised.
func (t *TCB) WindowScale() uint8 { return t.cfg.wscale() }

// Status is what the STATUS call returns (RFC 9293 section 3.10.6).
type Status struct {
	State      State
	LocalPort  uint16
	RemotePort uint16
	SndUna     Seq
	SndNxt     Seq
	SndWnd     uint32
	RcvNxt     Seq
	RcvWnd     uint32
	Unsent     uint32        // bytes queued but not yet sent
	InFlight   uint32        // sequence numbers sent but not acknowledged
	Unread     uint32        // bytes received in order and not yet consumed by the user
	SendMSS    uint16        // effective send MSS
	SRTT       time.Duration // smoothed RTT (zero before the first sample)
	RTTVar     time.Duration // RTT variation
	RTO        time.Duration // the retransmission timeout in force
	Cwnd       uint32        // congestion window
	Ssthresh   uint32        // slow-start threshold
	Retries    int           // timeouts of the oldest unacknowledged segment
	SndShift   uint8         // Snd.Wind.Shift: the peer's window scale (RFC 7323)
	RcvShift   uint8         // Rcv.Wind.Shift: ours
	Timestamps bool          // timestamps in use (RFC 7323)
	SACK       bool          // the peer accepts SACK blocks (RFC 2018)
	Recovery   bool          // in fast recovery (RFC 6582)
	DupACKs    int           // duplicate ACKs in a row (RFC 5681 section 2)
	SACKed     uint32        // bytes beyond SND.UNA the peer has SACKed (RFC 2018 section 4)
	Urgent     uint32        // unread bytes up to the peer's urgent pointer (RFC 9293 MUST-33)
}

// Status returns the connection's status, or ErrConnectionDoesNotExist in
// CLOSED (RFC 9293 section 3.10.6).
func (t *TCB) Status() (Status, error) {
	if t.State == Closed {
		return Status{}, ErrConnectionDoesNotExist
	}
	return Status{
		State: t.State, LocalPort: t.LocalPort, RemotePort: t.RemotePort,
		SndUna: t.SndUna, SndNxt: t.SndNxt, SndWnd: t.SndWnd,
		RcvNxt: t.RcvNxt, RcvWnd: t.RcvWnd(),
		Unsent:   t.unsent(),
		InFlight: t.SndNxt.Diff(t.SndUna),
		Unread:   t.Unread(),
		SendMSS:  t.sndMSS,
		SRTT:     time.Duration(t.srtt) * time.Microsecond,
		RTTVar:   time.Duration(t.rttvar) * time.Microsecond,
		RTO:      time.Duration(t.rto) * time.Microsecond,
		Cwnd:     t.cwnd, Ssthresh: t.ssthresh,
		Retries:  int(t.retries),
		SndShift: t.sndShift(), RcvShift: t.rcvShift(),
		Timestamps: t.flags&flagTS != 0, SACK: t.flags&flagSACK != 0,
		Recovery: t.flags&flagRecovery != 0,
		DupACKs:  int(t.dupAcks), SACKed: t.sackedBytes(),
		Urgent: t.urgentPending(),
	}, nil
}

// unsent is the number of queued bytes not yet sent.
func (t *TCB) unsent() uint32 {
	if t.State == Listen || t.State == Closed || !t.SndNxt.LessThan(t.sndEnd) {
		return 0
	}
	return t.sndEnd.Diff(t.SndNxt)
}

// finBit is 1 once the peer's FIN has taken a sequence number below RCV.NXT.
func (t *TCB) finBit() uint32 {
	if t.flags&flagFinRcvd != 0 {
		return 1
	}
	return 0
}

// finAcked reports whether our FIN has been sent and acknowledged.
func (t *TCB) finAcked() bool {
	return t.flags&flagFinSent != 0 && t.SndUna == t.sndEnd.Add(1)
}

// urgentPending is how many unread bytes lie before the peer's urgent
// pointer: the urgent data the user has yet to read (MUST-33).
func (t *TCB) urgentPending() uint32 {
	if t.rcvUser.LessThan(t.rcvUp) {
		return t.rcvUp.Diff(t.rcvUser)
	}
	return 0
}
