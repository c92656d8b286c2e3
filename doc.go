// Package tcpfsm is TCP (RFC 9293 and its companions) as plain values and
// pure functions, with no I/O of its own: the host program owns the
// sockets, TUN devices, clocks and goroutines, and hands this package
// every input, the time included, as a value.
//
// # Layers
//
// From the inside out, each usable alone:
//
//   - Sequence space (seq.go): Seq, with comparisons modulo 2^32
//     (RFC 9293 section 3.4).
//   - Wire format (segment.go, options.go, checksum.go): Segment,
//     ParseSegment, Segment.AppendTo, Options, the Internet checksum over
//     the IPv4 or IPv6 pseudo-header.
//   - The state machine (tcb.go, fsm.go, input.go, output.go, predict.go,
//     cc.go, tlp.go, timers.go, timewait.go): a TCB is one connection as a copyable
//     value; TCB.Step applies one Event at a time now and appends Actions;
//     Step is the same in pure form.
//
// Layers 1 to 3 are this package. Above them, each a package that uses
// this one only through its exported API, as any host does:
//
//   - tcpstack.Endpoint: one connection with its send and receive buffers
//     and the wire format, still without I/O.
//   - tcpstack.Stack: many endpoints keyed by their addresses and ports,
//     listeners with a SYN backlog and SYN cookies, compact TIME-WAIT
//     records (TimeWaitRecord), one next deadline, and a readiness report.
//
// What a host that keeps the connection's bytes needs from a TCB it reads
// with accessors (SndEnd, RcvUser, Unread, HoldsOutOfOrder, RecvBuffer,
// TSRecent, WindowScale, TimeWaitRecord) or tells it with events (Reoffer
// offers again out-of-order data the host kept after DropOutOfOrderFull).
//
// Package host runs a Stack over any packet link as net.Conn and
// net.Listener, overudp carries it over UDP, ip and ipstack carry it in
// whole IP packets (with UDP and ICMP), the nested module wireguard is a
// drop-in for wireguard-go's netstack, sim is a deterministic network for
// tests, trace writes pcap files and sequence diagrams, and pktdrill runs
// packetdrill scripts through a socket layer.
//
// # Host call order
//
// For the state machine: Step every user call (Open, ListenOn, Send,
// Receive, Close, CloseFull, Abort) and every arriving segment
// (Arrive) as it happens, and Reoffer data it kept after a
// DropOutOfOrderFull once RCV.NXT has moved; perform the actions in order (transmit ActSend
// segments, keep ActAccept bytes, report ActNotify notes); and Step a Tick
// whenever the clock reaches TCB.NextDeadline. Encode each ActSend with
// TCB.AppendSegment (or TCB.SegmentOf) before the next Step of its TCB:
// an Action carries the header fields the TCB cannot work out again, and
// the SACK blocks come from the TCB's out-of-order data as it is then
// (RFC 2018 section 4). A host that sends later keeps the Segment, or its
// Options, from then.
//
// For an Endpoint or a Stack: call Input for every segment that arrives,
// Write, Read, CloseWrite and Close as the application does, and Tick when
// the clock reaches NextDeadline; after each, call Output until it
// returns 0 and send what it wrote.
//
// # Finding the rule for a state and an event
//
// Transitions (table.go) lists every change of state Step can make, each
// with the RFC section behind it; the tests check Step against it in both
// directions. To find the code for, say, a FIN arriving in FIN-WAIT-1:
// Classify names the event class (OnFIN), the table row gives the states
// it may lead to, Step (fsm.go) sends a segment to segmentArrives
// (input.go), whose arriveOther takes the checks in the RFC's order
// (sequence number, RST, SYN, ACK, URG, text), and processText and
// processFIN carry out the FIN and the move to CLOSING or TIME-WAIT.
// TIME-WAIT's judgement of a segment is judgeTimeWait (timewait.go),
// shared by the TCB and its compact TimeWaitRecord.
//
// CONFORMANCE.md maps every requirement to the test that proves it.
package tcpfsm
