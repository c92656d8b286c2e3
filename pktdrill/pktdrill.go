// Package pktdrill runs scripts written in the syntax of packetdrill
// (Google's TCP test tool) against tcpfsm's state machine, so a
// conformance case reads like the RFC's own figures and existing
// packetdrill suites, such as the Linux kernel's, can be run.
//
// The runner plays both the network and a small socket layer above
// tcpfsm's TCBs:
//
//   - Timing: a line starts with a time in seconds, absolute ("0.100") or
//     relative to the previous line ("+0.1"), "*" for any time, or a
//     range ("0.1~0.2", "+0.1~+0.2"). A system call may carry an end
//     time ("+0...0.200 accept(...)"): it blocks, in script time, until
//     it can complete, and must complete then; the lines after it run
//     meanwhile. Outbound packets may come within the tolerance (default
//     4 ms, or --tolerance_usecs) of the time written.
//   - "< FLAGS SEQ:SEQ(LEN) [ack N] [win N] [urg N] [<options>]" injects
//     a segment; "> ..." expects the next one tcpfsm sends, and fails if
//     it differs or does not come. Flags are tcpdump's letters (S . F R P
//     U E W), "." alone meaning a bare ACK. Sequence and acknowledgment
//     numbers are relative to each side's initial sequence number, as in
//     packetdrill, and so is an injected TS ecr once tcpfsm has sent a
//     timestamp the script named. Options: mss N, wscale N, sackOK, nop,
//     eol, TS val N ecr N, sack A:B ...; FO and FOEXP (TCP Fast Open) and
//     md5 parse but make the script UNSUPPORTED. "<...>" in an expected
//     packet matches any options. Consecutive segments sent at once may
//     stand for one larger expected packet, as segmentation offload on a
//     real interface would show them.
//   - System calls go to a socket layer with a descriptor table: socket,
//     bind, listen (a listener whose incoming SYNs each get their own
//     TCB), accept, connect (blocking, or EINPROGRESS when non-blocking),
//     read/recv/recvfrom/recvmsg and write/send/sendto/sendmsg/writev with
//     their errors (EAGAIN, ECONNRESET, EPIPE, ENOTCONN, ...), close,
//     shutdown, getsockopt and setsockopt (SO_ERROR, SO_RCVBUF, SO_SNDBUF,
//     SO_LINGER, SO_KEEPALIVE, TCP_NODELAY, TCP_MAXSEG, TCP_USER_TIMEOUT,
//     TCP_CONGESTION, ...), fcntl (O_NONBLOCK), poll and epoll. A return
//     value and errno are compared with the script's. Under -profile
//     linux the send buffer counts memory as Linux does (skbs of the
//     write's size goal, each with its overhead, cut as they are sent),
//     which decides when a write blocks and when it wakes.
//   - "%{ assert EXPR }%" lines check tcp_info fields (tcpi_state,
//     tcpi_rto, tcpi_snd_cwnd, tcpi_snd_ssthresh, tcpi_rtt, tcpi_unacked,
//     tcpi_retransmits, tcpi_ca_state, ...) of the latest connection, as
//     tcpfsm's Status reports them. A field tcpfsm cannot report makes
//     the script UNSUPPORTED.
//   - "`shell command`" lines, over several lines if need be, are read:
//     the sysctls they set (sysctl -q net.ipv4.X=V, set_sysctls.py
//     /proc/sys/net/ipv4/X=V, or a sourced defaults.sh found beside the
//     script) change the Config where a Config field exists, and are
//     listed as ignored otherwise. Under -profile linux, "tc qdisc
//     replace dev tun0 root fq" makes the runner pace what tcpfsm sends
//     as Linux's TCP and its fq qdisc would (see fq.go), with the
//     sysctls tcp_pacing_ss_ratio, tcp_pacing_ca_ratio and
//     tcp_min_tso_segs.
//   - Options on lines of their own before the first event:
//     --ip_version, --tolerance_usecs, and tcpfsm's own --tail_loss_probe,
//     --early_retransmit and --rto_min_ms=N.
//
// Each script ends PASS, FAIL (with the first mismatch) or UNSUPPORTED
// (with the feature it needs that tcpfsm does not have). The local side
// is tcpfsm (port 8080); the remote side is the script (port 33333,
// initial sequence number 1000000). Everything runs on virtual time: a
// script takes no real time.
package pktdrill

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Options change how strictly expected packets are compared and which
// settings connections start with.
type Options struct {
	IgnoreWindow  bool // do not compare window values
	IgnoreOptions bool // do not compare option lists
	// IgnorePush does not compare the PSH flag: where a sender sets it is
	// its own choice (RFC 9293 section 3.9.1.2), and Linux's rule is not
	// tcpfsm's.
	IgnorePush bool
	// IgnoreUnexpected matches packetdrill: a packet tcpfsm sends that no
	// line expects fails the script only when a later expected packet
	// differs from it, not at the next inbound packet or call, nor at the
	// end.
	IgnoreUnexpected bool
	Tolerance        time.Duration // how late or early an outbound packet may be; default 4 ms
	Config           tcpfsm.Config // the connections' settings (defaults: tcpfsm's, or the profile's)
	// Profile names the defaults scripts assume: "rfc" (tcpfsm's own,
	// the default), "linux" or "freebsd"; see ProfileConfig. It replaces
	// Config when set.
	Profile string
	// Dir is the directory the script came from: shell lines that source
	// a file (`../common/defaults.sh`) are read from there for sysctls.
	Dir string
}

// Error is a script failure: the line, what was expected and what happened.
type Error struct {
	Line     int
	Text     string // the script line
	Expected string
	Got      string
}

// Error says which line failed, what it expected and what happened.
func (e *Error) Error() string {
	s := fmt.Sprintf("line %d: %s", e.Line, strings.TrimSpace(e.Text))
	if e.Expected != "" {
		s += "\n  expected: " + e.Expected
	}
	if e.Got != "" {
		s += "\n  got:      " + e.Got
	}
	return s
}

// UnsupportedError says a script needs a feature tcpfsm or the runner
// does not have, such as TCP Fast Open.
type UnsupportedError struct {
	Line   int
	Reason string
}

// Error says which line needs what.
func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("line %d: unsupported: %s", e.Line, e.Reason)
}

// Verdict is how a script ended.
type Verdict uint8

// The verdicts.
const (
	Pass Verdict = iota
	Fail
	Unsupported
)

// String returns "PASS", "FAIL" or "UNSUPPORTED".
func (v Verdict) String() string {
	switch v {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	}
	return "UNSUPPORTED"
}

// Result is the outcome of one script.
type Result struct {
	Verdict Verdict
	Err     error    // the failure (*Error) or the unsupported feature (*UnsupportedError); nil on PASS
	Ignored []string // sysctls and options read but with no tcpfsm setting to map to
}

// Reason is the one-line reason for a verdict other than PASS.
func (r Result) Reason() string {
	if r.Err == nil {
		return ""
	}
	var u *UnsupportedError
	if errors.As(r.Err, &u) {
		return u.Reason
	}
	return strings.Join(strings.Fields(r.Err.Error()), " ")
}

// Run runs a script and returns the first failure as an *Error, or an
// *UnsupportedError if the script needs a feature tcpfsm lacks.
func Run(script string, o Options) error {
	return RunScript(script, o).Err
}

// RunScript runs a script and returns its verdict.
func RunScript(script string, o Options) (res Result) {
	defer func() {
		// A script the runner misreads must not take the caller down.
		if p := recover(); p != nil {
			res = Result{Verdict: Fail, Err: &Error{Text: "internal error", Got: fmt.Sprint(p)}}
		}
	}()
	r, err := newRunner(o)
	if err != nil {
		return Result{Verdict: Fail, Err: err}
	}
	err = r.run(script)
	res.Ignored = r.ignored
	var u *UnsupportedError
	switch {
	case err == nil:
		res.Verdict = Pass
	case errors.As(err, &u):
		res.Verdict, res.Err = Unsupported, err
	default:
		res.Verdict, res.Err = Fail, err
	}
	return res
}

const (
	localPort  = 8080
	remotePort = 33333
	remoteISN  = 1000000
	localISS   = 5000
)

// sent is a segment tcpfsm sent that no line has matched yet.
type sent struct {
	a   tcpfsm.Action
	seg tcpfsm.Segment // a's segment (TCB.SegmentOf), taken right after its Step
	c   *conn
	at  tcpfsm.Time
}

type runner struct {
	o         Options
	cfg       tcpfsm.Config // settings new sockets start with
	now       tcpfsm.Time
	last      tcpfsm.Time // time of the previous line
	out       []tcpfsm.Action
	pending   []sent // sent segments not yet matched
	line      int
	text      string
	started   bool        // the first event ran: options may no longer change
	sawSocket bool        // the script calls socket(): descriptors must exist
	groMSS    uint32      // --mss: injected packets are cut into segments this long
	rangeEnd  tcpfsm.Time // the end of the current line's time range ("~", "*"); its time otherwise
	fastOpen  bool        // the server side of Fast Open is on (Linux's default): data in a SYN means it
	ignored   []string

	socks   map[int]*sock
	conns   []*conn          // every connection, newest last
	latest  *conn            // the connection tcp_info assertions read
	vars    map[string]int64 // names %{ }% blocks defined
	scratch *conn            // a CLOSED TCB answering segments nobody owns
	epolls  map[int]*epoll
	blocked []*blockedCall

	tsOffset    uint32 // tcpfsm's TSval less the script's, once known
	tsOffsetSet bool
	sndBufDef   int // tcp_wmem default
	rcvBufDef   int // tcp_rmem default

	host hostParams // sysctls of the modelled Linux host (fq.go)
	fq   bool       // the fq qdisc paces what tcpfsm sends (fq.go)
}

func newRunner(o Options) (*runner, error) {
	if o.Tolerance == 0 {
		o.Tolerance = 4 * time.Millisecond
	}
	r := &runner{o: o, cfg: o.Config, socks: map[int]*sock{}, epolls: map[int]*epoll{}, host: defaultHost}
	r.sndBufDef, r.rcvBufDef = 16384, 131072
	if o.Profile != "" {
		p, err := ProfileConfig(o.Profile)
		if err != nil {
			return nil, err
		}
		r.cfg = p
		if o.Profile == "linux" {
			r.sndBufDef, r.rcvBufDef = 262144, 540000
			r.fastOpen = true
		}
	}
	if err := r.cfg.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// statement is one script event, joined from one or more lines.
type statement struct {
	line int
	text string
}

// split cuts a script into statements: comments dropped, shell commands
// and code blocks kept whole, calls and packets joined while brackets
// are open or a line ends with a backslash.
func split(script string) ([]statement, error) {
	lines := strings.Split(script, "\n")
	var out []statement
	for i := 0; i < len(lines); i++ {
		start := i
		l := lines[i]
		switch {
		case strings.Contains(l, "`"):
			// A shell command, perhaps over several lines.
			for strings.Count(l, "`")%2 == 1 {
				if i+1 >= len(lines) {
					return nil, &Error{Line: start + 1, Text: lines[start], Expected: "a closing backquote"}
				}
				i++
				l += "\n" + lines[i]
			}
			out = append(out, statement{start + 1, strings.TrimSpace(l)})
			continue
		case strings.Contains(l, "%{"):
			for !strings.Contains(l[strings.Index(l, "%{"):], "}%") {
				if i+1 >= len(lines) {
					return nil, &Error{Line: start + 1, Text: lines[start], Expected: "}%"}
				}
				i++
				l += "\n" + lines[i]
			}
			out = append(out, statement{start + 1, strings.TrimSpace(l)})
			continue
		}
		l = strings.TrimSpace(stripComment(l))
		if l == "" {
			continue
		}
		for (open(l) > 0 || strings.HasSuffix(l, "\\")) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(stripComment(lines[i]))
		}
		out = append(out, statement{start + 1, l})
	}
	return out, nil
}

// open counts brackets opened and not yet closed.
func open(s string) int {
	n := 0
	for _, c := range s {
		switch c {
		case '(', '[', '{':
			n++
		case ')', ']', '}':
			n--
		}
	}
	return n
}

func stripComment(s string) string {
	inStr := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			inStr = !inStr
		case !inStr && strings.HasPrefix(s[i:], "//"):
			return s[:i]
		case !inStr && strings.HasPrefix(s[i:], "/*"):
			if j := strings.Index(s[i+2:], "*/"); j >= 0 {
				return s[:i] + stripComment(s[i+2+j+2:])
			}
			return s[:i]
		}
	}
	return s
}

func (r *runner) run(script string) error {
	stmts, err := split(script)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		r.line, r.text = st.line, st.text
		if err := r.do(st.text); err != nil {
			return err
		}
		if err := r.wake(); err != nil {
			return err
		}
	}
	// Whatever tcpfsm sent in the last tolerance window is unexpected.
	if err := r.advance(r.now.Add(r.o.Tolerance)); err != nil {
		return err
	}
	if len(r.pending) > 0 && !r.o.IgnoreUnexpected {
		return r.fail("no more packets", r.describe(&r.pending[0]))
	}
	if len(r.blocked) > 0 {
		b := r.blocked[0]
		r.line, r.text = b.line, b.text
		return r.fail(fmt.Sprintf("the call to return by %v", b.end), "still blocked at the end of the script")
	}
	return nil
}

func (r *runner) fail(expected, got string) error {
	return &Error{Line: r.line, Text: r.text, Expected: expected, Got: got}
}

func (r *runner) unsupported(format string, args ...any) error {
	return &UnsupportedError{Line: r.line, Reason: fmt.Sprintf(format, args...)}
}

func (r *runner) do(l string) error {
	switch {
	case strings.HasPrefix(l, "--"):
		return r.option(l)
	case strings.HasPrefix(l, "`"):
		return r.shell(l)
	}
	// The time; a blocking call's range may be written "+0 ... 0.2".
	l = strings.Replace(strings.Replace(l, " ...", "...", 1), "... ", "...", 1)
	tok, rest, _ := strings.Cut(strings.Replace(l, "\t", " ", 1), " ")
	if i := strings.IndexAny(tok, "`%<>"); i > 0 {
		tok, rest = tok[:i], tok[i:]+" "+rest
	}
	rest = strings.TrimSpace(rest)
	at, end, hasEnd, err := r.times(tok)
	if err != nil {
		return r.fail("a time", tok)
	}
	r.last = at
	r.started = true
	switch {
	case strings.HasPrefix(rest, ">"):
		return r.expect(at, strings.TrimSpace(rest[1:]))
	case strings.HasPrefix(rest, "<"):
		if err := r.checkQuiet(at); err != nil {
			return err
		}
		return r.inject(strings.TrimSpace(rest[1:]))
	case strings.HasPrefix(rest, "`"):
		return r.shell(rest)
	}
	if err := r.checkQuiet(at); err != nil {
		return err
	}
	if strings.HasPrefix(rest, "%{") {
		return r.code(rest)
	}
	return r.call(rest, at, end, hasEnd)
}

// times reads an event time: "0.1", "+0.1", "*", "0.1~0.2",
// "+0.1~+0.2", or a start and an end for a blocking call ("+0...0.2").
func (r *runner) times(tok string) (at, end tcpfsm.Time, hasEnd bool, err error) {
	if tok == "*" {
		r.rangeEnd = r.now + tcpfsm.Time(1<<62)
		return r.now, 0, false, nil
	}
	one := func(s string, base tcpfsm.Time) (tcpfsm.Time, error) {
		rel := strings.HasPrefix(s, "+")
		d, err := seconds(strings.TrimPrefix(s, "+"))
		if err != nil {
			return 0, err
		}
		if rel {
			return base.Add(d), nil
		}
		return tcpfsm.Time(d), nil
	}
	if a, b, ok := strings.Cut(tok, "..."); ok {
		at, err = one(a, r.last)
		if err != nil {
			return
		}
		// The end time counts from the previous line, as the start does.
		if strings.HasPrefix(a, "+") && !strings.HasPrefix(b, "+") {
			b = "+" + b
		}
		end, err = one(b, r.last)
		return at, end, true, err
	}
	if a, b, ok := strings.Cut(tok, "~"); ok {
		// A range: an outbound packet may come anywhere in it.
		at, err = one(a, r.last)
		if err == nil {
			r.rangeEnd, err = one(b, r.last)
			r.rangeEnd = max(r.rangeEnd, at)
		}
		return
	}
	at, err = one(tok, r.last)
	r.rangeEnd = at
	return
}

func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func (r *runner) option(l string) error {
	k, v, _ := strings.Cut(strings.TrimPrefix(l, "--"), "=")
	switch k {
	case "ip_version":
		switch v {
		case "ipv6":
			r.cfg.IPv6 = true
		case "ipv4-mapped-ipv6":
			return r.unsupported("IPv4-mapped IPv6 addresses")
		}
	case "tail_loss_probe":
		r.cfg.TailLossProbe = true
	case "early_retransmit":
		r.cfg.EarlyRetransmit = true
	case "rto_min_ms":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 60000 {
			return r.fail("a number of milliseconds", v)
		}
		r.cfg.MinRTO = time.Duration(n) * time.Millisecond
	case "tolerance_usecs":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return r.fail("a number", v)
		}
		r.o.Tolerance = time.Duration(n) * time.Microsecond
	case "mss":
		// The segment size of injected packets longer than it: they
		// arrive as one batch of segments, as GRO would hand them over.
		n, err := strconv.Atoi(v)
		if err != nil || n < 64 || n > 65535 {
			return r.fail("an MSS", v)
		}
		r.groMSS = uint32(n)
	default:
		r.ignored = append(r.ignored, "--"+k)
	}
	return nil
}

// advance moves the clock to t, firing due timers on the way and waking
// blocked calls that can complete.
func (r *runner) advance(t tcpfsm.Time) error {
	return r.advanceUntil(t, false)
}

// advanceUntil is advance; with firstSend it stops at the first moment
// by t when a segment has been sent, so what a script does after seeing
// it happens at its own time.
func (r *runner) advanceUntil(t tcpfsm.Time, firstSend bool) error {
	for !firstSend || len(r.pending) == 0 {
		var next tcpfsm.Time
		var who *conn
		for _, c := range r.conns {
			if d, ok := c.tcb.NextDeadline(); ok && d <= t && (who == nil || d < next) {
				next, who = d, c
			}
		}
		// A packet the qdisc releases before (or with) the next timer
		// goes first.
		if at, c := r.paceNext(); c != nil && at <= t && (who == nil || at <= next) {
			r.now = max(r.now, at)
			r.paceRelease(c)
			if err := r.wake(); err != nil {
				return err
			}
			continue
		}
		if who == nil {
			break
		}
		r.now = max(r.now, next)
		if err := r.step(who, tcpfsm.Tick()); err != nil {
			return err
		}
		if err := r.wake(); err != nil {
			return err
		}
	}
	if firstSend && len(r.pending) > 0 {
		return nil
	}
	r.now = max(r.now, t)
	return r.wake()
}

// step applies an event to a connection and collects what it sends and
// tells.
func (r *runner) step(c *conn, ev tcpfsm.Event) error {
	var err error
	r.out, err = c.tcb.Step(ev, r.now, r.out[:0])
	if err != nil {
		return err
	}
	var hi tcpfsm.Seq // the end of the data sent
	hasData := false
	for _, a := range r.out {
		switch a.Kind {
		case tcpfsm.ActSend:
			if a.DataLen > 0 {
				if end := a.DataSeq.Add(a.DataLen); !hasData || hi.LessThan(end) {
					hi, hasData = end, true
				}
			}
			seg := c.tcb.SegmentOf(&a)
			if seg.Flags&tcpfsm.FlagSYN != 0 {
				c.lISS = seg.Seq // sequence numbers are relative to it from now on
			}
			if s := (sent{a: a, seg: seg, c: c, at: r.now}); !r.paceHold(c, s) {
				r.pending = append(r.pending, s)
			}
		case tcpfsm.ActNotify:
			c.note(a.Note, r.now)
		}
	}
	r.paceAfterStep(c, ev)
	if r.linuxSend() {
		r.sendQueueStep(c, hi, hasData)
	}
	return nil
}

// checkQuiet fails if tcpfsm sent something before at that no line expected.
func (r *runner) checkQuiet(at tcpfsm.Time) error {
	if err := r.advance(at - tcpfsm.Time(r.o.Tolerance)); err != nil {
		return err
	}
	if len(r.pending) > 0 && !r.o.IgnoreUnexpected {
		return r.fail("no packet before this line", r.describe(&r.pending[0]))
	}
	return r.advance(at)
}
