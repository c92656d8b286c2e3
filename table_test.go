package tcpfsm

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain runs the tests, then, when the whole suite ran, checks that the
// tests took every row of the transition table at least once: the table
// and the function agree in both directions.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		var missing []string
		for _, r := range Transitions {
			if r.From == r.To {
				continue
			}
			if !observed[Transition{From: r.From, On: r.On, To: r.To}] {
				missing = append(missing, fmt.Sprintf("%v --%v--> %v (%s)", r.From, r.On, r.To, r.Why))
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: transition table rows no test exercised:\n  %s\n", strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

func TestTableRowsAreUnique(t *testing.T) {
	seen := map[[3]uint8]bool{}
	for _, r := range Transitions {
		k := [3]uint8{uint8(r.From), uint8(r.On), uint8(r.To)}
		require.False(t, seen[k], "duplicate row %v --%v--> %v", r.From, r.On, r.To)
		seen[k] = true
		require.NotEmpty(t, r.Why)
	}
	require.True(t, Allowed(Established, OnSend, Established), "self-loops are implicit")
	require.False(t, Allowed(Established, OnSYN, Closed), "RFC 5961: a SYN never resets")
}

var updateReadme = flag.Bool("update-readme", false, "rewrite the state diagram in README.md")

func TestReadmeHasTheDiagram(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	want := "```mermaid\n" + Mermaid() + "```\n"
	if *updateReadme {
		const open, end = "<!-- state-diagram -->\n", "<!-- /state-diagram -->"
		before, rest, ok1 := strings.Cut(string(readme), open)
		_, after, ok2 := strings.Cut(rest, end)
		require.True(t, ok1 && ok2, "README.md lacks the state-diagram markers")
		readme = []byte(before + open + want + end + after)
		require.NoError(t, os.WriteFile("README.md", readme, 0o644))
	}
	require.True(t, strings.Contains(string(readme), want),
		"README.md must contain the diagram Mermaid() draws; regenerate it with\n  go test -run TestReadmeHasTheDiagram -update-readme\n%s", want)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		flags string
		want  EventClass
	}{{"R.", OnRST}, {"S", OnSYN}, {"S.", OnSYNACK}, {"F.", OnFIN}, {".", OnACK}, {"P.", OnACK}, {"", OnACK}} {
		s := pkt(tc.flags, 0, 0)
		ev := Arrive(&s, 0)
		require.Equal(t, tc.want, Classify(&ev), tc.flags)
	}
	require.Equal(t, EventClass(0), Classify(&Event{Kind: EvSegment}))
	require.Equal(t, "rcv SYN,ACK", OnSYNACK.String())
}
