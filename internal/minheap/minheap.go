// Package minheap is a binary min-heap kept in a plain slice, for the
// simulator's packet deliveries. Unlike container/heap it needs no
// interface value per operation and allocates only when the slice grows.
package minheap

// Lesser is an element that orders itself against another.
type Lesser[T any] interface {
	Less(T) bool
}

// Push adds x to the heap h and returns the heap.
func Push[T Lesser[T]](h []T, x T) []T {
	h = append(h, x)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].Less(h[p]) {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

// Pop removes the least element of the non-empty heap h and returns it
// and the heap. The vacated slot is zeroed, so the slice keeps no
// reference to it.
func Pop[T Lesser[T]](h []T) (T, []T) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	var zero T
	h[n] = zero
	h = h[:n]
	down(h, 0)
	return top, h
}

// Init orders any slice as a heap.
func Init[T Lesser[T]](h []T) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(h, i)
	}
}

func down[T Lesser[T]](h []T, i int) {
	n := len(h)
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h[l].Less(h[m]) {
			m = l
		}
		if r < n && h[r].Less(h[m]) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
