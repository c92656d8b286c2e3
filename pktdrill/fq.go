package pktdrill

import (
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// This file models the part of Linux's host below TCP that decides when
// a segment tcpfsm sent leaves the machine once a script installs the
// fq qdisc ("tc qdisc replace dev tun0 root fq"), under -profile linux:
//
//   - The pacing rate (tcp_update_pacing_rate), recomputed whenever an
//     ACK is processed: mss*max(cwnd, packets_out)/srtt, scaled by
//     tcp_pacing_ss_ratio (200%) while cwnd < ssthresh/2 and by
//     tcp_pacing_ca_ratio (120%) after. Before the first RTT sample
//     the rate is unlimited.
//   - Segmentation offload: the segments sent at once are grouped into
//     packets of max(rate/1024 bytes / mss, tcp_min_tso_segs) segments
//     (tcp_tso_autosize).
//   - Departure times, as TCP stamps them in the earliest-departure-time
//     model (tcp_update_skb_after_send): a packet leaves at
//     max(now, the flow's next departure time); each packet, once the
//     flow has sent 10 data segments (sch_fq's initial quantum), pushes
//     the next departure time on by len/rate, less up to half of that
//     for the time the packet itself was late.
//   - TCP Small Queues (tcp_small_queue_check): a packet is handed to the
//     qdisc only while the packets already waiting there take no more
//     than max(two packets, rate/1024 bytes) of memory; the rest wait in
//     TCP, and get their departure time when a packet leaves.
//   - fq itself holds each packet until its departure time (with one
//     flow per connection and no maxrate, that is all fq does).
//
// Segments without data or FIN (pure ACKs, SYNs, resets) are not paced.
// tcpfsm stamps its RTT samples and TSvals when it sends, not when the
// qdisc releases, so RTTs measured across a paced packet are longer than
// Linux's.

// pacingShift is sk_pacing_shift: TSO packets and TCP Small Queues
// allow about 1 ms (rate >> 10) of data.
const pacingShift = 10

// skbOverhead is the memory an skb costs beyond its payload (its
// truesize less the data): the sk_buff, its shared info and the head
// holding the headers, as Linux's tcp_stream_alloc_skb allocates them.
const skbOverhead = 1280

// hostParams are the sysctls of Linux's host model that have no
// tcpfsm.Config field.
type hostParams struct {
	pacingSS   uint64 // tcp_pacing_ss_ratio, percent
	pacingCA   uint64 // tcp_pacing_ca_ratio, percent
	minTSOSegs uint32 // tcp_min_tso_segs
}

// defaultHost is Linux's defaults.
var defaultHost = hostParams{pacingSS: 200, pacingCA: 120, minTSOSegs: 2}

// hostSysctl applies a sysctl the host model reads; it reports whether
// it knew the name.
func (r *runner) hostSysctl(name string, one bool, n int64) bool {
	if !one || n < 0 || n > 1<<20 {
		return false
	}
	switch name {
	case "tcp_pacing_ss_ratio":
		r.host.pacingSS = uint64(n)
	case "tcp_pacing_ca_ratio":
		r.host.pacingCA = uint64(n)
	case "tcp_min_tso_segs":
		r.host.minTSOSegs = uint32(max(n, 1))
	default:
		return false
	}
	return true
}

// tc reads a "tc qdisc add|replace dev DEV root KIND ..." command: fq
// turns pacing on (under -profile linux), any other root qdisc turns it
// off.
func (r *runner) tc(w []string) {
	if len(w) < 5 || w[0] != "qdisc" || (w[1] != "add" && w[1] != "replace" && w[1] != "delete" && w[1] != "del") {
		r.ignored = append(r.ignored, "tc "+strings.Join(w, " "))
		return
	}
	kind := ""
	for i := 2; i+1 < len(w); i++ {
		if w[i] == "root" {
			kind = w[i+1]
		}
	}
	on := kind == "fq" && w[1] != "delete" && w[1] != "del"
	if on && r.o.Profile != "linux" {
		r.ignored = append(r.ignored, "tc qdisc fq (pacing is modelled under -profile linux only)")
		return
	}
	if !on && r.fq {
		// The packets fq held leave with it.
		for _, c := range r.conns {
			if p := c.pace; p != nil {
				for _, d := range p.queue {
					r.pending = append(r.pending, d.segs...)
				}
				for _, s := range p.held {
					s.at = r.now
					r.pending = append(r.pending, s)
				}
				p.queue, p.held = nil, nil
			}
		}
	}
	r.fq = on
}

// pacer is one connection's state in the pacing model.
type pacer struct {
	rate    uint64      // sk_pacing_rate in bytes per second; 0 while unlimited
	wstamp  tcpfsm.Time // tcp_wstamp_ns: the earliest departure of the next packet
	segsOut int         // data_segs_out: data segments handed to the qdisc
	held    []sent      // segments TCP Small Queues keeps back, oldest first
	queue   []departure // packets in the qdisc, in departure order
}

// departure is one packet (one skb, perhaps several segments) in the
// qdisc.
type departure struct {
	at    tcpfsm.Time
	segs  []sent
	bytes uint32
}

// paced says whether fq holds a segment: those carrying data or a FIN.
func paced(s *sent) bool {
	f := s.seg.Flags
	return f&(tcpfsm.FlagSYN|tcpfsm.FlagRST) == 0 && (s.a.DataLen > 0 || f&tcpfsm.FlagFIN != 0)
}

// effMSS is the payload of a full segment, as Linux's mss_cache.
func effMSS(st *tcpfsm.Status) uint32 {
	m := uint32(st.SendMSS)
	if st.Timestamps && m > 12 {
		m -= 12
	}
	return max(m, 1)
}

// pacingRate is tcp_update_pacing_rate's rate for a status, with
// packetsOut segments in flight; 0 before the first RTT sample.
func (h hostParams) pacingRate(st *tcpfsm.Status, packetsOut uint32) uint64 {
	srtt := uint64(st.SRTT.Microseconds())
	if srtt == 0 {
		return 0
	}
	mss := effMSS(st)
	cwnd, ssthresh := st.Cwnd/mss, st.Ssthresh/mss
	ratio := h.pacingCA
	if cwnd < ssthresh/2 {
		ratio = h.pacingSS
	}
	return uint64(mss) * 10000 * ratio * uint64(max(cwnd, packetsOut)) / srtt
}

// tsoSegs is how many segments one packet carries at a pacing rate
// (tcp_tso_autosize): about 1 ms of data, and at least
// tcp_min_tso_segs.
func (h hostParams) tsoSegs(rate uint64, mss uint32) uint32 {
	if rate == 0 {
		return 65536 / mss // unlimited: as large as offload allows
	}
	return max(uint32(min(rate>>pacingShift, 65536))/mss, h.minTSOSegs)
}

// paceHold keeps a segment tcpfsm sent on c for the qdisc, when fq is
// installed and paces it; it reports whether it took s.
func (r *runner) paceHold(c *conn, s sent) bool {
	if !r.fq || !paced(&s) {
		return false
	}
	if c.pace == nil {
		c.pace = &pacer{}
	}
	c.pace.held = append(c.pace.held, s)
	return true
}

// paceAfterStep updates c's pacing rate after an event (Linux
// recomputes it for each ACK) and moves held segments into the qdisc.
func (r *runner) paceAfterStep(c *conn, ev tcpfsm.Event) {
	p := c.pace
	if !r.fq {
		return
	}
	if p == nil {
		c.pace = &pacer{}
		p = c.pace
	}
	if ev.Kind == tcpfsm.EvSegment {
		if st, err := c.tcb.Status(); err == nil && st.State != tcpfsm.SynReceived && st.State != tcpfsm.SynSent {
			mss := effMSS(&st)
			inFlight := st.InFlight
			for i := range p.held {
				inFlight -= min(inFlight, p.held[i].a.DataLen)
			}
			p.rate = r.host.pacingRate(&st, (inFlight+mss-1)/mss)
		}
	}
	r.paceRelease(c)
}

// paceNext is the earliest departure among the qdisc's packets.
func (r *runner) paceNext() (tcpfsm.Time, *conn) {
	var at tcpfsm.Time
	var who *conn
	for _, c := range r.conns {
		if p := c.pace; p != nil && len(p.queue) > 0 && (who == nil || p.queue[0].at < at) {
			at, who = p.queue[0].at, c
		}
	}
	return at, who
}

// paceRelease sends the packets of c whose departure time has come, and
// hands held segments to the qdisc while TCP Small Queues allows.
func (r *runner) paceRelease(c *conn) {
	p := c.pace
	if p == nil {
		return
	}
	for {
		for len(p.queue) > 0 && p.queue[0].at <= r.now {
			d := p.queue[0]
			p.queue = p.queue[1:]
			for _, s := range d.segs {
				s.at = d.at
				r.pending = append(r.pending, s)
			}
		}
		if len(p.held) == 0 || !r.smallQueueAllows(c) {
			return
		}
		r.enqueue(c)
	}
}

// smallQueueAllows is tcp_small_queue_check: the next packet may join
// the qdisc if what waits there (counted as skb memory, as
// sk_wmem_alloc) is within max(two packets, rate >> 10).
func (r *runner) smallQueueAllows(c *conn) bool {
	p := c.pace
	if len(p.queue) == 0 {
		return true
	}
	next := p.nextPacket(r.host, c)
	limit := max(2*(uint64(next)+skbOverhead), p.rate>>pacingShift)
	queued := uint64(1)
	for _, d := range p.queue {
		queued += uint64(d.bytes) + skbOverhead
	}
	return queued <= limit
}

// nextPacket is how many of the held segments' bytes the next packet
// takes: consecutive data up to the TSO size.
func (p *pacer) nextPacket(h hostParams, c *conn) uint32 {
	n, _ := p.packetSegs(h, c)
	var b uint32
	for _, s := range p.held[:n] {
		b += s.a.DataLen
	}
	return b
}

// packetSegs counts the held segments the next packet carries and the
// data segments among them.
func (p *pacer) packetSegs(h hostParams, c *conn) (n int, segs uint32) {
	mss := uint32(1)
	if st, err := c.tcb.Status(); err == nil {
		mss = effMSS(&st)
	}
	goal := h.tsoSegs(p.rate, mss) * mss
	first := &p.held[0]
	total := first.a.DataLen
	n = 1
	for n < len(p.held) {
		s := &p.held[n]
		if s.a.DataLen == 0 || s.a.DataSeq != first.a.DataSeq.Add(total) || total+s.a.DataLen > goal {
			break
		}
		total += s.a.DataLen
		n++
	}
	return n, (total + mss - 1) / mss
}

// enqueue hands the next packet of held segments to the qdisc with its
// departure time (tcp_update_skb_after_send).
func (r *runner) enqueue(c *conn) {
	p := c.pace
	n, segs := p.packetSegs(r.host, c)
	d := departure{segs: append([]sent(nil), p.held[:n]...)}
	p.held = p.held[n:]
	for _, s := range d.segs {
		d.bytes += s.a.DataLen
	}
	prior := p.wstamp
	d.at = max(p.wstamp, r.now)
	p.wstamp = d.at
	p.segsOut += int(segs)
	if p.rate > 0 && p.segsOut >= 10 {
		ns := time.Duration(uint64(d.bytes) * uint64(time.Second) / p.rate)
		ns -= min(ns/2, time.Duration(d.at-prior))
		p.wstamp = p.wstamp.Add(ns)
	}
	p.queue = append(p.queue, d)
}
