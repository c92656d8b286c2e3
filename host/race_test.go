//go:build race

package host

// raceEnabled says the race detector is on: it slows the goroutines
// enough that timing-dependent checks (such as buffers kept while a
// connection is busy) do not hold.
const raceEnabled = true
