package tcpfsm

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// HeaderLen is the length of a TCP header without options (RFC 9293 section 3.1).
const HeaderLen = 20

// MaxOptionsLen is the most option bytes a TCP header can carry: a data
// offset of 15 words less the fixed 20-byte header (RFC 9293 section 3.1).
const MaxOptionsLen = 40

// Flags holds the TCP control bits (RFC 9293 section 3.1, RFC 3168 for ECE
// and CWR). The values are the bits of header byte 13.
type Flags uint8

// The control bits, in their header positions.
const (
	FlagFIN Flags = 1 << iota // FIN: no more data from sender
	FlagSYN                   // SYN: synchronize sequence numbers
	FlagRST                   // RST: reset the connection
	FlagPSH                   // PSH: push function
	FlagACK                   // ACK: acknowledgment field is significant
	FlagURG                   // URG: urgent pointer field is significant
	FlagECE                   // ECE: ECN-Echo (RFC 3168)
	FlagCWR                   // CWR: congestion window reduced (RFC 3168)
)

// Has reports whether every bit of want is set in f.
func (f Flags) Has(want Flags) bool { return f&want == want }

// HasAny reports whether any bit of want is set in f.
func (f Flags) HasAny(want Flags) bool { return f&want != 0 }

// flagLetters lists the flags in the order tcpdump prints them.
var flagLetters = [...]struct {
	f Flags
	c byte
}{
	{FlagFIN, 'F'}, {FlagSYN, 'S'}, {FlagRST, 'R'}, {FlagPSH, 'P'},
	{FlagACK, '.'}, {FlagURG, 'U'}, {FlagECE, 'E'}, {FlagCWR, 'W'},
}

// AppendText appends the flags as tcpdump prints them inside "Flags [...]":
// "S." for SYN+ACK, "FP." for FIN+PSH+ACK, "none" for no flags.
func (f Flags) AppendText(b []byte) ([]byte, error) {
	if f == 0 {
		return append(b, "none"...), nil
	}
	for _, l := range flagLetters {
		if f&l.f != 0 {
			b = append(b, l.c)
		}
	}
	return b, nil
}

// String returns the flags as tcpdump prints them, for example "S.".
func (f Flags) String() string {
	var buf [8]byte
	b, _ := f.AppendText(buf[:0])
	return string(b)
}

// Segment is a parsed TCP segment: the header fields, the options this
// library understands, and the payload (RFC 9293 section 3.1).
//
// A Segment returned by ParseSegment aliases the bytes it was parsed from:
// Payload points into them. Copy the payload before reusing the buffer.
//
// The reserved header bits are ignored on parse and written as zero
// (RFC 9293 section 3.1). Options the library does not know are skipped on
// parse and not re-encoded.
type Segment struct {
	SrcPort  uint16 // source port
	DstPort  uint16 // destination port
	Seq      Seq    // SEG.SEQ: sequence number of the first octet (or of the SYN)
	Ack      Seq    // SEG.ACK: next sequence number the sender expects, if FlagACK is set
	Flags    Flags  // control bits
	Window   uint16 // SEG.WND as carried on the wire, before any window scaling
	Checksum uint16 // checksum field as carried; AppendTo writes it verbatim
	Urgent   uint16 // SEG.UP: urgent pointer, meaningful if FlagURG is set
	Options  Options
	Payload  []byte // segment text; nil when empty
}

// Len returns SEG.LEN, the sequence space the segment occupies: the payload
// length plus one for SYN and one for FIN (RFC 9293 section 3.4).
func (s *Segment) Len() uint32 {
	n := uint32(len(s.Payload))
	if s.Flags&FlagSYN != 0 {
		n++
	}
	if s.Flags&FlagFIN != 0 {
		n++
	}
	return n
}

// End returns SEG.SEQ + SEG.LEN, the sequence number just past the segment.
func (s *Segment) End() Seq { return s.Seq.Add(s.Len()) }

// HeaderLen returns the length of the header AppendTo writes: 20 bytes plus
// the options, padded to a multiple of 4.
func (s *Segment) HeaderLen() int { return HeaderLen + s.Options.encodedLen() }

// Errors that ParseSegment wraps in a *ParseError; test for them with errors.Is.
var (
	// ErrTruncated: the buffer is shorter than the fixed 20-byte header.
	ErrTruncated = errors.New("segment shorter than the 20-byte TCP header")
	// ErrDataOffset: the data offset is below 5 words or past the buffer.
	ErrDataOffset = errors.New("bad data offset")
	// ErrOption: an option's length is 0 or 1, runs past the header, or
	// does not match the length the option's kind requires.
	ErrOption = errors.New("malformed option")
)

// ParseError describes why ParseSegment rejected a buffer: what was wrong
// and at which byte offset from the start of the TCP header.
type ParseError struct {
	Err    error // ErrTruncated, ErrDataOffset or ErrOption
	Offset int   // byte offset from the start of the TCP header
	Kind   uint8 // option kind, for ErrOption
	Value  int   // the offending value: buffer length, data offset in words, or option length
	Limit  int   // the bound Value broke: header end, buffer length, or required option length
	reason parseReason
}

type parseReason uint8

const (
	reasonShort       parseReason = iota // buffer below 20 bytes
	reasonDoffLow                        // data offset below 5
	reasonDoffPast                       // data offset past the buffer
	reasonOptNoLength                    // option kind at the last header byte
	reasonOptLenLow                      // option length 0 or 1
	reasonOptPast                        // option runs past the header
	reasonOptWrongLen                    // known option with the wrong length
	reasonSACKLen                        // SACK option length not 2+8n, n in 1..4
)

// Error returns a message that names the problem and where it is, such as
// "tcpfsm: parse segment: malformed option: kind 2 (mss) at offset 21: length 1 is below 2".
func (e *ParseError) Error() string {
	b := append(make([]byte, 0, 128), "tcpfsm: parse segment: "...)
	b = append(b, e.Err.Error()...)
	if e.Err == ErrOption {
		b = append(b, ": kind "...)
		b = strconv.AppendUint(b, uint64(e.Kind), 10)
		if n := optionName(e.Kind); n != "" {
			b = append(b, " ("...)
			b = append(b, n...)
			b = append(b, ')')
		}
	}
	b = append(b, " at offset "...)
	b = strconv.AppendInt(b, int64(e.Offset), 10)
	b = append(b, ": "...)
	v := strconv.Itoa(e.Value)
	l := strconv.Itoa(e.Limit)
	switch e.reason {
	case reasonShort:
		b = append(b, "buffer is "+v+" bytes"...)
	case reasonDoffLow:
		b = append(b, "data offset "+v+" words is below 5"...)
	case reasonDoffPast:
		b = append(b, "data offset "+v+" words ("+strconv.Itoa(e.Value*4)+" bytes) runs past the "+l+"-byte buffer"...)
	case reasonOptNoLength:
		b = append(b, "no length byte before the header ends at offset "+l...)
	case reasonOptLenLow:
		b = append(b, "length "+v+" is below 2"...)
	case reasonOptPast:
		b = append(b, "length "+v+" runs past the header end at offset "+l...)
	case reasonOptWrongLen:
		b = append(b, "length "+v+", want "+l...)
	case reasonSACKLen:
		b = append(b, "length "+v+" is not 2 plus 8 per block for 1 to 4 blocks"...)
	}
	return string(b)
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *ParseError) Unwrap() error { return e.Err }

// ParseSegment parses a TCP segment (header, options and payload) from b,
// which starts at the TCP header and ends where the IP packet ends
// (RFC 9293 section 3.1). It does not verify the checksum: use
// VerifyChecksum with the IP addresses for that.
//
// The returned Segment aliases b (see Segment). ParseSegment does not
// allocate on success (a rejection allocates its error). It rejects a buffer shorter than 20 bytes, a data
// offset below 5 or past the buffer, and malformed options (RFC 9293
// MUST-7), with a *ParseError that says what and where. Unknown options are
// skipped by their length (MUST-6); parsing stops at EOL (MUST-4).
func ParseSegment(b []byte) (Segment, error) {
	var s Segment
	if len(b) < HeaderLen {
		return s, &ParseError{Err: ErrTruncated, Offset: len(b), Value: len(b), Limit: HeaderLen, reason: reasonShort}
	}
	doff := int(b[12]>>4) * 4
	if doff < HeaderLen {
		return s, &ParseError{Err: ErrDataOffset, Offset: 12, Value: doff / 4, Limit: 5, reason: reasonDoffLow}
	}
	if doff > len(b) {
		return s, &ParseError{Err: ErrDataOffset, Offset: 12, Value: doff / 4, Limit: len(b), reason: reasonDoffPast}
	}
	s.SrcPort = binary.BigEndian.Uint16(b[0:])
	s.DstPort = binary.BigEndian.Uint16(b[2:])
	s.Seq = Seq(binary.BigEndian.Uint32(b[4:]))
	s.Ack = Seq(binary.BigEndian.Uint32(b[8:]))
	s.Flags = Flags(b[13])
	s.Window = binary.BigEndian.Uint16(b[14:])
	s.Checksum = binary.BigEndian.Uint16(b[16:])
	s.Urgent = binary.BigEndian.Uint16(b[18:])
	if doff > HeaderLen {
		if err := s.Options.parse(b[HeaderLen:doff]); err != nil {
			return Segment{}, err
		}
	}
	if len(b) > doff {
		s.Payload = b[doff:]
	}
	return s, nil
}

// AppendTo appends the segment in wire format to b and returns the extended
// buffer: the header with the Checksum field as held in s, the options in
// the layout Linux uses (padded to 32 bits, RFC 9293 MUST-68/69), and the
// payload. It does not allocate when b has room.
//
// To fill in the checksum, call SetChecksum on the appended bytes. SACK
// blocks that do not fit in the 40 option bytes are left out.
func (s *Segment) AppendTo(b []byte) []byte {
	optLen := s.Options.encodedLen()
	b = append(b,
		byte(s.SrcPort>>8), byte(s.SrcPort),
		byte(s.DstPort>>8), byte(s.DstPort),
		byte(s.Seq>>24), byte(s.Seq>>16), byte(s.Seq>>8), byte(s.Seq),
		byte(s.Ack>>24), byte(s.Ack>>16), byte(s.Ack>>8), byte(s.Ack),
		byte((HeaderLen+optLen)/4)<<4, byte(s.Flags),
		byte(s.Window>>8), byte(s.Window),
		byte(s.Checksum>>8), byte(s.Checksum),
		byte(s.Urgent>>8), byte(s.Urgent),
	)
	b = s.Options.appendTo(b)
	return append(b, s.Payload...)
}

// AppendText appends the segment as tcpdump prints it (with -S, absolute
// sequence numbers), for example
// "Flags [S.], seq 200, ack 101, win 100, options [mss 100], length 0".
// As in tcpdump, seq is shown only for segments with data, SYN, FIN or RST
// (as "first:last+1" when there is data) and ack only when FlagACK is set.
// Options are shown in the order AppendTo would encode them.
func (s *Segment) AppendText(b []byte) ([]byte, error) {
	return s.appendText(b, uint32(len(s.Payload))), nil
}

// appendText writes the text form for a segment carrying n payload bytes.
func (s *Segment) appendText(b []byte, n uint32) []byte {
	b = append(b, "Flags ["...)
	b, _ = s.Flags.AppendText(b)
	b = append(b, ']')
	if n > 0 || s.Flags&(FlagSYN|FlagFIN|FlagRST) != 0 {
		b = append(b, ", seq "...)
		b = strconv.AppendUint(b, uint64(s.Seq), 10)
		if n > 0 {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(s.Seq.Add(n)), 10)
		}
	}
	if s.Flags&FlagACK != 0 {
		b = append(b, ", ack "...)
		b = strconv.AppendUint(b, uint64(s.Ack), 10)
	}
	b = append(b, ", win "...)
	b = strconv.AppendUint(b, uint64(s.Window), 10)
	if s.Flags&FlagURG != 0 {
		b = append(b, ", urg "...)
		b = strconv.AppendUint(b, uint64(s.Urgent), 10)
	}
	b = s.Options.appendText(b)
	b = append(b, ", length "...)
	return strconv.AppendUint(b, uint64(n), 10)
}

// String returns the segment as tcpdump prints it; see AppendText.
func (s Segment) String() string {
	var buf [160]byte
	b, _ := s.AppendText(buf[:0])
	return string(b)
}
