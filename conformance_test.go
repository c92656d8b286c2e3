package tcpfsm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConformanceTestsExist fails if CONFORMANCE.md names a test that does
// not exist, or marks a row done without naming one.
func TestConformanceTestsExist(t *testing.T) {
	doc, err := os.ReadFile("CONFORMANCE.md")
	require.NoError(t, err)
	files, err := filepath.Glob("*_test.go")
	require.NoError(t, err)
	for _, dir := range []string{"tcpstack", "internal/*", "ip", "ipstack", "host", "wireguard/netstack", "sim"} { // the layers above the state machine, and the simulator
		more, err := filepath.Glob(dir + "/*_test.go")
		require.NoError(t, err)
		files = append(files, more...)
	}
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		src.Write(b)
	}
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w+)\(`).FindAllStringSubmatch(src.String(), -1) {
		defined[m[1]] = true
	}
	rows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "RFC") {
			continue
		}
		rows++
		status, tests := strings.TrimSpace(cells[3]), cells[4]
		names := regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(tests, -1)
		if status == "done" || status == "partial" {
			require.NotEmpty(t, names, "row %q is %s but names no test", cells[1], status)
		}
		for _, n := range names {
			require.True(t, defined[n[1]], "CONFORMANCE.md names %s, which does not exist", n[1])
		}
	}
	require.Greater(t, rows, 150, "CONFORMANCE.md lists every row of the checklist")
}
