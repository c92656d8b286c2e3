package gvisor

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// deadline is how long a connection's reads and writes may take in all:
// two minutes, or $GVISOR_DEADLINE.
func deadline() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("GVISOR_DEADLINE")); err == nil && d > 0 {
		return d
	}
	return 2 * time.Minute
}

// slowTransfer is how long a case may take before its capture is kept.
const slowTransfer = 5 * time.Second

// setupCapturing is setupWith on a Peer that records the link into a
// Capture. When the case fails, is skipped, or takes longer than
// slowTransfer, the capture is written to the directory
// $GVISOR_CAPTURE_DIR, if set, as NAME.txt (every record, relative
// sequence numbers, netstack's sender state after each segment it
// processed), NAME.tcpfsm.pcap and NAME.gvisor.pcap (what each side sent
// and received), and NAME.replay.pcap and NAME.replay.state (a replay's
// input, Capture.WriteReplay); without it, the last records are logged.
func setupCapturing(t *testing.T, cfg tcpstack.Config) (*Peer, *host.Host, *Capture) {
	c := NewCapture()
	p, err := NewPeerWith(peerAddr, c)
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.New(p, host.Config{Stack: cfg, Addrs: []netip.Addr{ourAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	start := time.Now()
	t.Cleanup(func() {
		if !t.Failed() && !t.Skipped() && time.Since(start) < slowTransfer {
			return
		}
		dir := os.Getenv("GVISOR_CAPTURE_DIR")
		if dir == "" {
			var b strings.Builder
			_ = c.WriteText(&b)
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			t.Logf("the link's last records (set GVISOR_CAPTURE_DIR to keep them all):\n%s",
				strings.Join(lines[max(0, len(lines)-60):], "\n"))
			return
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"),
			time.Now().UTC().Format("20060102T150405.000")))
		files := map[string]func(f *os.File) error{
			".txt":         func(f *os.File) error { return c.WriteText(f) },
			".tcpfsm.pcap": func(f *os.File) error { return c.WritePcap(f, TcpfsmView, peerAddr, ourAddr) },
			".gvisor.pcap": func(f *os.File) error { return c.WritePcap(f, GVisorView, peerAddr, ourAddr) },
		}
		if r, err := os.Create(name + ".replay.pcap"); err == nil {
			if st, err := os.Create(name + ".replay.state"); err == nil {
				if err := c.WriteReplay(r, st, peerAddr, ourAddr); err != nil {
					t.Logf("no replay files: %v", err)
				}
				st.Close()
			}
			r.Close()
		}
		for ext, write := range files {
			f, err := os.Create(name + ext)
			if err == nil {
				err = write(f)
				if err2 := f.Close(); err == nil {
					err = err2
				}
			}
			if err != nil {
				t.Errorf("writing the capture: %v", err)
				return
			}
		}
		t.Logf("capture of the link (%v in all) written to %s.{txt,tcpfsm.pcap,gvisor.pcap,replay.pcap,replay.state}",
			time.Since(start), name)
	})
	return p, h, c
}

// gVisorLostItsTimer reports whether a stalled transfer from netstack to
// tcpfsm is the known gVisor issue TestGVisorLosesItsRetransmissionTimer
// replays (lostItsTimer), and why.
func gVisorLostItsTimer(p *Peer, c *Capture, ours *host.Conn) (string, bool) {
	var state tcp.EndpointState
	for _, e := range p.Stack.RegisteredEndpoints() {
		if ep, ok := e.(*tcp.Endpoint); ok {
			if s := ep.EndpointState(); s == tcp.StateCloseWait || s == tcp.StateLastAck {
				state = s
			}
		}
	}
	snd := c.LastState()
	if snd == nil {
		return "", false
	}
	tcb := ours.TCB()
	st, _ := tcb.Status()
	return lostItsTimer(state, snd.SndNxt-snd.SndUna, snd.Outstanding, c.SinceSent(),
		p.Stack.Stats().TCP.Timeouts.Value(), st.RcvWnd)
}

// lostItsTimer reports whether netstack's sender is stuck on the known
// gVisor issue, and why: its endpoint has closed its receiving half
// (state CLOSE-WAIT or LAST-ACK), holds data or its FIN unacknowledged
// (unacked) while counting none of it in flight (outstanding, the count
// its retransmission timer is armed on), has sent nothing for five
// seconds (quiet) and counted no retransmission timeout in the whole
// run, while tcpfsm's receive window (ourWnd) is open. Whatever tcpfsm
// sent, a sender silent with data unacknowledged has no timer running
// (RFC 6298 rule 5.1), so such a stall is netstack's.
func lostItsTimer(state tcp.EndpointState, unacked uint32, outstanding int, quiet time.Duration,
	timeouts uint64, ourWnd uint32) (string, bool) {
	if state != tcp.StateCloseWait && state != tcp.StateLastAck || unacked == 0 || outstanding != 0 ||
		quiet < 5*time.Second || timeouts != 0 || ourWnd == 0 {
		return "", false
	}
	return fmt.Sprintf("netstack in %v with %d sequence numbers unacknowledged and none counted in flight, "+
		"silent for %v, no retransmission timeout fired; tcpfsm's window open (%d)",
		state, unacked, quiet.Round(time.Millisecond), ourWnd), true
}
