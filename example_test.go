package tcpfsm_test

import (
	"fmt"

	"github.com/tcpfsm/tcpfsm"
)

// The three-way handshake (RFC 9293 section 3.5), stepped by hand: each
// side is a TCB value, and the segments one Step sends are the events of
// the other's next Step.
func ExampleStep() {
	cfg := tcpfsm.Config{NoTimestamps: true, NoSACK: true, NoWindowScale: true}
	client, _ := tcpfsm.NewTCB(cfg)
	server, _ := tcpfsm.NewTCB(cfg)
	var now tcpfsm.Time
	out, _ := server.Step(tcpfsm.ListenOn(80), now, nil)
	out, _ = client.Step(tcpfsm.Open(40000, 80, 100), now, out[:0])
	syn := sent(&client, out)
	fmt.Println("client:", client.State, "sends", syn.String())
	out, _ = server.Step(tcpfsm.Arrive(&syn, 300), now, out[:0])
	synAck := sent(&server, out)
	fmt.Println("server:", server.State, "sends", synAck.String())
	out, _ = client.Step(tcpfsm.Arrive(&synAck, 0), now, out[:0])
	ack := sent(&client, out)
	fmt.Println("client:", client.State, "sends", ack.String())
	_, _ = server.Step(tcpfsm.Arrive(&ack, 0), now, out[:0])
	fmt.Println("server:", server.State)
	// Output:
	// client: SYN-SENT sends Flags [S], seq 100, win 65535, options [mss 1460], length 0
	// server: SYN-RECEIVED sends Flags [S.], seq 300, ack 101, win 65535, options [mss 1460], length 0
	// client: ESTABLISHED sends Flags [.], ack 301, win 65535, length 0
	// server: ESTABLISHED
}

// sent returns the segment of the first ActSend action in out, which t
// has just appended (TCB.SegmentOf).
func sent(t *tcpfsm.TCB, out []tcpfsm.Action) tcpfsm.Segment {
	for i := range out {
		if out[i].Kind == tcpfsm.ActSend {
			return t.SegmentOf(&out[i])
		}
	}
	return tcpfsm.Segment{}
}

// A segment parsed from the wire, printed as tcpdump does, and encoded
// again (RFC 9293 section 3.1).
func ExampleParseSegment() {
	s := tcpfsm.Segment{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000,
		Flags: tcpfsm.FlagACK | tcpfsm.FlagPSH, Window: 512, Payload: []byte("hello")}
	wire := s.AppendTo(nil)
	got, err := tcpfsm.ParseSegment(wire)
	fmt.Println(got.String(), err)
	fmt.Println(len(wire), "bytes:", string(got.Payload))
	// Output:
	// Flags [P.], seq 1000:1005, ack 2000, win 512, length 5 <nil>
	// 25 bytes: hello
}
