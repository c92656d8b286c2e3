package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// lossyTransfer sends 512 KiB one way over a 1 ms round trip that loses
// and reorders 5% of packets each way, and returns the virtual time it
// took and the sender's retransmissions. Linux-like timers (200 ms RTO
// floor) and early retransmit; tlp turns the tail loss probe on.
func lossyTransfer(t testing.TB, seed uint64, tlp bool) (time.Duration, uint32) {
	return transferOver(t, seed, tcpfsm.Config{EarlyRetransmit: true, TailLossProbe: tlp},
		Link{Delay: 500 * time.Microsecond, Loss: 0.05, Reorder: 0.05}, 512<<10)
}

// transferOver sends n bytes one way between two nodes with the settings
// cfg (with 1 MiB buffers, a 200 ms RTO floor and a 1 ms MSL) over link,
// and returns the virtual time it took and the sender's retransmissions.
func transferOver(t testing.TB, seed uint64, cfg tcpfsm.Config, link Link, n int) (time.Duration, uint32) {
	cfg.RecvBuffer, cfg.MinRTO, cfg.MSL = 1<<20, 200*time.Millisecond, time.Millisecond
	sc := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{SendBuffer: 1 << 20, Config: cfg}}
	net := New(seed)
	a, _ := net.AddNode(addrA, sc, link)
	b, _ := net.AddNode(addrB, sc, link)
	r, err := Exchange{Up: n, Limit: time.Hour}.Run(net, a, b)
	require.NoError(t, err)
	return r.Took, r.ClientStats.Retransmits
}

// TestTailLossProbeShortensLossyTransfers runs the same 20 seeded lossy
// transfers with and without the tail loss probe (RFC 8985 section 7):
// every byte arrives either way, and with the probe the transfers take
// less virtual time in total, because losses at the tail of a flight
// are repaired after a PTO of two round trips instead of an RTO.
func TestTailLossProbeShortensLossyTransfers(t *testing.T) {
	var with, without time.Duration
	for seed := uint64(1); seed <= 20; seed++ {
		d, _ := lossyTransfer(t, seed, false)
		without += d
		d, _ = lossyTransfer(t, seed, true)
		with += d
	}
	t.Logf("20 transfers of 512 KiB at 5%% loss and 5%% reordering: %v without the probe, %v with it", without, with)
	require.Less(t, with, without*3/4)
}

// BenchmarkLossyTransfer reports the virtual time (vms/op) one lossy
// 512 KiB transfer takes, averaged over seeds, with and without the
// tail loss probe; the wall-clock ns/op is the simulator's own cost.
func BenchmarkLossyTransfer(b *testing.B) {
	for _, bc := range []struct {
		name string
		tlp  bool
	}{{"rto-only", false}, {"tail-loss-probe", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var total time.Duration
			var rtx uint64
			seed := uint64(0)
			b.ResetTimer()
			for range b.N {
				seed++
				d, r := lossyTransfer(b, seed, bc.tlp)
				total += d
				rtx += uint64(r)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(seed), "vms/op")
			b.ReportMetric(float64(rtx)/float64(seed), "rtx/op")
		})
	}
}
