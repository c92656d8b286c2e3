// Command framing shows that TCP carries a byte stream, not messages, and
// the two usual ways to put message boundaries back: a length prefix, and
// a delimiter. It sends the same messages both ways over a tcpfsm
// connection (TCP over loopback UDP) with a tiny MSS, so the receiver's
// reads split and merge messages, and then reassembles them.
//
//	go run ./examples/framing
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/overudp"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

var messages = []string{"hello", "a message long enough to cross segment boundaries", "", "x", "bye"}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "framing:", err)
		os.Exit(1)
	}
}

// WriteLengthPrefixed writes m after its length as 4 big-endian bytes.
func WriteLengthPrefixed(w io.Writer, m []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(m)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(m)
	return err
}

// ReadLengthPrefixed reads one length-prefixed message of at most max bytes.
func ReadLengthPrefixed(r io.Reader, max int) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if int(n) > max {
		return nil, fmt.Errorf("message of %d bytes exceeds %d", n, max)
	}
	m := make([]byte, n)
	_, err := io.ReadFull(r, m)
	return m, err
}

func run(w io.Writer) error {
	pa, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pb, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// A 64-byte MSS: longer messages are cut into several segments.
	cfg := tcpstack.Config{Endpoint: tcpstack.EndpointConfig{Config: tcpfsm.Config{MSS: 64, NoTimestamps: true}}}
	a, err := overudp.New(pa, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := overudp.New(pb, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	ln, err := b.Listen(5)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		prefixed  []string
		delimited []string
		err       error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		defer func() { res <- r }()
		c, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		br := bufio.NewReader(c)
		// Length-prefixed messages first...
		for range messages {
			m, err := ReadLengthPrefixed(br, 1<<20)
			if err != nil {
				r.err = err
				return
			}
			r.prefixed = append(r.prefixed, string(m))
		}
		// ...then newline-delimited ones until EOF.
		for {
			line, err := br.ReadString('\n')
			if err == io.EOF {
				return
			}
			if err != nil {
				r.err = err
				return
			}
			r.delimited = append(r.delimited, line[:len(line)-1])
		}
	}()
	c, err := a.DialContextAddrPort(ctx, pb.LocalAddr().(*net.UDPAddr).AddrPort(), 5)
	if err != nil {
		return err
	}
	for _, m := range messages {
		if err := WriteLengthPrefixed(c, []byte(m)); err != nil {
			return err
		}
	}
	for _, m := range messages {
		if _, err := io.WriteString(c, m+"\n"); err != nil { // messages must not contain the delimiter
			return err
		}
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	r := <-res
	if r.err != nil {
		return r.err
	}
	fmt.Fprintf(w, "sent %d messages twice over a stream cut into 64-byte segments\n", len(messages))
	fmt.Fprintf(w, "length-prefixed: %q\n", r.prefixed)
	fmt.Fprintf(w, "delimited:       %q\n", r.delimited)
	return c.Close()
}
