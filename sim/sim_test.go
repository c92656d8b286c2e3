package sim

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
	"github.com/tcpfsm/tcpfsm/trace"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "run only this seed (replays a failure)")
	traceFlag = flag.String("pcap", "", "with -seed: write the run's packets to this pcap file")
	diagFlag  = flag.Bool("diagram", false, "with -seed: print the run as a sequence diagram")
	connsFlag = flag.Int("conns", 10_000, "seeded connections TestConnectionsSurvive runs")
)

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
)

// scenario builds the network a seed describes: loss up to 20%, and
// duplication, reordering, corruption and jitter in some runs.
func scenario(seed uint64) (*Network, *Node, *Node, Exchange) {
	n := New(seed)
	r := n.Rand()
	link := Link{
		Delay:  time.Duration(1+r.IntN(50)) * time.Millisecond,
		Jitter: time.Duration(r.IntN(5)) * time.Millisecond,
		Loss:   float64(r.IntN(21)) / 100,
	}
	if r.IntN(3) == 0 {
		link.Duplicate, link.Reorder, link.Corrupt = 0.02, 0.05, 0.02
	}
	cfg := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{
		NoTimestamps: r.IntN(4) == 0, NoSACK: r.IntN(4) == 0, QuickACK: r.IntN(4) == 0,
		NoDelay: r.IntN(2) == 0, MSL: 30 * time.Second, R2: 10 * time.Minute,
	}}}
	if r.IntN(4) == 0 {
		cfg.Endpoint.Config.Congestion = tcpfsm.CUBIC
	}
	cfg.Endpoint.Config.EarlyRetransmit = r.IntN(2) == 0
	cfg.Endpoint.Config.TailLossProbe = r.IntN(2) == 0
	a, _ := n.AddNode(addrA, cfg, link)
	b, _ := n.AddNode(addrB, cfg, link)
	x := Exchange{Up: r.IntN(20_000), Down: r.IntN(5_000), Limit: 30 * time.Minute}
	return n, a, b, x
}

func runSeed(t *testing.T, seed uint64, tracePath string) (Result, error) {
	n, a, b, x := scenario(seed)
	var w *trace.PcapWriter
	if tracePath != "" {
		f, err := os.Create(tracePath)
		require.NoError(t, err)
		defer f.Close()
		w, _ = trace.NewPcapWriter(f, time.Unix(0, 0))
	}
	var d *trace.Diagram
	if *diagFlag && *seedFlag != 0 {
		d = trace.NewDiagram("client "+addrA.String(), "server "+addrB.String())
	}
	if w != nil || d != nil {
		n.Trace = func(at tcpfsm.Time, src, dst netip.Addr, tcp []byte, fate string) {
			if w != nil {
				_ = w.WriteSegment(at, src, dst, tcp)
			}
			if seg, err := tcpfsm.ParseSegment(tcp); err == nil && d != nil {
				from := 0
				if src == addrB {
					from = 1
				}
				d.Segment(at, from, seg, fate != "sent" && fate != "duplicated")
				if fate != "sent" && fate != "lost" {
					d.Note(at, from, fate)
				}
			}
		}
	}
	r, err := x.Run(n, a, b)
	if d != nil {
		_ = d.WriteText(os.Stdout)
	}
	if err == nil {
		err = settled(n, a, b)
	}
	return r, err
}

// settled runs the network past the longest timeout once the exchange is
// over and reports anything either stack still keeps: a connection, a
// half-open connection, a TIME-WAIT record or a timer.
func settled(n *Network, nodes ...*Node) error {
	n.RunUntil(n.Now().Add(3*time.Hour), nil)
	for _, nd := range nodes {
		s := nd.Stack
		_, timer := s.NextDeadline()
		if s.Conns() != 0 || s.HalfOpen() != 0 || s.TimeWaits() != 0 || timer {
			return fmt.Errorf("seed %d: %v keeps %d connections, %d half-open, %d TIME-WAIT records, a timer: %v",
				n.Seed(), nd.Addr, s.Conns(), s.HalfOpen(), s.TimeWaits(), timer)
		}
	}
	return nil
}

// TestConnectionsSurvive is the end-to-end property: over seeded networks
// with up to 20% loss, duplication, reordering, corruption and jitter,
// every byte written is read exactly once and in order, EOF comes after
// everything, and both ends close within the time limit.
func TestConnectionsSurvive(t *testing.T) {
	if *seedFlag != 0 {
		_, err := runSeed(t, *seedFlag, *traceFlag)
		require.NoError(t, err)
		return
	}
	count := *connsFlag
	if testing.Short() {
		count = 500
	}
	failed, gaveUp := 0, 0
	for seed := uint64(1); seed <= uint64(count); seed++ {
		r, err := runSeed(t, seed, "")
		if r.GaveUp {
			gaveUp++
		}
		if err != nil {
			failed++
			t.Errorf("%v\n  replay: go test ./sim -run TestConnectionsSurvive -v -seed %d -pcap /tmp/seed%d.pcap -diagram", err, seed, seed)
			if failed > 5 {
				t.FailNow()
			}
		}
	}
	t.Logf("%d connections, %d gave up because the network lost every SYN or SYN-ACK", count, gaveUp)
	require.LessOrEqual(t, gaveUp, count/10000+3, "only a network that loses everything should stop a handshake")
}

func TestSameSeedSameRun(t *testing.T) {
	run := func() (Result, Stats) {
		n, a, b, x := scenario(4242)
		r, err := x.Run(n, a, b)
		require.NoError(t, err)
		return r, n.Stats()
	}
	r1, s1 := run()
	r2, s2 := run()
	require.Equal(t, s1, s2)
	require.Equal(t, r1.Took, r2.Took)
	require.Equal(t, r1.ClientStats, r2.ClientStats)
}

func TestCorruptionIsCaught(t *testing.T) {
	n := New(7)
	link := Link{Delay: 5 * time.Millisecond, Corrupt: 0.2}
	a, _ := n.AddNode(addrA, tcpstack.Config{}, link)
	b, _ := n.AddNode(addrB, tcpstack.Config{}, link)
	r, err := Exchange{Up: 50_000, Down: 1000, Limit: 10 * time.Minute}.Run(n, a, b)
	require.NoError(t, err)
	require.Positive(t, r.Network.Corrupted)
	require.Positive(t, a.Stack.Stats().BadChecksum+b.Stack.Stats().BadChecksum)
}

func TestBandwidthAndMTU(t *testing.T) {
	n := New(9)
	slow := Link{Delay: time.Millisecond, Bandwidth: 100_000} // 100 kB/s
	a, _ := n.AddNode(addrA, tcpstack.Config{}, slow)
	b, _ := n.AddNode(addrB, tcpstack.Config{}, slow)
	r, err := Exchange{Up: 200_000, Limit: time.Hour}.Run(n, a, b)
	require.NoError(t, err)
	require.GreaterOrEqual(t, r.Took, 2*time.Second, "200 kB at 100 kB/s takes at least 2 s")

	n = New(10)
	small := Link{Delay: time.Millisecond, MTU: 600}
	cfg := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{MSS: 536}}}
	a, _ = n.AddNode(addrA, cfg, small)
	b, _ = n.AddNode(addrB, cfg, small)
	_, err = Exchange{Up: 20_000, Limit: time.Hour}.Run(n, a, b)
	require.NoError(t, err, "segments fit a 600-byte MTU with a 536-byte MSS")
	require.Zero(t, n.Stats().TooBig)
}

func ExampleNetwork() {
	n := New(1)
	a, _ := n.AddNode(addrA, tcpstack.Config{}, Link{Delay: 10 * time.Millisecond, Loss: 0.1})
	b, _ := n.AddNode(addrB, tcpstack.Config{}, Link{Delay: 10 * time.Millisecond, Loss: 0.1})
	r, err := Exchange{Up: 100_000, Down: 100, Limit: time.Hour}.Run(n, a, b)
	fmt.Println(err, r.UpOK, r.DownOK, r.Closed, r.ClientStats.Retransmits > 0)
	// Output: <nil> true true true true
}
