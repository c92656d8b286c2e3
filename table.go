package tcpfsm

import (
	"strings"
)

// EventClass groups events for the transition table: the user calls, the
// arriving segment by its most significant control bit, and timeouts.
type EventClass uint8

// The event classes of the transition table.
const (
	OnOpen    EventClass = iota + 1 // active OPEN
	OnListen                        // passive OPEN
	OnSend                          // SEND
	OnReceive                       // RECEIVE (data consumed)
	OnClose                         // CLOSE
	OnAbort                         // ABORT
	OnRST                           // a segment with RST
	OnSYN                           // a segment with SYN and no ACK
	OnSYNACK                        // a segment with SYN and ACK
	OnFIN                           // a segment with FIN (and no SYN or RST)
	OnACK                           // any other segment: an ACK, with or without data
	OnTimeout                       // a timer fired
	OnReoffer                       // held out-of-order data offered again (EvReoffer)

	numClasses // one past the last class: the size of tables by class
)

var classNames = [numClasses]string{"", "OPEN", "LISTEN", "SEND", "RECEIVE", "CLOSE", "ABORT",
	"rcv RST", "rcv SYN", "rcv SYN,ACK", "rcv FIN", "rcv ACK", "timeout", "reoffer"}

// String returns the class as the table and the diagram label it, such as
// "rcv SYN,ACK".
func (c EventClass) String() string {
	if int(c) < len(classNames) && c != 0 {
		return classNames[c]
	}
	return "?"
}

// Classify returns the class of an event.
func Classify(ev *Event) EventClass {
	switch ev.Kind {
	case EvOpen:
		return OnOpen
	case EvListen:
		return OnListen
	case EvSend:
		return OnSend
	case EvReceive:
		return OnReceive
	case EvClose:
		return OnClose
	case EvAbort:
		return OnAbort
	case EvTick:
		return OnTimeout
	case EvReoffer:
		return OnReoffer
	case EvSegment:
		if ev.Seg == nil {
			return 0
		}
		f := ev.Seg.Flags
		switch {
		case f&FlagRST != 0:
			return OnRST
		case f&(FlagSYN|FlagACK) == FlagSYN|FlagACK:
			return OnSYNACK
		case f&FlagSYN != 0:
			return OnSYN
		case f&FlagFIN != 0:
			return OnFIN
		}
		return OnACK
	}
	return 0
}

// Transition is one row of the state transition table: in state From, an
// event of class On can lead to state To, sending Send ("" for nothing).
// Why says when, citing RFC 9293 or the RFC that adds the rule.
type Transition struct {
	From State
	On   EventClass
	To   State
	Send string
	Why  string
}

// Transitions is the state transition table as data: every change of state
// Step can make, and the self-loops worth drawing. Any event not listed for
// a state leaves it where it is (a segment that fails a check is dropped;
// a user call the state refuses returns an error). The tests check Step
// against this table, and it draws the README's diagram.
var Transitions = []Transition{
	{Closed, OnListen, Listen, "", "passive OPEN (3.10.1)"},
	{Closed, OnOpen, SynSent, "SYN", "active OPEN (3.10.1)"},

	{Listen, OnOpen, SynSent, "SYN", "OPEN turns a passive connection active (3.10.1)"},
	{Listen, OnSYN, SynReceived, "SYN,ACK", "a connection request (3.10.7.2)"},
	{Listen, OnClose, Closed, "", "CLOSE deletes the TCB (3.10.4)"},
	{Listen, OnAbort, Closed, "", "ABORT (3.10.5)"},

	{SynSent, OnSYNACK, Established, "ACK", "our SYN acknowledged (3.10.7.3)"},
	{SynSent, OnSYNACK, CloseWait, "ACK", "a SYN-ACK that also carries FIN (3.10.7.3, 3.10.7.4)"},
	{SynSent, OnSYN, SynReceived, "SYN,ACK", "simultaneous open (3.5, MUST-10)"},
	{SynSent, OnRST, Closed, "", "connection refused (3.10.7.3)"},
	{SynSent, OnClose, Closed, "", "CLOSE before the handshake (3.10.4)"},
	{SynSent, OnAbort, Closed, "", "ABORT (3.10.5)"},
	{SynSent, OnTimeout, Closed, "", "SYN retransmissions exhausted (MUST-23)"},

	{SynReceived, OnACK, Established, "", "our SYN acknowledged (3.10.7.4)"},
	{SynReceived, OnACK, FinWait1, "FIN", "handshake done with CLOSE queued (3.10.4)"},
	{SynReceived, OnACK, CloseWait, "ACK", "handshake done, FIN queued on the SYN (3.10.7.4)"},
	{SynReceived, OnACK, Closing, "FIN", "handshake done with CLOSE queued and a FIN queued on the SYN"},
	{SynReceived, OnFIN, CloseWait, "ACK", "third ACK carries FIN (3.10.7.4)"},
	{SynReceived, OnFIN, Established, "ACK", "third ACK carries a FIN held beyond a hole"},
	{SynReceived, OnFIN, Closing, "FIN", "third ACK carries FIN while our CLOSE is queued"},
	{SynReceived, OnFIN, FinWait1, "FIN", "third ACK carries a held FIN while our CLOSE is queued"},
	{SynReceived, OnSYNACK, Established, "", "simultaneous open, SYN-ACKs cross (3.5 figure 7)"},
	{SynReceived, OnSYNACK, CloseWait, "ACK", "simultaneous open, the crossing SYN-ACK carries FIN"},
	{SynReceived, OnSYNACK, FinWait1, "FIN", "simultaneous open with our CLOSE queued"},
	{SynReceived, OnSYNACK, Closing, "FIN", "simultaneous open with our CLOSE queued, the SYN-ACK carries FIN"},
	{SynReceived, OnSYN, Listen, "", "a new SYN in a passive SYN-RECEIVED (3.10.7.4)"},
	{SynReceived, OnSYNACK, Listen, "", "a SYN-ACK in a passive SYN-RECEIVED: any SYN returns it to LISTEN (3.10.7.4)"},
	{SynReceived, OnRST, Listen, "", "reset of a passive open (3.10.7.4, MUST-11)"},
	{SynReceived, OnRST, Closed, "", "reset of an active open: refused (3.10.7.4, MUST-11)"},
	{SynReceived, OnAbort, Closed, "RST", "ABORT (3.10.5)"},
	{SynReceived, OnACK, Closed, "RST", "handshake done with a full CLOSE queued, and the ACK carries data: lost (SHLD-3)"},
	{SynReceived, OnFIN, Closed, "RST", "handshake done with a full CLOSE queued, and the FIN carries data: lost (SHLD-3)"},
	{SynReceived, OnSYNACK, Closed, "RST", "simultaneous open with a full CLOSE queued, and the crossing SYN-ACK carries data: lost (SHLD-3)"},
	{SynReceived, OnTimeout, Closed, "RST", "SYN-ACK retransmissions exhausted"},

	{Established, OnClose, FinWait1, "FIN", "CLOSE: FIN after the queued data (3.10.4)"},
	{Established, OnFIN, CloseWait, "ACK", "the peer closes (3.10.7.4); with Config.DelayFINACK the ACK may wait to ride on our FIN, as Linux's does"},
	{Established, OnReoffer, CloseWait, "ACK", "held data fills the hole before the peer's FIN"},
	{Established, OnACK, CloseWait, "ACK", "data fills the hole before a held FIN"},
	{Established, OnRST, Closed, "", "connection reset (3.10.7.4)"},
	{Established, OnAbort, Closed, "RST", "ABORT (3.10.5)"},
	{Established, OnClose, Closed, "RST", "a full CLOSE with data unread: lost (SHLD-3)"},
	{Established, OnTimeout, Closed, "RST", "retransmissions exhausted, user or keep-alive timeout"},

	{FinWait1, OnACK, FinWait2, "", "our FIN acknowledged (3.10.7.4)"},
	{FinWait1, OnFIN, Closing, "ACK", "simultaneous close (3.6)"},
	{FinWait1, OnReoffer, Closing, "ACK", "held data fills the hole before the peer's FIN"},
	{FinWait1, OnFIN, TimeWait, "ACK", "FIN that also acknowledges ours (3.10.7.4)"},
	{FinWait1, OnFIN, FinWait2, "ACK", "acknowledges our FIN, its own FIN held beyond a hole"},
	{FinWait1, OnACK, Closing, "ACK", "data fills the hole before a held FIN"},
	{FinWait1, OnACK, TimeWait, "ACK", "our FIN acknowledged and a held FIN reached"},
	{FinWait1, OnRST, Closed, "", "connection reset (3.10.7.4)"},
	{FinWait1, OnAbort, Closed, "RST", "ABORT (3.10.5)"},
	{FinWait1, OnClose, Closed, "RST", "a full CLOSE after CLOSE, with data unread: lost (SHLD-3)"},
	{FinWait1, OnACK, Closed, "RST", "new data after a full CLOSE: lost (SHLD-3)"},
	{FinWait1, OnFIN, Closed, "RST", "new data with a FIN after a full CLOSE: lost (SHLD-3)"},
	{FinWait1, OnTimeout, Closed, "RST", "FIN retransmissions exhausted"},

	{FinWait2, OnFIN, TimeWait, "ACK", "the peer closes (3.10.7.4)"},
	{FinWait2, OnReoffer, TimeWait, "ACK", "held data fills the hole before the peer's FIN"},
	{FinWait2, OnACK, TimeWait, "ACK", "data fills the hole before a held FIN"},
	{FinWait2, OnRST, Closed, "", "connection reset (3.10.7.4)"},
	{FinWait2, OnAbort, Closed, "RST", "ABORT (3.10.5)"},
	{FinWait2, OnClose, Closed, "RST", "a full CLOSE after CLOSE, with data unread: lost (SHLD-3)"},
	{FinWait2, OnACK, Closed, "RST", "new data after a full CLOSE: lost (SHLD-3)"},
	{FinWait2, OnFIN, Closed, "RST", "new data with a FIN after a full CLOSE: lost (SHLD-3)"},
	{FinWait2, OnTimeout, Closed, "", "the FIN-WAIT-2 timeout (option; 2*MSL after CloseFull)"},

	{CloseWait, OnClose, LastAck, "FIN", "CLOSE (3.10.4)"},
	{CloseWait, OnRST, Closed, "", "connection reset (3.10.7.4)"},
	{CloseWait, OnAbort, Closed, "RST", "ABORT (3.10.5)"},
	{CloseWait, OnClose, Closed, "RST", "a full CLOSE with data unread: lost (SHLD-3)"},
	{CloseWait, OnTimeout, Closed, "RST", "retransmissions exhausted, user or keep-alive timeout"},

	{Closing, OnACK, TimeWait, "", "our FIN acknowledged (3.10.7.4)"},
	{Closing, OnFIN, TimeWait, "", "our FIN acknowledged by a segment that repeats a FIN"},
	{Closing, OnRST, Closed, "", "reset (3.10.7.4)"},
	{Closing, OnAbort, Closed, "", "ABORT (3.10.5)"},
	{Closing, OnClose, Closed, "", "a full CLOSE with data unread: deleted as ABORT does (SHLD-3, 3.10.5)"},
	{Closing, OnTimeout, Closed, "RST", "FIN retransmissions exhausted"},

	{LastAck, OnACK, Closed, "", "our FIN acknowledged (3.10.7.4)"},
	{LastAck, OnFIN, Closed, "", "our FIN acknowledged by a segment that repeats a FIN"},
	{LastAck, OnRST, Closed, "", "reset (3.10.7.4)"},
	{LastAck, OnAbort, Closed, "", "ABORT (3.10.5)"},
	{LastAck, OnClose, Closed, "", "a full CLOSE with data unread: deleted as ABORT does (SHLD-3, 3.10.5)"},
	{LastAck, OnTimeout, Closed, "RST", "FIN retransmissions exhausted"},

	{TimeWait, OnFIN, TimeWait, "ACK", "the peer's FIN again: ACK, restart 2*MSL (3.10.7.4)"},
	{TimeWait, OnTimeout, Closed, "", "2*MSL passed (3.10.8, MUST-13)"},
	{TimeWait, OnSYN, Closed, "", "a new incarnation may begin (MAY-2, RFC 6191)"},
	{TimeWait, OnRST, Closed, "", "reset, only with Config.TimeWaitRST (RFC 1337)"},
	{TimeWait, OnAbort, Closed, "", "ABORT (3.10.5)"},
	{TimeWait, OnClose, Closed, "", "a full CLOSE with data unread: deleted as ABORT does (SHLD-3, 3.10.5)"},
}

// Allowed reports whether the table has a row from, class, to. A step that
// leaves the state unchanged is always allowed.
func Allowed(from State, class EventClass, to State) bool {
	if from == to {
		return true
	}
	for _, r := range Transitions {
		if r.From == from && r.On == class && r.To == to {
			return true
		}
	}
	return false
}

// Mermaid renders the transition table as a Mermaid state diagram, one
// arrow per pair of states with the events that take it.
func Mermaid() string {
	var b strings.Builder
	id := func(s State) string { return strings.ReplaceAll(s.String(), "-", "_") }
	b.WriteString("stateDiagram-v2\n")
	for _, s := range States() {
		if strings.Contains(s.String(), "-") {
			b.WriteString("    state \"" + s.String() + "\" as " + id(s) + "\n")
		}
	}
	b.WriteString("    [*] --> CLOSED\n")
	type edge struct{ from, to State }
	var order []edge
	labels := map[edge][]string{}
	for _, r := range Transitions {
		e := edge{r.From, r.To}
		if _, ok := labels[e]; !ok {
			order = append(order, e)
		}
		l := r.On.String()
		if r.Send != "" {
			l += " / " + r.Send
		}
		dup := false
		for _, x := range labels[e] {
			dup = dup || x == l
		}
		if !dup {
			labels[e] = append(labels[e], l)
		}
	}
	for _, e := range order {
		b.WriteString("    " + id(e.from) + " --> " + id(e.to) + ": " + strings.Join(labels[e], "<br/>") + "\n")
	}
	return b.String()
}
