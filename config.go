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
	// MaxRTO caps the RTO and its backoff (RFC 6298 section 2.5); it may
	// not be below 60 s. Default 60 s.
	MaxRTO time.Duration

	// R1 is the number of retransmissions of one segment after which the
	// user is told the connection is stalled (RFC 9293 MUST-20, SHLD-10).
	// Default 3.
	R1 int
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
	// timer and MAY-1 allows waiting forever). Default 0: off.
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
	// 4772). Default 10.
	ChallengeACKLimit int
}

// Errors from Config.Validate.
var (
	ErrConfigMaxRTO = errors.New("tcpfsm: config: MaxRTO below 60 s (RFC 6298 section 2.5)")
	ErrConfigSynR2  = errors.New("tcpfsm: config: SynR2 below 3 minutes (RFC 9293 MUST-23)")
	ErrConfigRange  = errors.New("tcpfsm: config: value out of range")
)

const maxMillis = 1<<32 - 1

// Validate reports the first setting that breaks a MUST of the RFCs or
// does not fit the TCB's fields.
func (c *Config) Validate() error {
	if c.MaxRTO != 0 && c.MaxRTO < 60*time.Second {
		return ErrConfigMaxRTO
	}
	if c.SynR2 != 0 && c.SynR2 < 3*time.Minute {
		return ErrConfigSynR2
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"MSL", c.MSL}, {"InitialRTO", c.InitialRTO}, {"MinRTO", c.MinRTO}, {"MaxRTO", c.MaxRTO},
		{"R2", c.R2}, {"SynR2", c.SynR2}, {"UserTimeout", c.UserTimeout},
		{"FinWait2Timeout", c.FinWait2Timeout}, {"KeepaliveIdle", c.KeepaliveIdle},
		{"KeepaliveInterval", c.KeepaliveInterval},
	} {
		if d.v < 0 || d.v/time.Millisecond > maxMillis {
			return fmt.Errorf("%w: %s=%v (0 to 49 days)", ErrConfigRange, d.name, d.v)
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
	if c.MSS != 0 && c.MSS < 64 {
		return fmt.Errorf("%w: MSS=%d (at least 64)", ErrConfigRange, c.MSS)
	}
	return nil
}

// settings is the compact form of Config kept in every TCB: durations in
// milliseconds, defaults filled in.
type settings struct {
	msl, r2, synR2, userTimeout, fw2   uint32 // milliseconds
	keepIdle, keepIntvl                uint32 // milliseconds
	initRTO, minRTO, maxRTO            uint32 // milliseconds
	rcvBuf                             uint32
	mss                                uint16
	r1, synRetries, keepCount, chLimit uint8
	opts                               settingOpts
}

type settingOpts uint8

const (
	optSet settingOpts = 1 << iota // settings were filled in
	optIPv6
	optNoResetOnGiveUp
	optKeepalive
	optTimeWaitRST
	optTimeWaitChallenge
)

func ms(d time.Duration, def time.Duration) uint32 {
	if d == 0 {
		d = def
	}
	return uint32(d / time.Millisecond)
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
		msl:         ms(c.MSL, 2*time.Minute),
		r2:          ms(c.R2, 100*time.Second),
		synR2:       ms(c.SynR2, 180*time.Second),
		userTimeout: ms(c.UserTimeout, 0),
		fw2:         ms(c.FinWait2Timeout, 0),
		keepIdle:    ms(c.KeepaliveIdle, 2*time.Hour),
		keepIntvl:   ms(c.KeepaliveInterval, 75*time.Second),
		initRTO:     ms(c.InitialRTO, time.Second),
		minRTO:      ms(c.MinRTO, time.Second),
		maxRTO:      ms(c.MaxRTO, 60*time.Second),
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
	for _, o := range []struct {
		on  bool
		bit settingOpts
	}{{c.IPv6, optIPv6}, {c.NoResetOnGiveUp, optNoResetOnGiveUp}, {c.Keepalive, optKeepalive},
		{c.TimeWaitRST, optTimeWaitRST}, {c.TimeWaitChallenge, optTimeWaitChallenge}} {
		if o.on {
			s.opts |= o.bit
		}
	}
	return s, nil
}

func msDur(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// defaultSettings are the settings of a zero Config.
var defaultSettings, _ = (&Config{}).compile()
