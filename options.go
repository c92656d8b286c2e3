package tcpfsm

import (
	"encoding/binary"
	"strconv"
)

// Option kinds (RFC 9293 section 3.2, RFC 7323, RFC 2018).
const (
	OptKindEOL           = 0 // end of option list
	OptKindNOP           = 1 // no-operation
	OptKindMSS           = 2 // maximum segment size, length 4
	OptKindWindowScale   = 3 // window scale shift, length 3 (RFC 7323 section 2)
	OptKindSACKPermitted = 4 // SACK permitted, length 2 (RFC 2018 section 2)
	OptKindSACK          = 5 // SACK blocks, length 2+8n (RFC 2018 section 3)
	OptKindTimestamps    = 8 // TSval and TSecr, length 10 (RFC 7323 section 3)
)

// OptionSet records which options a segment carries.
type OptionSet uint8

// The options that Options can hold.
const (
	OptMSS           OptionSet = 1 << iota // Options.MSS is set
	OptWindowScale                         // Options.WindowScale is set
	OptSACKPermitted                       // SACK-permitted (no value)
	OptTimestamps                          // Options.TSVal and Options.TSEcr are set
)

// MaxSACKBlocks is the most SACK blocks one option can carry (RFC 2018 section 3).
const MaxSACKBlocks = 4

// SACKBlock is one block of a SACK option: the peer holds the octets
// Left =< seq < Right (RFC 2018 section 3).
type SACKBlock struct {
	Left, Right Seq
}

// Options holds the TCP options this library understands, as values: no
// pointers, no allocation. Present says which are set; SACK blocks are
// counted by NumSACK.
type Options struct {
	Present     OptionSet
	WindowScale uint8  // shift count as carried (RFC 7323 caps its use at 14)
	MSS         uint16 // maximum segment size (RFC 9293 section 3.7.1)
	TSVal       uint32 // timestamp value (RFC 7323 section 3.2)
	TSEcr       uint32 // timestamp echo reply
	NumSACK     uint8  // number of valid entries in SACK
	SACK        [MaxSACKBlocks]SACKBlock
}

// Has reports whether all options in want are present.
func (o *Options) Has(want OptionSet) bool { return o.Present&want == want }

// SACKBlocks returns the SACK blocks carried, as a slice of o.SACK.
func (o *Options) SACKBlocks() []SACKBlock {
	n := min(int(o.NumSACK), MaxSACKBlocks)
	return o.SACK[:n]
}

// AddSACK appends a SACK block if there is room and reports whether it did.
func (o *Options) AddSACK(b SACKBlock) bool {
	if o.NumSACK >= MaxSACKBlocks {
		return false
	}
	o.SACK[o.NumSACK] = b
	o.NumSACK++
	return true
}

func optionName(kind uint8) string {
	switch kind {
	case OptKindEOL:
		return "eol"
	case OptKindNOP:
		return "nop"
	case OptKindMSS:
		return "mss"
	case OptKindWindowScale:
		return "wscale"
	case OptKindSACKPermitted:
		return "sackOK"
	case OptKindSACK:
		return "sack"
	case OptKindTimestamps:
		return "TS"
	}
	return ""
}

// parse reads the option bytes b (header offsets 20 and up) into o.
func (o *Options) parse(b []byte) error {
	// The two layouts nearly every segment carries (Linux's, FreeBSD's,
	// tcpfsm's own) are read directly; parseAny reads the same bytes to
	// the same result, and anything else.
	switch {
	case len(b) == 12 && b[0] == OptKindNOP && b[1] == OptKindNOP && b[2] == OptKindTimestamps && b[3] == 10:
		// NOP, NOP, timestamps: every segment once timestamps are agreed.
		o.Present |= OptTimestamps
		o.TSVal = binary.BigEndian.Uint32(b[4:])
		o.TSEcr = binary.BigEndian.Uint32(b[8:])
		return nil
	case len(b) == 20 && b[0] == OptKindMSS && b[1] == 4 && b[4] == OptKindSACKPermitted && b[5] == 2 &&
		b[6] == OptKindTimestamps && b[7] == 10 && b[16] == OptKindNOP && b[17] == OptKindWindowScale && b[18] == 3:
		// MSS, SACK-permitted, timestamps, NOP, window scale: Linux's SYN.
		o.Present |= OptMSS | OptSACKPermitted | OptTimestamps | OptWindowScale
		o.MSS = binary.BigEndian.Uint16(b[2:])
		o.TSVal = binary.BigEndian.Uint32(b[8:])
		o.TSEcr = binary.BigEndian.Uint32(b[12:])
		o.WindowScale = b[19]
		return nil
	}
	return o.parseAny(b)
}

// parseAny reads options in any order and layout (RFC 9293 section 3.2).
func (o *Options) parseAny(b []byte) error {
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case OptKindEOL:
			return nil
		case OptKindNOP:
			i++
			continue
		}
		off := HeaderLen + i
		if i+1 >= len(b) {
			return &ParseError{Err: ErrOption, Offset: off, Kind: kind, Limit: HeaderLen + len(b), reason: reasonOptNoLength}
		}
		l := int(b[i+1])
		if l < 2 {
			return &ParseError{Err: ErrOption, Offset: off, Kind: kind, Value: l, Limit: 2, reason: reasonOptLenLow}
		}
		if i+l > len(b) {
			return &ParseError{Err: ErrOption, Offset: off, Kind: kind, Value: l, Limit: HeaderLen + len(b), reason: reasonOptPast}
		}
		v := b[i+2 : i+l]
		want := 0
		switch kind {
		case OptKindMSS:
			want = 4
			if l == want {
				o.Present |= OptMSS
				o.MSS = binary.BigEndian.Uint16(v)
			}
		case OptKindWindowScale:
			want = 3
			if l == want {
				o.Present |= OptWindowScale
				o.WindowScale = v[0]
			}
		case OptKindSACKPermitted:
			want = 2
			if l == want {
				o.Present |= OptSACKPermitted
			}
		case OptKindTimestamps:
			want = 10
			if l == want {
				o.Present |= OptTimestamps
				o.TSVal = binary.BigEndian.Uint32(v)
				o.TSEcr = binary.BigEndian.Uint32(v[4:])
			}
		case OptKindSACK:
			n := (l - 2) / 8
			if (l-2)%8 != 0 || n < 1 || n > MaxSACKBlocks {
				return &ParseError{Err: ErrOption, Offset: off, Kind: kind, Value: l, reason: reasonSACKLen}
			}
			o.NumSACK = uint8(n)
			for j := range n {
				o.SACK[j] = SACKBlock{
					Left:  Seq(binary.BigEndian.Uint32(v[8*j:])),
					Right: Seq(binary.BigEndian.Uint32(v[8*j+4:])),
				}
			}
		}
		if want != 0 && l != want {
			return &ParseError{Err: ErrOption, Offset: off, Kind: kind, Value: l, Limit: want, reason: reasonOptWrongLen}
		}
		i += l
	}
	return nil
}

// hasDSACK reports whether the first SACK block is a D-SACK block, which
// reports a duplicate segment rather than data held (RFC 2883 section
// 4): it lies below ack, the segment's cumulative ACK, or inside the
// second block.
func (o *Options) hasDSACK(ack Seq) bool {
	if o.NumSACK == 0 {
		return false
	}
	d := o.SACK[0]
	if d.Left.LessThan(ack) {
		return true
	}
	return o.NumSACK > 1 && o.SACK[1].Left.LessThanEq(d.Left) && d.Right.LessThanEq(o.SACK[1].Right)
}

// sackFit returns how many SACK blocks fit in the option space left after
// the other options.
func (o *Options) sackFit() int {
	return min(int(o.NumSACK), o.Present.sackRoom())
}

// sackRoom is how many SACK blocks fit beside the options in p.
func (p OptionSet) sackRoom() int {
	return max(0, min(MaxSACKBlocks, (MaxOptionsLen-p.baseLen()-4)/8))
}

// baseLen is the encoded length of everything but SACK blocks.
func (o *Options) baseLen() int { return o.Present.baseLen() }

// baseLen is the encoded length of the options in p, SACK blocks aside.
func (p OptionSet) baseLen() int {
	n := 0
	if p&OptMSS != 0 {
		n += 4
	}
	if p&OptTimestamps != 0 {
		n += 12 // SACK-permitted or NOP NOP, then TS
	} else if p&OptSACKPermitted != 0 {
		n += 4 // NOP NOP SACK-permitted
	}
	if p&OptWindowScale != 0 {
		n += 4 // NOP WS
	}
	return n
}

// encodedLen is the number of option bytes appendTo writes: always a
// multiple of 4 and at most MaxOptionsLen.
func (o *Options) encodedLen() int { return o.Present.encodedLen(int(o.NumSACK)) }

// encodedLen is the number of option bytes appendOptions writes for the
// options in p and nsack SACK blocks.
func (p OptionSet) encodedLen(nsack int) int {
	n := p.baseLen()
	if k := min(nsack, p.sackRoom()); k > 0 {
		n += 4 + 8*k
	}
	return n
}

// appendTo writes the options (appendOptions).
func (o *Options) appendTo(b []byte) []byte {
	return appendOptions(b, o.Present, o.MSS, o.WindowScale, o.TSVal, o.TSEcr, o.SACK[:min(int(o.NumSACK), MaxSACKBlocks)])
}

// appendOptions writes the options in p, with these values, in Linux's
// layout (tcp_options_write): MSS; SACK-permitted sharing a word pair with
// timestamps (or NOP NOP before it); NOP and window scale; NOP NOP and as
// many of the SACK blocks as fit. Every option is 32-bit aligned, so no
// padding is needed.
func appendOptions(b []byte, p OptionSet, mss uint16, wscale uint8, tsVal, tsEcr uint32, sack []SACKBlock) []byte {
	if p&OptMSS != 0 {
		b = append(b, OptKindMSS, 4, byte(mss>>8), byte(mss))
	}
	if p&OptTimestamps != 0 {
		if p&OptSACKPermitted != 0 {
			b = append(b, OptKindSACKPermitted, 2)
		} else {
			b = append(b, OptKindNOP, OptKindNOP)
		}
		b = append(b, OptKindTimestamps, 10,
			byte(tsVal>>24), byte(tsVal>>16), byte(tsVal>>8), byte(tsVal),
			byte(tsEcr>>24), byte(tsEcr>>16), byte(tsEcr>>8), byte(tsEcr))
	} else if p&OptSACKPermitted != 0 {
		b = append(b, OptKindNOP, OptKindNOP, OptKindSACKPermitted, 2)
	}
	if p&OptWindowScale != 0 {
		b = append(b, OptKindNOP, OptKindWindowScale, 3, wscale)
	}
	if len(sack) > 0 {
		if k := min(len(sack), p.sackRoom()); k > 0 {
			b = append(b, OptKindNOP, OptKindNOP, OptKindSACK, byte(2+8*k))
			for _, s := range sack[:k] {
				b = append(b,
					byte(s.Left>>24), byte(s.Left>>16), byte(s.Left>>8), byte(s.Left),
					byte(s.Right>>24), byte(s.Right>>16), byte(s.Right>>8), byte(s.Right))
			}
		}
	}
	return b
}

// appendText writes ", options [...]" as tcpdump prints it, walking the
// bytes appendTo would write; nothing when there are no options.
func (o *Options) appendText(b []byte) []byte {
	var buf [MaxOptionsLen]byte
	ob := o.appendTo(buf[:0])
	if len(ob) == 0 {
		return b
	}
	b = append(b, ", options ["...)
	for i := 0; i < len(ob); {
		if i > 0 {
			b = append(b, ',')
		}
		kind := ob[i]
		if kind == OptKindNOP || kind == OptKindEOL {
			b = append(b, optionName(kind)...)
			i++
			continue
		}
		l := int(ob[i+1])
		v := ob[i+2 : i+l]
		switch kind {
		case OptKindMSS:
			b = append(b, "mss "...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(v)), 10)
		case OptKindWindowScale:
			b = append(b, "wscale "...)
			b = strconv.AppendUint(b, uint64(v[0]), 10)
		case OptKindSACKPermitted:
			b = append(b, "sackOK"...)
		case OptKindTimestamps:
			b = append(b, "TS val "...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(v)), 10)
			b = append(b, " ecr "...)
			b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(v[4:])), 10)
		case OptKindSACK:
			b = append(b, "sack "...)
			b = strconv.AppendUint(b, uint64(len(v)/8), 10)
			b = append(b, ' ')
			for j := 0; j+8 <= len(v); j += 8 {
				b = append(b, '{')
				b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(v[j:])), 10)
				b = append(b, ':')
				b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(v[j+4:])), 10)
				b = append(b, '}')
			}
		}
		i += l
	}
	return append(b, ']')
}
