package tcpfsm

import "strconv"

// State is a connection state of RFC 9293 section 3.3.2.
type State uint8

// The eleven connection states.
const (
	Closed      State = iota // no connection (no TCB in the RFC's words)
	Listen                   // waiting for a connection request
	SynSent                  // SYN sent, waiting for a matching SYN
	SynReceived              // SYN received and sent, waiting for its ACK
	Established              // open: data flows both ways
	FinWait1                 // we closed, our FIN is not yet ACKed
	FinWait2                 // our FIN is ACKed, waiting for the peer's FIN
	CloseWait                // the peer closed, waiting for our user to close
	Closing                  // both closed at once, waiting for the ACK of our FIN
	LastAck                  // the peer closed first, then we did: waiting for the ACK of our FIN
	TimeWait                 // both FINs ACKed, waiting 2*MSL for stray segments to die
	numStates
)

var stateNames = [numStates]string{
	"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED",
	"FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
}

// String returns the RFC's name of the state, such as "SYN-RECEIVED".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// IsSynchronized reports whether the state is past the handshake, where
// sequence numbers of both sides are known and checked (RFC 9293 section 3.5.2).
func (s State) IsSynchronized() bool { return s >= Established && s < numStates }

// States returns all states in order, CLOSED first.
func States() []State {
	out := make([]State, numStates)
	for i := range out {
		out[i] = State(i)
	}
	return out
}

// sendsData reports whether the state sends data or a FIN (where output
// runs sendData): ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1, CLOSING, LAST-ACK.
func (s State) sendsData() bool {
	switch s {
	case Established, CloseWait, FinWait1, Closing, LastAck:
		return true
	}
	return false
}
