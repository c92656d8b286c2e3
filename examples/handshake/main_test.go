package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHandshakeExample(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out))
	for _, want := range []string{
		"1. 192.0.2.1:40000 > 192.0.2.2:80: Flags [S], seq 100, win 100, options [mss 100], length 0",
		"2. 192.0.2.2:80 > 192.0.2.1:40000: Flags [S.], seq 200, ack 101, win 100, options [mss 100], length 0",
		"3. 192.0.2.1:40000 > 192.0.2.2:80: Flags [.], ack 201, win 100, length 0",
	} {
		require.Contains(t, out.String(), want)
	}
}
