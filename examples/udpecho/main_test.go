package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEchoInOneProcess(t *testing.T) {
	got, err := both("ping")
	require.NoError(t, err)
	require.Equal(t, "ping", got)
}

// TestEchoBetweenTwoProcesses runs the server as a second process (this
// test binary, re-executed) and the client here.
func TestEchoBetweenTwoProcesses(t *testing.T) {
	if addr := os.Getenv("UDPECHO_SERVE"); addr != "" {
		_ = serve(addr, nil)
		return
	}
	addr := "127.0.0.1:39517"
	cmd := exec.Command(os.Args[0], "-test.run=TestEchoBetweenTwoProcesses")
	cmd.Env = append(os.Environ(), "UDPECHO_SERVE="+addr)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var got string
	var err error
	for range 50 { // the server may take a moment to start
		got, err = client(addr, "across processes")
		if err == nil {
			break
		}
	}
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(got, "across processes"))
}
