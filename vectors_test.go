package tcpfsm

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// capturedSegment is one TCP segment read from a pcap file.
type capturedSegment struct {
	src, dst netip.Addr
	tcp      []byte
}

// readPcapTCP reads a classic pcap file with an Ethernet link type and
// returns the TCP segments of its IPv4 and IPv6 packets (no IPv6 extension
// headers). It is test code: the trace package writes pcap for users.
func readPcapTCP(t testing.TB, path string) []capturedSegment {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(data), 24)
	require.Equal(t, uint32(0xa1b2c3d4), binary.LittleEndian.Uint32(data), "little-endian microsecond pcap")
	require.Equal(t, uint32(1), binary.LittleEndian.Uint32(data[20:]), "link type Ethernet")
	var out []capturedSegment
	for p := data[24:]; len(p) > 0; {
		require.GreaterOrEqual(t, len(p), 16)
		incl := int(binary.LittleEndian.Uint32(p[8:]))
		frame := p[16 : 16+incl]
		p = p[16+incl:]
		etherType := binary.BigEndian.Uint16(frame[12:])
		ip := frame[14:]
		switch etherType {
		case 0x0800:
			ihl := int(ip[0]&0x0f) * 4
			total := int(binary.BigEndian.Uint16(ip[2:]))
			require.Equal(t, byte(ProtocolTCP), ip[9])
			out = append(out, capturedSegment{
				src: netip.AddrFrom4([4]byte(ip[12:16])),
				dst: netip.AddrFrom4([4]byte(ip[16:20])),
				tcp: ip[ihl:total],
			})
		case 0x86dd:
			plen := int(binary.BigEndian.Uint16(ip[4:]))
			require.Equal(t, byte(ProtocolTCP), ip[6])
			out = append(out, capturedSegment{
				src: netip.AddrFrom16([16]byte(ip[8:24])),
				dst: netip.AddrFrom16([16]byte(ip[24:40])),
				tcp: ip[40 : 40+plen],
			})
		default:
			t.Fatalf("unexpected ethertype %#x", etherType)
		}
	}
	return out
}

// The lines tcpdump -nn -S prints for the vectors in testdata (copied from
// ../shared/vectors), with the timestamp and "IP " prefix removed. Each
// segment must print exactly the same.
var linuxIPv4Want = []string{
	"192.0.2.1.51798 > 192.0.2.2.5001: Flags [S], seq 2001178246, win 64240, options [mss 1460,sackOK,TS val 363112192 ecr 0,nop,wscale 10], length 0",
	"192.0.2.2.5001 > 192.0.2.1.51798: Flags [S.], seq 1020702686, ack 2001178247, win 65160, options [mss 1460,sackOK,TS val 403899863 ecr 363112192,nop,wscale 10], length 0",
	"192.0.2.1.51798 > 192.0.2.2.5001: Flags [.], ack 1020702687, win 63, options [nop,nop,TS val 363112192 ecr 403899863], length 0",
	"192.0.2.1.51798 > 192.0.2.2.5001: Flags [P.], seq 2001178247:2001178559, ack 1020702687, win 63, options [nop,nop,TS val 363112192 ecr 403899863], length 312",
	"192.0.2.2.5001 > 192.0.2.1.51798: Flags [.], ack 2001178559, win 64, options [nop,nop,TS val 403899863 ecr 363112192], length 0",
	"192.0.2.1.51798 > 192.0.2.2.5001: Flags [F.], seq 2001178559, ack 1020702687, win 63, options [nop,nop,TS val 363112192 ecr 403899863], length 0",
	"192.0.2.2.5001 > 192.0.2.1.51798: Flags [F.], seq 1020702687, ack 2001178560, win 64, options [nop,nop,TS val 403899863 ecr 363112192], length 0",
	"192.0.2.1.51798 > 192.0.2.2.5001: Flags [.], ack 1020702688, win 63, options [nop,nop,TS val 363112192 ecr 403899863], length 0",
	"192.0.2.1.52084 > 192.0.2.2.5003: Flags [S], seq 2727195495, win 64240, options [mss 1460,sackOK,TS val 155938126 ecr 0,nop,wscale 10], length 0",
	"192.0.2.2.5003 > 192.0.2.1.52084: Flags [S.], seq 1910727449, ack 2727195496, win 65160, options [mss 1460,sackOK,TS val 461539934 ecr 155938126,nop,wscale 10], length 0",
	"192.0.2.1.52084 > 192.0.2.2.5003: Flags [.], ack 1910727450, win 63, options [nop,nop,TS val 155938126 ecr 461539934], length 0",
	"192.0.2.2.5003 > 192.0.2.1.52084: Flags [P.], seq 1910727450:1910727453, ack 2727195496, win 64, options [nop,nop,TS val 461539934 ecr 155938126], length 3",
	"192.0.2.1.52084 > 192.0.2.2.5003: Flags [.], ack 1910727453, win 63, options [nop,nop,TS val 155938126 ecr 461539934], length 0",
	"192.0.2.2.5003 > 192.0.2.1.52084: Flags [F.], seq 1910727453, ack 2727195496, win 64, options [nop,nop,TS val 461539934 ecr 155938126], length 0",
	"192.0.2.1.52084 > 192.0.2.2.5003: Flags [.], ack 1910727454, win 63, options [nop,nop,TS val 155938169 ecr 461539934], length 0",
	"192.0.2.1.52084 > 192.0.2.2.5003: Flags [P.], seq 2727195496:2727195808, ack 1910727454, win 63, options [nop,nop,TS val 155938326 ecr 461539934], length 312",
	"192.0.2.2.5003 > 192.0.2.1.52084: Flags [R], seq 1910727454, win 0, length 0",
	"192.0.2.1.57714 > 192.0.2.2.5009: Flags [S], seq 1833482416, win 64240, options [mss 1460,sackOK,TS val 3017741740 ecr 0,nop,wscale 10], length 0",
	"192.0.2.2.5009 > 192.0.2.1.57714: Flags [R.], seq 0, ack 1833482417, win 0, length 0",
}

var linuxIPv6Want = []string{
	"2001:db8::1.53302 > 2001:db8::2.5002: Flags [S], seq 4033219387, win 64800, options [mss 1440,sackOK,TS val 2093997587 ecr 0,nop,wscale 10], length 0",
	"2001:db8::2.5002 > 2001:db8::1.53302: Flags [S.], seq 2925114836, ack 4033219388, win 64260, options [mss 1440,sackOK,TS val 3158757645 ecr 2093997587,nop,wscale 10], length 0",
	"2001:db8::1.53302 > 2001:db8::2.5002: Flags [.], ack 2925114837, win 64, options [nop,nop,TS val 2093997587 ecr 3158757645], length 0",
	"2001:db8::1.53302 > 2001:db8::2.5002: Flags [P.], seq 4033219388:4033219404, ack 2925114837, win 64, options [nop,nop,TS val 2093997587 ecr 3158757645], length 16",
	"2001:db8::2.5002 > 2001:db8::1.53302: Flags [.], ack 4033219404, win 63, options [nop,nop,TS val 3158757645 ecr 2093997587], length 0",
	"2001:db8::1.53302 > 2001:db8::2.5002: Flags [F.], seq 4033219404, ack 2925114837, win 64, options [nop,nop,TS val 2093997588 ecr 3158757645], length 0",
	"2001:db8::2.5002 > 2001:db8::1.53302: Flags [F.], seq 2925114837, ack 4033219405, win 63, options [nop,nop,TS val 3158757646 ecr 2093997588], length 0",
	"2001:db8::1.53302 > 2001:db8::2.5002: Flags [.], ack 2925114838, win 64, options [nop,nop,TS val 2093997588 ecr 3158757646], length 0",
}

// linuxChecksums are the checksum fields tcpdump -vv reports as correct.
var linuxIPv4Checksums = []uint16{0x28b6, 0x1a6e, 0x4787, 0xeeef, 0x464e, 0x464e, 0x464c, 0x464d,
	0x1d7a, 0x9ef3, 0xcc0c, 0x5295, 0xcc09, 0xcc07, 0xcbdd, 0x72a9, 0x77db, 0xe47f, 0x10cf}
var linuxIPv6Checksums = []uint16{0xb535, 0xc5bd, 0xef3d, 0x0f61, 0xef2e, 0xef2b, 0xef2a, 0xef29}

func TestLinuxVectors(t *testing.T) {
	for _, tc := range []struct {
		file      string
		want      []string
		checksums []uint16
	}{
		{"testdata/linux-ipv4.pcap", linuxIPv4Want, linuxIPv4Checksums},
		{"testdata/linux-ipv6.pcap", linuxIPv6Want, linuxIPv6Checksums},
	} {
		t.Run(tc.file, func(t *testing.T) {
			segs := readPcapTCP(t, tc.file)
			require.Len(t, segs, len(tc.want))
			for i, c := range segs {
				s, err := ParseSegment(c.tcp)
				require.NoError(t, err, "segment %d", i)
				got := fmt.Sprintf("%s.%d > %s.%d: %s", c.src, s.SrcPort, c.dst, s.DstPort, s)
				require.Equal(t, tc.want[i], got, "segment %d prints as tcpdump does", i)
				require.Equal(t, tc.checksums[i], s.Checksum, "segment %d checksum field", i)
				require.True(t, VerifyChecksum(c.tcp, c.src, c.dst), "segment %d checksum verifies", i)

				// Re-encode: the same bytes, checksum included.
				enc := s.AppendTo(nil)
				require.Equal(t, c.tcp, enc, "segment %d re-encodes to the captured bytes", i)
				// Recompute the checksum from zero: the captured value again.
				require.NoError(t, SetChecksum(enc, c.src, c.dst))
				require.Equal(t, c.tcp, enc, "segment %d recomputed checksum", i)

				// A single flipped bit is caught.
				enc[len(enc)-1] ^= 0x10
				require.False(t, VerifyChecksum(enc, c.src, c.dst), "segment %d corrupted", i)
			}
		})
	}
}

func TestLinuxVectorFields(t *testing.T) {
	segs := readPcapTCP(t, "testdata/linux-ipv4.pcap")
	syn, err := ParseSegment(segs[0].tcp)
	require.NoError(t, err)
	require.Equal(t, uint16(51798), syn.SrcPort)
	require.Equal(t, uint16(5001), syn.DstPort)
	require.Equal(t, Seq(2001178246), syn.Seq)
	require.Equal(t, FlagSYN, syn.Flags)
	require.Equal(t, uint16(64240), syn.Window)
	require.True(t, syn.Options.Has(OptMSS|OptSACKPermitted|OptTimestamps|OptWindowScale))
	require.Equal(t, uint16(1460), syn.Options.MSS)
	require.Equal(t, uint8(10), syn.Options.WindowScale)
	require.Equal(t, uint32(363112192), syn.Options.TSVal)
	require.Equal(t, uint32(0), syn.Options.TSEcr)
	require.Equal(t, uint32(1), syn.Len(), "SYN occupies one sequence number")
	require.Nil(t, syn.Payload)

	data, err := ParseSegment(segs[3].tcp)
	require.NoError(t, err)
	require.Len(t, data.Payload, 312)
	require.Equal(t, uint32(312), data.Len())
	require.Equal(t, FlagPSH|FlagACK, data.Flags)

	fin, err := ParseSegment(segs[5].tcp)
	require.NoError(t, err)
	require.Equal(t, uint32(1), fin.Len(), "FIN occupies one sequence number")
	require.Equal(t, Seq(2001178560), fin.End())

	rst, err := ParseSegment(segs[18].tcp)
	require.NoError(t, err)
	require.Equal(t, FlagRST|FlagACK, rst.Flags)
	require.Equal(t, Seq(0), rst.Seq)
	require.Equal(t, Seq(1833482417), rst.Ack)
}
