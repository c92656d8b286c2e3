package host

import (
	"encoding/binary"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// dropOne is a Link that loses the first data segment sent from port, as
// a path would.
type dropOne struct {
	Link
	port    atomic.Uint32 // 0: none
	dropped atomic.Bool
}

func (d *dropOne) WriteSegment(tcp []byte, src, dst netip.Addr) error {
	if p := d.port.Load(); p != 0 && uint32(binary.BigEndian.Uint16(tcp)) == p &&
		len(tcp) > int(tcp[12]>>4)*4 && d.dropped.CompareAndSwap(false, true) {
		return nil
	}
	return d.Link.WriteSegment(tcp, src, dst)
}

// TestTimerFiresUnderSteadyTraffic checks that a connection's timer fires
// while another connection's traffic keeps the host busy: a segment lost
// on one connection is sent again (by its retransmission or probe timer)
// while the other exchanges segments without a pause.
func TestTimerFiresUnderSteadyTraffic(t *testing.T) {
	la, lb := Pipe(addrA, addrB)
	drop := &dropOne{Link: la}
	a, err := New(drop, Config{Addrs: []netip.Addr{addrA}})
	require.NoError(t, err)
	b, err := New(lb, Config{Addrs: []netip.Addr{addrB}})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	p := &pair{a: a, b: b}
	p.ln, err = b.ListenAddrPort(netip.AddrPortFrom(addrB, 80))
	require.NoError(t, err)
	busyC, busyS := p.connect(t)
	c, s := p.connect(t)

	// The busy connection echoes one byte back and forth until the lost
	// segment has arrived.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var b [1]byte
		for {
			if _, err := busyS.Read(b[:]); err != nil {
				return
			}
			if _, err := busyS.Write(b[:]); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer busyC.CloseWrite()
		var b [1]byte
		for !stop.Load() {
			if _, err := busyC.Write(b[:]); err != nil {
				return
			}
			if _, err := busyC.Read(b[:]); err != nil {
				return
			}
		}
	}()

	drop.port.Store(uint32(c.e.LocalAddr().Port()))
	_, err = c.Write([]byte("lost once"))
	require.NoError(t, err)
	got := make([]byte, len("lost once"))
	_, err = io.ReadFull(s, got) // the test's own timeout bounds it
	require.NoError(t, err)
	require.Equal(t, "lost once", string(got))
	require.True(t, drop.dropped.Load())
	stop.Store(true)
	wg.Wait()
}

// TestFlushNeverPostponesTheTimer checks that a flush moves the host's
// timer only earlier: with a deadline already due, and the timer's
// goroutine waiting for the lock, flush after flush leaves the timer
// where it was.
func TestFlushNeverPostponesTheTimer(t *testing.T) {
	rto := 10 * time.Millisecond
	p := newPair(t, tcpstack.Config{Endpoint: tcpstack.EndpointConfig{
		Config: tcpfsm.Config{InitialRTO: rto, MinRTO: rto}}})
	c, _ := p.connect(t)
	p.ga.blocked.Store(true)
	_, err := c.Write([]byte("lost"))
	require.NoError(t, err)
	h := p.a
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.stack.NextDeadline()
	require.True(t, ok)
	for h.clock.Now() <= d {
		time.Sleep(time.Millisecond)
	}
	h.flushLocked()
	at := h.timerAt
	require.NotZero(t, at)
	for range 3 {
		time.Sleep(time.Millisecond)
		h.flushLocked()
		require.Equal(t, at, h.timerAt)
	}
}
