// Package pktdrill runs scripts written in the syntax of packetdrill
// (Google's TCP test tool) against tcpfsm's state machine, so a
// conformance case reads like the RFC's own figures and existing
// packetdrill suites can be run.
//
// The supported subset:
//
//   - Timing: a line starts with a time in seconds, absolute ("0.100") or
//     relative to the previous line ("+0.1"), or "*" for any time.
//     Outbound packets may come within the tolerance (default 4 ms, or
//     --tolerance_usecs) of the time written.
//   - "< FLAGS SEQ:SEQ(LEN) [ack N] [win N] [urg N] [<options>]" injects
//     a segment; "> ..." expects the next one tcpfsm sends, and fails if
//     it differs or does not come. Flags are tcpdump's letters (S . F R P U
//     E W), "." alone meaning a bare ACK. Sequence and acknowledgment
//     numbers are relative to each side's initial sequence number, as in
//     packetdrill. Options: mss N, wscale N, sackOK, nop, eol,
//     TS val N ecr N, sack A:B ...; "<...>" in an expected packet matches
//     any options, and "..." may stand for the rest of a line.
//   - Socket calls map to user calls: socket, bind, setsockopt, fcntl,
//     getsockopt are accepted and skipped; listen() makes a passive open;
//     connect() an active open; accept() waits for ESTABLISHED; write(fd,
//     ..., N) queues N bytes; read(fd, ..., N) consumes N bytes; close()
//     closes; shutdown() closes the sending half. A return value of -1
//     with an errno is checked against tcpfsm's error.
//   - "`shell command`" lines and "--ip_version" / "--tolerance_usecs"
//     options (on a line by themselves, or given to Run) are read;
//     shell lines are skipped. Three options are tcpfsm's own, for its
//     opt-in loss recovery: "--tail_loss_probe" (Config.TailLossProbe),
//     "--early_retransmit" (Config.EarlyRetransmit) and "--rto_min_ms=N"
//     (Config.MinRTO). Options come before the first event.
//
// The local side is tcpfsm (port 8080); the remote side is the script
// (port 33333, initial sequence number 1000000). Our sequence numbers are
// shown relative to our first SYN's, and absolute before we sent one (a
// RST from a closed port reads "R. 0:0(0) ack 1"). Everything runs on
// virtual time: a script takes no real time.
package pktdrill

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Options change how strictly expected packets are compared.
type Options struct {
	IgnoreWindow  bool          // do not compare window values
	IgnoreOptions bool          // do not compare option lists
	Tolerance     time.Duration // how late or early an outbound packet may be; default 4 ms
	Config        tcpfsm.Config // the connection's settings (defaults: tcpfsm's)
}

// Error is a script failure: the line, what was expected and what happened.
type Error struct {
	Line     int
	Text     string // the script line
	Expected string
	Got      string
}

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

const (
	localPort  = 8080
	remotePort = 33333
	remoteISN  = 1000000
	localISS   = 5000
)

type runner struct {
	o       Options
	tcb     tcpfsm.TCB
	now     tcpfsm.Time
	last    tcpfsm.Time // time of the previous line
	out     []tcpfsm.Action
	pending []tcpfsm.Action // sent segments not yet matched
	rISN    tcpfsm.Seq
	lISS    tcpfsm.Seq // our initial sequence number, once a SYN of ours showed it; 0 before
	line    int
	text    string
}

// Run runs a script and returns the first failure as an *Error.
func Run(script string, o Options) error {
	if o.Tolerance == 0 {
		o.Tolerance = 4 * time.Millisecond
	}
	r := &runner{o: o, rISN: remoteISN}
	tcb, err := tcpfsm.NewTCB(o.Config)
	if err != nil {
		return err
	}
	r.tcb = tcb
	lines := strings.Split(script, "\n")
	for i := 0; i < len(lines); i++ {
		r.line, r.text = i+1, lines[i]
		l := strings.TrimSpace(stripComment(lines[i]))
		if l == "" {
			continue
		}
		// Socket calls and packets may continue over several lines.
		for strings.Count(l, "(") > strings.Count(l, ")") && i+1 < len(lines) {
			i++
			l += " " + strings.TrimSpace(stripComment(lines[i]))
		}
		if err := r.do(l); err != nil {
			return err
		}
	}
	// Whatever tcpfsm sent in the last tolerance window is unexpected.
	r.advance(r.now.Add(r.o.Tolerance))
	if len(r.pending) > 0 {
		return r.fail("no more packets", r.pending[0].String())
	}
	return nil
}

func stripComment(s string) string {
	if i := strings.Index(s, "//"); i >= 0 {
		return s[:i]
	}
	return s
}

func (r *runner) fail(expected, got string) error {
	return &Error{Line: r.line, Text: r.text, Expected: expected, Got: got}
}

func (r *runner) do(l string) error {
	switch {
	case strings.HasPrefix(l, "--"):
		return r.option(l)
	case strings.HasPrefix(l, "`"):
		return nil // shell lines have no meaning here
	}
	// The time.
	tok, rest, _ := strings.Cut(l, " ")
	rest = strings.TrimSpace(rest)
	var at tcpfsm.Time
	switch {
	case tok == "*":
		at = r.now
	case strings.HasPrefix(tok, "+"):
		d, err := seconds(tok[1:])
		if err != nil {
			return r.fail("a time", tok)
		}
		at = r.last.Add(d)
	default:
		d, err := seconds(tok)
		if err != nil {
			return r.fail("a time", tok)
		}
		at = tcpfsm.Time(d)
	}
	r.last = at
	switch {
	case strings.HasPrefix(rest, ">"):
		return r.expect(at, strings.TrimSpace(rest[1:]))
	case strings.HasPrefix(rest, "<"):
		if err := r.checkQuiet(at); err != nil {
			return err
		}
		return r.inject(strings.TrimSpace(rest[1:]))
	}
	if err := r.checkQuiet(at); err != nil {
		return err
	}
	return r.call(rest)
}

func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}

func (r *runner) option(l string) error {
	k, v, _ := strings.Cut(strings.TrimPrefix(l, "--"), "=")
	switch k {
	case "ip_version":
		if v == "ipv6" {
			r.o.Config.IPv6 = true
			return r.reconfigure()
		}
	case "tail_loss_probe":
		r.o.Config.TailLossProbe = true
		return r.reconfigure()
	case "early_retransmit":
		r.o.Config.EarlyRetransmit = true
		return r.reconfigure()
	case "rto_min_ms":
		n, err := strconv.Atoi(v)
		if err != nil {
			return r.fail("a number", v)
		}
		r.o.Config.MinRTO = time.Duration(n) * time.Millisecond
		return r.reconfigure()
	case "tolerance_usecs":
		n, err := strconv.Atoi(v)
		if err != nil {
			return r.fail("a number", v)
		}
		r.o.Tolerance = time.Duration(n) * time.Microsecond
	}
	return nil // other options are accepted and ignored
}

// reconfigure starts the TCB again with the changed settings; options
// come before the first event, so nothing is lost.
func (r *runner) reconfigure() error {
	tcb, err := tcpfsm.NewTCB(r.o.Config)
	if err != nil {
		return err
	}
	r.tcb = tcb
	return nil
}

// advance moves the clock to t, firing due timers on the way.
func (r *runner) advance(t tcpfsm.Time) {
	for {
		d, ok := r.tcb.NextDeadline()
		if !ok || d > t {
			break
		}
		r.now = max(r.now, d)
		r.step(tcpfsm.Tick())
	}
	r.now = max(r.now, t)
}

func (r *runner) step(ev tcpfsm.Event) error {
	var err error
	r.out, err = r.tcb.Step(ev, r.now, r.out[:0])
	if err != nil {
		return err
	}
	for _, a := range r.out {
		if a.Kind == tcpfsm.ActSend {
			if a.Seg.Flags&tcpfsm.FlagSYN != 0 {
				r.lISS = a.Seg.Seq // sequence numbers are relative to it from now on
			}
			r.pending = append(r.pending, a)
		}
	}
	return nil
}

// checkQuiet fails if tcpfsm sent something before at that no line expected.
func (r *runner) checkQuiet(at tcpfsm.Time) error {
	r.advance(at - tcpfsm.Time(r.o.Tolerance))
	if len(r.pending) > 0 {
		return r.fail("no packet before this line", r.pending[0].String())
	}
	r.advance(at)
	return nil
}

// expect checks the next packet tcpfsm sends.
func (r *runner) expect(at tcpfsm.Time, spec string) error {
	want, err := parsePacket(spec)
	if err != nil {
		return r.fail("a packet", err.Error())
	}
	if len(r.pending) == 0 {
		r.advance(at.Add(r.o.Tolerance))
	}
	if len(r.pending) == 0 {
		return r.fail(spec, "nothing sent")
	}
	got := r.pending[0]
	r.pending = r.pending[1:]
	if msg := r.match(want, &got); msg != "" {
		return r.fail(spec, describe(&got, r.lISS, r.rISN)+" ("+msg+")")
	}
	r.advance(max(at, r.now))
	return nil
}

// describe prints a sent segment in script terms (relative numbers).
func describe(a *tcpfsm.Action, liss, risn tcpfsm.Seq) string {
	s := &a.Seg
	var b strings.Builder
	b.WriteString(flagText(s.Flags))
	rel := s.Seq.Diff(liss)
	fmt.Fprintf(&b, " %d:%d(%d)", rel, rel+a.DataLen, a.DataLen)
	if s.Flags&tcpfsm.FlagACK != 0 {
		fmt.Fprintf(&b, " ack %d", s.Ack.Diff(risn))
	}
	fmt.Fprintf(&b, " win %d", s.Window)
	if o := optionText(&s.Options); o != "" {
		b.WriteString(" <" + o + ">")
	}
	return b.String()
}

func (r *runner) match(w *packet, a *tcpfsm.Action) string {
	s := &a.Seg
	if w.flags != s.Flags&^(tcpfsm.FlagECE|tcpfsm.FlagCWR) && !(w.flags == tcpfsm.FlagACK && s.Flags == tcpfsm.FlagACK) {
		return "flags"
	}
	if w.hasSeq {
		if s.Seq.Diff(r.lISS) != w.seq || a.DataLen != w.length {
			return "sequence numbers"
		}
	}
	if w.hasAck && (s.Flags&tcpfsm.FlagACK == 0 || s.Ack.Diff(r.rISN) != w.ack) {
		return "ack"
	}
	if w.hasWin && !r.o.IgnoreWindow && uint32(s.Window) != w.win {
		return "window"
	}
	if w.hasUrg && uint32(s.Urgent) != w.urg {
		return "urgent pointer"
	}
	if w.hasOpts && !w.anyOpts && !r.o.IgnoreOptions {
		if msg := matchOptions(w, &s.Options, r); msg != "" {
			return msg
		}
	}
	return ""
}

func matchOptions(w *packet, o *tcpfsm.Options, r *runner) string {
	var want tcpfsm.OptionSet
	for _, x := range w.opts {
		switch x.kind {
		case "mss":
			want |= tcpfsm.OptMSS
			if o.MSS != uint16(x.a) {
				return "mss"
			}
		case "wscale":
			want |= tcpfsm.OptWindowScale
			if o.WindowScale != uint8(x.a) {
				return "wscale"
			}
		case "sackOK":
			want |= tcpfsm.OptSACKPermitted
		case "TS":
			want |= tcpfsm.OptTimestamps
			if x.b != 0 && o.TSEcr != x.b {
				return "TS ecr"
			}
		case "sack":
			if int(o.NumSACK) != len(x.blocks)/2 {
				return "sack blocks"
			}
			for i, blk := range o.SACKBlocks() {
				if blk.Left.Diff(r.rISN) != x.blocks[2*i] || blk.Right.Diff(r.rISN) != x.blocks[2*i+1] {
					return "sack blocks"
				}
			}
		}
	}
	if o.Present != want {
		return "options"
	}
	return ""
}

// inject builds a segment from the script's side and steps it.
func (r *runner) inject(spec string) error {
	p, err := parsePacket(spec)
	if err != nil {
		return r.fail("a packet", err.Error())
	}
	s := tcpfsm.Segment{SrcPort: remotePort, DstPort: localPort, Flags: p.flags, Window: uint16(p.win)}
	if !p.hasWin {
		s.Window = 65535
	}
	if p.flags&tcpfsm.FlagSYN != 0 && p.flags&tcpfsm.FlagACK == 0 && r.tcb.State == tcpfsm.Listen {
		r.rISN = remoteISN
	}
	s.Seq = r.rISN.Add(p.seq)
	if p.hasAck {
		s.Ack = r.lISS.Add(p.ack)
	}
	s.Urgent = uint16(p.urg)
	if p.length > 0 {
		s.Payload = make([]byte, p.length)
	}
	for _, x := range p.opts {
		switch x.kind {
		case "mss":
			s.Options.Present |= tcpfsm.OptMSS
			s.Options.MSS = uint16(x.a)
		case "wscale":
			s.Options.Present |= tcpfsm.OptWindowScale
			s.Options.WindowScale = uint8(x.a)
		case "sackOK":
			s.Options.Present |= tcpfsm.OptSACKPermitted
		case "TS":
			s.Options.Present |= tcpfsm.OptTimestamps
			s.Options.TSVal, s.Options.TSEcr = x.a, x.b
		case "sack":
			for i := 0; i+1 < len(x.blocks); i += 2 {
				s.Options.AddSACK(tcpfsm.SACKBlock{Left: r.lISS.Add(x.blocks[i]), Right: r.lISS.Add(x.blocks[i+1])})
			}
		}
	}
	ev := tcpfsm.Arrive(&s, localISS)
	return r.step(ev)
}

// call runs a socket call line such as "write(4, ..., 1000) = 1000".
func (r *runner) call(l string) error {
	name, rest, ok := strings.Cut(l, "(")
	if !ok {
		return r.fail("a socket call or a packet", l)
	}
	name = strings.TrimSpace(name)
	args, ret, _ := strings.Cut(rest, ")")
	ret = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(ret), "="))
	argv := strings.Split(args, ",")
	arg := func(i int) int {
		if i >= len(argv) {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(argv[i]))
		return n
	}
	var err error
	switch name {
	case "socket", "bind", "setsockopt", "getsockopt", "fcntl", "ioctl", "poll", "epoll_create", "epoll_ctl":
		return nil
	case "listen":
		err = r.step(tcpfsm.ListenOn(localPort))
	case "connect":
		err = r.step(tcpfsm.Open(localPort, remotePort, localISS))
		if err == nil && strings.HasPrefix(ret, "-1") && !strings.Contains(ret, "EINPROGRESS") {
			return r.fail(ret, "0")
		}
		return nil
	case "accept":
		if r.tcb.State != tcpfsm.Established && r.tcb.State != tcpfsm.CloseWait {
			return r.fail("an established connection to accept", r.tcb.State.String())
		}
		return nil
	case "write", "send", "writev", "sendto", "sendmsg":
		n := arg(2)
		err = r.step(tcpfsm.Send(uint32(n)))
	case "read", "recv", "recvfrom", "recvmsg":
		st, e := r.tcb.Status()
		if e != nil {
			err = e
			break
		}
		n := min(uint32(arg(2)), st.Unread)
		if want, e := strconv.Atoi(strings.Fields(ret + " 0")[0]); e == nil && want >= 0 && uint32(want) != n {
			return r.fail(ret, strconv.Itoa(int(n)))
		}
		err = r.step(tcpfsm.Receive(n))
	case "close":
		err = r.step(tcpfsm.Close())
	case "shutdown":
		err = r.step(tcpfsm.Close())
	default:
		return r.fail("a supported socket call", name)
	}
	return r.checkReturn(ret, err)
}

func (r *runner) checkReturn(ret string, err error) error {
	if strings.HasPrefix(ret, "-1") {
		if err == nil {
			return r.fail(ret, "success")
		}
		return nil
	}
	if err != nil && ret != "" {
		return r.fail(ret, err.Error())
	}
	return nil
}

// packet is a parsed packet line.
type packet struct {
	flags                          tcpfsm.Flags
	seq, length, ack, win, urg     uint32
	hasSeq, hasAck, hasWin, hasUrg bool
	hasOpts, anyOpts               bool
	opts                           []opt
}

type opt struct {
	kind   string
	a, b   uint32
	blocks []uint32
}

var errSyntax = errors.New("cannot parse")

func parsePacket(spec string) (*packet, error) {
	p := &packet{}
	if i := strings.Index(spec, "<"); i >= 0 {
		j := strings.LastIndex(spec, ">")
		if j < i {
			return nil, fmt.Errorf("%w options in %q", errSyntax, spec)
		}
		p.hasOpts = true
		o := strings.TrimSpace(spec[i+1 : j])
		if o == "..." {
			p.anyOpts = true
		} else if o != "" {
			for _, part := range strings.Split(o, ",") {
				f := strings.Fields(part)
				if len(f) == 0 {
					continue
				}
				x := opt{kind: f[0]}
				switch f[0] {
				case "mss", "wscale":
					if len(f) > 1 {
						n, _ := strconv.ParseUint(f[1], 10, 32)
						x.a = uint32(n)
					}
				case "TS":
					for k := 1; k+1 < len(f); k += 2 {
						n, _ := strconv.ParseUint(f[k+1], 10, 32)
						if f[k] == "val" {
							x.a = uint32(n)
						} else if f[k] == "ecr" {
							x.b = uint32(n)
						}
					}
				case "sack":
					for _, blk := range f[1:] {
						a, b, _ := strings.Cut(blk, ":")
						na, _ := strconv.ParseUint(a, 10, 32)
						nb, _ := strconv.ParseUint(b, 10, 32)
						x.blocks = append(x.blocks, uint32(na), uint32(nb))
					}
				case "nop", "eol", "sackOK":
				default:
					return nil, fmt.Errorf("unsupported option %q", f[0])
				}
				if x.kind != "nop" && x.kind != "eol" {
					p.opts = append(p.opts, x)
				}
			}
		}
		spec = spec[:i]
	}
	f := strings.Fields(spec)
	if len(f) == 0 {
		return nil, fmt.Errorf("%w %q", errSyntax, spec)
	}
	for _, c := range f[0] {
		switch c {
		case 'S':
			p.flags |= tcpfsm.FlagSYN
		case 'F':
			p.flags |= tcpfsm.FlagFIN
		case 'R':
			p.flags |= tcpfsm.FlagRST
		case 'P':
			p.flags |= tcpfsm.FlagPSH
		case '.':
			p.flags |= tcpfsm.FlagACK
		case 'U':
			p.flags |= tcpfsm.FlagURG
		case 'E', 'W':
		default:
			return nil, fmt.Errorf("%w flags %q", errSyntax, f[0])
		}
	}
	for k := 1; k < len(f); k++ {
		switch {
		case f[k] == "...":
			k = len(f)
		case strings.Contains(f[k], ":"):
			a, rest, _ := strings.Cut(f[k], ":")
			b, l, _ := strings.Cut(rest, "(")
			na, err1 := strconv.ParseUint(a, 10, 32)
			_, err2 := strconv.ParseUint(b, 10, 32)
			nl, err3 := strconv.ParseUint(strings.TrimSuffix(l, ")"), 10, 32)
			if err1 != nil || err2 != nil || err3 != nil {
				return nil, fmt.Errorf("%w sequence %q", errSyntax, f[k])
			}
			p.seq, p.length, p.hasSeq = uint32(na), uint32(nl), true
		case k+1 < len(f) && (f[k] == "ack" || f[k] == "win" || f[k] == "urg"):
			n, err := strconv.ParseUint(f[k+1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w %s %q", errSyntax, f[k], f[k+1])
			}
			switch f[k] {
			case "ack":
				p.ack, p.hasAck = uint32(n), true
			case "win":
				p.win, p.hasWin = uint32(n), true
			case "urg":
				p.urg, p.hasUrg = uint32(n), true
			}
			k++
		default:
			return nil, fmt.Errorf("%w %q", errSyntax, f[k])
		}
	}
	return p, nil
}

func flagText(f tcpfsm.Flags) string {
	var b strings.Builder
	for _, x := range []struct {
		f tcpfsm.Flags
		c byte
	}{{tcpfsm.FlagSYN, 'S'}, {tcpfsm.FlagFIN, 'F'}, {tcpfsm.FlagRST, 'R'}, {tcpfsm.FlagPSH, 'P'}, {tcpfsm.FlagURG, 'U'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if f&tcpfsm.FlagACK != 0 {
		b.WriteByte('.')
	}
	return b.String()
}

func optionText(o *tcpfsm.Options) string {
	var parts []string
	if o.Has(tcpfsm.OptMSS) {
		parts = append(parts, "mss "+strconv.Itoa(int(o.MSS)))
	}
	if o.Has(tcpfsm.OptSACKPermitted) {
		parts = append(parts, "sackOK")
	}
	if o.Has(tcpfsm.OptTimestamps) {
		parts = append(parts, fmt.Sprintf("TS val %d ecr %d", o.TSVal, o.TSEcr))
	}
	if o.Has(tcpfsm.OptWindowScale) {
		parts = append(parts, "wscale "+strconv.Itoa(int(o.WindowScale)))
	}
	for _, b := range o.SACKBlocks() {
		parts = append(parts, fmt.Sprintf("sack %d:%d", b.Left, b.Right))
	}
	return strings.Join(parts, ",")
}
