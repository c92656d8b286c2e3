package tcpstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

// splitLarge cuts a large segment as a TSO link does: parts of segSize
// payload bytes, each with a copy of the header, its own sequence number
// and checksum, PSH and FIN on the last part only.
func splitLarge(t *testing.T, seg []byte, segSize int, src, dst netip.Addr) [][]byte {
	hl := int(seg[12]>>4) * 4
	payload := seg[hl:]
	seq := binary.BigEndian.Uint32(seg[4:])
	var parts [][]byte
	for off := 0; off < len(payload); off += segSize {
		end := min(off+segSize, len(payload))
		p := append(append([]byte(nil), seg[:hl]...), payload[off:end]...)
		binary.BigEndian.PutUint32(p[4:], seq+uint32(off))
		if end < len(payload) {
			p[13] &^= byte(tcpfsm.FlagPSH | tcpfsm.FlagFIN)
		}
		require.NoError(t, tcpfsm.SetChecksum(p, src, dst))
		parts = append(parts, p)
	}
	return parts
}

func TestOutputLargeMakesTheSameStream(t *testing.T) {
	// A bulk transfer whose sender writes large segments through a link
	// that splits them: the receiver reads every byte once and in order,
	// and large segments were written.
	cfg := Config{Endpoint: EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}
	n := newStackNet(t, cfg, cfg)
	c, srv := n.connect(t)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*131 + i>>9)
	}
	large, parts := 0, 0
	big := make([]byte, 65000)
	var got bytes.Buffer
	rbuf := make([]byte, 1<<16)
	sent := 0
	for step := 0; got.Len() < len(data) && step < 200000; step++ {
		if sent < len(data) {
			k, _ := c.Write(data[sent:], n.now)
			sent += k
		}
		if sent == len(data) && c.State() == tcpfsm.Established {
			require.NoError(t, c.CloseWrite(n.now))
		}
		if step == 50 {
			// The same drain, once, counting allocations: writing large
			// segments allocates nothing (the segments are dropped; the
			// sender resends them).
			allocs := testing.AllocsPerRun(1, func() {
				for m, _, _, _ := n.s[0].OutputLarge(big, n.now); m > 0; m, _, _, _ = n.s[0].OutputLarge(big, n.now) {
				}
			})
			require.Zero(t, allocs, "OutputLarge allocates")
		}
		// The client's stack writes large segments; the link splits them.
		for {
			m, segSize, src, dst := n.s[0].OutputLarge(big, n.now)
			if m == 0 {
				break
			}
			pieces := [][]byte{append([]byte(nil), big[:m]...)}
			if segSize > 0 {
				large++
				pieces = splitLarge(t, big[:m], segSize, src, dst)
				parts += len(pieces)
			}
			for _, p := range pieces {
				n.q = append(n.q, stackPkt{at: n.now.Add(n.delay), to: 1, src: src, dst: dst, data: p})
			}
		}
		n.run(n.now.Add(time.Millisecond), nil)
		for {
			k, err := srv.Read(rbuf, n.now)
			got.Write(rbuf[:k])
			if k == 0 || err != nil {
				break
			}
		}
	}
	require.True(t, bytes.Equal(data, got.Bytes()), "read %d of %d bytes", got.Len(), len(data))
	t.Logf("%d large segments, split into %d parts", large, parts)
	require.Greater(t, large, 10)
	require.Greater(t, parts, 3*large, "each large segment carries several")
}
