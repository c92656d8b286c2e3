package tcpstack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// dest returns the i-th of many distinct destinations.
func dest(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), uint16(1000+i%7))
}

func TestForwarderAcceptsTenThousandDestinations(t *testing.T) {
	// A tunnel's forwarder: every SYN, to any address and port, becomes a
	// connection whose LocalAddr is where the peer wanted to go.
	n := newStackNet(t, Config{}, Config{})
	l, err := n.s[1].ListenAll(ForwardConfig{MaxPending: 20000, MaxPendingPerSource: 20000})
	require.NoError(t, err)
	_, err = n.s[1].ListenAll(ForwardConfig{})
	require.ErrorIs(t, err, ErrPortInUse, "one forwarder")
	const total = 10_000
	accepted := map[netip.AddrPort]bool{}
	for i := 0; i < total; i += 500 {
		for j := i; j < i+500; j++ {
			_, err := n.s[0].Dial(ipA, dest(j), n.now)
			require.NoError(t, err)
		}
		n.run(n.now.Add(10*time.Second), func() bool {
			for {
				e, ok := l.Accept()
				if !ok {
					break
				}
				require.Equal(t, ipA, e.RemoteAddr().Addr())
				accepted[e.LocalAddr()] = true
			}
			return len(accepted) == i+500
		})
		require.NoError(t, stackInvariants(n.s[1]))
	}
	require.Len(t, accepted, total)
	for i := range total {
		require.True(t, accepted[dest(i)], "%v", dest(i))
	}
	require.Zero(t, n.s[1].HalfOpen())
	require.Zero(t, n.s[1].fwd.pending)
	require.Equal(t, total, n.s[1].Conns())
}

func TestForwarderDefersTheSYNACK(t *testing.T) {
	// The SYN-ACK waits for the host's verdict (say, after it connected
	// upstream): Accept sends it, Refuse resets, no verdict forgets.
	asked := 0
	n := newStackNet(t, Config{}, Config{})
	l, err := n.s[1].ListenAll(ForwardConfig{DeferTimeout: 5 * time.Second,
		Decide: func(local, remote netip.AddrPort) Verdict { asked++; return Defer }})
	require.NoError(t, err)
	to := netip.MustParseAddrPort("192.0.2.7:443")
	c, err := n.s[0].Dial(ipA, to, n.now)
	require.NoError(t, err)
	n.run(n.now.Add(2*time.Second), nil) // the client's SYN is retransmitted meanwhile
	require.Equal(t, tcpfsm.SynSent, c.State(), "no SYN-ACK before the verdict")
	require.Equal(t, 1, asked, "a retransmitted SYN is not asked about again")
	require.NoError(t, stackInvariants(n.s[1]))
	require.NoError(t, n.s[1].Decide(to, c.LocalAddr(), Accept, n.now))
	require.ErrorIs(t, n.s[1].Decide(to, c.LocalAddr(), Accept, n.now), ErrNotDeferred)
	n.run(n.now.Add(time.Second), func() bool { return c.Connected() && l.Pending() == 1 })
	srv, ok := l.Accept()
	require.True(t, ok)
	require.Equal(t, to, srv.LocalAddr())

	// Refused: the client's connect fails as on a closed port.
	c2, err := n.s[0].Dial(ipA, to, n.now)
	require.NoError(t, err)
	n.run(n.now.Add(100*time.Millisecond), nil)
	require.NoError(t, n.s[1].Decide(to, c2.LocalAddr(), Refuse, n.now))
	n.run(n.now.Add(time.Second), func() bool { return c2.State() == tcpfsm.Closed })
	require.ErrorIs(t, c2.Err(), ErrRefused)

	// Undecided: forgotten after DeferTimeout; the next SYN asks again.
	c3, err := n.s[0].Dial(ipA, to, n.now)
	require.NoError(t, err)
	before := asked
	n.run(n.now.Add(6*time.Second), func() bool { return n.s[1].Stats().ForwardExpired == 1 })
	require.Equal(t, uint64(1), n.s[1].Stats().ForwardExpired)
	n.run(n.now.Add(10*time.Second), func() bool { return asked > before+1 })
	require.Greater(t, asked, before+1)
	require.Equal(t, tcpfsm.SynSent, c3.State())
	require.ErrorIs(t, n.s[1].Decide(to, c3.LocalAddr(), Defer, n.now), ErrBadVerdict)
	require.NoError(t, stackInvariants(n.s[1]))

	// Closing the listener forgets what waits.
	l.Close()
	require.ErrorIs(t, n.s[1].Decide(to, c3.LocalAddr(), Accept, n.now), ErrNotDeferred)
	require.Zero(t, n.s[1].fwd.pending)
	require.NoError(t, stackInvariants(n.s[1]))
}

func TestForwarderCapsHandshakesInFlight(t *testing.T) {
	// At most MaxPendingPerSource handshakes from one address, and
	// MaxPending in all; the rest are dropped and counted.
	n := newStackNet(t, Config{}, Config{})
	_, err := n.s[1].ListenAll(ForwardConfig{MaxPending: 3, MaxPendingPerSource: 2,
		Decide: func(local, remote netip.AddrPort) Verdict { return Defer }})
	require.NoError(t, err)
	for _, src := range []netip.Addr{ipA, ipA, ipA, netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")} {
		_, err := n.s[0].Dial(src, netip.MustParseAddrPort("192.0.2.7:80"), n.now)
		require.NoError(t, err)
	}
	n.run(n.now.Add(100*time.Millisecond), nil)
	st := n.s[1].Stats()
	require.Equal(t, uint64(3), st.ForwardDeferred)
	require.Equal(t, uint64(2), st.ForwardOverLimit, "the third from 10.0.0.1, and the fifth overall")
	require.NoError(t, stackInvariants(n.s[1]))
}

func TestForwarderLeavesListenedPortsAlone(t *testing.T) {
	// A port with its own listener is that listener's; verdicts Refuse and
	// Drop answer as a closed port and as nothing.
	n := newStackNet(t, Config{}, Config{})
	own, err := n.s[1].Listen(80)
	require.NoError(t, err)
	verdict := Refuse
	_, err = n.s[1].ListenAll(ForwardConfig{Decide: func(local, remote netip.AddrPort) Verdict { return verdict }})
	require.NoError(t, err)
	c, _ := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
	n.run(n.now.Add(time.Second), func() bool { return own.Pending() == 1 })
	require.True(t, c.Connected())
	r, _ := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 81), n.now)
	n.run(n.now.Add(time.Second), func() bool { return r.State() == tcpfsm.Closed })
	require.ErrorIs(t, r.Err(), ErrRefused)
	verdict = Drop
	d, _ := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 82), n.now)
	n.run(n.now.Add(2*time.Second), nil)
	require.Equal(t, tcpfsm.SynSent, d.State())
	require.GreaterOrEqual(t, n.s[1].Stats().ForwardDropped, uint64(2), "each SYN asked and dropped")
}
