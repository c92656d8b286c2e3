package tcpstack

import (
	"net/netip"

	"github.com/tcpfsm/tcpfsm"
)

// Large segments, for links that split them (TCP segmentation offload,
// or generic segmentation offload on a Linux TUN device with a virtio-net
// header). The state machine still sends MSS-sized segments; when several
// queued ones continue each other, OutputLarge writes them as one segment
// whose payload the link cuts into parts of segSize bytes, each part
// carrying a copy of the header with its own sequence number and
// checksum, and PSH or FIN on the last part only, as a TSO NIC does. The
// segments that merge are exactly the ones Output would have written one
// by one, so the peer sees the same stream.

// OutputLarge is Output for a link that splits large segments: it writes
// into buf the next queued segment merged with the data segments queued
// after it that continue it in the stream, are as long as it (the last
// may be shorter), and have its header length and flags (only the last
// may add PSH or FIN), as many as buf holds. segSize is the payload size
// of each part, or 0 when buf holds a single ordinary segment (whose
// checksum is set, as Output's). A large segment's checksum field is
// not: the link that splits it computes each part's.
func (e *Endpoint) OutputLarge(buf []byte, now tcpfsm.Time) (n, segSize int, src, dst netip.Addr) {
	if n, segSize = e.outputLarge(buf); n > 0 {
		src, dst = e.addrs()
	}
	return n, segSize, src, dst
}

// outputLarge is OutputLarge without the addresses.
func (e *Endpoint) outputLarge(buf []byte) (n, segSize int) {
	io := e.io
	if io == nil {
		return 0, 0
	}
	for io.head < len(io.queue) {
		a := &io.queue[io.head]
		io.head++
		n := e.encode(buf, a)
		if n == 0 {
			continue
		}
		segSize = int(a.DataLen)
		if k := e.merge(buf, n, a); k > 0 {
			n += k
		} else {
			segSize = 0
		}
		e.release()
		return n, segSize
	}
	io.queue = io.queue[:0]
	io.head = 0
	e.release()
	return 0, 0
}

// headerLen is the header length of the queued ActSend a.
func (e *Endpoint) headerLen(a *tcpfsm.Action) int {
	if a.Header.SACK {
		s := e.io.segment(a, false)
		return s.HeaderLen()
	}
	return e.tcb.HeaderLen(a)
}

// merge appends to the segment first, encoded in buf[:n], the payload of
// the queued segments that continue it (see OutputLarge), takes them off
// the queue, and returns how many bytes it appended.
func (e *Endpoint) merge(buf []byte, n int, first *tcpfsm.Action) int {
	if first.DataLen == 0 || first.Header.Flags != tcpfsm.FlagACK {
		return 0
	}
	io := e.io
	size := first.DataLen
	hl := int(buf[12]>>4) * 4 // first's header, encoded
	end := first.DataSeq.Add(size)
	added := 0
	var last tcpfsm.Flags
	for io.head < len(io.queue) {
		a := &io.queue[io.head]
		if a.Kind != tcpfsm.ActSend || a.DataLen == 0 || a.DataLen > size || a.DataSeq != end ||
			a.Header.Flags&^(tcpfsm.FlagPSH|tcpfsm.FlagFIN) != tcpfsm.FlagACK ||
			e.headerLen(a) != hl || n+added+int(a.DataLen) > len(buf) ||
			int(a.DataSeq.Diff(io.sndSeq))+int(a.DataLen) > io.snd.len() {
			break
		}
		io.snd.readAt(int(a.DataSeq.Diff(io.sndSeq)), buf[n+added:n+added+int(a.DataLen)])
		added += int(a.DataLen)
		e.stats.bytesOut += uint64(a.DataLen)
		e.stats.segmentsOut++
		if end := a.DataSeq.Add(a.DataLen); end.LessThanEq(io.sentHigh) {
			e.stats.retransmits++
		} else {
			io.sentHigh = end
		}
		end = a.DataSeq.Add(a.DataLen)
		last = a.Header.Flags
		if a.Header.SACK {
			io.sackHead++ // off the queue, with its SACK options
		}
		io.head++
		if a.DataLen < size || last&(tcpfsm.FlagPSH|tcpfsm.FlagFIN) != 0 {
			break // only the last part may be short, or push, or close
		}
	}
	if added == 0 {
		return 0
	}
	buf[13] |= byte(last & (tcpfsm.FlagPSH | tcpfsm.FlagFIN))
	// No checksum over the whole: the link that splits it computes each
	// part's (TSO, or a virtio-net NEEDS_CSUM write), so summing 64 KiB
	// here would be wasted.
	return added
}

// OutputLarge is Output for a link that splits large segments (see
// Endpoint.OutputLarge): segSize is the payload size of each part of the
// segment written, or 0 for an ordinary segment. buf should hold 64 KiB.
func (s *Stack) OutputLarge(buf []byte, now tcpfsm.Time) (n, segSize int, src, dst netip.Addr) {
	if len(s.replies) > 0 {
		n, src, dst = s.Output(buf, now)
		return n, 0, src, dst
	}
	for s.active.len() > 0 {
		e := s.active.front()
		if n, segSize := e.outputLarge(buf); n > 0 {
			s.stats.SegmentsOut++
			return n, segSize, e.key.addr(&e.key.local), e.key.addr(&e.key.remote)
		}
		e.bits &^= epInActive
		s.active.pop()
		s.after(e, now)
	}
	return 0, 0, netip.Addr{}, netip.Addr{}
}
