package tcpfsm

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the per-connection settings of a TCB. The zero value means
// every default, which follows the RFCs. Each field documents its default
// and the requirement it serves. Durations are kept in the TCB to the
// millisecond.
type Config struct {
	// MSS is the maximum segment size we announce and the most payload we
	// put in one segment: MMS_R-20 and MMS_S-20 (RFC 9293 MUST-14, MUST-16,
	// MUST-67). Default 1460, or 1440 when IPv6 is set.
	MSS uint16
	// IPv6 selects the IPv6 defaults: 1220 bytes assumed when the peer
	// sends no MSS option (RFC 9293 MUST-15) instead of 536.
	IPv6 bool
	// RecvBuffer is the receive buffer size, the most window we offer.
	// Default 65535.
	RecvBuffer uint32

	// MSL is the maximum segment lifetime; TIME-WAIT lasts 2*MSL
	// (RFC 9293 MUST-13). Default 2 minutes.
	MSL time.Duration

	// InitialRTO is the retransmission timeout before any RTT sample
	// (RFC 6298 section 2.1). Default 1 s.
	InitialRTO time.Duration
	// MinRTO is the floor of the computed RTO (RFC 6298 section 2.4).
	// Default 1 s.
	MinRTO time.Duration
	// MinRTOOnVariance applies MinRTO to the variance term instead of to
	// the whole RTO: RTO = SRTT + max(4*RTTVAR, MinRTO), as Linux's
	// tcp_rtt_estimator does, rather than RFC 6298 section 2.4's
	// max(SRTT + 4*RTTVAR, MinRTO). On a steady path the RTO is then one
	// SRTT above the floor, so a delayed ACK or a slow application on the
	// far side is less often taken for a loss. Default off.
	MinRTOOnVariance bool
	// MaxRTO caps the RTO and its backoff (RFC 6298 section 2.5); it may
	// not be below 60 s. Default 60 s.
	MaxRTO time.Duration

	// R1 is the number of retransmissions of one segment after which the
	// user is told the connection is stalled (RFC 9293 MUST-20, SHLD-10).
	// Default 3.
	R1 int
	// ForgetRTTAtR1 clears SRTT and RTTVAR when the retransmissions of one
	// segment reach R1, as estimates that many timeouts have proved wrong;
	// the next RTT sample then starts them afresh (RFC 6298 section 5,
	// MAY; RFC 6298 section 2.2). The backed-off RTO stays until that
	// sample. Default off.
	ForgetRTTAtR1 bool
	// R2 is how long retransmission of one data or FIN segment goes on
	// before the connection is given up (RFC 9293 MUST-20, MUST-21,
	// SHLD-11). Default 100 s.
	R2 time.Duration
	// SynR2 is how long a SYN or SYN-ACK is retransmitted before the open
	// fails (RFC 9293 MUST-23: at least 3 minutes). Default 180 s.
	SynR2 time.Duration
	// SynRetries, when above zero, gives up after that many SYN or SYN-ACK
	// retransmissions instead of after SynR2. Linux's default is 6 (give
	// up 127 s after the first SYN); 5 gives the textbook 1, 3, 7, 15, 31 s
	// retransmissions and failure at 63 s. Default 0 (use SynR2).
	SynRetries int
	// NoResetOnGiveUp suppresses the RST sent when retransmission gives
	// up. Default false: a give-up sends <SEQ=SND.NXT><RST>.
	NoResetOnGiveUp bool

	// UserTimeout aborts the connection when sent data goes unacknowledged
	// this long (RFC 9293 section 3.10.8, RFC 5482). Default 0: off.
	UserTimeout time.Duration
	// FinWait2Timeout closes a connection that sits in FIN-WAIT-2 this long
	// without the peer's FIN (a Linux-like option; RFC 9293 has no such
	// timer and MAY-1 allows waiting forever). Default 0: a connection
	// whose user only closed its sending side waits for ever (MAY-1); one
	// the user closed with CloseFull, which takes no more data (SHLD-3),
	// waits 2*MSL, so a peer that vanished cannot hold it for ever.
	FinWait2Timeout time.Duration

	// Keepalive turns keep-alive probes on (RFC 9293 MAY-5, MUST-24,
	// MUST-25: off by default).
	Keepalive bool
	// KeepaliveIdle is the idle time before the first probe (MUST-28: at
	// least two hours by default). Default 2 h.
	KeepaliveIdle time.Duration
	// KeepaliveInterval is the time between unanswered probes. Default 75 s.
	KeepaliveInterval time.Duration
	// KeepaliveCount is how many unanswered probes close the connection
	// (MUST-29: more than one). Default 9.
	KeepaliveCount int

	// TimeWaitRST follows RFC 9293 section 3.10.7.4 and closes a TIME-WAIT
	// connection on an acceptable RST. Default false: the RST is ignored,
	// as RFC 1337 section 3 (F1) recommends against TIME-WAIT assassination.
	TimeWaitRST bool
	// TimeWaitChallenge answers every SYN in TIME-WAIT with a challenge ACK
	// (RFC 5961 section 4). Default false: a SYN whose sequence number is
	// above RCV.NXT, or (with timestamps) whose TSval is newer than
	// TS.Recent, may start a new incarnation (RFC 9293 MAY-2, RFC 6191);
	// Step then reports NoteReopen and the host hands the SYN to its
	// listener.
	TimeWaitChallenge bool

	// ChallengeACKLimit is how many challenge ACKs one connection sends per
	// second (RFC 5961 section 7; the count is per connection, Errata
	// 4772), counting the ACKs that answer unacceptable segments without
	// data, SYN or FIN (RFC 9293 section 3.10.7.4), which two confused
	// ends could otherwise trade without end. Default 10.
	ChallengeACKLimit int

	// DelayedACK is how long an ACK for in-order data may wait for more
	// data or a reply to ride on (RFC 9293 SHLD-18, MUST-40: below 500 ms).
	// Every second full-sized segment is ACKed at once (SHLD-19). Default
	// 200 ms.
	DelayedACK time.Duration
	// QuickACK acknowledges every segment at once (no delayed ACK).
	QuickACK bool
	// QuickACKAtStart acknowledges the first 16 in-order data segments of
	// a connection at once, then delays ACKs as usual, as Linux's
	// quick-ACK mode at the start of a connection does: a peer's first
	// request is ACKed before the reply is ready, so its tail loss probe
	// and its slow start need not wait for the delayed-ACK timer (RFC 5681
	// section 4.2 allows ACKing more often). Default off.
	QuickACKAtStart bool
	// NoDelay turns the Nagle algorithm off (RFC 9293 MUST-17): small
	// segments go out even while data is unacknowledged.
	NoDelay bool
	// NoWindowScale leaves the window scale option out of our SYN
	// (RFC 7323 section 2). Default: offered, with the shift the receive
	// buffer needs.
	NoWindowScale bool
	// NoTimestamps leaves the timestamps option out (RFC 7323 section 3).
	// Default: offered.
	NoTimestamps bool
	// NoSACK leaves SACK-permitted out (RFC 2018). Default: offered.
	NoSACK bool
	// InitialWindow10 starts the congestion window at
	// min(10*SMSS, max(2*SMSS, 14600)) (RFC 6928) instead of RFC 5681's
	// 2 to 4 segments.
	InitialWindow10 bool
	// EarlyRetransmit lowers the duplicate-ACK threshold of fast
	// retransmit to one less than the segments outstanding when fewer than
	// four are outstanding and no new data can be sent, so a loss near the
	// end of a small flight need not wait for the RTO (RFC 5827 section
	// 3.1). Default off: RFC 5827 is Experimental.
	EarlyRetransmit bool
	// TailLossProbe sends a probe segment when the ACKs of a flight stop
	// coming for about two round trips, instead of waiting for the RTO:
	// new data if there is some, else the highest segment sent again
	// (RFC 8985 section 7.3; our FIN alone if it went alone, see tlp.go).
	// Its ACK either acknowledges everything (the ACKs were lost) or, by
	// SACKing the probe, shows that what was sent before it is lost, and
	// fast recovery starts at once (the RACK rule of RFC 8985 section
	// 6.2, applied to the probe). A resent probe that repaired a loss
	// (no D-SACK or duplicate ACK says both copies arrived) lowers the
	// congestion window as a loss does (section 7.4). Needs SACK and an
	// RTT sample; default off.
	TailLossProbe bool
	// Congestion selects the congestion control algorithm (RFC 9293
	// MAY-18). Default NewReno (RFC 5681 with RFC 6582).
	Congestion CongestionAlgorithm
	// SlowStartLimit is appropriate byte counting's limit L (RFC 3465
	// section 2.1): in slow start an ACK opens the congestion window by
	// the bytes it acknowledges, at most L full-sized segments. 0 or 1:
	// one segment, RFC 5681 section 3.1's SHOULD (the default); 2: RFC
	// 3465's most; negative: no limit, every acknowledged byte counts, as
	// Linux does (which with delayed ACKs doubles the window each round
	// trip; RFC 3465 warns of the bursts), and, as Linux, only while at
	// least half the window was in flight.
	SlowStartLimit int
	// PRR paces fast recovery by Proportional Rate Reduction (RFC 6937)
	// when the peer SACKs: the window follows the data the peer reports
	// delivered, falling smoothly to ssthresh, instead of RFC 5681's
	// inflation by one segment per duplicate ACK, which stalls and then
	// bursts; recovery ends with the window at ssthresh. Default off.
	PRR bool
	// HyStart leaves the initial slow start when the round-trip time
	// rises, before the queue it builds overflows: HyStart's delay
	// increase test (RFC 9406 section 4.2, with its constants
	// N_RTT_SAMPLE = 8, MIN_RTT_THRESH = 4 ms, MAX_RTT_THRESH = 16 ms,
	// MIN_RTT_DIVISOR = 8) in the form Linux's CUBIC uses. Once the
	// window is at least 16 segments, the smallest RTT sample of a round
	// trip, tested from the round's ninth ACK on, is compared with the
	// smallest sample of the connection (RFC 9406 compares with the
	// previous round's), and a rise of more than min(max(that/8, 4 ms),
	// 16 ms) sets ssthresh to the window: congestion avoidance starts
	// at once, without RFC 9406's Conservative Slow Start. As RFC 9406
	// section 4.2 recommends, only the initial slow start (ssthresh still
	// at its initial value, no loss yet) is tested. See hystart.go for
	// how rounds and samples are taken. Default off.
	HyStart bool
	// TimerActions reports every change of a timer as an ActTimer action,
	// for hosts that keep a timer per connection. A timer that comes due
	// at a Tick is gone, as a fired time.Timer is, and is not reported
	// stopped; one armed again is reported. Default off: a host
	// reads NextDeadline after each Step, which says the same for less
	// (RFC 9293 section 3.8 leaves timer management to the implementation).
	TimerActions bool
	// DelayFINACK lets the ACK of the peer's FIN in ESTABLISHED wait for
	// the delayed-ACK timer (SHLD-18), so that an application that closes
	// within DelayedACK sends one segment, FIN and ACK together, as Linux
	// does: a three-segment teardown. Default off: the ACK goes at once,
	// so the peer learns without delay that its FIN arrived, whatever the
	// application does (the RFCs allow both).
	DelayFINACK bool
	// DropACKOfUnsent drops a segment whose ACK acknowledges data not yet
	// sent (SEG.ACK > SND.NXT) without answering it, as Linux does. RFC
	// 9293 section 3.10.7.4 and RFC 5961 section 5.2 answer it with an
	// ACK, the default; the answer tells a peer whose idea of the
	// sequence space is wrong where we are, but also gives one ACK for
	// every such segment anyone sends. Either way the segment is dropped,
	// counted as DropBadACK, and nothing in it (data, FIN, window,
	// timestamp) is taken.
	DropACKOfUnsent bool
	// NoRestartAfterIdle keeps the congestion window when sending resumes
	// after more than an RTO without sending, instead of shrinking it to
	// the restart window (RFC 5681 section 4.1's SHOULD; Linux's
	// tcp_slow_start_after_idle=0, common for long-lived tunnels whose
	// path does not change while they pause). CUBIC's curve then moves
	// on by the idle time, so the pause earns no growth (RFC 9438 section
	// 5.8). Default off: the RFC's restart.
	NoRestartAfterIdle bool
}

// CongestionAlgorithm names a congestion control algorithm.
type CongestionAlgorithm uint8

// The congestion control algorithms.
const (
	NewReno CongestionAlgorithm = iota // RFC 5681 and RFC 6582 (the default)
	CUBIC                              // RFC 9438
)

// String returns the algorithm's name.
func (a CongestionAlgorithm) String() string {
	if a == CUBIC {
		return "cubic"
	}
	return "newreno"
}

// minMaxRTO is the least Config.MaxRTO allowed, and its default (RFC
// 6298 section 2.5): a duration up to it is within every MaxRTO.
const minMaxRTO = 60 * time.Second

// Errors from Config.Validate.
var (
	ErrConfigMaxRTO     = errors.New("tcpfsm: config: MaxRTO below 60 s (RFC 6298 section 2.5)")
	ErrConfigSynR2      = errors.New("tcpfsm: config: SynR2 below 3 minutes (RFC 9293 MUST-23)")
	ErrConfigDelayedACK = errors.New("tcpfsm: config: DelayedACK not below 500 ms (RFC 9293 MUST-40)")
	ErrConfigRange      = errors.New("tcpfsm: config: value out of range")
)

// dur16 keeps a duration in two bytes: below 0x8000 it counts
// milliseconds (up to 32.767 s); above, seconds (up to 32767 s, 9.1 h,
// which is also Linux's limit for keep-alive times).
type dur16 uint16

const maxDur16 = 32767 * time.Second

func toDur16(d time.Duration) dur16 {
	if d < 32768*time.Millisecond {
		return dur16((d + time.Millisecond - 1) / time.Millisecond)
	}
	return dur16(0x8000 | (d+time.Second-1)/time.Second)
}

// us returns the duration in microseconds.
func (v dur16) us() uint64 {
	if v&0x8000 == 0 {
		return uint64(v) * 1000
	}
	return uint64(v&0x7fff) * 1_000_000
}

func (v dur16) dur() time.Duration {
	if v&0x8000 == 0 {
		return time.Duration(v) * time.Millisecond
	}
	return time.Duration(v&0x7fff) * time.Second
}

// Validate reports the first setting that breaks a MUST of the RFCs or
// does not fit the TCB's fields.
func (c *Config) Validate() error {
	if c.MaxRTO != 0 && c.MaxRTO < minMaxRTO {
		return ErrConfigMaxRTO
	}
	if c.SynR2 != 0 && c.SynR2 < 3*time.Minute {
		return ErrConfigSynR2
	}
	if c.DelayedACK >= 500*time.Millisecond {
		return ErrConfigDelayedACK
	}
	if c.Congestion > CUBIC {
		return fmt.Errorf("%w: Congestion=%d", ErrConfigRange, c.Congestion)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"MSL", c.MSL}, {"InitialRTO", c.InitialRTO}, {"MinRTO", c.MinRTO}, {"MaxRTO", c.MaxRTO},
		{"R2", c.R2}, {"SynR2", c.SynR2}, {"UserTimeout", c.UserTimeout},
		{"FinWait2Timeout", c.FinWait2Timeout}, {"KeepaliveIdle", c.KeepaliveIdle},
		{"KeepaliveInterval", c.KeepaliveInterval}, {"DelayedACK", c.DelayedACK},
	} {
		if d.v < 0 || d.v > maxDur16 {
			return fmt.Errorf("%w: %s=%v (0 to 9h6m7s; above 32.767 s it is kept in whole seconds)", ErrConfigRange, d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"R1", c.R1}, {"SynRetries", c.SynRetries}, {"KeepaliveCount", c.KeepaliveCount}, {"ChallengeACKLimit", c.ChallengeACKLimit}} {
		if n.v < 0 || n.v > 255 {
			return fmt.Errorf("%w: %s=%d (0 to 255)", ErrConfigRange, n.name, n.v)
		}
	}
	if c.SlowStartLimit > 2 {
		return fmt.Errorf("%w: SlowStartLimit=%d (RFC 3465 allows at most 2)", ErrConfigRange, c.SlowStartLimit)
	}
	if c.MSS != 0 && c.MSS < 64 {
		return fmt.Errorf("%w: MSS=%d (at least 64)", ErrConfigRange, c.MSS)
	}
	return nil
}

// settings is the compact form of Config kept in every TCB, defaults
// filled in.
type settings struct {
	rcvBuf                             uint32
	msl, r2, synR2, userTimeout, fw2   dur16
	keepIdle, keepIntvl, delAck        dur16
	initRTO, minRTO, maxRTO            dur16
	mss                                uint16
	opts                               settingOpts
	r1, synRetries, keepCount, chLimit uint8
	more                               moreOpts // settings beyond opts' 16 bits, and the shift we offer
}

// moreOpts are settings that did not fit settingOpts, in its low 12
// bits, and the window-scale shift we offer (0 to 14), in its top 4.
type moreOpts uint16

// wsShift is where moreOpts keeps the window-scale shift.
const wsShift = 12

// wscale returns the window-scale shift we offer (RFC 7323 section 2.3).
func (s *settings) wscale() uint8 { return uint8(s.more >> wsShift) }

const (
	optTimerActions  moreOpts = 1 << iota // Config.TimerActions
	optDelayFINACK                        // Config.DelayFINACK
	optSlowStart2                         // Config.SlowStartLimit 2
	optSlowStartAll                       // Config.SlowStartLimit negative
	optQuickStart                         // Config.QuickACKAtStart
	optMinRTOVar                          // Config.MinRTOOnVariance
	optPRR                                // Config.PRR
	optDropUnsentACK                      // Config.DropACKOfUnsent
	optHyStart                            // Config.HyStart
	optNoIdleRestart                      // Config.NoRestartAfterIdle
	// optACKWork is set with the settings that give a new ACK work
	// beyond what pureACK does: keep-alive, a user timeout, HyStart,
	// Linux's slow start (noteACKWork keeps it up to date).
	optACKWork
)

// The settings' bits stay below the window-scale shift.
var _ [1<<wsShift - 2*optACKWork]struct{}

// noteACKWork sets optACKWork from the settings it stands for.
func (s *settings) noteACKWork() {
	s.more &^= optACKWork
	if s.opts&optKeepalive != 0 || s.userTimeout != 0 || s.more&(optSlowStartAll|optHyStart) != 0 {
		s.more |= optACKWork
	}
}

type settingOpts uint16

const (
	optSet settingOpts = 1 << iota // settings were filled in
	optIPv6
	optNoResetOnGiveUp
	optKeepalive
	optTimeWaitRST
	optTimeWaitChallenge
	optQuickACK
	optNoDelay
	optWS
	optTS
	optSACK
	optIW10
	optCUBIC
	optEarlyRetransmit
	optTLP
	optForgetRTT
)

func d16(d time.Duration, def time.Duration) dur16 {
	if d == 0 {
		d = def
	}
	return toDur16(d)
}

func orDefault(v, def int) uint8 {
	if v == 0 {
		return uint8(def)
	}
	return uint8(v)
}

// compile validates c and returns its compact form.
func (c *Config) compile() (settings, error) {
	if err := c.Validate(); err != nil {
		return settings{}, err
	}
	s := settings{
		msl:         d16(c.MSL, 2*time.Minute),
		r2:          d16(c.R2, 100*time.Second),
		synR2:       d16(c.SynR2, 180*time.Second),
		userTimeout: d16(c.UserTimeout, 0),
		fw2:         d16(c.FinWait2Timeout, 0),
		keepIdle:    d16(c.KeepaliveIdle, 2*time.Hour),
		keepIntvl:   d16(c.KeepaliveInterval, 75*time.Second),
		delAck:      d16(c.DelayedACK, 200*time.Millisecond),
		initRTO:     d16(c.InitialRTO, time.Second),
		minRTO:      d16(c.MinRTO, time.Second),
		maxRTO:      d16(c.MaxRTO, minMaxRTO),
		rcvBuf:      c.RecvBuffer,
		mss:         c.MSS,
		r1:          orDefault(c.R1, 3),
		synRetries:  uint8(c.SynRetries),
		keepCount:   orDefault(c.KeepaliveCount, 9),
		chLimit:     orDefault(c.ChallengeACKLimit, 10),
		opts:        optSet,
	}
	if s.rcvBuf == 0 {
		s.rcvBuf = 65535
	}
	if s.mss == 0 {
		s.mss = 1460
		if c.IPv6 {
			s.mss = 1440
		}
	}
	// The smallest shift that lets the window cover the buffer (RFC 7323
	// section 2.3), at most 14.
	ws := moreOpts(0)
	for ws < 14 && s.rcvBuf>>ws > 0xffff {
		ws++
	}
	s.more |= ws << wsShift
	for _, o := range []struct {
		on  bool
		bit settingOpts
	}{{c.IPv6, optIPv6}, {c.NoResetOnGiveUp, optNoResetOnGiveUp}, {c.Keepalive, optKeepalive},
		{c.TimeWaitRST, optTimeWaitRST}, {c.TimeWaitChallenge, optTimeWaitChallenge},
		{c.QuickACK, optQuickACK}, {c.NoDelay, optNoDelay}, {!c.NoWindowScale, optWS},
		{!c.NoTimestamps, optTS}, {!c.NoSACK, optSACK}, {c.InitialWindow10, optIW10},
		{c.Congestion == CUBIC, optCUBIC}, {c.EarlyRetransmit, optEarlyRetransmit},
		{c.TailLossProbe, optTLP}, {c.ForgetRTTAtR1, optForgetRTT}} {
		if o.on {
			s.opts |= o.bit
		}
	}
	for _, o := range []struct {
		on  bool
		bit moreOpts
	}{{c.TimerActions, optTimerActions}, {c.DelayFINACK, optDelayFINACK}, {c.QuickACKAtStart, optQuickStart},
		{c.MinRTOOnVariance, optMinRTOVar}, {c.PRR, optPRR}, {c.DropACKOfUnsent, optDropUnsentACK},
		{c.HyStart, optHyStart}, {c.NoRestartAfterIdle, optNoIdleRestart}} {
		if o.on {
			s.more |= o.bit
		}
	}
	switch {
	case c.SlowStartLimit < 0:
		s.more |= optSlowStartAll
	case c.SlowStartLimit == 2:
		s.more |= optSlowStart2
	}
	s.noteACKWork()
	return s, nil
}

// defaultSettings are the settings of a zero Config.
var defaultSettings, _ = (&Config{}).compile()
