// Command handshake builds the three segments of a TCP three-way handshake,
// encodes them to wire format with checksums, parses them back, and prints
// them as tcpdump would, with the bytes on the wire.
//
// The numbers are those of the worked exercise the project grew from: the
// client's initial sequence number is 100, the server's 200, both advertise
// a window of 100 bytes and an MSS of 100 bytes (RFC 9293 section 3.5).
//
//	go run ./examples/handshake
package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpfsm/tcpfsm"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		os.Exit(1)
	}
}

type hop struct {
	from, to netip.AddrPort
	seg      tcpfsm.Segment
	note     string
}

func run(w io.Writer) error {
	client := netip.MustParseAddrPort("192.0.2.1:40000")
	server := netip.MustParseAddrPort("192.0.2.2:80")
	const clientISN, serverISN, window, mss = 100, 200, 100, 100

	hops := []hop{
		{client, server, tcpfsm.Segment{
			Seq: clientISN, Flags: tcpfsm.FlagSYN, Window: window,
			Options: tcpfsm.Options{Present: tcpfsm.OptMSS, MSS: mss},
		}, "client CLOSED -> SYN-SENT: SYN carries the client's ISN"},
		{server, client, tcpfsm.Segment{
			Seq: serverISN, Ack: clientISN + 1, Flags: tcpfsm.FlagSYN | tcpfsm.FlagACK, Window: window,
			Options: tcpfsm.Options{Present: tcpfsm.OptMSS, MSS: mss},
		}, "server LISTEN -> SYN-RECEIVED: acknowledges ISN+1, sends its own ISN"},
		{client, server, tcpfsm.Segment{
			Seq: clientISN + 1, Ack: serverISN + 1, Flags: tcpfsm.FlagACK, Window: window,
		}, "client SYN-SENT -> ESTABLISHED, then server SYN-RECEIVED -> ESTABLISHED"},
	}

	var wire []byte
	for i, h := range hops {
		h.seg.SrcPort, h.seg.DstPort = h.from.Port(), h.to.Port()
		wire = h.seg.AppendTo(wire[:0])
		if err := tcpfsm.SetChecksum(wire, h.from.Addr(), h.to.Addr()); err != nil {
			return err
		}
		got, err := tcpfsm.ParseSegment(wire)
		if err != nil {
			return err
		}
		if !tcpfsm.VerifyChecksum(wire, h.from.Addr(), h.to.Addr()) {
			return fmt.Errorf("segment %d: checksum does not verify", i+1)
		}
		fmt.Fprintf(w, "%d. %s > %s: %s\n", i+1, h.from, h.to, got)
		fmt.Fprintf(w, "   %s\n", h.note)
		fmt.Fprintf(w, "   SEG.LEN=%d, checksum %#04x, %d bytes on the wire:\n", got.Len(), got.Checksum, len(wire))
		for _, line := range strings.Split(strings.TrimRight(hex.Dump(wire), "\n"), "\n") {
			fmt.Fprintf(w, "   %s\n", line)
		}
	}
	return nil
}
