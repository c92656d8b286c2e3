package pktdrill

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tcpfsm/tcpfsm"
)

// code runs a "%{ ... }%" block: its assert statements are checked
// against the latest connection's tcp_info, and "NAME = expression"
// defines a name later expressions may use; other Python is skipped.
func (r *runner) code(block string) error {
	body := strings.TrimPrefix(block, "%{")
	body, _, _ = strings.Cut(body, "}%")
	var stmts []string
	for _, line := range strings.Split(body, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		stmts = append(stmts, strings.Split(line, ";")...)
	}
	for _, line := range stmts {
		line = strings.TrimSpace(line)
		if name, value, ok := assignment(line); ok {
			e := &evaluator{toks: tokenize(value), vars: r.vars}
			v, err := r.evaluate(e)
			if err != nil {
				return err
			}
			if r.vars == nil {
				r.vars = map[string]int64{}
			}
			r.vars[name] = v
			continue
		}
		if !strings.HasPrefix(line, "assert ") && !strings.HasPrefix(line, "assert(") {
			continue
		}
		expr := strings.TrimSpace(strings.TrimPrefix(line, "assert"))
		if parts := splitArgs(expr); len(parts) > 1 {
			expr = parts[0] // the rest is the message
		}
		info, err := r.tcpInfo()
		if err != nil {
			return err
		}
		e := &evaluator{toks: tokenize(expr), info: info, vars: r.vars}
		v, err := r.evaluate(e)
		if err != nil {
			return err
		}
		if v == 0 {
			return r.fail(expr, e.describe())
		}
	}
	return nil
}

// evaluate computes e's whole expression; what it cannot read is an
// UnsupportedError for this line, and what does not parse fails it.
func (r *runner) evaluate(e *evaluator) (int64, error) {
	v, err := e.expr()
	if err == nil && e.pos < len(e.toks) {
		err = fmt.Errorf("unexpected %q", e.toks[e.pos])
	}
	if err != nil {
		var u *UnsupportedError
		if errors.As(err, &u) {
			u.Line = r.line
			return 0, u
		}
		return 0, r.fail("an expression", err.Error())
	}
	return v, nil
}

// tcpInfo returns the tcp_info fields tcpfsm can report for the latest
// connection, in Linux's units (microseconds, segments).
func (r *runner) tcpInfo() (map[string]int64, error) {
	c := r.latest
	m := map[string]int64{}
	if c == nil {
		return nil, r.fail("a connection for tcp_info", "none")
	}
	states := map[tcpfsm.State]int64{
		tcpfsm.Established: 1, tcpfsm.SynSent: 2, tcpfsm.SynReceived: 3, tcpfsm.FinWait1: 4,
		tcpfsm.FinWait2: 5, tcpfsm.TimeWait: 6, tcpfsm.Closed: 7, tcpfsm.CloseWait: 8,
		tcpfsm.LastAck: 9, tcpfsm.Listen: 10, tcpfsm.Closing: 11,
	}
	m["tcpi_state"] = states[c.tcb.State]
	st, err := c.tcb.Status()
	if err != nil {
		return m, nil
	}
	mss := int64(max(st.SendMSS, 1))
	m["tcpi_rto"] = st.RTO.Microseconds()
	m["tcpi_rtt"] = st.SRTT.Microseconds()
	m["tcpi_rttvar"] = st.RTTVar.Microseconds()
	m["tcpi_snd_cwnd"] = int64(st.Cwnd) / mss
	if int64(st.Ssthresh) >= 1<<30 {
		m["tcpi_snd_ssthresh"] = 0x7fffffff
	} else {
		m["tcpi_snd_ssthresh"] = int64(st.Ssthresh) / mss
	}
	m["tcpi_unacked"] = (int64(st.InFlight) + mss - 1) / mss
	m["tcpi_retransmits"] = int64(st.Retries)
	m["tcpi_backoff"] = int64(st.Retries)
	m["tcpi_snd_mss"] = int64(st.SendMSS)
	m["tcpi_advmss"] = int64(c.advMSS)
	if c.rcvMSS > 0 {
		m["tcpi_rcv_mss"] = int64(c.rcvMSS)
	}
	m["tcpi_last_data_recv"] = r.now.Sub(c.lastData).Milliseconds()
	m["tcpi_snd_wscale"] = int64(st.SndShift)
	m["tcpi_rcv_wscale"] = int64(st.RcvShift)
	m["tcpi_snd_wnd"] = int64(st.SndWnd)
	var opts int64
	if st.Timestamps {
		opts |= 1
	}
	if st.SACK {
		opts |= 2
	}
	if st.SndShift != 0 || st.RcvShift != 0 {
		opts |= 4
	}
	m["tcpi_options"] = opts
	m["tcpi_sacked"] = (int64(st.SACKed) + mss - 1) / mss
	switch {
	case st.Recovery:
		m["tcpi_ca_state"] = 3
	case st.Retries > 0:
		m["tcpi_ca_state"] = 4
	case st.DupACKs > 0 || st.SACKed > 0:
		m["tcpi_ca_state"] = 1 // Disorder: duplicate ACKs or SACKs, no recovery yet
	default:
		m["tcpi_ca_state"] = 0
	}
	return m, nil
}

// evaluator computes a Python-like integer expression: comparisons (also
// chained), and, or, not, | & + - * / % and parentheses.
type evaluator struct {
	toks []string
	pos  int
	info map[string]int64
	vars map[string]int64 // names the script defined
	seen []string         // the fields read, for the failure message
}

// assignment splits "NAME = expression", a Python assignment of a plain
// name (not a tcp_info field, not a comparison).
func assignment(line string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(line, "=")
	if !ok || strings.HasPrefix(value, "=") {
		return "", "", false
	}
	name = strings.TrimSpace(name)
	if name == "" || strings.HasPrefix(name, "tcpi_") {
		return "", "", false
	}
	for i, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	return name, strings.TrimSpace(value), true
}

func tokenize(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.ContainsRune("=!<>", rune(c)) && i+1 < len(s) && s[i+1] == '=':
			out = append(out, s[i:i+2])
			i += 2
		case strings.ContainsRune("()<>|&+-*/%", rune(c)):
			out = append(out, s[i:i+1])
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t()<>=!|&+-*/%", rune(s[j])) {
				j++
			}
			if j == i {
				j = i + 1
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

func (e *evaluator) peek() string {
	if e.pos < len(e.toks) {
		return e.toks[e.pos]
	}
	return ""
}

func (e *evaluator) expr() (int64, error) {
	v, err := e.and()
	for err == nil && e.peek() == "or" {
		e.pos++
		var w int64
		w, err = e.and()
		v = b2i(v != 0 || w != 0)
	}
	return v, err
}

func (e *evaluator) and() (int64, error) {
	v, err := e.not()
	for err == nil && e.peek() == "and" {
		e.pos++
		var w int64
		w, err = e.not()
		v = b2i(v != 0 && w != 0)
	}
	return v, err
}

func (e *evaluator) not() (int64, error) {
	if e.peek() == "not" {
		e.pos++
		v, err := e.not()
		return b2i(v == 0), err
	}
	return e.compare()
}

func (e *evaluator) compare() (int64, error) {
	left, err := e.bitor()
	if err != nil {
		return 0, err
	}
	result := int64(1)
	compared := false
	for {
		op := e.peek()
		switch op {
		case "==", "!=", "<", "<=", ">", ">=":
		default:
			if compared {
				return result, nil
			}
			return left, nil
		}
		e.pos++
		right, err := e.bitor()
		if err != nil {
			return 0, err
		}
		var ok bool
		switch op {
		case "==":
			ok = left == right
		case "!=":
			ok = left != right
		case "<":
			ok = left < right
		case "<=":
			ok = left <= right
		case ">":
			ok = left > right
		case ">=":
			ok = left >= right
		}
		if !ok {
			result = 0
		}
		compared = true
		left = right
	}
}

func (e *evaluator) bitor() (int64, error) {
	v, err := e.bitand()
	for err == nil && e.peek() == "|" {
		e.pos++
		var w int64
		w, err = e.bitand()
		v |= w
	}
	return v, err
}

func (e *evaluator) bitand() (int64, error) {
	v, err := e.sum()
	for err == nil && e.peek() == "&" {
		e.pos++
		var w int64
		w, err = e.sum()
		v &= w
	}
	return v, err
}

func (e *evaluator) sum() (int64, error) {
	v, err := e.product()
	for err == nil && (e.peek() == "+" || e.peek() == "-") {
		op := e.peek()
		e.pos++
		var w int64
		w, err = e.product()
		if op == "+" {
			v += w
		} else {
			v -= w
		}
	}
	return v, err
}

func (e *evaluator) product() (int64, error) {
	v, err := e.unary()
	for err == nil && (e.peek() == "*" || e.peek() == "/" || e.peek() == "%") {
		op := e.peek()
		e.pos++
		var w int64
		w, err = e.unary()
		if err != nil {
			break
		}
		switch {
		case op == "*":
			v *= w
		case w == 0:
			return 0, fmt.Errorf("division by zero")
		case op == "/":
			v /= w
		default:
			v %= w
		}
	}
	return v, err
}

func (e *evaluator) unary() (int64, error) {
	t := e.peek()
	switch {
	case t == "":
		return 0, fmt.Errorf("the expression ends early")
	case t == "-":
		e.pos++
		v, err := e.unary()
		return -v, err
	case t == "(":
		e.pos++
		v, err := e.expr()
		if err != nil {
			return 0, err
		}
		if e.peek() != ")" {
			return 0, fmt.Errorf("a closing parenthesis is missing")
		}
		e.pos++
		return v, nil
	}
	e.pos++
	if strings.HasPrefix(t, "tcpi_") {
		v, ok := e.info[t]
		if !ok {
			return 0, &UnsupportedError{Reason: "tcp_info field " + t + " (tcpfsm's Status does not report it)"}
		}
		e.seen = append(e.seen, t)
		return v, nil
	}
	if v, ok := symbols[t]; ok {
		return v, nil
	}
	if v, ok := e.vars[t]; ok {
		return v, nil
	}
	if t == "True" {
		return 1, nil
	}
	if t == "False" {
		return 0, nil
	}
	n, err := strconv.ParseInt(t, 0, 64)
	if err != nil {
		return 0, &UnsupportedError{Reason: "Python expression " + strconv.Quote(t)}
	}
	return n, nil
}

// describe lists the fields an assertion read, with their values.
func (e *evaluator) describe() string {
	var parts []string
	for _, f := range e.seen {
		parts = append(parts, fmt.Sprintf("%s = %d", f, e.info[f]))
	}
	return strings.Join(parts, ", ")
}
