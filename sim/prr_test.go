package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// recoveryTransfer sends 2 MiB one way over a 20 ms round trip that loses
// 3% of packets each way and reorders 1%, with CUBIC, SACK, early
// retransmit and the tail loss probe, and returns the virtual time it
// took and the sender's retransmissions; prr turns Config.PRR on.
func recoveryTransfer(t testing.TB, seed uint64, prr bool) (time.Duration, uint32) {
	cfg := tcpfsm.Config{EarlyRetransmit: true, TailLossProbe: true, PRR: prr, Congestion: tcpfsm.CUBIC}
	return transferOver(t, seed, cfg, Link{Delay: 10 * time.Millisecond, Loss: 0.03, Reorder: 0.01}, 2<<20)
}

// TestPRRRetransmitsLess runs the same 20 seeded lossy transfers with and
// without proportional rate reduction (RFC 6937): every byte arrives
// either way; with PRR the sender resends far less (it sends what the
// peer reports delivered, instead of RFC 5681's window inflation, whose
// bursts lose more) and takes no longer.
func TestPRRRetransmitsLess(t *testing.T) {
	var with, without time.Duration
	var rtxWith, rtxWithout uint32
	for seed := uint64(1); seed <= 20; seed++ {
		d, r := recoveryTransfer(t, seed, false)
		without += d
		rtxWithout += r
		d, r = recoveryTransfer(t, seed, true)
		with += d
		rtxWith += r
	}
	t.Logf("20 transfers of 2 MiB at 3%% loss: %v and %d retransmissions without PRR, %v and %d with it",
		without, rtxWithout, with, rtxWith)
	require.Less(t, rtxWith, rtxWithout*3/4)
	require.LessOrEqual(t, with, without*21/20)
}
