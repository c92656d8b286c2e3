package tcpfsm

import "github.com/stretchr/testify/require"

// The per-state fixtures: each state reached by a real run from CLOSED,
// never built by hand (ISS 100 ours, 300 the peer's, unless a fixture
// says otherwise).

// established returns a connection that opened actively with ISS 100 to a
// peer with ISS 300, in ESTABLISHED, all actions consumed.
func established(t testingT, cfg Config) *conn {
	t.Helper()
	c := newConn(t, cfg)
	c.user(Open(ourPort, peerPort, 100))
	c.peer(pkt("S.", 300, 101, mss(1460)))
	c.state(Established)
	c.clear()
	return c
}

// fixtures reaches each state by a real run (the smoltcp habit: one
// fixture per state, built by driving the machine, never by hand).
var fixtures = []struct {
	state State
	make  func(testingT, Config) *conn
}{
	{Closed, func(t testingT, cfg Config) *conn { return newConn(t, cfg) }},
	{Listen, func(t testingT, cfg Config) *conn {
		c := newConn(t, cfg)
		c.user(ListenOn(ourPort))
		return c
	}},
	{SynSent, func(t testingT, cfg Config) *conn {
		c := newConn(t, cfg)
		c.user(Open(ourPort, peerPort, 100))
		c.clear()
		return c
	}},
	{SynReceived, synReceived},
	{Established, established},
	{FinWait1, finWait1},
	{FinWait2, finWait2},
	{CloseWait, closeWait},
	{Closing, closing},
	{LastAck, lastAck},
	{TimeWait, timeWait},
}

// synReceived is a passive open (ISS 100) that got SYN seq 300.
func synReceived(t testingT, cfg Config) *conn {
	t.Helper()
	return synRcvdFrom(t, cfg, 300, 100)
}

// synRcvdFrom is a passive open that got a SYN with sequence number peer
// and answered it with ISS iss.
func synRcvdFrom(t testingT, cfg Config, peer, iss Seq) *conn {
	t.Helper()
	c := newConn(t, cfg)
	c.user(ListenOn(ourPort))
	s := pkt("S", peer, 0)
	require.NoError(t, c.step(Arrive(&s, iss)))
	c.sent("S. seq=" + itoa(iss) + " ack=" + itoa(peer.Add(1)))
	c.clear()
	return c
}

// finWait1 is ESTABLISHED (ISS 100, peer 300) after Close: FIN seq 101 out.
func finWait1(t testingT, cfg Config) *conn {
	t.Helper()
	c := established(t, cfg)
	c.user(Close())
	c.sent("F. seq=101 ack=301")
	c.state(FinWait1)
	c.clear()
	return c
}

func finWait2(t testingT, cfg Config) *conn {
	t.Helper()
	c := finWait1(t, cfg)
	c.peer(pkt(".", 301, 102))
	c.state(FinWait2)
	c.clear()
	return c
}

func closeWait(t testingT, cfg Config) *conn {
	t.Helper()
	c := established(t, cfg)
	c.peer(pkt("F.", 301, 101))
	c.sent(". seq=101 ack=302")
	c.state(CloseWait)
	c.clear()
	return c
}

func lastAck(t testingT, cfg Config) *conn {
	t.Helper()
	c := closeWait(t, cfg)
	c.user(Close())
	c.sent("F. seq=101 ack=302")
	c.state(LastAck)
	c.clear()
	return c
}

func closing(t testingT, cfg Config) *conn {
	t.Helper()
	c := finWait1(t, cfg)
	c.peer(pkt("F.", 301, 101))
	c.sent(". seq=102 ack=302")
	c.state(Closing)
	c.clear()
	return c
}

func timeWait(t testingT, cfg Config) *conn {
	t.Helper()
	c := finWait2(t, cfg)
	c.peer(pkt("F.", 301, 102))
	c.sent(". seq=102 ack=302")
	c.state(TimeWait)
	c.clear()
	return c
}
