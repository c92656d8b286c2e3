package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Exchange describes one connection a scenario runs: the client sends
// Up bytes and half-closes; the server reads them all, sends Down bytes
// back and closes; the client reads those and closes.
type Exchange struct {
	Up, Down int
	Port     uint16
	Limit    time.Duration // virtual time the whole exchange may take
}

// Result is what an exchange saw.
type Result struct {
	UpOK, DownOK   bool // each side read exactly the bytes sent, in order, then EOF
	Closed         bool // both ends reached CLOSED, TIME-WAIT included
	GaveUp         bool // the network never let the handshake through; the open timed out
	Took           time.Duration
	ClientErr      error
	ServerErr      error
	ClientStats    tcpstack.EndpointStats
	ServerStats    tcpstack.EndpointStats
	Network        Stats
	FinalStates    [2]tcpfsm.State
	ReadUp, ReadDn int
}

// ErrHung is returned when an exchange did not finish in its time limit.
var ErrHung = errors.New("sim: exchange did not finish in time")

// Run plays the exchange between client and server and reports it. It
// returns an error that names the network's seed if any property failed:
// every byte written read exactly once and in order, EOF only after
// everything, both ends closed within the limit.
func (x Exchange) Run(n *Network, client, server *Node) (Result, error) {
	var r Result
	start := n.Now()
	limit := start.Add(x.Limit)
	port := x.Port
	if port == 0 {
		port = 80
	}
	up, down := make([]byte, x.Up), make([]byte, x.Down)
	for i := range up {
		up[i] = byte(n.rng.Uint32())
	}
	for i := range down {
		down[i] = byte(n.rng.Uint32())
	}
	ln, err := server.Stack.Listen(port)
	if err != nil {
		return r, err
	}
	defer ln.Close()
	c, err := client.Stack.Dial(client.Addr, netip.AddrPortFrom(server.Addr, port), n.Now())
	if err != nil {
		return r, err
	}
	var s *tcpstack.Endpoint
	var gotUp, gotDown bytes.Buffer
	sentUp, sentDown := 0, 0
	upEOF, downEOF := false, false
	cClosedW, sClosed, cClosed := false, false, false
	buf := make([]byte, 16384)
	pump := func(e *tcpstack.Endpoint, data []byte, sent *int) {
		for *sent < len(data) {
			m, err := e.Write(data[*sent:], n.Now())
			if err != nil || m == 0 {
				return
			}
			*sent += m
		}
	}
	drain := func(e *tcpstack.Endpoint, into *bytes.Buffer, eof *bool) {
		for {
			m, err := e.Read(buf, n.Now())
			into.Write(buf[:m])
			if err == io.EOF {
				*eof = true
			}
			if err != nil || m == 0 {
				return
			}
		}
	}
	done := func() bool {
		if s == nil {
			s, _ = ln.Accept()
		}
		if c.Connected() {
			pump(c, up, &sentUp)
			if sentUp == len(up) && !cClosedW {
				cClosedW = c.CloseWrite(n.Now()) == nil
			}
			drain(c, &gotDown, &downEOF)
		}
		if s != nil {
			drain(s, &gotUp, &upEOF)
			if upEOF {
				pump(s, down, &sentDown)
				if sentDown == len(down) && !sClosed {
					sClosed = s.Close(n.Now()) == nil
				}
			}
		}
		if downEOF && !cClosed {
			cClosed = c.Close(n.Now()) == nil
		}
		// A stack keeps TIME-WAIT as a compact record; the endpoint says
		// TIME-WAIT until then, and the record's end is checked below.
		cDone := c.State() == tcpfsm.Closed || c.State() == tcpfsm.TimeWait
		sDone := s != nil && (s.State() == tcpfsm.Closed || s.State() == tcpfsm.TimeWait)
		return cDone && sDone || c.Err() != nil || (s != nil && s.Err() != nil)
	}
	n.RunUntil(limit, done)
	// Then TIME-WAIT runs out on both sides.
	n.RunUntil(limit, func() bool { return client.Stack.TimeWaits() == 0 && server.Stack.TimeWaits() == 0 })
	timeWaitOver := client.Stack.TimeWaits() == 0 && server.Stack.TimeWaits() == 0
	r.Took = n.Now().Sub(start)
	r.ClientErr, r.ClientStats = c.Err(), c.Stats()
	r.FinalStates[0] = c.State()
	if s != nil {
		r.ServerErr, r.ServerStats = s.Err(), s.Stats()
		r.FinalStates[1] = s.State()
	}
	r.ReadUp, r.ReadDn = gotUp.Len(), gotDown.Len()
	r.UpOK = upEOF && bytes.Equal(gotUp.Bytes(), up)
	r.DownOK = downEOF && bytes.Equal(gotDown.Bytes(), down)
	settled := func(st tcpfsm.State) bool { return st == tcpfsm.Closed || st == tcpfsm.TimeWait && timeWaitOver }
	r.Closed = settled(r.FinalStates[0]) && settled(r.FinalStates[1])
	r.Network = n.Stats()
	// A server whose last FIN outlives the client's TIME-WAIT (its ACKs
	// lost for longer than 2*MSL) is reset by the client's stack: TCP's own
	// limit, harmless once every byte arrived both ways.
	lateReset := errors.Is(r.ServerErr, tcpstack.ErrReset) && r.ClientErr == nil && upEOF && downEOF
	if lateReset {
		r.ServerErr = nil
	}
	// A handshake the network never let through (every SYN or SYN-ACK
	// lost for SynR2) ends in a timeout: TCP's answer to a dead path.
	if errors.Is(r.ClientErr, tcpstack.ErrTimeout) && s == nil {
		r.GaveUp = true
		return r, nil
	}
	switch {
	case r.ClientErr != nil || r.ServerErr != nil:
		return r, fmt.Errorf("seed %d: connection failed: client %v, server %v (after %v)", n.Seed(), r.ClientErr, r.ServerErr, r.Took)
	case !r.UpOK:
		return r, fmt.Errorf("seed %d: server read %d of %d bytes (EOF %v)", n.Seed(), r.ReadUp, x.Up, upEOF)
	case !r.DownOK:
		return r, fmt.Errorf("seed %d: client read %d of %d bytes (EOF %v)", n.Seed(), r.ReadDn, x.Down, downEOF)
	case !r.Closed:
		return r, fmt.Errorf("seed %d: %w: states %v after %v", n.Seed(), ErrHung, r.FinalStates, r.Took)
	}
	return r, nil
}
