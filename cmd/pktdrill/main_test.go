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
	require.NotEmpty(t, files)
	var out bytes.Buffer
	require.Equal(t, 0, run(files, &out), out.String())
	require.Equal(t, len(files), strings.Count(out.String(), "PASS "))

	bad := filepath.Join(t.TempDir(), "bad.pkt")
	require.NoError(t, os.WriteFile(bad, []byte("0 listen(3, 1) = 0\n+0 > S 0:0(0)\n"), 0o644))
	out.Reset()
	require.Equal(t, 1, run([]string{bad}, &out))
	require.Contains(t, out.String(), "FAIL "+bad+": line 2")
	require.Equal(t, 2, run(nil, &out))
	require.Equal(t, 2, run([]string{"-profile", "plan9", bad}, &out))
}

// TestDirMarkdownAndThreshold: -dir finds scripts, -markdown writes the
// table with a reason for every script that did not pass, and -min-pass
// decides the exit status instead of any single failure.
func TestDirMarkdownAndThreshold(t *testing.T) {
	dir := "../../pktdrill/testdata/socket"
	md := filepath.Join(t.TempDir(), "out.md")
	var out bytes.Buffer
	require.Equal(t, 1, run([]string{"-dir", dir, "-markdown", md}, &out), out.String())
	require.Contains(t, out.String(), "UNSUPPORTED fast-open.pkt: TCP Fast Open")
	require.Contains(t, out.String(), "FAIL assert-fails.pkt")
	require.Contains(t, out.String(), "6 passed, 1 failed, 1 unsupported; 85.7% of the 7 scripts in scope pass")
	b, err := os.ReadFile(md)
	require.NoError(t, err)
	require.Contains(t, string(b), "| fast-open.pkt | UNSUPPORTED | TCP Fast Open |")
	require.Contains(t, string(b), "| accept-child.pkt | PASS |  |")
	require.Contains(t, string(b), "-markdown")

	out.Reset()
	require.Equal(t, 0, run([]string{"-q", "-min-pass", "85", "-dir", dir}, &out), out.String())
	require.NotContains(t, out.String(), "PASS accept-child.pkt")
	require.Equal(t, 1, run([]string{"-min-pass", "90", "-dir", dir}, &out))
	require.Contains(t, out.String(), "below -min-pass 90.0%")
}

// TestSplice: -splice writes the table between the marker lines of a
// file, again and again, leaving the rest as it was; a file without the
// markers is an error.
func TestSplice(t *testing.T) {
	dir := "../../pktdrill/testdata/socket"
	doc := filepath.Join(t.TempDir(), "doc.md")
	before, after := "# Doc\n\nIntro.\n\n"+spliceBegin+"\n", spliceEnd+"\n\nMore.\n"
	require.NoError(t, os.WriteFile(doc, []byte(before+"old table\n"+after), 0o644))
	var out bytes.Buffer
	for range 2 {
		require.Equal(t, 0, run([]string{"-q", "-min-pass", "50", "-dir", dir, "-splice", doc}, &out), out.String())
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		s := string(b)
		require.True(t, strings.HasPrefix(s, before), s)
		require.True(t, strings.HasSuffix(s, after), s)
		require.NotContains(t, s, "old table")
		require.Contains(t, s, "| fast-open.pkt | UNSUPPORTED | TCP Fast Open |")
		require.Equal(t, 1, strings.Count(s, "| Script | Verdict | Reason |"))
	}
	bare := filepath.Join(t.TempDir(), "bare.md")
	require.NoError(t, os.WriteFile(bare, []byte("no markers\n"), 0o644))
	require.Equal(t, 2, run([]string{"-q", "-dir", dir, "-splice", bare}, &out))
}
