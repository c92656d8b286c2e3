package minheap

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

type item struct{ key, seq int }

func (a item) Less(b item) bool { return a.key < b.key || (a.key == b.key && a.seq < b.seq) }

// TestHeapSorts pushes and pops random items, some from a slice ordered
// by Init, and checks every pop against a sorted model.
func TestHeapSorts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		keys := rapid.SliceOf(rapid.IntRange(-50, 50)).Draw(t, "keys")
		split := rapid.IntRange(0, len(keys)).Draw(t, "split")
		var h, model []item
		for i, k := range keys[:split] {
			h = append(h, item{k, i})
		}
		Init(h)
		model = append(model, h...)
		for i, k := range keys[split:] {
			x := item{k, split + i}
			h = Push(h, x)
			model = append(model, x)
		}
		slices.SortFunc(model, func(a, b item) int {
			if a.Less(b) {
				return -1
			}
			if b.Less(a) {
				return 1
			}
			return 0
		})
		for _, want := range model {
			var got item
			got, h = Pop(h)
			if got != want {
				t.Fatalf("popped %v, want %v", got, want)
			}
		}
		if len(h) != 0 {
			t.Fatalf("%d left", len(h))
		}
	})
}

func TestPushPopAllocateNothingOnceGrown(t *testing.T) {
	h := make([]item, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		for i := range 32 {
			h = Push(h, item{i * 7 % 13, i})
		}
		for len(h) > 0 {
			_, h = Pop(h)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
