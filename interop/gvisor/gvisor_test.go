package gvisor

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/host"
	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var (
	peerAddr = netip.MustParseAddr("10.8.0.1")
	ourAddr  = netip.MustParseAddr("10.8.0.2")
)

func setup(t *testing.T, loss float64) (*Peer, *host.Host) {
	p, err := NewPeer(peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	p.Loss = loss
	h, err := host.New(p, host.Config{Addrs: []netip.Addr{ourAddr}, Stack: tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20,
		Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return p, h
}

func TestOurClientGVisorServer(t *testing.T) {
	p, h := setup(t, 0)
	ours, theirs := connect(t, p, h, true)
	defer ours.Close()
	go peertest.EchoOn(theirs)
	peertest.SendAndHalfClose(t, ours, ours, peertest.Payload(10<<20))
	tcb := ours.(*host.Conn).TCB()
	st, _ := tcb.Status()
	t.Logf("negotiated with gVisor: MSS %d, window scale %d/%d, timestamps %v, SACK %v", st.SendMSS, st.SndShift, st.RcvShift, st.Timestamps, st.SACK)
	if !st.SACK || st.SndShift == 0 || !st.Timestamps {
		t.Fatalf("options not negotiated: %+v", st)
	}
}

func TestGVisorClientOurServer(t *testing.T) {
	p, h := setup(t, 0)
	ours, theirs := connect(t, p, h, false)
	defer theirs.Close()
	go peertest.EchoOn(ours)
	peertest.SendAndHalfClose(t, theirs, theirs, peertest.Payload(10<<20))
}

// TestLossAndReordering: 5% of packets lost and 5% overtaken by the next,
// each way, while 512 KiB go each way in both roles, byte-exact. Our
// side runs with a 200 ms RTO floor, as Linux and gVisor do; at RFC 6298's
// 1 s floor the same transfer takes minutes, because with windows this
// small most losses are repaired by timeout (see BENCHMARKS.md, "Loss recovery").
//
// A transfer from gVisor that stalls in the known gVisor state
// TestGVisorLosesItsRetransmissionTimer replays (gVisorLostItsTimer)
// skips the case instead of failing it; any other failure fails.
func TestLossAndReordering(t *testing.T) {
	roles(t, func(t *testing.T, ourClient bool) {
		p, h, c := setupCapturing(t, tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20,
			Config: tcpfsm.Config{RecvBuffer: 1 << 20, MinRTO: 200 * time.Millisecond, EarlyRetransmit: true, TailLossProbe: true}}})
		ours, theirs := connect(t, p, h, ourClient)
		defer ours.Close()
		defer theirs.Close()
		defer func() {
			if t.Failed() || t.Skipped() {
				tcb := ours.(*host.Conn).TCB()
				st, err := tcb.Status()
				t.Logf("our end: %+v (%v)", st, err)
				es := ours.(*host.Conn).Endpoint().Stats()
				for r := tcpfsm.DropReason(1); int(r) < len(es.Drops); r++ {
					if n := es.Dropped(r); n > 0 {
						t.Logf("our end dropped %d segments: %v", n, r)
					}
				}
				t.Logf("gVisor's TCP counters: %+v", p.Stack.Stats().TCP)
				for _, ep := range p.Stack.RegisteredEndpoints() {
					if e, ok := ep.(tcpip.Endpoint); ok {
						var info tcpip.TCPInfoOption
						if err := e.GetSockOpt(&info); err == nil {
							t.Logf("gVisor endpoint: state %v, %+v", tcp.EndpointState(info.State), info)
						}
					}
				}
			}
		}()
		p.mu.Lock()
		p.Loss, p.Reorder = 0.05, 0.05
		p.mu.Unlock()
		start := time.Now()
		peertest.SendAndHalfClose(t, ours, theirs, peertest.Payload(512<<10))
		mid := time.Now()
		// Nothing but the deadline ends a stall on the known gVisor
		// issue: once it shows, the read is cut short.
		done, stalled := make(chan struct{}), make(chan string, 1)
		go func() {
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				if why, ok := gVisorLostItsTimer(p, c, ours.(*host.Conn)); ok {
					stalled <- why
					_ = ours.SetReadDeadline(time.Now())
					return
				}
			}
		}()
		err := peertest.Transfer(theirs, ours, peertest.Payload(512<<10))
		close(done)
		if err != nil {
			select {
			case why := <-stalled:
				t.Skipf("gVisor to tcpfsm stalled (%v) on a known gVisor issue, not tcpfsm's "+
					"(TestGVisorLosesItsRetransmissionTimer): %s", err, why)
			default:
			}
			t.Fatal(err)
		}
		st := ours.(*host.Conn).Endpoint().Stats()
		t.Logf("512 KiB tcpfsm to gVisor in %v, gVisor to tcpfsm in %v; tcpfsm retransmitted %d segments",
			mid.Sub(start), time.Since(mid), st.Retransmits)
		if st.Retransmits == 0 {
			t.Fatal("nothing was retransmitted: the link lost nothing")
		}
	})
}

func TestResets(t *testing.T) {
	p, h := setup(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// gVisor connects to a port nobody listens on: refused by our RST.
	if _, err := gonet.DialContextTCP(ctx, p.Stack, fullOf(ourAddr, 81), ipv4.ProtocolNumber); err == nil {
		t.Fatal("gVisor's dial to a closed tcpfsm port succeeded")
	}
	// We connect to a gVisor port nobody listens on: refused by its RST.
	if _, err := h.DialContextAddrPort(ctx, netip.AddrPortFrom(peerAddr, 9)); !errors.Is(err, tcpstack.ErrRefused) {
		t.Fatalf("tcpfsm dial to a closed gVisor port: %v, want ErrRefused", err)
	}
}

func fullOf(a netip.Addr, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(a.As4()), Port: port}
}

// TestBlindAttacks plays the off-path attacker of RFC 5961 against a live
// connection between tcpfsm and gVisor: it knows the addresses and ports
// but not the sequence numbers, and injects RSTs, SYNs and data segments
// with random sequence and acknowledgment numbers toward both ends while
// 4 MiB are echoed. Every attempt must fail: no reset, no byte changed.
func TestBlindAttacks(t *testing.T) {
	p, h := setup(t, 0)
	ours, theirs := connect(t, p, h, true)
	go peertest.EchoOn(theirs)
	c := ours.(*host.Conn)
	defer c.Close()
	local := c.Endpoint().LocalAddr()
	result := peertest.EchoChecked(c, peertest.Payload(4<<20))
	forger := peertest.NewForger(11)
	attempts := map[string]int{}
	var err2 error
loop:
	for i := 0; ; i++ {
		select {
		case err2 = <-result:
			break loop
		default:
		}
		k := peertest.Attacks[i%len(peertest.Attacks)]
		p.InjectToTcpfsm(forger.Segment(k, peerAddr, 80, ourAddr, local.Port()), peerAddr, ourAddr)
		_ = p.WriteSegment(forger.Segment(k, ourAddr, local.Port(), peerAddr, 80), ourAddr, peerAddr)
		attempts[k.Name]++
		if i%64 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("blind attempts toward each side: %v; successes: tcpfsm 0, gVisor 0 unless reported below", attempts)
	if err2 != nil {
		t.Fatalf("an attack succeeded: %v (tcpfsm's error: %v)", err2, c.Endpoint().Err())
	}
	if attempts["RST"] < 100 {
		t.Fatalf("only %v attempts were made", attempts)
	}
	st := h.Stats()
	t.Logf("tcpfsm stack: %d segments in, %d resets sent for unmatched segments", st.SegmentsIn, st.ResetsSent)
}
