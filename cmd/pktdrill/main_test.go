package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommand(t *testing.T) {
	files, _ := filepath.Glob("../../pktdrill/testdata/*.pkt")
	var out bytes.Buffer
	require.Equal(t, 0, run(files, &out), out.String())
	require.Equal(t, len(files), strings.Count(out.String(), "PASS "))

	bad := filepath.Join(t.TempDir(), "bad.pkt")
	require.NoError(t, os.WriteFile(bad, []byte("0 listen(3, 1) = 0\n+0 > S 0:0(0)\n"), 0o644))
	out.Reset()
	require.Equal(t, 1, run([]string{bad}, &out))
	require.Contains(t, out.String(), "FAIL "+bad+": line 2")
	require.Equal(t, 2, run(nil, &out))
}
