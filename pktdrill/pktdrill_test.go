package pktdrill

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScripts runs every script in testdata; each must pass.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.pkt") // the socket/ scripts have their own test
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 40)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, Run(string(b), Options{}))
		})
	}
}

// TestFailuresSayWhere: a wrong expectation names the line, what was
// expected and what was sent.
func TestFailuresSayWhere(t *testing.T) {
	script := `0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 2 <mss 1460>`
	err := Run(script, Options{})
	var pe *Error
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Equal(t, 3, pe.Line)
	require.Contains(t, pe.Got, "S. 0:0(0) ack 1")
	require.Contains(t, err.Error(), "expected: S. 0:0(0) ack 2")

	// A packet nobody expected.
	err = Run("0 listen(3, 1) = 0\n+0 < S 0:0(0) win 100\n+1 close(3) = 0", Options{})
	require.ErrorAs(t, err, &pe)
	require.Contains(t, pe.Expected, "no packet")
	// Nothing sent when something was expected.
	err = Run("0 listen(3, 1) = 0\n+0 > S 0:0(0)", Options{})
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "nothing sent", pe.Got)
}

func TestOptionsToIgnore(t *testing.T) {
	script := `0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 win 1 <mss 9>`
	require.Error(t, Run(script, Options{}))
	require.NoError(t, Run(script, Options{IgnoreWindow: true, IgnoreOptions: true}))
}

func TestSkippedLinesAndSettings(t *testing.T) {
	script := "--tolerance_usecs=10000\n`sysctl -q net.ipv4.tcp_timestamps=0`\n" +
		"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n" +
		"+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0\n+0 listen(3, 1) = 0\n"
	require.NoError(t, Run(script, Options{}))
	require.Error(t, Run("0 frobnicate(3) = 0", Options{}))
	require.NoError(t, Run("--ip_version=ipv6\n0 listen(3, 1) = 0\n+0 < S 0:0(0) win 100\n+0 > S. 0:0(0) ack 1 <mss 1440>", Options{}))
	require.True(t, strings.Contains((&Error{Line: 2, Text: "x"}).Error(), "line 2"))
}
