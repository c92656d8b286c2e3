package tcpfsm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// genOptions draws options that the encoder can hold in 40 bytes.
func genOptions(t *rapid.T) Options {
	var o Options
	o.Present = OptionSet(rapid.Uint8Range(0, 15).Draw(t, "present"))
	if o.Has(OptMSS) {
		o.MSS = rapid.Uint16().Draw(t, "mss")
	}
	if o.Has(OptWindowScale) {
		o.WindowScale = rapid.Uint8().Draw(t, "wscale")
	}
	if o.Has(OptTimestamps) {
		o.TSVal = rapid.Uint32().Draw(t, "tsval")
		o.TSEcr = rapid.Uint32().Draw(t, "tsecr")
	}
	room := (MaxOptionsLen - o.baseLen() - 4) / 8
	if room > 0 {
		n := rapid.IntRange(0, min(room, MaxSACKBlocks)).Draw(t, "nsack")
		for i := range n {
			o.AddSACK(SACKBlock{
				Left:  Seq(rapid.Uint32().Draw(t, "l")),
				Right: Seq(rapid.Uint32().Draw(t, "r")),
			})
			_ = i
		}
	}
	return o
}

func genSegment(t *rapid.T) Segment {
	s := Segment{
		SrcPort:  rapid.Uint16().Draw(t, "sport"),
		DstPort:  rapid.Uint16().Draw(t, "dport"),
		Seq:      Seq(rapid.Uint32().Draw(t, "seq")),
		Ack:      Seq(rapid.Uint32().Draw(t, "ack")),
		Flags:    Flags(rapid.Uint8().Draw(t, "flags")),
		Window:   rapid.Uint16().Draw(t, "win"),
		Checksum: rapid.Uint16().Draw(t, "csum"),
		Urgent:   rapid.Uint16().Draw(t, "urg"),
		Options:  genOptions(t),
	}
	if p := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "payload"); len(p) > 0 {
		s.Payload = p
	}
	return s
}

func TestParseOfAppendIsIdentity(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSegment(t)
		b := s.AppendTo(nil)
		require.Equal(t, s.HeaderLen()+len(s.Payload), len(b))
		require.Zero(t, s.HeaderLen()%4, "options padded to 32 bits (MUST-68/69)")
		require.LessOrEqual(t, s.HeaderLen(), HeaderLen+MaxOptionsLen)
		got, err := ParseSegment(b)
		require.NoError(t, err)
		require.Equal(t, s, got)
		// And encoding is a pure function of the value.
		require.Equal(t, b, got.AppendTo(nil))
	})
}

func TestAppendDropsSACKBlocksThatDoNotFit(t *testing.T) {
	s := Segment{Flags: FlagACK, Options: Options{Present: OptTimestamps, TSVal: 1, TSEcr: 2}}
	for i := range 4 {
		s.Options.AddSACK(SACKBlock{Seq(i * 10), Seq(i*10 + 5)})
	}
	require.False(t, s.Options.AddSACK(SACKBlock{}), "a fifth block has no room")
	b := s.AppendTo(nil)
	require.Equal(t, HeaderLen+MaxOptionsLen, len(b), "12 TS + 4 + 3*8 SACK = 40")
	got, err := ParseSegment(b)
	require.NoError(t, err)
	require.Equal(t, uint8(3), got.Options.NumSACK, "with timestamps, at most 3 blocks (RFC 2018 section 3)")
	require.Equal(t, s.Options.SACK[:3], got.Options.SACKBlocks())
}

func TestSegmentStringMatchesTcpdump(t *testing.T) {
	// The worked exercise's SYN-ACK, in the form the seed article gives.
	s := Segment{Seq: 200, Ack: 101, Flags: FlagSYN | FlagACK, Window: 100,
		Options: Options{Present: OptMSS, MSS: 100}}
	require.Equal(t, "Flags [S.], seq 200, ack 101, win 100, options [mss 100], length 0", s.String())

	d := Segment{Seq: 101, Ack: 201, Flags: FlagACK | FlagPSH | FlagURG, Window: 100, Urgent: 7,
		Payload: make([]byte, 100)}
	d.Options.AddSACK(SACKBlock{1, 2})
	require.Equal(t, "Flags [P.U], seq 101:201, ack 201, win 100, urg 7, options [nop,nop,sack 1 {1:2}], length 100", d.String())

	require.Equal(t, "Flags [none], win 0, length 0", Segment{}.String())
	require.Equal(t, "FSRP.UEW", Flags(0xff).String())
}

func TestFlagsHas(t *testing.T) {
	f := FlagSYN | FlagACK
	require.True(t, f.Has(FlagSYN))
	require.True(t, f.Has(FlagSYN|FlagACK))
	require.False(t, f.Has(FlagSYN|FlagFIN))
	require.True(t, f.HasAny(FlagSYN|FlagFIN))
	require.False(t, f.HasAny(FlagRST|FlagFIN))
}

// hdr returns a 20-byte header with the given data offset in words, and
// option bytes appended (the data offset is not adjusted).
func hdr(doff byte, opts ...byte) []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(opts))
	b[12] = doff << 4
	b[13] = byte(FlagSYN)
	return append(b, opts...)
}

func TestParseOptionsAnyAlignment(t *testing.T) {
	// MUST-4 and MUST-64: NOP NOP MSS(1400) EOL, MSS at an odd offset after
	// one NOP, and parsing stops at EOL even if bytes follow.
	s, err := ParseSegment(hdr(7, 1, 1, 2, 4, 0x05, 0x78, 0, 0xff))
	require.NoError(t, err)
	require.Equal(t, uint16(1400), s.Options.MSS)
	require.Equal(t, OptMSS, s.Options.Present)

	s, err = ParseSegment(hdr(8, 1, 2, 4, 0x05, 0x78, 1, 3, 3, 7, 0, 0, 0))
	require.NoError(t, err)
	require.Equal(t, uint16(1400), s.Options.MSS, "MSS at offset 21")
	require.Equal(t, uint8(7), s.Options.WindowScale, "window scale at offset 26")
}

func TestParseSkipsUnknownOptions(t *testing.T) {
	// MUST-6: kind 99 with length 6 is skipped, the MSS after it honoured.
	s, err := ParseSegment(hdr(8, 99, 6, 1, 2, 3, 4, 2, 4, 0x02, 0x18, 0, 0))
	require.NoError(t, err)
	require.Equal(t, OptMSS, s.Options.Present)
	require.Equal(t, uint16(536), s.Options.MSS)
}

func TestParseRejectsMalformed(t *testing.T) {
	// MUST-7 and RFC 9293 section 3.1 (data offset): each case names what
	// and where.
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrTruncated, "tcpfsm: parse segment: segment shorter than the 20-byte TCP header at offset 0: buffer is 0 bytes"},
		{"19 bytes", make([]byte, 19), ErrTruncated, "at offset 19: buffer is 19 bytes"},
		{"doff 4", hdr(4), ErrDataOffset, "bad data offset at offset 12: data offset 4 words is below 5"},
		{"doff past buffer", hdr(6), ErrDataOffset, "data offset 6 words (24 bytes) runs past the 20-byte buffer"},
		{"option length 0", hdr(6, 2, 0, 0, 0), ErrOption, "kind 2 (mss) at offset 20: length 0 is below 2"},
		{"option length 1", hdr(6, 1, 99, 1, 0), ErrOption, "kind 99 at offset 21: length 1 is below 2"},
		{"option past header", hdr(6, 1, 8, 10, 0), ErrOption, "kind 8 (TS) at offset 21: length 10 runs past the header end at offset 24"},
		{"no length byte", hdr(6, 1, 1, 1, 3), ErrOption, "kind 3 (wscale) at offset 23: no length byte before the header ends at offset 24"},
		{"mss wrong length", hdr(7, 2, 6, 0, 0, 0, 0, 0, 0), ErrOption, "kind 2 (mss) at offset 20: length 6, want 4"},
		{"sack bad length", hdr(8, 5, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrOption, "kind 5 (sack) at offset 20: length 12 is not 2 plus 8 per block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSegment(tc.b)
			require.Error(t, err)
			require.True(t, errors.Is(err, tc.err), "%v is %v", err, tc.err)
			var pe *ParseError
			require.True(t, errors.As(err, &pe))
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestParseAndAppendAllocateNothing(t *testing.T) {
	s := Segment{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: FlagACK, Window: 5,
		Options: Options{Present: OptTimestamps, TSVal: 1, TSEcr: 2}, Payload: make([]byte, 1460)}
	s.Options.AddSACK(SACKBlock{10, 20})
	buf := make([]byte, 0, 2048)
	wire := s.AppendTo(nil)
	var sink Segment
	require.Zero(t, testing.AllocsPerRun(100, func() {
		var err error
		sink, err = ParseSegment(wire)
		if err != nil {
			panic(err)
		}
	}), "ParseSegment")
	require.Zero(t, testing.AllocsPerRun(100, func() {
		buf = sink.AppendTo(buf[:0])
	}), "AppendTo")
	text := make([]byte, 0, 256)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		text, _ = sink.AppendText(text[:0])
	}), "AppendText")
}

func BenchmarkParse(b *testing.B) {
	s := Segment{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: FlagACK, Window: 5,
		Options: Options{Present: OptTimestamps, TSVal: 1, TSEcr: 2}, Payload: make([]byte, 1460)}
	wire := s.AppendTo(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := ParseSegment(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	s := Segment{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: FlagACK, Window: 5,
		Options: Options{Present: OptTimestamps, TSVal: 1, TSEcr: 2}}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf = s.AppendTo(buf[:0])
	}
}

func FuzzParseSegment(f *testing.F) {
	for _, c := range readPcapTCP(f, "testdata/linux-ipv4.pcap") {
		f.Add(c.tcp)
	}
	f.Add(hdr(7, 1, 1, 2, 4, 0x05, 0x78, 0, 0xff))
	f.Add(hdr(6, 2, 0, 0, 0))
	f.Add(hdr(8, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSegment(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Error() == "" {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if s.Len() < uint32(len(s.Payload)) {
			t.Fatalf("SEG.LEN %d below payload %d", s.Len(), len(s.Payload))
		}
		_ = s.String()
		enc := s.AppendTo(nil)
		s2, err := ParseSegment(enc)
		if err != nil {
			t.Fatalf("re-parse of an accepted segment failed: %v", err)
		}
		// SACK blocks beyond the option space are dropped by AppendTo; the
		// rest must be equal.
		s.Options.NumSACK = uint8(s.Options.sackFit())
		if s.Options.NumSACK < MaxSACKBlocks {
			clear(s.Options.SACK[s.Options.NumSACK:])
		}
		require.Equal(t, s, s2)
	})
}
