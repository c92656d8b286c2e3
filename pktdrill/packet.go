package pktdrill

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// packet is a parsed packet line.
type packet struct {
	flags                          tcpfsm.Flags
	seq, length, ack, win, urg     uint32
	hasSeq, hasAck, hasWin, hasUrg bool
	hasOpts, anyOpts               bool
	opts                           []opt
	ecn                            bool // an ECN codepoint or ECE/CWR flag was written
}

type opt struct {
	kind   string
	a, b   uint32
	hasVal bool // TS: the script named a TSval
	blocks []uint32
}

var errSyntax = errors.New("cannot parse")

// errFeature marks a packet that parses but uses a feature tcpfsm lacks.
type errFeature string

func (e errFeature) Error() string { return string(e) }

func parseUint(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	return uint32(n), err
}

func parsePacket(spec string) (*packet, error) {
	p := &packet{}
	if i := strings.Index(spec, "<"); i >= 0 {
		j := strings.LastIndex(spec, ">")
		if j < i {
			return nil, fmt.Errorf("%w options in %q", errSyntax, spec)
		}
		if err := p.parseOptions(strings.TrimSpace(spec[i+1 : j])); err != nil {
			return nil, err
		}
		spec = spec[:i]
	}
	f := strings.Fields(spec)
	// IP information before the flags: "[ect0]", "(tos 0x1)", and ports.
	for len(f) > 0 && (strings.HasPrefix(f[0], "[") || strings.HasPrefix(f[0], "(")) {
		info := f[0]
		f = f[1:]
		for !strings.HasSuffix(info, "]") && !strings.HasSuffix(info, ")") && len(f) > 0 {
			info += " " + f[0]
			f = f[1:]
		}
		low := strings.ToLower(info)
		if strings.Contains(low, "ect") || strings.Contains(low, "ce") {
			return nil, errFeature("ECN codepoints in the IP header")
		}
	}
	if len(f) > 0 {
		switch strings.ToLower(f[0]) {
		case "udp", "icmp":
			return nil, errFeature(strings.ToUpper(f[0]) + " packets")
		case "ipv4", "ipv6", "gre", "mpls":
			return nil, errFeature("encapsulated packets (" + f[0] + ")")
		}
		if strings.Contains(f[0], ">") && len(f) > 1 {
			f = f[1:] // port information: "33333>8080"
		}
	}
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
		case 'E':
			p.flags |= tcpfsm.FlagECE
			p.ecn = true
		case 'W':
			p.flags |= tcpfsm.FlagCWR
			p.ecn = true
		case '-':
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
			na, err1 := parseUint(a)
			nb, err2 := parseUint(b)
			nl, err3 := parseUint(strings.TrimSuffix(l, ")"))
			if err1 != nil || err2 != nil || err3 != nil || !strings.HasSuffix(l, ")") {
				return nil, fmt.Errorf("%w sequence %q", errSyntax, f[k])
			}
			if nb-na != nl {
				return nil, fmt.Errorf("%w sequence %q: the length is not end less start", errSyntax, f[k])
			}
			p.seq, p.length, p.hasSeq = na, nl, true
		case k+1 < len(f) && (f[k] == "ack" || f[k] == "win" || f[k] == "urg"):
			n, err := parseUint(f[k+1])
			if err != nil {
				return nil, fmt.Errorf("%w %s %q", errSyntax, f[k], f[k+1])
			}
			switch f[k] {
			case "ack":
				p.ack, p.hasAck = n, true
			case "win":
				p.win, p.hasWin = n, true
			case "urg":
				p.urg, p.hasUrg = n, true
			}
			k++
		default:
			return nil, fmt.Errorf("%w %q", errSyntax, f[k])
		}
	}
	return p, nil
}

func (p *packet) parseOptions(o string) error {
	p.hasOpts = true
	if o == "..." {
		p.anyOpts = true
		return nil
	}
	if o == "" {
		return nil
	}
	num := func(f []string, i int) (uint32, error) {
		if i >= len(f) {
			return 0, fmt.Errorf("%w option %q: a value is missing", errSyntax, strings.Join(f, " "))
		}
		n, err := parseUint(f[i])
		if err != nil {
			return 0, fmt.Errorf("%w option %q", errSyntax, strings.Join(f, " "))
		}
		return n, nil
	}
	var feature error
	for _, part := range strings.Split(o, ",") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		x := opt{kind: f[0]}
		var err error
		switch f[0] {
		case "mss", "wscale":
			x.a, err = num(f, 1)
		case "TS":
			for k := 1; k < len(f) && err == nil; k += 2 {
				var n uint32
				n, err = num(f, k+1)
				switch f[k] {
				case "val":
					x.a, x.hasVal = n, true
				case "ecr":
					x.b = n
				default:
					err = fmt.Errorf("%w TS option %q", errSyntax, part)
				}
			}
		case "sack":
			for _, blk := range f[1:] {
				a, b, ok := strings.Cut(blk, ":")
				na, err1 := parseUint(a)
				nb, err2 := parseUint(b)
				if !ok || err1 != nil || err2 != nil {
					return fmt.Errorf("%w SACK block %q", errSyntax, blk)
				}
				x.blocks = append(x.blocks, na, nb)
			}
		case "FO", "FOEXP":
			feature = errFeature("TCP Fast Open")
		case "md5":
			feature = errFeature("TCP MD5 signatures")
		case "nop", "eol", "sackOK":
		default:
			if n, e := parseUint(f[0]); e == nil && n < 256 {
				feature = errFeature("raw TCP option " + f[0])
				continue
			}
			return fmt.Errorf("unsupported option %q", f[0])
		}
		if err != nil {
			return err
		}
		if x.kind != "nop" && x.kind != "eol" {
			p.opts = append(p.opts, x)
		}
	}
	return feature
}

// packetError turns a packet parse error into a failure or, for a
// feature tcpfsm lacks, an unsupported verdict.
func (r *runner) packetError(err error) error {
	var f errFeature
	if errors.As(err, &f) {
		return r.unsupported("%s", string(f))
	}
	return r.fail("a packet", err.Error())
}

// expect checks the next packet tcpfsm sends.
func (r *runner) expect(at tcpfsm.Time, spec string) error {
	want, err := parsePacket(spec)
	if err != nil {
		return r.packetError(err)
	}
	if want.ecn {
		return r.unsupported("ECN")
	}
	late := r.rangeEnd
	if late-at > tcpfsm.Time(time.Hour) {
		late = at.Add(time.Hour) // "*": any time, within reason
	}
	if len(r.pending) == 0 {
		if err := r.advanceUntil(late.Add(r.o.Tolerance), true); err != nil {
			return err
		}
	}
	if len(r.pending) == 0 {
		return r.fail(spec, "nothing sent")
	}
	got := r.coalesce(want)
	if got.at < at-tcpfsm.Time(r.o.Tolerance) {
		return r.fail(fmt.Sprintf("%s at %v", spec, at), fmt.Sprintf("%s at %v", r.describe(&got), got.at))
	}
	if msg := r.match(want, &got); msg != "" {
		return r.fail(spec, r.describe(&got)+" ("+msg+")")
	}
	if late != at {
		// Later relative times count from when the packet came.
		r.last = max(got.at, at)
		return r.advance(max(r.last, r.now))
	}
	return r.advance(max(at, r.now))
}

// coalesce takes the next sent segment, joined with the segments sent
// right after it at the same time that continue it, if the script
// expects one packet that long (segmentation offload shows a
// multi-segment write so).
func (r *runner) coalesce(want *packet) sent {
	got := r.pending[0]
	r.pending = r.pending[1:]
	if !want.hasSeq || want.length <= got.a.DataLen || got.a.DataLen == 0 {
		return got
	}
	n := 0
	total := got.a.DataLen
	for n < len(r.pending) && total < want.length {
		s := &r.pending[n]
		if s.c != got.c || s.at != got.at || s.a.DataLen == 0 ||
			s.a.DataSeq != got.a.DataSeq.Add(total) || s.seg.Flags&(tcpfsm.FlagSYN|tcpfsm.FlagRST) != 0 {
			break
		}
		total += s.a.DataLen
		n++
	}
	if total != want.length {
		return got
	}
	for _, s := range r.pending[:n] {
		got.seg.Flags |= s.seg.Flags
		got.seg.Ack, got.seg.Window = s.seg.Ack, s.seg.Window
	}
	got.a.DataLen = total
	r.pending = r.pending[n:]
	return got
}

// describe prints a sent segment in script terms (relative numbers).
func (r *runner) describe(x *sent) string {
	a := &x.a
	s := &x.seg
	var b strings.Builder
	b.WriteString(flagText(s.Flags))
	rel := s.Seq.Diff(x.c.lISS)
	fmt.Fprintf(&b, " %d:%d(%d)", rel, rel+a.DataLen, a.DataLen)
	if s.Flags&tcpfsm.FlagACK != 0 {
		fmt.Fprintf(&b, " ack %d", s.Ack.Diff(x.c.rISN))
	}
	fmt.Fprintf(&b, " win %d", s.Window)
	if o := optionText(&s.Options, x.c); o != "" {
		b.WriteString(" <" + o + ">")
	}
	return b.String()
}

func (r *runner) match(w *packet, x *sent) string {
	a := &x.a
	s := &x.seg
	c := x.c
	ignore := tcpfsm.FlagECE | tcpfsm.FlagCWR
	if r.o.IgnorePush {
		ignore |= tcpfsm.FlagPSH
	}
	if w.flags&^ignore != s.Flags&^ignore {
		return "flags"
	}
	if w.hasSeq {
		if s.Seq.Diff(c.lISS) != w.seq || a.DataLen != w.length {
			return "sequence numbers"
		}
	}
	if w.hasAck && (s.Flags&tcpfsm.FlagACK == 0 || s.Ack.Diff(c.rISN) != w.ack) {
		return "ack"
	}
	if w.hasWin && !r.o.IgnoreWindow && uint32(s.Window) != w.win {
		return "window"
	}
	if w.hasUrg && uint32(s.Urgent) != w.urg {
		return "urgent pointer"
	}
	if w.hasOpts && !w.anyOpts && !r.o.IgnoreOptions {
		if msg := r.matchOptions(w, &s.Options, c); msg != "" {
			return msg
		}
	}
	return ""
}

func (r *runner) matchOptions(w *packet, o *tcpfsm.Options, c *conn) string {
	var want tcpfsm.OptionSet
	wantSACK := false
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
			if !o.Has(tcpfsm.OptTimestamps) {
				return "options"
			}
			if x.b != 0 && o.TSEcr != x.b {
				return "TS ecr"
			}
			if x.hasVal && !r.tsOffsetSet {
				r.tsOffset, r.tsOffsetSet = o.TSVal-x.a, true
			}
		case "sack":
			wantSACK = true
			if int(o.NumSACK) != len(x.blocks)/2 {
				return "sack blocks"
			}
			for i, blk := range o.SACKBlocks() {
				if blk.Left.Diff(c.rISN) != x.blocks[2*i] || blk.Right.Diff(c.rISN) != x.blocks[2*i+1] {
					return "sack blocks"
				}
			}
		}
	}
	if o.Present != want {
		return "options"
	}
	if !wantSACK && o.NumSACK > 0 {
		return "sack blocks"
	}
	return ""
}

// inject builds a segment from the script's side and steps it into the
// connection it belongs to.
func (r *runner) inject(spec string) error {
	p, err := parsePacket(spec)
	if err != nil {
		return r.packetError(err)
	}
	if p.ecn {
		return r.unsupported("ECN")
	}
	if !p.hasSeq {
		return r.fail("a packet with a sequence number", spec)
	}
	if p.flags&tcpfsm.FlagSYN != 0 && p.length > 0 && r.fastOpen {
		return r.unsupported("TCP Fast Open (data in a SYN)")
	}
	c, ok := r.target(p)
	if !ok {
		return nil // dropped, as a full accept queue drops a SYN
	}
	s := tcpfsm.Segment{SrcPort: remotePort, DstPort: localPort, Flags: p.flags, Window: uint16(p.win)}
	if !p.hasWin {
		s.Window = 65535
	}
	if p.win > 65535 {
		return r.fail("a window below 65536", spec)
	}
	s.Seq = c.rISN.Add(p.seq)
	if p.hasAck {
		s.Ack = c.lISS.Add(p.ack)
	}
	s.Urgent = uint16(p.urg)
	if p.length > 0 {
		if p.length > 1<<20 {
			return r.fail("a segment of at most 1 MiB", spec)
		}
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
			if x.b != 0 && r.tsOffsetSet {
				s.Options.TSEcr += r.tsOffset
			}
		case "sack":
			for i := 0; i+1 < len(x.blocks); i += 2 {
				s.Options.AddSACK(tcpfsm.SACKBlock{Left: c.lISS.Add(x.blocks[i]), Right: c.lISS.Add(x.blocks[i+1])})
			}
		}
	}
	if p.length > 0 || p.flags&tcpfsm.FlagSYN != 0 {
		c.lastData = r.now // Linux stamps the handshake too
	}
	if r.groMSS > 0 && p.length > r.groMSS && p.flags&(tcpfsm.FlagSYN|tcpfsm.FlagFIN|tcpfsm.FlagRST) == 0 {
		// One batch of segments: only the last one asks for output.
		whole := s.Payload
		for off := uint32(0); off < p.length; off += r.groMSS {
			part := s
			part.Seq = s.Seq.Add(off)
			part.Payload = whole[off:min(off+r.groMSS, p.length)]
			c.rcvMSS = max(c.rcvMSS, uint32(len(part.Payload)))
			ev := tcpfsm.Arrive(&part, localISS)
			ev.More = off+r.groMSS < p.length
			if err := r.step(c, ev); err != nil {
				return err
			}
		}
		return nil
	}
	c.rcvMSS = max(c.rcvMSS, p.length)
	return r.step(c, tcpfsm.Arrive(&s, localISS))
}

// target finds the connection an injected packet belongs to: the newest
// live one, else a new child of a listener for a SYN, else a copy of the
// listener or a CLOSED TCB that answers as such. ok is false when a full
// accept queue drops the SYN.
func (r *runner) target(p *packet) (c *conn, ok bool) {
	syn := p.flags&(tcpfsm.FlagSYN|tcpfsm.FlagACK) == tcpfsm.FlagSYN
	for i := len(r.conns) - 1; i >= 0; i-- {
		c := r.conns[i]
		if c.tcb.State != tcpfsm.Closed && !(syn && c.tcb.State == tcpfsm.TimeWait && r.listener() != nil) {
			return c, true
		}
	}
	if l := r.listener(); l != nil {
		if !syn {
			// The listener answers (a RST for a stray ACK); it stays as it is.
			c := &conn{tcb: l.ltcb, rISN: remoteISN, lISS: r.lastISS()}
			return c, true
		}
		if len(l.acceptable(r)) > l.backlog {
			return nil, false
		}
		c := r.newConn(l.ltcb, l)
		c.rISN = remoteISN
		c.child = true
		c.advMSS = advMSS(l.cfg)
		return c, true
	}
	if r.scratch == nil {
		r.scratch = &conn{rISN: remoteISN}
	}
	r.scratch.tcb = tcpfsm.TCB{}
	r.scratch.lISS = r.lastISS()
	return r.scratch, true
}

// lastISS is the ISS of the newest connection, so a reply to a stray
// segment reads in the same terms; 0 before any.
func (r *runner) lastISS() tcpfsm.Seq {
	if len(r.conns) > 0 {
		return r.conns[len(r.conns)-1].lISS
	}
	return 0
}

func flagText(f tcpfsm.Flags) string {
	var b strings.Builder
	for _, x := range []struct {
		f tcpfsm.Flags
		c byte
	}{{tcpfsm.FlagSYN, 'S'}, {tcpfsm.FlagFIN, 'F'}, {tcpfsm.FlagRST, 'R'}, {tcpfsm.FlagPSH, 'P'}, {tcpfsm.FlagURG, 'U'}, {tcpfsm.FlagECE, 'E'}, {tcpfsm.FlagCWR, 'W'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if f&tcpfsm.FlagACK != 0 {
		b.WriteByte('.')
	}
	return b.String()
}

func optionText(o *tcpfsm.Options, c *conn) string {
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
		parts = append(parts, fmt.Sprintf("sack %d:%d", b.Left.Diff(c.rISN), b.Right.Diff(c.rISN)))
	}
	return strings.Join(parts, ",")
}
