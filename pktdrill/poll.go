package pktdrill

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// epoll is an epoll instance: the descriptors it watches.
type epoll struct {
	interest map[int]*watch
}

type watch struct {
	events   int64
	reported int // the connection's event count at the last edge-triggered report
	disabled bool
}

// readiness is the poll mask of a descriptor, as Linux's tcp_poll
// computes it.
func (r *runner) readiness(s *sock) int64 {
	const in, out, errb, hup, rdnorm, wrnorm, rdhup = 1, 4, 8, 0x10, 0x40, 0x100, 0x2000
	if s.listening {
		if len(s.acceptable(r)) > 0 {
			return in | rdnorm
		}
		return 0
	}
	c := s.c
	if c == nil {
		return out | wrnorm | hup
	}
	var m int64
	closed := c.tcb.State == tcpfsm.Closed
	if closed || c.rdShut && c.wrShut {
		m |= hup
	}
	if c.eof || c.rdShut || closed && c.connected {
		m |= in | rdnorm | rdhup
	}
	if c.tcb.State != tcpfsm.SynSent && c.tcb.State != tcpfsm.SynReceived {
		if c.tcb.Unread() > 0 && !closed {
			m |= in | rdnorm
		}
		if !c.wrShut && !closed {
			st, err := c.tcb.Status()
			switch {
			case err != nil:
			case r.linuxSend():
				if c.writeable(s) { // skbs' memory, as Linux counts it
					m |= out | wrnorm
				}
			default:
				used := int64(st.Unsent) + int64(st.InFlight)
				if int64(s.sndBuf)-used >= used/2 {
					m |= out | wrnorm
				}
			}
		} else {
			m |= out | wrnorm
		}
	}
	if c.err != "" {
		m |= errb
	}
	return m
}

// waitUntil sets a blocking poll's timeout, or says it returns now.
func (c *call) waitUntil(first bool, now tcpfsm.Time, ms int64) bool {
	if ms == 0 {
		return false
	}
	if first {
		if ms > 0 {
			c.expiry = c.at.Add(time.Duration(ms) * time.Millisecond)
		}
		return true
	}
	return c.expiry == 0 || now < c.expiry
}

func (r *runner) poll(c *call, first bool) (int64, string, error) {
	if len(c.args) < 3 {
		return 0, "", r.fail("poll(fds, nfds, timeout)", strings.Join(c.args, ", "))
	}
	list := strings.TrimSpace(c.args[0])
	list = strings.TrimSuffix(strings.TrimPrefix(list, "["), "]")
	var count int64
	type check struct {
		want, got int64
		fd        string
		has       bool
	}
	var checks []check
	for _, p := range splitArgs(list) {
		f := fields(p)
		fd, _ := value(f["fd"])
		events, _ := value(f["events"])
		s := r.socks[int(fd)]
		var got int64 = 0x20 // POLLNVAL
		if s != nil {
			got = r.readiness(s) & (events | 8 | 0x10)
		}
		if got != 0 {
			count++
		}
		want, has := value(f["revents"])
		checks = append(checks, check{want, got, f["fd"], has})
	}
	timeout, _ := value(c.args[2])
	if count == 0 && c.waitUntil(first, r.now, timeout) {
		return 0, "", errBlock
	}
	for _, k := range checks {
		if k.has && k.want != k.got {
			return 0, "", r.fail(fmt.Sprintf("revents %s for fd %s", maskText(k.want, "POLL"), k.fd), maskText(k.got, "POLL"))
		}
	}
	return count, "", nil
}

// maskText names the bits of a poll mask.
func maskText(m int64, prefix string) string {
	var parts []string
	for _, n := range []string{"IN", "PRI", "OUT", "ERR", "HUP", "NVAL", "RDNORM", "RDBAND", "WRNORM", "WRBAND", "RDHUP"} {
		if v := symbols["POLL"+n]; m&v != 0 {
			parts = append(parts, prefix+n)
			m &^= v
		}
	}
	if m != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%#x", m))
	}
	return strings.Join(parts, "|")
}

func (r *runner) epollCall(c *call, first bool) (int64, string, error) {
	arg := func(i int) string {
		if i < len(c.args) {
			return c.args[i]
		}
		return ""
	}
	switch c.name {
	case "epoll_create", "epoll_create1":
		fd := r.scriptFD(c)
		r.epolls[fd] = &epoll{interest: map[int]*watch{}}
		return int64(fd), "", nil
	case "epoll_ctl":
		epfd, _ := value(arg(0))
		ep := r.epolls[int(epfd)]
		if ep == nil {
			return -1, "EBADF", nil
		}
		fd, _ := value(arg(2))
		if r.socks[int(fd)] == nil {
			return -1, "EBADF", nil
		}
		ev, _ := value(fields(arg(3))["events"])
		switch arg(1) {
		case "EPOLL_CTL_ADD":
			if ep.interest[int(fd)] != nil {
				return -1, "EEXIST", nil
			}
			ep.interest[int(fd)] = &watch{events: ev, reported: -1}
		case "EPOLL_CTL_MOD":
			if ep.interest[int(fd)] == nil {
				return -1, "ENOENT", nil
			}
			ep.interest[int(fd)] = &watch{events: ev, reported: -1}
		case "EPOLL_CTL_DEL":
			delete(ep.interest, int(fd))
		}
		return 0, "", nil
	case "epoll_wait", "epoll_pwait":
		epfd, _ := value(arg(0))
		ep := r.epolls[int(epfd)]
		if ep == nil {
			return -1, "EBADF", nil
		}
		maxEvents, _ := value(arg(2))
		timeout, _ := value(arg(3))
		type ready struct {
			fd   int
			mask int64
		}
		var got []ready
		for fd := 3; fd < 3+len(r.socks)+len(r.epolls)+8 && int64(len(got)) < max(maxEvents, 1); fd++ {
			w := ep.interest[fd]
			s := r.socks[fd]
			if w == nil || s == nil || w.disabled {
				continue
			}
			m := r.readiness(s) & (w.events | 8 | 0x10)
			if m == 0 {
				continue
			}
			gen := 0
			if s.c != nil {
				gen = s.c.events
			}
			if w.events&(1<<31) != 0 && w.reported == gen {
				continue // edge-triggered: nothing new since the last report
			}
			got = append(got, ready{fd, m})
		}
		if len(got) == 0 && c.waitUntil(first, r.now, timeout) {
			return 0, "", errBlock
		}
		for _, g := range got {
			w, s := ep.interest[g.fd], r.socks[g.fd]
			if s.c != nil {
				w.reported = s.c.events
			} else {
				w.reported = 0
			}
			if w.events&(1<<30) != 0 {
				w.disabled = true // EPOLLONESHOT
			}
		}
		want := fields(arg(1))
		if len(got) > 0 {
			if ev, ok := value(want["events"]); ok && ev != got[0].mask {
				return 0, "", r.fail("events "+want["events"], maskText(got[0].mask, "EPOLL"))
			}
		}
		return int64(len(got)), "", nil
	}
	return 0, "", r.fail("a supported epoll call", c.name)
}
