//go:build linux

package tun

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
)

// TestBlindAttacksOnTheKernelConnection plays the off-path attacker of
// RFC 5961 against a live connection between tcpfsm and the kernel's
// TCP: knowing addresses and ports but not sequence numbers, it sends
// RSTs, SYNs and data segments with random sequence and acknowledgment
// numbers to the kernel (through the TUN device, as if from tcpfsm) and
// to tcpfsm (through a raw socket in the namespace, as if from the
// kernel) while 4 MiB are echoed. Every attempt must fail on both sides.
func TestBlindAttacksOnTheKernelConnection(t *testing.T) {
	if !inNetns(t) {
		return
	}
	h, d := setupDevice(t, 0)
	ln, err := net.Listen("tcp", "10.7.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoServer(ln)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.Dial(ctx, ourAddr, netip.AddrPortFrom(kernelAddr, port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.Endpoint().LocalAddr()
	raw, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket in the namespace: %v", err)
	}
	defer syscall.Close(raw)

	data := payload(4 << 20)
	result := make(chan error, 1)
	go func() {
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if err == nil {
			err = <-errc
		}
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("the echoed stream differs: an injected segment got in")
		}
		result <- err
	}()

	rng := rand.New(rand.NewPCG(31, 32))
	kinds := []struct {
		name  string
		flags tcpfsm.Flags
		data  int
	}{{"RST", tcpfsm.FlagRST, 0}, {"SYN", tcpfsm.FlagSYN, 0}, {"data", tcpfsm.FlagACK | tcpfsm.FlagPSH, 20}}
	forge := func(flags tcpfsm.Flags, n int, sport, dport uint16, src, dst netip.Addr) []byte {
		s := tcpfsm.Segment{SrcPort: sport, DstPort: dport, Seq: tcpfsm.Seq(rng.Uint32()),
			Ack: tcpfsm.Seq(rng.Uint32()), Flags: flags, Window: 65535}
		if n > 0 {
			s.Payload = bytes.Repeat([]byte{0xEE}, n)
		}
		b := s.AppendTo(nil)
		_ = tcpfsm.SetChecksum(b, src, dst)
		return b
	}
	toUs := &syscall.SockaddrInet4{Addr: ourAddr.As4()}
	attempts := map[string]int{}
	var ours error
loop:
	for i := 0; ; i++ {
		select {
		case ours = <-result:
			break loop
		default:
		}
		k := kinds[i%len(kinds)]
		// To the kernel, as if from tcpfsm.
		if err := d.WriteSegment(forge(k.flags, k.data, local.Port(), port, ourAddr, kernelAddr), ourAddr, kernelAddr); err != nil {
			t.Fatal(err)
		}
		// To tcpfsm, as if from the kernel: a whole IPv4 packet (the
		// kernel fills in the header checksum for IPPROTO_RAW).
		tcp := forge(k.flags, k.data, port, local.Port(), kernelAddr, ourAddr)
		ip := make([]byte, 20, 20+len(tcp))
		ip[0], ip[8], ip[9] = 0x45, 64, tcpfsm.ProtocolTCP
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		src, dst := kernelAddr.As4(), ourAddr.As4()
		copy(ip[12:], src[:])
		copy(ip[16:], dst[:])
		if err := syscall.Sendto(raw, append(ip, tcp...), 0, toUs); err != nil {
			t.Fatalf("raw send: %v", err)
		}
		attempts[k.name]++
		if i%64 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("blind attempts toward each side: %v; successes: none unless reported below", attempts)
	if ours != nil {
		t.Fatalf("an attack succeeded: %v (tcpfsm's error: %v)", ours, c.Endpoint().Err())
	}
	if attempts["RST"] < 100 {
		t.Fatalf("only %v attempts were made", attempts)
	}
	st := c.Endpoint().Stats()
	t.Logf("tcpfsm endpoint: %d segments in, drops %v", st.SegmentsIn, st.Drops)
	dropped := uint32(0)
	for _, n := range st.Drops {
		dropped += n
	}
	if dropped == 0 {
		t.Fatal("tcpfsm dropped nothing: the forged segments never reached it")
	}
}
