package tcpstack

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// closeAndRelease closes both ends of a connection the way an application
// done with it does, releases them, and runs the network until neither
// stack holds a connection.
func (n *stackNet) closeAndRelease(t *testing.T, c, srv *Endpoint) {
	require.NoError(t, c.Close(n.now))
	require.NoError(t, srv.Close(n.now))
	c.Release(n.now)
	srv.Release(n.now)
	n.run(n.now.Add(5*time.Second), func() bool { return n.s[0].Conns() == 0 && n.s[1].Conns() == 0 })
	require.Zero(t, n.s[0].Conns()+n.s[1].Conns())
}

func TestReleaseReusesEndpoints(t *testing.T) {
	// Released endpoints come back for the next connections, as fresh
	// ones: no state, counters, value or error of the last connection,
	// and data moves through them as through new ones.
	n := newStackNet(t, Config{}, Config{})
	c, srv := n.connect(t)
	c.SetValue("old")
	msg := bytes.Repeat([]byte("released "), 1000)
	_, err := c.Write(msg, n.now)
	require.NoError(t, err)
	n.run(n.now.Add(time.Second), func() bool { return srv.Buffered() == len(msg) })
	got := make([]byte, len(msg))
	_, err = srv.Read(got, n.now)
	require.NoError(t, err)
	n.closeAndRelease(t, c, srv)
	require.Len(t, n.s[0].freeEP, 1)
	require.Len(t, n.s[1].freeEP, 1)

	l := n.s[1].listeners[80]
	c2, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
	require.NoError(t, err)
	require.Same(t, c, c2, "the client's released endpoint is reused")
	require.Equal(t, tcpfsm.SynSent, c2.State())
	require.Nil(t, c2.Value())
	require.NoError(t, c2.Err())
	require.Equal(t, EndpointStats{SegmentsOut: 0}, statsWithoutOutput(c2.Stats()))
	var srv2 *Endpoint
	n.run(n.now.Add(time.Second), func() bool {
		if srv2 == nil {
			srv2, _ = l.Accept()
		}
		return srv2 != nil && c2.Connected()
	})
	require.Same(t, srv, srv2, "the server's released endpoint is reused")
	require.Zero(t, srv2.Stats().BytesIn)
	require.Zero(t, srv2.Buffered())

	_, err = srv2.Write(msg[:100], n.now)
	require.NoError(t, err)
	n.run(n.now.Add(time.Second), func() bool { return c2.Buffered() == 100 })
	k, err := c2.Read(got, n.now)
	require.NoError(t, err)
	require.Equal(t, msg[:100], got[:k])
	require.Equal(t, uint64(100), c2.Stats().BytesIn)
	n.closeAndRelease(t, c2, srv2)
	for _, s := range n.s {
		require.NoError(t, stackInvariants(s))
	}
}

// statsWithoutOutput is s with the counts a SYN just sent has moved set to
// zero, for comparing a fresh endpoint's stats.
func statsWithoutOutput(s EndpointStats) EndpointStats {
	s.SegmentsOut = 0
	return s
}

func TestReleaseWaitsForTheClose(t *testing.T) {
	// An endpoint released with data still to send finishes its
	// connection first: the peer gets every byte and the FIN, and the
	// stack gives the endpoint to no other connection in the meantime.
	n := newStackNet(t, Config{}, Config{})
	c, srv := n.connect(t)
	msg := make([]byte, 60000)
	for i := range msg {
		msg[i] = byte(i * 13)
	}
	w, err := c.Write(msg, n.now)
	require.NoError(t, err)
	c.Release(n.now) // a Close, then the stack's to keep until done
	require.Equal(t, tcpfsm.FinWait1, c.State())
	other, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
	require.NoError(t, err)
	require.NotSame(t, c, other, "a released endpoint still sending is not reused")

	var got []byte
	buf := make([]byte, 4096)
	n.run(n.now.Add(10*time.Second), func() bool {
		k, _ := srv.Read(buf, n.now)
		got = append(got, buf[:k]...)
		return srv.State() == tcpfsm.CloseWait
	})
	require.Equal(t, msg[:w], got, "the peer reads every byte written before Release")
	require.NoError(t, srv.Close(n.now))
	n.run(n.now.Add(5*time.Second), func() bool { return n.s[0].TimeWaits() == 1 })
	require.Equal(t, []*Endpoint{c}, n.s[0].freeEP, "reused once its close is done")
	for _, s := range n.s {
		require.NoError(t, stackInvariants(s))
	}
}

func TestReleaseUnreadDataResets(t *testing.T) {
	// Release closes as Close does: unread data resets the connection
	// (RFC 9293 SHLD-3), and the buffers go back to the stack.
	n := newStackNet(t, Config{}, Config{})
	c, srv := n.connect(t)
	_, err := c.Write([]byte("never read"), n.now)
	require.NoError(t, err)
	n.run(n.now.Add(time.Second), func() bool { return srv.Buffered() > 0 })
	srv.Release(n.now)
	n.run(n.now.Add(time.Second), func() bool { return c.State() == tcpfsm.Closed })
	require.ErrorIs(t, c.Err(), ErrReset)
	require.Equal(t, []*Endpoint{srv}, n.s[1].freeEP)
	require.Nil(t, srv.io, "the released endpoint keeps no buffers")
	require.Zero(t, n.s[1].lent, "every buffer went back to the stack")
}

func TestReleaseTwiceIsOnce(t *testing.T) {
	// A second Release, before or after the connection ended, keeps the
	// endpoint for reuse once: two later connections get two endpoints.
	n := newStackNet(t, Config{}, Config{})
	c, srv := n.connect(t)
	c.Release(n.now)
	c.Release(n.now)
	srv.Release(n.now)
	n.run(n.now.Add(5*time.Second), func() bool { return n.s[0].Conns() == 0 && n.s[1].Conns() == 0 })
	c.Release(n.now)
	require.Len(t, n.s[0].freeEP, 1)
	a, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
	require.NoError(t, err)
	b, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
	require.NoError(t, err)
	require.NotSame(t, a, b)
	n.flush()
	require.NoError(t, stackInvariants(n.s[0]))
}

func TestReleaseWhileOpening(t *testing.T) {
	// An endpoint released in SYN-SENT, its SYN queued or sent, closes at
	// once (RFC 9293 section 3.10.4) and is kept for reuse once: the
	// next two connections get two endpoints.
	for _, sent := range []bool{false, true} {
		n := newStackNet(t, Config{}, Config{})
		c, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
		require.NoError(t, err)
		if sent {
			n.flush()
		}
		c.Release(n.now)
		require.Equal(t, tcpfsm.Closed, c.State())
		n.flush() // a queued SYN goes, or is dropped
		require.Equal(t, []*Endpoint{c}, n.s[0].freeEP, "sent %v", sent)
		a, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
		require.NoError(t, err)
		b, err := n.s[0].Dial(ipA, netip.AddrPortFrom(ipB, 80), n.now)
		require.NoError(t, err)
		require.NotSame(t, a, b, "sent %v", sent)
	}
}

func TestReleaseLeavesTheReadinessReport(t *testing.T) {
	// The readiness report names a released endpoint no more, even one
	// it held news of when the application released it; the endpoint is
	// reused once the report lets go of it.
	cfg := Config{Readiness: true}
	n := newStackNet(t, cfg, cfg)
	c, srv := n.connect(t)
	n.s[0].Ready(nil)
	n.s[1].Ready(nil)
	_, err := c.Write([]byte("news"), n.now)
	require.NoError(t, err)
	n.run(n.now.Add(time.Second), func() bool { return srv.Buffered() == 4 })
	_, err = srv.Read(make([]byte, 4), n.now)
	require.NoError(t, err)
	require.NotZero(t, srv.pendingReady(), "the report holds news of srv")
	srv.Release(n.now)
	n.run(n.now.Add(time.Second), func() bool { return c.State() == tcpfsm.CloseWait })
	require.NoError(t, c.Close(n.now))
	n.run(n.now.Add(5*time.Second), func() bool { return n.s[1].Conns() == 0 })
	require.Empty(t, n.s[1].freeEP, "reused while the report holds it")
	for _, ev := range n.s[1].Ready(nil) {
		require.NotSame(t, srv, ev.Endpoint, "the report names a released endpoint")
	}
	require.Equal(t, []*Endpoint{srv}, n.s[1].freeEP)
}

func TestReleaseStandaloneCloses(t *testing.T) {
	// An endpoint of no stack is closed by Release, and that is all.
	w := newWire(t, EndpointConfig{}, EndpointConfig{}, 1)
	require.NoError(t, w.ep[1].Listen(addrB, w.now))
	require.NoError(t, w.ep[0].Dial(addrA, addrB, w.now))
	w.run(at(10), func() bool { return w.ep[0].Connected() && w.ep[1].Connected() })
	w.ep[0].Release(w.now)
	require.Equal(t, tcpfsm.FinWait1, w.ep[0].State())
	sent := w.ep[0].Stats().SegmentsOut
	w.ep[0].Release(w.now)
	require.Equal(t, sent, w.ep[0].Stats().SegmentsOut, "no second FIN")
	w.run(at(20), func() bool { return w.ep[1].State() == tcpfsm.CloseWait })
	require.Equal(t, tcpfsm.CloseWait, w.ep[1].State())
}
