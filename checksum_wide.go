package tcpfsm

import "encoding/binary"

// wideBlock is the span sumWide adds per iteration of its loop.
const wideBlock = 1024

// sumWide returns the exact sum of the little-endian 32-bit words of
// b[:n], where n is as many whole blocks of wideBlock bytes as b holds (up
// to 2^30 bytes), or 0 and 0 when b is shorter than a block and 4 bytes.
//
// That sum, added into a ones'-complement accumulator, counts as the sum
// of the 16-bit lanes, since 2^16 is 1 modulo 2^16-1.
//
// Its loop spends one instruction per 4 bytes. It adds the 64-bit words
// at every 4-byte offset, each load fused into its ADDQ (Go fuses a load
// into ADDQ but not into ADCQ), and carries nothing. With chunk j the
// 32-bit word at offset 4j, the 64-bit word there is chunk j plus chunk
// j+1 times 2^32, so the total of words 0 to q-1 is
// T = S + 2^32*(S - c0 + cq) mod 2^64, where S is the sum of chunks 0 to
// q-1, c0 the first chunk and cq chunk q. T's low half is S's; its high
// half, less (S - c0 + cq) mod 2^32, is S's high half, which is below
// 2^32 because there are fewer than 2^32 chunks.
//
// A block's last word reads the 4 bytes after it. When they are not
// there, the last block starts 4 bytes early, its first word (the block
// before's last) is taken off again, and chunk q is the last chunk of
// b[:n] rather than the one after it.
func sumWide(b []byte) (s uint64, n int) {
	if len(b) < wideBlock+4 {
		return 0, 0
	}
	b = b[:min(len(b), 1<<30)]
	var t0, t1, t2, t3 uint64
	r, shifted := b, false
	for {
		p := (*[wideBlock + 4]byte)(r)
		// Four chains, one per offset mod 16, so that consecutive adds
		// do not wait for each other.
		t0, t1, t2, t3 = t0+le64(p, 0), t1+le64(p, 4), t2+le64(p, 8), t3+le64(p, 12)
		t0, t1, t2, t3 = t0+le64(p, 16), t1+le64(p, 20), t2+le64(p, 24), t3+le64(p, 28)
		t0, t1, t2, t3 = t0+le64(p, 32), t1+le64(p, 36), t2+le64(p, 40), t3+le64(p, 44)
		t0, t1, t2, t3 = t0+le64(p, 48), t1+le64(p, 52), t2+le64(p, 56), t3+le64(p, 60)
		t0, t1, t2, t3 = t0+le64(p, 64), t1+le64(p, 68), t2+le64(p, 72), t3+le64(p, 76)
		t0, t1, t2, t3 = t0+le64(p, 80), t1+le64(p, 84), t2+le64(p, 88), t3+le64(p, 92)
		t0, t1, t2, t3 = t0+le64(p, 96), t1+le64(p, 100), t2+le64(p, 104), t3+le64(p, 108)
		t0, t1, t2, t3 = t0+le64(p, 112), t1+le64(p, 116), t2+le64(p, 120), t3+le64(p, 124)
		t0, t1, t2, t3 = t0+le64(p, 128), t1+le64(p, 132), t2+le64(p, 136), t3+le64(p, 140)
		t0, t1, t2, t3 = t0+le64(p, 144), t1+le64(p, 148), t2+le64(p, 152), t3+le64(p, 156)
		t0, t1, t2, t3 = t0+le64(p, 160), t1+le64(p, 164), t2+le64(p, 168), t3+le64(p, 172)
		t0, t1, t2, t3 = t0+le64(p, 176), t1+le64(p, 180), t2+le64(p, 184), t3+le64(p, 188)
		t0, t1, t2, t3 = t0+le64(p, 192), t1+le64(p, 196), t2+le64(p, 200), t3+le64(p, 204)
		t0, t1, t2, t3 = t0+le64(p, 208), t1+le64(p, 212), t2+le64(p, 216), t3+le64(p, 220)
		t0, t1, t2, t3 = t0+le64(p, 224), t1+le64(p, 228), t2+le64(p, 232), t3+le64(p, 236)
		t0, t1, t2, t3 = t0+le64(p, 240), t1+le64(p, 244), t2+le64(p, 248), t3+le64(p, 252)
		t0, t1, t2, t3 = t0+le64(p, 256), t1+le64(p, 260), t2+le64(p, 264), t3+le64(p, 268)
		t0, t1, t2, t3 = t0+le64(p, 272), t1+le64(p, 276), t2+le64(p, 280), t3+le64(p, 284)
		t0, t1, t2, t3 = t0+le64(p, 288), t1+le64(p, 292), t2+le64(p, 296), t3+le64(p, 300)
		t0, t1, t2, t3 = t0+le64(p, 304), t1+le64(p, 308), t2+le64(p, 312), t3+le64(p, 316)
		t0, t1, t2, t3 = t0+le64(p, 320), t1+le64(p, 324), t2+le64(p, 328), t3+le64(p, 332)
		t0, t1, t2, t3 = t0+le64(p, 336), t1+le64(p, 340), t2+le64(p, 344), t3+le64(p, 348)
		t0, t1, t2, t3 = t0+le64(p, 352), t1+le64(p, 356), t2+le64(p, 360), t3+le64(p, 364)
		t0, t1, t2, t3 = t0+le64(p, 368), t1+le64(p, 372), t2+le64(p, 376), t3+le64(p, 380)
		t0, t1, t2, t3 = t0+le64(p, 384), t1+le64(p, 388), t2+le64(p, 392), t3+le64(p, 396)
		t0, t1, t2, t3 = t0+le64(p, 400), t1+le64(p, 404), t2+le64(p, 408), t3+le64(p, 412)
		t0, t1, t2, t3 = t0+le64(p, 416), t1+le64(p, 420), t2+le64(p, 424), t3+le64(p, 428)
		t0, t1, t2, t3 = t0+le64(p, 432), t1+le64(p, 436), t2+le64(p, 440), t3+le64(p, 444)
		t0, t1, t2, t3 = t0+le64(p, 448), t1+le64(p, 452), t2+le64(p, 456), t3+le64(p, 460)
		t0, t1, t2, t3 = t0+le64(p, 464), t1+le64(p, 468), t2+le64(p, 472), t3+le64(p, 476)
		t0, t1, t2, t3 = t0+le64(p, 480), t1+le64(p, 484), t2+le64(p, 488), t3+le64(p, 492)
		t0, t1, t2, t3 = t0+le64(p, 496), t1+le64(p, 500), t2+le64(p, 504), t3+le64(p, 508)
		t0, t1, t2, t3 = t0+le64(p, 512), t1+le64(p, 516), t2+le64(p, 520), t3+le64(p, 524)
		t0, t1, t2, t3 = t0+le64(p, 528), t1+le64(p, 532), t2+le64(p, 536), t3+le64(p, 540)
		t0, t1, t2, t3 = t0+le64(p, 544), t1+le64(p, 548), t2+le64(p, 552), t3+le64(p, 556)
		t0, t1, t2, t3 = t0+le64(p, 560), t1+le64(p, 564), t2+le64(p, 568), t3+le64(p, 572)
		t0, t1, t2, t3 = t0+le64(p, 576), t1+le64(p, 580), t2+le64(p, 584), t3+le64(p, 588)
		t0, t1, t2, t3 = t0+le64(p, 592), t1+le64(p, 596), t2+le64(p, 600), t3+le64(p, 604)
		t0, t1, t2, t3 = t0+le64(p, 608), t1+le64(p, 612), t2+le64(p, 616), t3+le64(p, 620)
		t0, t1, t2, t3 = t0+le64(p, 624), t1+le64(p, 628), t2+le64(p, 632), t3+le64(p, 636)
		t0, t1, t2, t3 = t0+le64(p, 640), t1+le64(p, 644), t2+le64(p, 648), t3+le64(p, 652)
		t0, t1, t2, t3 = t0+le64(p, 656), t1+le64(p, 660), t2+le64(p, 664), t3+le64(p, 668)
		t0, t1, t2, t3 = t0+le64(p, 672), t1+le64(p, 676), t2+le64(p, 680), t3+le64(p, 684)
		t0, t1, t2, t3 = t0+le64(p, 688), t1+le64(p, 692), t2+le64(p, 696), t3+le64(p, 700)
		t0, t1, t2, t3 = t0+le64(p, 704), t1+le64(p, 708), t2+le64(p, 712), t3+le64(p, 716)
		t0, t1, t2, t3 = t0+le64(p, 720), t1+le64(p, 724), t2+le64(p, 728), t3+le64(p, 732)
		t0, t1, t2, t3 = t0+le64(p, 736), t1+le64(p, 740), t2+le64(p, 744), t3+le64(p, 748)
		t0, t1, t2, t3 = t0+le64(p, 752), t1+le64(p, 756), t2+le64(p, 760), t3+le64(p, 764)
		t0, t1, t2, t3 = t0+le64(p, 768), t1+le64(p, 772), t2+le64(p, 776), t3+le64(p, 780)
		t0, t1, t2, t3 = t0+le64(p, 784), t1+le64(p, 788), t2+le64(p, 792), t3+le64(p, 796)
		t0, t1, t2, t3 = t0+le64(p, 800), t1+le64(p, 804), t2+le64(p, 808), t3+le64(p, 812)
		t0, t1, t2, t3 = t0+le64(p, 816), t1+le64(p, 820), t2+le64(p, 824), t3+le64(p, 828)
		t0, t1, t2, t3 = t0+le64(p, 832), t1+le64(p, 836), t2+le64(p, 840), t3+le64(p, 844)
		t0, t1, t2, t3 = t0+le64(p, 848), t1+le64(p, 852), t2+le64(p, 856), t3+le64(p, 860)
		t0, t1, t2, t3 = t0+le64(p, 864), t1+le64(p, 868), t2+le64(p, 872), t3+le64(p, 876)
		t0, t1, t2, t3 = t0+le64(p, 880), t1+le64(p, 884), t2+le64(p, 888), t3+le64(p, 892)
		t0, t1, t2, t3 = t0+le64(p, 896), t1+le64(p, 900), t2+le64(p, 904), t3+le64(p, 908)
		t0, t1, t2, t3 = t0+le64(p, 912), t1+le64(p, 916), t2+le64(p, 920), t3+le64(p, 924)
		t0, t1, t2, t3 = t0+le64(p, 928), t1+le64(p, 932), t2+le64(p, 936), t3+le64(p, 940)
		t0, t1, t2, t3 = t0+le64(p, 944), t1+le64(p, 948), t2+le64(p, 952), t3+le64(p, 956)
		t0, t1, t2, t3 = t0+le64(p, 960), t1+le64(p, 964), t2+le64(p, 968), t3+le64(p, 972)
		t0, t1, t2, t3 = t0+le64(p, 976), t1+le64(p, 980), t2+le64(p, 984), t3+le64(p, 988)
		t0, t1, t2, t3 = t0+le64(p, 992), t1+le64(p, 996), t2+le64(p, 1000), t3+le64(p, 1004)
		t0, t1, t2, t3 = t0+le64(p, 1008), t1+le64(p, 1012), t2+le64(p, 1016), t3+le64(p, 1020)
		r = r[wideBlock:]
		if len(r) >= wideBlock+4 {
			continue
		}
		if len(r) < wideBlock || shifted {
			break
		}
		r = b[len(b)-len(r)-4:]
		shifted = true
	}
	i := len(b) - len(r)
	t := t0 + t1 + t2 + t3
	n = i
	if shifted {
		t -= binary.LittleEndian.Uint64(b[i-wideBlock:])
		n = i + 4
	}
	cq := uint64(binary.LittleEndian.Uint32(b[i:]))
	lo := t & 0xffffffff
	hi := (t>>32 - (lo - uint64(binary.LittleEndian.Uint32(b)) + cq)) & 0xffffffff
	s = hi<<32 | lo
	if shifted {
		s += cq
	}
	return s, n
}

// le64 is the little-endian 64-bit word of p at offset i, a constant at
// every call, so that it compiles to one load with no bounds check.
func le64(p *[wideBlock + 4]byte, i int) uint64 {
	return binary.LittleEndian.Uint64(p[i:])
}
