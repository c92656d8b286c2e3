package tcpfsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWorkedExercise is the exercise the project grew from: 312 bytes
// over a window of 100 bytes in 100-byte segments, ISNs 100 and 200, the
// receiving application reading at once. Every segment, in order, from
// the handshake to TIME-WAIT and CLOSED.
func TestWorkedExercise(t *testing.T) {
	cfg := Config{RecvBuffer: 100, MSS: 100, NoTimestamps: true, NoSACK: true, NoWindowScale: true}
	p := newPair(cfg, cfg)
	p.check = t
	var got []string
	p.trace = func(from int, s Segment) {
		got = append(got, fmt.Sprintf("%s %s", []string{"A>B", "B>A"}[from], s.String()))
	}
	require.NoError(t, p.step(1, ListenOn(80)))
	require.NoError(t, p.step(0, Open(40000, 80, 100)))
	// The server's ISS (200) arrives with the client's SYN.
	p.run(at(0.005))
	f := p.q[0]
	p.q = p.q[:0]
	p.now = f.at
	require.NoError(t, p.step(1, Arrive(&f.seg, 200)))
	p.run(at(0.05))
	require.Equal(t, Established, p.tcb[0].State)
	require.NoError(t, p.step(0, Send(312)))
	require.NoError(t, p.step(0, Close()))
	p.run(at(1))
	require.Equal(t, CloseWait, p.tcb[1].State)
	require.NoError(t, p.step(1, Close()))
	p.run(at(2))
	require.Equal(t, TimeWait, p.tcb[0].State)
	require.Equal(t, Closed, p.tcb[1].State)
	p.run(at(2).Add(4 * time.Minute))
	require.Equal(t, Closed, p.tcb[0].State)
	require.Equal(t, []string{
		"A>B Flags [S], seq 100, win 100, options [mss 100], length 0",
		"B>A Flags [S.], seq 200, ack 101, win 100, options [mss 100], length 0",
		"A>B Flags [.], ack 201, win 100, length 0",
		"A>B Flags [.], seq 101:201, ack 201, win 100, length 100",
		"B>A Flags [.], ack 201, win 100, length 0",
		"A>B Flags [.], seq 201:301, ack 201, win 100, length 100",
		"B>A Flags [.], ack 301, win 100, length 0",
		"A>B Flags [.], seq 301:401, ack 201, win 100, length 100",
		"B>A Flags [.], ack 401, win 100, length 0",
		"A>B Flags [FP.], seq 401:413, ack 201, win 100, length 12",
		"B>A Flags [.], ack 414, win 87, length 0", // receiver SWS: the edge waits for a full MSS
		"B>A Flags [F.], seq 201, ack 414, win 87, length 0",
		"A>B Flags [.], ack 202, win 99, length 0",
	}, got)
	require.Equal(t, uint32(312), p.got[1])
}
