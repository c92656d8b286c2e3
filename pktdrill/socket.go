package pktdrill

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// sock is an open descriptor of the socket layer.
type sock struct {
	fd        int
	cfg       tcpfsm.Config // settings for the connection it opens or accepts
	nonblock  bool
	listening bool
	backlog   int
	ltcb      tcpfsm.TCB // a listener's TCB, in LISTEN; each SYN gets a copy
	c         *conn      // the connection, once connecting or accepted
	linger0   bool       // SO_LINGER on with a zero timeout: close resets
	sndBuf    int        // SO_SNDBUF as getsockopt reports it
	rcvBuf    int        // SO_RCVBUF as getsockopt reports it
	opened    bool       // listen or connect ran: Config no longer changes
}

// conn is one connection: a TCB and what the socket above it keeps.
type conn struct {
	tcb       tcpfsm.TCB
	lISS      tcpfsm.Seq // our initial sequence number, once a SYN of ours showed it; 0 before
	rISN      tcpfsm.Seq // the script's initial sequence number
	l         *sock      // the listener it came from, for a child
	s         *sock      // the descriptor that owns it, once accepted or connecting
	child     bool
	connected bool        // reached ESTABLISHED once
	eof       bool        // the peer's FIN arrived
	done      bool        // the connection ended (reset, timed out, closed)
	err       string      // the pending error (SO_ERROR), an errno name
	rdShut    bool        // SHUT_RD: reads return 0
	wrShut    bool        // SHUT_WR or close: writes fail with EPIPE
	events    int         // counts readiness changes, for edge-triggered epoll
	advMSS    uint16      // the MSS our SYN announced
	rcvMSS    uint32      // the largest segment received, as the runner delivered it
	lastData  tcpfsm.Time // when data last arrived (or the connection began)
	pace      *pacer      // pacing state, once fq paces the connection (fq.go)
	wq        []wskb      // Linux's send queue, as skbs (-profile linux)
	maxWnd    uint32      // the largest window the peer offered (max_window)
}

// note records what a TCB tells its user.
func (c *conn) note(n tcpfsm.Note, _ tcpfsm.Time) {
	c.events++
	switch n {
	case tcpfsm.NoteConnected:
		c.connected = true
	case tcpfsm.NotePeerClosed:
		c.eof = true
	case tcpfsm.NoteReset:
		c.err, c.done = "ECONNRESET", true
	case tcpfsm.NoteRefused:
		c.err, c.done = "ECONNREFUSED", true
	case tcpfsm.NoteTimedOut, tcpfsm.NoteUserTimeout:
		c.err, c.done = "ETIMEDOUT", true
	case tcpfsm.NoteClosed, tcpfsm.NoteAborted:
		c.done = true
	}
}

// takeErr returns the pending error and clears it, as SO_ERROR and a
// failing call do.
func (c *conn) takeErr() string {
	e := c.err
	c.err = ""
	return e
}

// listener returns the listening socket, if any.
func (r *runner) listener() *sock {
	for _, s := range r.socks {
		if s.listening {
			return s
		}
	}
	return nil
}

// acceptable lists the connections a listener completed that wait for
// accept, oldest first.
func (s *sock) acceptable(r *runner) []*conn {
	var out []*conn
	for _, c := range r.conns {
		if c.l == s && c.s == nil && c.connected {
			out = append(out, c)
		}
	}
	return out
}

func (r *runner) newConn(tcb tcpfsm.TCB, l *sock) *conn {
	c := &conn{tcb: tcb, l: l, rISN: remoteISN, lastData: r.now}
	r.conns = append(r.conns, c)
	r.latest = c
	return c
}

// implicit gives a script that never calls socket() the descriptor it
// names: a new socket, or the newest connection a listener took that
// has no descriptor yet (scripts of tcpfsm's own suite skip socket,
// fcntl and accept). Such sockets do not block.
func (r *runner) implicit(fd int) *sock {
	if fd < 0 || fd > 1<<16 || r.epolls[fd] != nil {
		return nil
	}
	s := &sock{fd: fd, cfg: r.cfg, sndBuf: r.sndBufDef, rcvBuf: r.rcvBufDef, nonblock: true}
	for i := len(r.conns) - 1; i >= 0; i-- {
		if c := r.conns[i]; c.s == nil && c.child {
			s.c, c.s, s.opened = c, s, true
			break
		}
	}
	r.socks[fd] = s
	return s
}

// scriptFD is the descriptor a call that opens one returns: the number
// the script expects, as packetdrill maps script descriptors to live
// ones, or else the lowest free one.
func (r *runner) scriptFD(c *call) int {
	if want, ok := value(c.ret); ok && want >= 0 && want < 1<<16 && r.socks[int(want)] == nil && r.epolls[int(want)] == nil {
		return int(want)
	}
	return r.lowestFD()
}

// lowestFD is the lowest free descriptor, as the kernel allocates them.
func (r *runner) lowestFD() int {
	fd := 3
	for r.socks[fd] != nil || r.epolls[fd] != nil {
		fd++
	}
	return fd
}

// advMSS is the MSS a connection with cfg announces.
func advMSS(cfg tcpfsm.Config) uint16 {
	switch {
	case cfg.MSS != 0:
		return cfg.MSS
	case cfg.IPv6:
		return 1440
	}
	return 1460
}

// errno values for SO_ERROR and return values written as numbers.
var errnos = map[string]int{
	"EPERM": 1, "ENOENT": 2, "EINTR": 4, "EIO": 5, "EBADF": 9, "EAGAIN": 11, "EWOULDBLOCK": 11,
	"ENOMEM": 12, "EFAULT": 14, "EINVAL": 22, "EPIPE": 32, "ENOPROTOOPT": 92, "EOPNOTSUPP": 95,
	"EADDRINUSE": 98, "ENETUNREACH": 101, "ECONNABORTED": 103, "ECONNRESET": 104, "ENOBUFS": 105,
	"EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110, "ECONNREFUSED": 111, "EHOSTUNREACH": 113,
	"EALREADY": 114, "EINPROGRESS": 115, "EMSGSIZE": 90,
}

// Linux's values of the names scripts use in arguments and results.
var symbols = map[string]int64{
	"O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_NONBLOCK": 0x800,
	"POLLIN": 1, "POLLPRI": 2, "POLLOUT": 4, "POLLERR": 8, "POLLHUP": 0x10, "POLLNVAL": 0x20,
	"POLLRDNORM": 0x40, "POLLRDBAND": 0x80, "POLLWRNORM": 0x100, "POLLWRBAND": 0x200, "POLLRDHUP": 0x2000,
	"EPOLLIN": 1, "EPOLLPRI": 2, "EPOLLOUT": 4, "EPOLLERR": 8, "EPOLLHUP": 0x10,
	"EPOLLRDNORM": 0x40, "EPOLLRDBAND": 0x80, "EPOLLWRNORM": 0x100, "EPOLLWRBAND": 0x200,
	"EPOLLRDHUP": 0x2000, "EPOLLEXCLUSIVE": 1 << 28, "EPOLLWAKEUP": 1 << 29, "EPOLLONESHOT": 1 << 30,
	"EPOLLET": 1 << 31,
	"MSG_OOB": 1, "MSG_PEEK": 2, "MSG_DONTWAIT": 0x40, "MSG_EOR": 0x80, "MSG_WAITALL": 0x100,
	"MSG_NOSIGNAL": 0x4000, "MSG_MORE": 0x8000, "MSG_FASTOPEN": 0x20000000, "MSG_ZEROCOPY": 0x4000000,
	"MSG_ERRQUEUE": 0x2000, "MSG_TRUNC": 0x20,
	"TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
	"TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32,
	"TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5,
	"TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
	"TCP_CLOSING": 11,
	"TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3, "TCP_CA_Loss": 4,
}

func init() {
	for k, v := range symbols {
		if strings.HasPrefix(k, "TCP_") && !strings.HasPrefix(k, "TCP_CA_") {
			symbols["TCPI_"+k[4:]] = v
		}
	}
	for k, v := range errnos {
		symbols[k] = int64(v)
	}
}

// value reads an integer argument: a number, a name, "A|B", or "[N]".
func value(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if s == "" {
		return 0, false
	}
	var v int64
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if n, ok := symbols[part]; ok {
			v |= n
			continue
		}
		n, err := strconv.ParseInt(part, 0, 64)
		if err != nil {
			u, err2 := strconv.ParseUint(part, 0, 64)
			if err2 != nil {
				return 0, false
			}
			n = int64(u)
		}
		v |= n
	}
	return v, true
}

// splitArgs splits a call's argument list at its top-level commas.
func splitArgs(s string) []string {
	var out []string
	depth, start, inStr := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if t := strings.TrimSpace(s[start:]); t != "" || len(out) > 0 {
		out = append(out, t)
	}
	return out
}

// fields reads "{a=1, b=X|Y}" into a map.
func fields(s string) map[string]string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	m := map[string]string{}
	for _, part := range splitArgs(s) {
		k, v, _ := strings.Cut(part, "=")
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// call is one system call line, parsed.
type call struct {
	name    string
	args    []string
	ret     string // what the script expects: "0", "-1", "0x2", "..."
	errno   string // the errno the script expects with -1
	line    int
	text    string
	at      tcpfsm.Time
	end     tcpfsm.Time // when a blocking call must have returned
	bytes   int         // a write's progress while it blocks
	memWait bool        // a write blocks for send buffer memory (-profile linux)
	expiry  tcpfsm.Time // a poll or epoll_wait timeout; zero for none
}

// blockedCall is a blocking call waiting, in script time, to complete.
type blockedCall = call

// errBlock says a call would block.
var errBlock = fmt.Errorf("would block")

// call runs a system call line such as "write(4, ..., 1000) = 1000".
func (r *runner) call(l string, at, end tcpfsm.Time, hasEnd bool) error {
	name, rest, ok := strings.Cut(l, "(")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return r.fail("a system call, a packet or a shell command", l)
	}
	// Find the parenthesis that closes the argument list.
	depth, closeAt := 1, -1
	for i := 0; i < len(rest) && closeAt < 0; i++ {
		switch rest[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				closeAt = i
			}
		}
	}
	if closeAt < 0 {
		return r.fail("a closing parenthesis", l)
	}
	c := &call{name: name, args: splitArgs(rest[:closeAt]), line: r.line, text: r.text, at: at, end: at}
	if hasEnd {
		c.end = end
	}
	ret := strings.TrimSpace(rest[closeAt+1:])
	if !strings.HasPrefix(ret, "=") {
		return r.fail("= and a return value", l)
	}
	f := strings.Fields(strings.TrimPrefix(ret, "="))
	if len(f) == 0 {
		return r.fail("a return value", l)
	}
	c.ret = f[0]
	if len(f) > 1 && strings.HasPrefix(f[1], "E") {
		c.errno = f[1]
	}
	if err := r.supported(c); err != nil {
		return err
	}
	return r.attempt(c, true)
}

// supported reports calls and arguments for features tcpfsm lacks.
func (r *runner) supported(c *call) error {
	switch c.name {
	case "splice", "pipe":
		return r.unsupported("splice")
	case "sendfile", "open":
		return r.unsupported("sendfile")
	case "print":
		return nil
	}
	all := strings.Join(c.args, ",")
	for _, f := range []struct{ word, feature string }{
		{"MSG_ZEROCOPY", "zerocopy"}, {"SO_ZEROCOPY", "zerocopy"}, {"MSG_ERRQUEUE", "the error queue (zerocopy, timestamping)"},
		{"TCP_FASTOPEN", "TCP Fast Open"}, {"MSG_FASTOPEN", "TCP Fast Open"}, {"TCP_MD5SIG", "TCP MD5 signatures"},
		{"SO_TIMESTAMPING", "hardware and software timestamping"}, {"TCP_ZEROCOPY", "zerocopy"},
		{"TCP_ULP", "upper layer protocols (TLS, PSP)"}, {"PSP", "PSP"}, {"TCP_CORK", "TCP_CORK"},
		{"TCP_NOTSENT_LOWAT", "TCP_NOTSENT_LOWAT"}, {"TCP_INQ", "TCP_INQ"}, {"MSG_MORE", "MSG_MORE"},
		{"MSG_EOR", "MSG_EOR (tcpfsm keeps no record boundaries)"}, {"TCP_REPAIR", "TCP_REPAIR"}, {"SO_MAX_PACING_RATE", "pacing"}, {"TCP_TX_DELAY", "TCP_TX_DELAY"},
		{"IP_TOS", "IP TOS"}, {"IPV6_TCLASS", "IP TOS"}, {"SOCK_DGRAM", "UDP"}, {"IPPROTO_UDP", "UDP"},
		{"TCP_SAVE_SYN", "TCP_SAVE_SYN"}, {"TCP_SAVED_SYN", "TCP_SAVED_SYN"}, {"SO_MARK", "SO_MARK"},
	} {
		if strings.Contains(all, f.word) {
			return r.unsupported("%s", f.feature)
		}
	}
	if c.name == "ioctl" && len(c.args) > 1 && c.args[1] != "SIOCINQ" && c.args[1] != "SIOCOUTQ" {
		return r.unsupported("ioctl %s", c.args[1])
	}
	return nil
}

// attempt runs a call; first says it was just issued. A call that would
// block waits in r.blocked, unless its socket is non-blocking.
func (r *runner) attempt(c *call, first bool) error {
	ret, errno, err := r.exec(c, first)
	if err == errBlock {
		if first {
			r.blocked = append(r.blocked, c)
		}
		return nil
	}
	if err != nil {
		return err
	}
	line, text := r.line, r.text
	r.line, r.text = c.line, c.text
	defer func() { r.line, r.text = line, text }()
	if !first || c.end != c.at {
		done := r.now
		if c.expiry != 0 && r.now >= c.expiry {
			done = c.expiry
		}
		tol := tcpfsm.Time(r.o.Tolerance)
		if done < c.end-tol || done > c.end+tol {
			return r.fail(fmt.Sprintf("the call to return at %v", c.end), fmt.Sprintf("returned at %v", done))
		}
	}
	return r.checkResult(c, ret, errno)
}

// wake completes blocked calls that can complete now.
func (r *runner) wake() error {
	for i := 0; i < len(r.blocked); i++ {
		c := r.blocked[i]
		ret, errno, err := r.exec(c, false)
		if err == errBlock {
			continue
		}
		r.blocked = append(r.blocked[:i], r.blocked[i+1:]...)
		i--
		if err != nil {
			return err
		}
		line, text := r.line, r.text
		r.line, r.text = c.line, c.text
		done := r.now
		if c.expiry != 0 && r.now >= c.expiry {
			done = c.expiry
		}
		tol := tcpfsm.Time(r.o.Tolerance)
		if done < c.end-tol || done > c.end+tol {
			return r.fail(fmt.Sprintf("the call to return at %v", c.end), fmt.Sprintf("returned at %v", done))
		}
		if err := r.checkResult(c, ret, errno); err != nil {
			return err
		}
		r.line, r.text = line, text
	}
	return nil
}

func (r *runner) checkResult(c *call, ret int64, errno string) error {
	got := strconv.FormatInt(ret, 10)
	if ret == -1 {
		got += " " + errno
	}
	if c.ret == "..." {
		return nil
	}
	want, ok := value(c.ret)
	if !ok {
		return r.fail("a return value", c.ret)
	}
	if want != ret || (want == -1 && c.errno != "" && c.errno != errno) {
		exp := c.ret
		if c.errno != "" {
			exp += " " + c.errno
		}
		return r.fail(exp, got)
	}
	return nil
}

// exec runs a call once. It returns errBlock if the call must wait.
func (r *runner) exec(c *call, first bool) (int64, string, error) {
	arg := func(i int) string {
		if i < len(c.args) {
			return c.args[i]
		}
		return ""
	}
	num := func(i int) int64 {
		v, _ := value(arg(i))
		return v
	}
	if c.name == "socket" {
		r.sawSocket = true
		fd := r.scriptFD(c)
		r.socks[fd] = &sock{fd: fd, cfg: r.cfg, sndBuf: r.sndBufDef, rcvBuf: r.rcvBufDef}
		return int64(fd), "", nil
	}
	if c.name == "print" {
		return 0, "", nil
	}
	if strings.HasPrefix(c.name, "epoll") {
		return r.epollCall(c, first)
	}
	if c.name == "poll" {
		return r.poll(c, first)
	}
	fd := int(num(0))
	s := r.socks[fd]
	if s == nil && !r.sawSocket {
		s = r.implicit(fd)
	}
	if s == nil {
		if c.name == "close" && r.epolls[fd] != nil {
			delete(r.epolls, fd)
			return 0, "", nil
		}
		return -1, "EBADF", nil
	}
	switch c.name {
	case "bind":
		return 0, "", nil
	case "listen":
		if s.c != nil {
			return -1, "EINVAL", nil
		}
		if !s.listening {
			t, err := tcpfsm.NewTCB(s.cfg)
			if err != nil {
				return 0, "", r.fail("a valid Config", err.Error())
			}
			if _, err := t.Step(tcpfsm.ListenOn(localPort), r.now, nil); err != nil {
				return 0, "", r.fail("listen", err.Error())
			}
			s.ltcb, s.listening, s.opened = t, true, true
		}
		s.backlog = int(num(1))
		return 0, "", nil
	case "accept", "accept4":
		if !s.listening {
			return -1, "EINVAL", nil
		}
		q := s.acceptable(r)
		if len(q) == 0 {
			if s.nonblock {
				return -1, "EAGAIN", nil
			}
			return 0, "", errBlock
		}
		nfd := r.scriptFD(c)
		ns := &sock{fd: nfd, cfg: s.cfg, c: q[0], sndBuf: s.sndBuf, rcvBuf: s.rcvBuf, linger0: s.linger0, opened: true}
		q[0].s = ns
		r.socks[nfd] = ns
		r.latest = q[0]
		return int64(nfd), "", nil
	case "connect":
		return r.connect(s, first)
	case "write", "send", "sendto", "sendmsg", "writev":
		return r.write(s, c, first)
	case "read", "recv", "recvfrom", "recvmsg", "readv":
		return r.read(s, c)
	case "close":
		return r.close(s)
	case "shutdown":
		return r.shutdown(s, arg(1))
	case "fcntl":
		switch arg(1) {
		case "F_GETFL":
			v := int64(2)
			if s.nonblock {
				v |= 0x800
			}
			return v, "", nil
		case "F_SETFL":
			s.nonblock = num(2)&0x800 != 0
			return 0, "", nil
		}
		return 0, "", nil
	case "ioctl":
		return r.ioctl(s, arg(1), arg(2))
	case "getsockopt":
		return r.getsockopt(s, arg(2), arg(3))
	case "setsockopt":
		return r.setsockopt(s, arg(2), arg(3))
	}
	return 0, "", r.fail("a supported system call", c.name)
}

func (r *runner) connect(s *sock, first bool) (int64, string, error) {
	if s.listening {
		return -1, "EISCONN", nil
	}
	c := s.c
	if c == nil {
		t, err := tcpfsm.NewTCB(s.cfg)
		if err != nil {
			return 0, "", r.fail("a valid Config", err.Error())
		}
		c = r.newConn(t, nil)
		c.s, s.c, s.opened = s, c, true
		c.advMSS = advMSS(s.cfg)
		if err := r.step(c, tcpfsm.Open(localPort, remotePort, localISS)); err != nil {
			return 0, "", r.fail("connect", err.Error())
		}
		if s.nonblock {
			return -1, "EINPROGRESS", nil
		}
		return 0, "", errBlock
	}
	if c.err != "" {
		return -1, c.takeErr(), nil
	}
	if c.connected {
		if first {
			return -1, "EISCONN", nil
		}
		return 0, "", nil
	}
	if c.done || c.tcb.State == tcpfsm.Closed {
		return -1, "ECONNABORTED", nil
	}
	if first && s.nonblock {
		return -1, "EALREADY", nil
	}
	return 0, "", errBlock
}

// size reads how many bytes a read or write call names.
func size(c *call) int64 {
	arg := func(i int) string {
		if i < len(c.args) {
			return c.args[i]
		}
		return ""
	}
	switch c.name {
	case "sendmsg", "recvmsg":
		// {msg_name(...)=..., msg_iov(1)=[{..., 1000}], msg_flags=0}
		m := arg(1)
		var total int64
		for _, iov := range strings.Split(m, "{...,")[1:] {
			n, _ := value(strings.TrimSpace(strings.SplitN(iov, "}", 2)[0]))
			total += n
		}
		return total
	case "writev", "readv":
		var total int64
		for _, iov := range strings.Split(arg(1), "{...,")[1:] {
			n, _ := value(strings.TrimSpace(strings.SplitN(iov, "}", 2)[0]))
			total += n
		}
		return total
	}
	n, _ := value(arg(2))
	return n
}

// flagsArg is a send or receive call's flags argument.
func flagsArg(c *call) int64 {
	i := 3
	if c.name == "sendmsg" || c.name == "recvmsg" {
		i = 2
	}
	if c.name == "read" || c.name == "write" || c.name == "readv" || c.name == "writev" || i >= len(c.args) {
		return 0
	}
	v, _ := value(c.args[i])
	return v
}

// sendRoom is how many more bytes the send buffer takes.
func sendRoom(s *sock, c *conn) int64 {
	st, err := c.tcb.Status()
	if err != nil {
		return 0
	}
	used := int64(st.Unsent) + int64(st.InFlight)
	return max(int64(s.sndBuf)-used, 0)
}

func (r *runner) write(s *sock, cl *call, first bool) (int64, string, error) {
	c := s.c
	nonblock := s.nonblock || flagsArg(cl)&0x40 != 0
	if len(cl.args) > 1 && cl.args[1] == "NULL" {
		return -1, "EFAULT", nil
	}
	if c == nil {
		return -1, "EPIPE", nil
	}
	if c.err != "" {
		return -1, c.takeErr(), nil
	}
	if c.wrShut || c.done || c.tcb.State == tcpfsm.Closed {
		return -1, "EPIPE", nil
	}
	if !c.connected {
		if nonblock {
			return -1, "EAGAIN", nil
		}
		return 0, "", errBlock
	}
	switch c.tcb.State {
	case tcpfsm.Established, tcpfsm.CloseWait:
	default:
		return -1, "EPIPE", nil
	}
	want := size(cl)
	if want > 1<<30 {
		return 0, "", r.fail("a write of at most 1 GiB", cl.args[2])
	}
	if r.linuxSend() {
		return r.linuxWrite(s, c, cl, want, nonblock)
	}
	left := want - int64(cl.bytes)
	n := min(left, sendRoom(s, c))
	if n > 0 {
		if err := r.step(c, tcpfsm.Send(uint32(n))); err != nil {
			return -1, "EPIPE", nil
		}
		cl.bytes += int(n)
	}
	return writeResult(cl, want, nonblock)
}

// writeResult ends a write that has queued cl.bytes of want: done, a
// short or EAGAIN result for a non-blocking socket, or errBlock to wait.
func writeResult(cl *call, want int64, nonblock bool) (int64, string, error) {
	if int64(cl.bytes) == want {
		return want, "", nil
	}
	if nonblock {
		if cl.bytes > 0 {
			return int64(cl.bytes), "", nil
		}
		return -1, "EAGAIN", nil
	}
	return 0, "", errBlock
}

func (r *runner) read(s *sock, cl *call) (int64, string, error) {
	c := s.c
	fl := flagsArg(cl)
	nonblock := s.nonblock || fl&0x40 != 0
	if len(cl.args) > 1 && cl.args[1] == "NULL" {
		return -1, "EFAULT", nil
	}
	if c == nil {
		return -1, "ENOTCONN", nil
	}
	unread := int64(c.tcb.Unread())
	if c.tcb.State == tcpfsm.Closed {
		unread = 0 // a reset connection has nothing to read
	}
	if unread > 0 { // data queued before SHUT_RD is still read, as on Linux
		n := min(size(cl), unread)
		if fl&2 == 0 && n > 0 { // MSG_PEEK leaves the data
			if err := r.step(c, tcpfsm.Receive(uint32(n))); err != nil {
				return 0, "", r.fail("receive", err.Error())
			}
		}
		return n, "", nil
	}
	if c.err != "" {
		return -1, c.takeErr(), nil
	}
	if c.rdShut || c.eof || c.done {
		return 0, "", nil
	}
	if !c.connected && c.tcb.State != tcpfsm.SynSent && c.tcb.State != tcpfsm.SynReceived {
		return -1, "ENOTCONN", nil
	}
	if nonblock {
		return -1, "EAGAIN", nil
	}
	return 0, "", errBlock
}

// close releases a descriptor; it always succeeds.
func (r *runner) close(s *sock) (int64, string, error) {
	delete(r.socks, s.fd)
	for _, ep := range r.epolls {
		delete(ep.interest, s.fd)
	}
	if s.listening {
		// Connections nobody accepted go with their listener.
		for _, c := range r.conns {
			if c.l == s && c.s == nil && c.tcb.State != tcpfsm.Closed {
				if c.connected {
					_ = r.step(c, tcpfsm.Abort())
				} else {
					c.tcb = tcpfsm.TCB{}
				}
			}
		}
		return 0, "", nil
	}
	c := s.c
	if c == nil || c.tcb.State == tcpfsm.Closed {
		return 0, "", nil
	}
	c.wrShut, c.rdShut = true, true
	switch {
	case s.linger0:
		_ = r.step(c, tcpfsm.Abort())
	case c.tcb.State == tcpfsm.SynSent:
		_ = r.step(c, tcpfsm.Close())
	default:
		if err := r.step(c, tcpfsm.CloseFull()); err != nil {
			_ = r.step(c, tcpfsm.Close())
		}
	}
	return 0, "", nil
}

func (r *runner) shutdown(s *sock, how string) (int64, string, error) {
	c := s.c
	if c == nil || !c.connected && c.tcb.State != tcpfsm.SynSent && c.tcb.State != tcpfsm.SynReceived {
		return -1, "ENOTCONN", nil
	}
	rd := how == "SHUT_RD" || how == "SHUT_RDWR" || how == "0" || how == "2"
	wr := how == "SHUT_WR" || how == "SHUT_RDWR" || how == "1" || how == "2"
	if rd {
		c.rdShut = true
	}
	if wr && !c.wrShut {
		c.wrShut = true
		if c.tcb.State != tcpfsm.Closed {
			_ = r.step(c, tcpfsm.Close())
		}
	}
	return 0, "", nil
}

// ioctl answers SIOCINQ (bytes to read) and SIOCOUTQ (bytes not yet
// acknowledged, sent or not).
func (r *runner) ioctl(s *sock, req, val string) (int64, string, error) {
	if s.listening {
		return -1, "EINVAL", nil
	}
	var got int64
	if c := s.c; c != nil && c.tcb.State != tcpfsm.Closed {
		if req == "SIOCINQ" {
			got = int64(c.tcb.Unread())
		} else if st, err := c.tcb.Status(); err == nil {
			got = int64(st.Unsent) + int64(st.InFlight)
		}
	}
	if want, ok := value(val); ok && want != got {
		return 0, "", r.fail(req+" "+val, fmt.Sprintf("[%d]", got))
	}
	return 0, "", nil
}

func (r *runner) getsockopt(s *sock, name, val string) (int64, string, error) {
	want, hasWant := value(val)
	check := func(got int64) (int64, string, error) {
		if hasWant && got != want {
			return 0, "", r.fail(name+" "+val, fmt.Sprintf("[%d]", got))
		}
		return 0, "", nil
	}
	switch name {
	case "SO_ERROR":
		e := ""
		if s.c != nil {
			e = s.c.takeErr()
		}
		return check(int64(errnos[e]))
	case "SO_SNDBUF":
		return check(int64(s.sndBuf))
	case "SO_RCVBUF":
		return check(int64(s.rcvBuf))
	case "TCP_NODELAY":
		return check(b2i(s.cfg.NoDelay))
	case "SO_KEEPALIVE":
		return check(b2i(s.cfg.Keepalive))
	case "TCP_MAXSEG":
		if s.c != nil && s.c.connected {
			st, err := s.c.tcb.Status()
			if err == nil {
				mss := int64(st.SendMSS)
				if st.Timestamps {
					mss -= 12
				}
				return check(mss)
			}
		}
		if s.cfg.MSS != 0 {
			return check(int64(s.cfg.MSS))
		}
		return check(536)
	case "TCP_INFO", "SO_REUSEADDR", "SO_TYPE", "SO_DOMAIN", "TCP_CONGESTION":
		return 0, "", nil
	}
	return 0, "", r.unsupported("getsockopt %s", name)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (r *runner) setsockopt(s *sock, name, val string) (int64, string, error) {
	v, _ := value(val)
	needConfig := func(apply func(*tcpfsm.Config)) (int64, string, error) {
		if s.opened && !s.listening {
			return 0, "", r.unsupported("%s on an open connection (Config is fixed per TCB)", name)
		}
		cfg := s.cfg
		apply(&cfg)
		if err := cfg.Validate(); err != nil {
			return -1, "EINVAL", nil
		}
		s.cfg = cfg
		if s.listening {
			// Connections the listener takes from now on get the setting.
			t, err := tcpfsm.NewTCB(cfg)
			if err == nil {
				_, err = t.Step(tcpfsm.ListenOn(localPort), r.now, nil)
			}
			if err != nil {
				return 0, "", r.fail("listen", err.Error())
			}
			s.ltcb = t
		}
		return 0, "", nil
	}
	switch name {
	case "SO_REUSEADDR", "SO_REUSEPORT", "IP_FREEBIND", "IP_MTU_DISCOVER", "IPV6_V6ONLY", "SO_OOBINLINE":
		return 0, "", nil
	case "SO_LINGER":
		f := fields(val)
		on, _ := value(f["onoff"])
		d, _ := value(f["linger"])
		s.linger0 = on != 0 && d == 0
		return 0, "", nil
	case "TCP_NODELAY":
		s.cfg.NoDelay = v != 0
		if s.c != nil {
			_ = r.step(s.c, tcpfsm.SetNoDelay(v != 0))
		}
		return 0, "", nil
	case "SO_KEEPALIVE":
		s.cfg.Keepalive = v != 0
		if s.c != nil {
			idle := s.cfg.KeepaliveIdle
			if idle == 0 {
				idle = 2 * time.Hour
			}
			if v == 0 {
				idle = 0
			}
			_ = r.step(s.c, tcpfsm.SetKeepAlive(idle))
		}
		return 0, "", nil
	case "TCP_KEEPIDLE":
		if v < 1 || v > 32767 {
			return -1, "EINVAL", nil
		}
		s.cfg.KeepaliveIdle = time.Duration(v) * time.Second
		if s.c != nil && s.cfg.Keepalive {
			_ = r.step(s.c, tcpfsm.SetKeepAlive(s.cfg.KeepaliveIdle))
		}
		return 0, "", nil
	case "TCP_KEEPINTVL":
		return needConfig(func(c *tcpfsm.Config) { c.KeepaliveInterval = time.Duration(v) * time.Second })
	case "TCP_KEEPCNT":
		return needConfig(func(c *tcpfsm.Config) { c.KeepaliveCount = int(v) })
	case "SO_SNDBUF":
		s.sndBuf = int(min(max(2*v, 4608), 1<<30))
		return 0, "", nil
	case "SO_RCVBUF":
		s.rcvBuf = int(min(max(2*v, 2304), 1<<30))
		if s.opened {
			return 0, "", nil
		}
		s.cfg.RecvBuffer = uint32(s.rcvBuf / 2)
		return 0, "", nil
	case "TCP_MAXSEG":
		if v < 88 || v > 32767 {
			return -1, "EINVAL", nil
		}
		return needConfig(func(c *tcpfsm.Config) { c.MSS = uint16(v) })
	case "TCP_USER_TIMEOUT":
		return needConfig(func(c *tcpfsm.Config) { c.UserTimeout = time.Duration(v) * time.Millisecond })
	case "TCP_CONGESTION":
		algo := strings.Trim(val, `"`)
		switch algo {
		case "cubic":
			return needConfig(func(c *tcpfsm.Config) { c.Congestion = tcpfsm.CUBIC })
		case "reno":
			return needConfig(func(c *tcpfsm.Config) { c.Congestion = tcpfsm.NewReno })
		}
		return 0, "", r.unsupported("congestion control %s", algo)
	case "TCP_QUICKACK":
		return 0, "", r.unsupported("TCP_QUICKACK")
	case "TCP_SYNCNT":
		return needConfig(func(c *tcpfsm.Config) { c.SynRetries = int(v) })
	}
	return 0, "", r.unsupported("setsockopt %s", name)
}

// Linux's send buffer, under -profile linux.
//
// Linux charges a socket's send buffer (sk_wmem_queued, against
// sk_sndbuf, which is twice SO_SNDBUF) with the truesize of each skb in
// its send queue: the payload plus skbOverhead. tcp_sendmsg packs the
// user's bytes into skbs of size_goal bytes (tcp_xmit_size_goal: 64 KiB
// bounded by half the largest window the peer offered, in whole
// segments), appending to the last unsent skb while it has room and
// allocating a new one only while sk_wmem_queued < sk_sndbuf, so a
// write may overshoot the buffer by most of an skb. A full skb is
// pushed at once. Sending cuts an skb into packets of the TSO size
// (tso_fragment), each cut costing a new skb's overhead; ACKs free whole
// skbs and trim a partly acknowledged one by its acknowledged bytes. A
// write that blocked is woken when the free space is at least half of
// what is queued (sk_stream_write_space: sk_stream_wspace >=
// sk_stream_min_wspace), and POLLOUT follows the same rule (tcp_poll).
// Retransmissions, which may cut skbs too, are not modelled, nor the
// growth of an unlocked sk_sndbuf with cwnd (tcp_sndbuf_expand).

// wskb is one skb of the modelled send queue: a range of the byte
// stream, sent or not.
type wskb struct {
	start, end tcpfsm.Seq
	sent       bool
}

// linuxSend says the socket layer models Linux's send buffer.
func (r *runner) linuxSend() bool { return r.o.Profile == "linux" }

// wmemQueued is sk_wmem_queued: what the send queue's skbs cost.
func (c *conn) wmemQueued() int64 {
	var n int64
	for _, b := range c.wq {
		n += int64(b.end.Diff(b.start)) + skbOverhead
	}
	return n
}

// writeable is __sk_stream_is_writeable: the free space is at least
// half of what is queued.
func (c *conn) writeable(s *sock) bool {
	q := c.wmemQueued()
	return int64(s.sndBuf)-q >= q/2
}

// sizeGoal is tcp_xmit_size_goal: how many bytes tcp_sendmsg puts in
// one skb.
func (c *conn) sizeGoal(st *tcpfsm.Status) uint32 {
	mss := effMSS(st)
	goal := uint32(65536) // sk_gso_max_size
	cutoff := c.maxWnd
	if cutoff > 536 {
		cutoff /= 2
	}
	if cutoff > 0 && goal > cutoff { // tcp_bound_to_half_wnd
		hdr := uint32(20)
		if st.Timestamps {
			hdr = 32
		}
		goal = max(cutoff, 68-hdr)
	}
	return max(goal/mss*mss, mss)
}

// linuxWrite is write's body under Linux's send buffer: it copies the
// caller's bytes into skbs as tcp_sendmsg_locked does, handing each
// full skb (and the last bytes) to the TCB.
func (r *runner) linuxWrite(s *sock, c *conn, cl *call, want int64, nonblock bool) (int64, string, error) {
	if cl.memWait && !c.writeable(s) {
		return 0, "", errBlock // not woken yet
	}
	cl.memWait = false
	for int64(cl.bytes) < want {
		st, err := c.tcb.Status()
		if err != nil {
			return -1, "EPIPE", nil
		}
		goal := c.sizeGoal(&st)
		var room uint32
		if n := len(c.wq); n > 0 && !c.wq[n-1].sent {
			room = goal - min(goal, c.wq[n-1].end.Diff(c.wq[n-1].start))
		}
		if room == 0 {
			if c.wmemQueued() >= int64(s.sndBuf) {
				break // sk_stream_memory_free fails: wait for space
			}
			end := st.SndUna.Add(st.InFlight + st.Unsent)
			c.wq = append(c.wq, wskb{start: end, end: end})
			room = goal
		}
		n := uint32(min(int64(room), want-int64(cl.bytes)))
		tail := &c.wq[len(c.wq)-1]
		tail.end = tail.end.Add(n)
		cl.bytes += int(n)
		if err := r.step(c, tcpfsm.Send(n)); err != nil {
			return -1, "EPIPE", nil
		}
	}
	n, errno, err := writeResult(cl, want, nonblock)
	cl.memWait = err == errBlock
	return n, errno, err
}

// sendQueueStep updates the modelled send queue after a step that sent
// data up to hi (if sent): the unsent skbs below hi are cut into
// packets of the TSO size, and what the peer acknowledged is freed.
func (r *runner) sendQueueStep(c *conn, hi tcpfsm.Seq, sent bool) {
	st, err := c.tcb.Status()
	if err != nil {
		c.wq = nil
		return
	}
	c.maxWnd = max(c.maxWnd, st.SndWnd)
	if len(c.wq) == 0 {
		return
	}
	if sent {
		mss := effMSS(&st)
		var rate uint64
		if c.pace != nil {
			rate = c.pace.rate
		} else {
			rate = r.host.pacingRate(&st, (st.InFlight+mss-1)/mss)
		}
		tso := r.host.tsoSegs(rate, mss) * mss
		for i := 0; i < len(c.wq); i++ {
			b := &c.wq[i]
			if b.sent || b.end.Diff(b.start) == 0 {
				continue
			}
			if !b.start.LessThan(hi) {
				break
			}
			cut := b.start.Add(min(tso, hi.Diff(b.start)))
			if cut.LessThan(b.end) {
				// tso_fragment: the rest becomes a new skb.
				rest := wskb{start: cut, end: b.end}
				b.end = cut
				c.wq = append(c.wq[:i+1], append([]wskb{rest}, c.wq[i+1:]...)...)
			}
			c.wq[i].sent = true
		}
	}
	for len(c.wq) > 0 {
		b := &c.wq[0]
		if !b.sent || !b.start.LessThan(st.SndUna) {
			break
		}
		if !st.SndUna.LessThan(b.end) {
			c.wq = c.wq[1:]
			continue
		}
		b.start = st.SndUna // tcp_trim_head
		break
	}
}
