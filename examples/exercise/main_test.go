package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/trace"
)

func TestExercise(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312}))
	s := out.String()
	for _, want := range []string{
		"──▶ Flags [S], seq 100, win 100, options [mss 100], length 0",
		"◀── Flags [S.], seq 200, ack 101, win 100, options [mss 100], length 0",
		"──▶ Flags [.], ack 201, win 100, length 0",
		"──▶ Flags [.], seq 101:201, ack 201, win 100, length 100",
		"◀── Flags [.], ack 301, win 100, length 0",
		"──▶ Flags [FP.], seq 401:413, ack 201, win 100, length 12",
		"◀── Flags [F.], seq 201, ack 414",
		"──▶ Flags [.], ack 202",
		"TIME-WAIT", "LAST-ACK", "FIN-WAIT-2", "CLOSE-WAIT", "SYN-RECEIVED",
		"client sent 312 bytes, server read 312; 13 segments on the wire",
	} {
		require.Contains(t, s, want)
	}
	require.NotContains(t, s, "CLOSING")
}

func TestExerciseLostSegment(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, lose: 4}))
	s := out.String()
	require.Contains(t, s, "length 100  ✗ lost")
	require.Equal(t, 2, strings.Count(s, "──▶ Flags [.], seq 101:201, ack 201, win 100, length 100"), "sent, then retransmitted")
	require.Contains(t, s, "(client: timer fires)")
}

func TestExerciseTailLossProbe(t *testing.T) {
	// The last data segment (the 10th on the wire, with the FIN) is lost.
	// Without the probe it goes again after the 1 s RTO; with it, after
	// the probe timeout: 2*SRTT (20 ms) plus the peer's delayed-ACK
	// allowance of 200 ms, as only one segment is in flight.
	resent := func(tlp bool) time.Duration {
		var out bytes.Buffer
		require.NoError(t, run(&out, options{bytes: 312, lose: 10, tlp: tlp}))
		var times []time.Duration
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "Flags [FP.], seq 401:413") {
				ms, err := strconv.Atoi(strings.TrimSuffix(strings.Fields(line)[0], "ms"))
				require.NoError(t, err)
				times = append(times, time.Duration(ms)*time.Millisecond)
			}
		}
		require.Len(t, times, 2, "sent, lost, sent again:\n%s", out.String())
		return times[1] - times[0]
	}
	require.Equal(t, time.Second, resent(false), "the RTO")
	require.Equal(t, 240*time.Millisecond, resent(true), "the probe timeout")
}

func TestExerciseSimultaneousClose(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, simultaneous: true}))
	require.Equal(t, 2, strings.Count(out.String(), "CLOSING"))
	require.Equal(t, 2, strings.Count(out.String(), "TIME-WAIT"))
}

func TestExercisePcapAndMermaid(t *testing.T) {
	var pcap, out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, pcap: &pcap, mermaid: true}))
	require.Contains(t, out.String(), "sequenceDiagram")
	pkts, err := trace.ReadPcap(&pcap)
	require.NoError(t, err)
	require.Len(t, pkts, 13)
	for _, p := range pkts {
		require.True(t, tcpfsm.VerifyChecksum(p.TCP, p.Src, p.Dst))
	}
}
