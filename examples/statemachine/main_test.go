package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
		"TIME-WAIT", "LAST-ACK", "FIN-WAIT-2", "CLOSE-WAIT",
		"client sent 312 bytes, server read 312",
	} {
		require.Contains(t, s, want)
	}
	require.NotContains(t, s, "CLOSING")
}

func TestExerciseLostSegment(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, lose: 4}))
	s := out.String()
	require.Contains(t, s, "length 100  LOST")
	require.Equal(t, 2, strings.Count(s, "──▶ Flags [.], seq 101:201, ack 201, win 100, length 100"), "sent, then retransmitted")
	require.Contains(t, s, "1020ms                ──▶ Flags [.], seq 101:201", "one RTO (1 s) after the loss")
}

func TestExerciseSimultaneousClose(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, simultaneous: true}))
	require.Equal(t, 2, strings.Count(out.String(), "CLOSING"))
	require.Equal(t, 2, strings.Count(out.String(), "TIME-WAIT"))
}

func TestExerciseWithOptions(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, options{bytes: 312, modern: true}))
	require.Contains(t, out.String(), "options [mss 100,sackOK,TS val 100 ecr 0,nop,wscale 0]")
	require.Contains(t, out.String(), "client sent 312 bytes, server read 312")
}
