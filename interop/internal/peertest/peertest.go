// Package peertest holds what the interop tests against each peer (the
// kernel through TUN, gVisor's netstack in-process) share: payloads,
// echo and half-close checks, and the off-path attacker's forged
// segments (RFC 5961).
package peertest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/tcpfsm/tcpfsm"
)

// HalfCloser is a connection that can close its sending half.
type HalfCloser interface {
	net.Conn
	CloseWrite() error
}

// Payload returns n reproducible pseudo-random bytes.
func Payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// WriteThenHalfClose writes data on w and half-closes it, in the
// background; the channel gets the first error, or nil.
func WriteThenHalfClose(w HalfCloser, data []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.CloseWrite()
		}
		errc <- err
	}()
	return errc
}

// Transfer writes data on w, half-closes it, and reads r to end of
// stream; it returns an error unless r read exactly data.
func Transfer(w, r HalfCloser, data []byte) error {
	errc := WriteThenHalfClose(w, data)
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("writing and half-closing: %w", err)
	}
	if !bytes.Equal(got, data) {
		k := 0
		for k < len(got) && k < len(data) && got[k] == data[k] {
			k++
		}
		return fmt.Errorf("read %d of %d bytes; first difference at byte %d", len(got), len(data), k)
	}
	return nil
}

// SendAndHalfClose is Transfer, failing t on an error. With w == r it
// sends data through an echo and checks what comes back.
func SendAndHalfClose(t *testing.T, w, r HalfCloser, data []byte) {
	t.Helper()
	if err := Transfer(w, r, data); err != nil {
		t.Fatal(err)
	}
}

// EchoOn sends back what c receives, half-closes after the peer's FIN,
// and closes.
func EchoOn(c HalfCloser) {
	defer c.Close()
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// Echo serves EchoOn on every connection ln accepts, until ln closes.
func Echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go EchoOn(c.(HalfCloser))
	}
}

// Attack is one kind of blind segment: an off-path attacker knows the
// addresses and ports but not the sequence numbers (RFC 5961 section 1).
type Attack struct {
	Name  string
	Flags tcpfsm.Flags
	Data  int // payload bytes
}

// Attacks are the three blind attacks of RFC 5961 sections 3, 4 and 5.
var Attacks = []Attack{{"RST", tcpfsm.FlagRST, 0}, {"SYN", tcpfsm.FlagSYN, 0}, {"data", tcpfsm.FlagACK | tcpfsm.FlagPSH, 20}}

// Forger makes blind segments with random sequence and acknowledgment
// numbers from a seeded source.
type Forger struct{ rng *rand.Rand }

// NewForger returns a Forger seeded with seed.
func NewForger(seed uint64) *Forger { return &Forger{rand.New(rand.NewPCG(seed, seed+1))} }

// Segment returns a checksummed TCP segment of kind a from src:sport to
// dst:dport.
func (f *Forger) Segment(a Attack, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) []byte {
	s := tcpfsm.Segment{SrcPort: sport, DstPort: dport, Seq: tcpfsm.Seq(f.rng.Uint32()),
		Ack: tcpfsm.Seq(f.rng.Uint32()), Flags: a.Flags, Window: 65535}
	if a.Data > 0 {
		s.Payload = bytes.Repeat([]byte{0xEE}, a.Data)
	}
	b := s.AppendTo(nil)
	_ = tcpfsm.SetChecksum(b, src, dst)
	return b
}

// EchoChecked sends data through c to an echo in the background; the
// channel gets nil when exactly data came back, or the error.
func EchoChecked(c HalfCloser, data []byte) <-chan error {
	result := make(chan error, 1)
	go func() { result <- Transfer(c, c, data) }()
	return result
}
