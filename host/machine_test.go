package host

import (
	"hash/crc32"
	"testing"
)

var machineSink uint64

// BenchmarkMachineScaling measures the machine rather than the Host: how
// work with no sharing at all scales from one core to several (run with
// -cpu 1,2), the ceiling for BenchmarkShardedConnections and
// BenchmarkShardedBulk. compute is a CRC-32 of 4 KiB per op, in cache;
// memory is one update per op of a 64 Ki-entry map of each goroutine's
// own, which misses the caches as a Stack's tables and buffers do.
func BenchmarkMachineScaling(b *testing.B) {
	b.Run("compute", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 4096)
			var s uint64
			for pb.Next() {
				s += uint64(crc32.ChecksumIEEE(buf))
			}
			machineSink += s
		})
	})
	b.Run("memory", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			m := make(map[uint64]uint64, 1<<16)
			var i uint64
			for pb.Next() {
				i += 0x9e3779b97f4a7c15 // spread the keys
				m[i>>48] += i
			}
			machineSink += uint64(len(m))
		})
	})
}
