package trace

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// Event is one line of a sequence diagram: a segment crossing from one
// side to the other, or a note about one side (a user call, a state
// change, a loss).
type Event struct {
	At      tcpfsm.Time
	From    int    // 0 (left) or 1 (right)
	Segment string // the segment as tcpdump prints it; empty for a note
	Lost    bool   // the segment never arrived
	Note    string // a note about side From
	State   string // the state side From is in after the event, if it changed
}

// Diagram collects events between two named sides.
type Diagram struct {
	Names  [2]string
	Events []Event
	states [2]string
}

// NewDiagram returns an empty diagram for two sides.
func NewDiagram(left, right string) *Diagram {
	return &Diagram{Names: [2]string{left, right}}
}

// Segment records a segment sent by side from.
func (d *Diagram) Segment(at tcpfsm.Time, from int, seg tcpfsm.Segment, lost bool) {
	d.Events = append(d.Events, Event{At: at, From: from, Segment: seg.String(), Lost: lost})
}

// Note records a note about side from.
func (d *Diagram) Note(at tcpfsm.Time, from int, text string) {
	d.Events = append(d.Events, Event{At: at, From: from, Note: text})
}

// State records side from's state if it changed.
func (d *Diagram) State(at tcpfsm.Time, from int, s tcpfsm.State) {
	if d.states[from] == s.String() {
		return
	}
	d.states[from] = s.String()
	d.Events = append(d.Events, Event{At: at, From: from, State: s.String()})
}

// WriteText renders the diagram for a terminal: time, the left side's
// state, the segment with an arrow showing its direction, the right
// side's state.
func (d *Diagram) WriteText(w io.Writer) error {
	width := 40
	for _, e := range d.Events {
		width = max(width, len(e.Segment)+12, len(e.Note)+4)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%9s  %-13s %-*s %s\n", "time", d.Names[0], width, "", d.Names[1])
	for _, e := range d.Events {
		left, right, mid := "", "", ""
		switch {
		case e.Segment != "" && e.From == 0:
			mid = "──▶ " + e.Segment
		case e.Segment != "":
			mid = "◀── " + e.Segment
		case e.Note != "":
			mid = "(" + d.Names[e.From] + ": " + e.Note + ")"
		}
		if e.Lost {
			mid += "  ✗ lost"
		}
		if e.State != "" {
			if e.From == 0 {
				left = e.State
			} else {
				right = e.State
			}
		}
		fmt.Fprintf(&b, "%7dms  %-13s %-*s %s\n", time.Duration(e.At).Milliseconds(), left, width, mid, right)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMermaid renders the diagram as a Mermaid sequence diagram, with
// state changes as notes over each side.
func (d *Diagram) WriteMermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("sequenceDiagram\n")
	id := [2]string{"A", "B"}
	fmt.Fprintf(&b, "    participant A as %s\n    participant B as %s\n", d.Names[0], d.Names[1])
	for _, e := range d.Events {
		switch {
		case e.Segment != "":
			arrow := "->>"
			if e.Lost {
				arrow = "-x"
			}
			fmt.Fprintf(&b, "    %s%s%s: %s\n", id[e.From], arrow, id[1-e.From], mermaidText(e.Segment))
		case e.Note != "":
			fmt.Fprintf(&b, "    Note over %s: %s\n", id[e.From], mermaidText(e.Note))
		case e.State != "":
			fmt.Fprintf(&b, "    Note over %s: %s\n", id[e.From], e.State)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText keeps a label from breaking Mermaid's syntax.
func mermaidText(s string) string {
	return strings.NewReplacer(";", ",", "#", "", "\n", " ").Replace(s)
}
