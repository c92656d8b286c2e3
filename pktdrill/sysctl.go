package pktdrill

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Profiles lists the names ProfileConfig knows.
var Profiles = []string{"rfc", "linux", "freebsd"}

// ProfileConfig returns the settings a family of scripts assumes:
//
//   - "rfc": tcpfsm's defaults, which follow the RFCs.
//   - "linux": what Linux's packetdrill suite (with its defaults.sh)
//     expects, as far as Config can say it: an initial window of 10
//     segments, a 200 ms floor on the RTO's variance term (RTO = SRTT +
//     max(4*RTTVAR, 200 ms)), early retransmit, the tail loss
//     probe, proportional rate reduction in fast recovery, a 40 ms delayed ACK after quick ACKs for the first 16
//     segments, CUBIC with HyStart's delay test (hystart_detect's
//     HYSTART_DELAY), slow start counting every acknowledged byte, a
//     receive buffer of 15 MiB (so
//     window scale 8), 5 SYN retries, a 60 s TIME-WAIT and FIN-WAIT-2
//     timeout, a 120 s maximum RTO, and no answer to an ACK of data
//     not yet sent.
//   - "freebsd": FreeBSD's defaults: an initial window of 10 segments, a
//     30 ms minimum RTO, a 100 ms delayed ACK, CUBIC, a 30 s MSL and a
//     64 KiB receive buffer.
func ProfileConfig(name string) (tcpfsm.Config, error) {
	switch name {
	case "", "rfc":
		return tcpfsm.Config{}, nil
	case "linux":
		return tcpfsm.Config{
			InitialWindow10:  true,
			InitialRTO:       time.Second,
			MinRTO:           200 * time.Millisecond,
			MinRTOOnVariance: true,
			PRR:              true,
			MaxRTO:           120 * time.Second,
			EarlyRetransmit:  true,
			TailLossProbe:    true,
			DelayedACK:       40 * time.Millisecond,
			QuickACKAtStart:  true,
			Congestion:       tcpfsm.CUBIC,
			SlowStartLimit:   -1,
			HyStart:          true,
			RecvBuffer:       15 << 20,
			SynRetries:       5,
			MSL:              30 * time.Second,
			FinWait2Timeout:  60 * time.Second,
			R2:               925 * time.Second,
			DropACKOfUnsent:  true,
		}, nil
	case "freebsd":
		return tcpfsm.Config{
			InitialWindow10: true,
			MinRTO:          30 * time.Millisecond,
			DelayedACK:      100 * time.Millisecond,
			Congestion:      tcpfsm.CUBIC,
			MSL:             30 * time.Second,
			RecvBuffer:      65536,
		}, nil
	}
	return tcpfsm.Config{}, fmt.Errorf("pktdrill: unknown profile %q (want one of %s)", name, strings.Join(Profiles, ", "))
}

// shell reads a "`...`" line: the sysctls it sets, directly or through a
// file it runs.
func (r *runner) shell(l string) error {
	body := strings.Trim(strings.TrimSpace(l), "`")
	return r.shellText(body, 0)
}

func (r *runner) shellText(body string, depth int) error {
	// Join continuation lines, then take one command at a time.
	body = strings.ReplaceAll(body, "\\\n", " ")
	for _, line := range strings.Split(body, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && !strings.Contains(line[:i], "$") {
			line = line[:i]
		}
		for _, cmd := range splitCommands(line) {
			if err := r.command(cmd, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitCommands cuts a shell line at ; && || outside quotes.
func splitCommands(line string) []string {
	var out []string
	inQ := byte(0)
	start := 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQ != 0:
			if c == inQ {
				inQ = 0
			}
		case c == '"' || c == '\'':
			inQ = c
		case c == ';', c == '&' && i+1 < len(line) && line[i+1] == '&', c == '|' && i+1 < len(line) && line[i+1] == '|':
			out = append(out, strings.TrimSpace(line[start:i]))
			if c != ';' {
				i++
			}
			start = i + 1
		}
	}
	out = append(out, strings.TrimSpace(line[start:]))
	return out
}

// words splits a command into words, keeping quoted parts together.
func words(cmd string) []string {
	var out []string
	var cur strings.Builder
	inQ := byte(0)
	has := false
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case inQ != 0:
			if c == inQ {
				inQ = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			inQ, has = c, true
		case c == ' ' || c == '\t':
			if cur.Len() > 0 || has {
				out = append(out, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 || has {
		out = append(out, cur.String())
	}
	return out
}

func (r *runner) command(cmd string, depth int) error {
	w := words(cmd)
	if len(w) == 0 {
		return nil
	}
	prog := filepath.Base(w[0])
	switch {
	case prog == "sysctl":
		for _, a := range w[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				if err := r.sysctl(k, v); err != nil {
					return err
				}
			}
		}
	case prog == "set_sysctls.py":
		for _, a := range w[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				k = strings.ReplaceAll(strings.TrimPrefix(k, "/proc/sys/"), "/", ".")
				if err := r.sysctl(k, v); err != nil {
					return err
				}
			}
		}
	case prog == "echo" && len(w) >= 4 && w[len(w)-2] == ">" && strings.HasPrefix(w[len(w)-1], "/proc/sys/"):
		k := strings.ReplaceAll(strings.TrimPrefix(w[len(w)-1], "/proc/sys/"), "/", ".")
		return r.sysctl(k, strings.Join(w[1:len(w)-2], " "))
	case prog == "echo" && len(w) >= 4 && w[len(w)-2] == ">" && strings.HasPrefix(w[len(w)-1], cubicParams):
		// tcp_cubic's module parameters, as sysctls named tcp_cubic.NAME.
		k := "tcp_cubic." + strings.TrimPrefix(w[len(w)-1], cubicParams)
		return r.sysctl(k, strings.Join(w[1:len(w)-2], " "))
	case prog == "ip" && len(w) > 2 && w[1] == "route":
		// A route's advmss is the MSS our SYNs announce.
		for i := 2; i+1 < len(w); i++ {
			if w[i] == "advmss" {
				n, err := strconv.Atoi(w[i+1])
				if err != nil || n < 64 || n > 65535 {
					return r.fail("an advmss", w[i+1])
				}
				r.cfg.MSS = uint16(n)
			}
		}
		r.ignored = append(r.ignored, "ip route (other than advmss)")
	case prog == "tc":
		r.tc(w[1:])
	case strings.HasSuffix(prog, ".sh") && depth == 0 && r.o.Dir != "" && !strings.Contains(w[0], "$"):
		b, err := os.ReadFile(filepath.Join(r.o.Dir, w[0]))
		if err != nil {
			r.ignored = append(r.ignored, "shell: "+w[0])
			return nil
		}
		return r.shellText(string(b), depth+1)
	default:
		r.ignored = append(r.ignored, "shell: "+prog)
	}
	return nil
}

// cubicParams is where Linux's tcp_cubic module takes its parameters.
const cubicParams = "/sys/module/tcp_cubic/parameters/"

// shellInt evaluates a number as a shell would write it: 42, 0x70403 or
// $((15*1024*1024)).
func shellInt(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "$((") && strings.HasSuffix(s, "))") {
		e := &evaluator{toks: tokenize(s[3 : len(s)-2])}
		v, err := e.expr()
		return v, err == nil && e.pos == len(e.toks)
	}
	n, err := strconv.ParseInt(s, 0, 64)
	return n, err == nil
}

// sysctl applies one sysctl to the settings new sockets get, where a
// Config field exists, and lists it as ignored otherwise.
func (r *runner) sysctl(key, val string) error {
	key = strings.TrimSpace(key)
	name := strings.TrimPrefix(key, "net.ipv4.")
	vals := strings.Fields(val)
	var nums []int64
	for _, v := range vals {
		n, ok := shellInt(v)
		if !ok {
			nums = nil
			break
		}
		nums = append(nums, n)
	}
	one := len(nums) == 1
	n := int64(0)
	if len(nums) > 0 {
		n = nums[0]
	}
	c := &r.cfg
	applied := true
	switch {
	case name == "tcp_timestamps" && one:
		c.NoTimestamps = n == 0
	case name == "tcp_sack" && one:
		c.NoSACK = n == 0
	case name == "tcp_window_scaling" && one:
		c.NoWindowScale = n == 0
	case name == "tcp_slow_start_after_idle" && one:
		c.NoRestartAfterIdle = n == 0
	case name == "tcp_rmem" && len(nums) == 3:
		if nums[2] > 0 && nums[2] < 1<<31 {
			c.RecvBuffer = uint32(nums[2])
		}
		r.rcvBufDef = int(nums[1])
	case name == "tcp_wmem" && len(nums) == 3:
		r.sndBufDef = int(nums[1])
	case (name == "tcp_syn_retries" || name == "tcp_synack_retries") && one && n >= 0 && n <= 255:
		c.SynRetries = int(n)
	case name == "tcp_retries1" && one && n >= 0 && n <= 255:
		c.R1 = int(n)
	case name == "tcp_early_retrans" && one:
		c.EarlyRetransmit = n == 1 || n == 2 || n == 3 || (n >= 4 && c.EarlyRetransmit)
		c.TailLossProbe = n >= 3
	case name == "tcp_congestion_control":
		switch val {
		case "cubic":
			c.Congestion = tcpfsm.CUBIC
		case "reno":
			c.Congestion = tcpfsm.NewReno
		default:
			applied = false
		}
	case name == "tcp_keepalive_time" && one && n > 0 && n <= 32767:
		c.KeepaliveIdle = time.Duration(n) * time.Second
	case name == "tcp_keepalive_intvl" && one && n > 0 && n <= 32767:
		c.KeepaliveInterval = time.Duration(n) * time.Second
	case name == "tcp_keepalive_probes" && one && n >= 0 && n <= 255:
		c.KeepaliveCount = int(n)
	case name == "tcp_fin_timeout" && one && n >= 0 && n <= 32767:
		c.FinWait2Timeout = time.Duration(n) * time.Second
	case name == "tcp_fastopen" && one:
		r.fastOpen = n&2 != 0
	case name == "tcp_mtu_probing" && one && n != 0:
		return r.unsupported("path MTU probing (RFC 4821)")
	case name == "tcp_rfc1337" && one:
		c.TimeWaitRST = n == 0
	case name == "tcp_cubic.hystart" && one:
		c.HyStart = n != 0
	case name == "tcp_cubic.hystart_detect" && one:
		// Bit 2 is the delay test, which Config.HyStart is; bit 1, the
		// ACK-train test, has no counterpart.
		c.HyStart = n&2 != 0
		if n&1 != 0 {
			r.ignored = append(r.ignored, key+" (HYSTART_ACK_TRAIN)")
		}
	case name == "tcp_challenge_ack_limit" && one:
		c.ChallengeACKLimit = int(min(max(n, 1), 255))
	default:
		applied = r.hostSysctl(name, one, n)
	}
	if !applied {
		r.ignored = append(r.ignored, key)
		return nil
	}
	if err := c.Validate(); err != nil {
		return r.fail("a sysctl value tcpfsm accepts", key+"="+val+": "+err.Error())
	}
	return nil
}
