//go:build linux

package tun

import (
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/tcpfsm/tcpfsm"
	"github.com/tcpfsm/tcpfsm/interop/internal/peertest"
)

// TestBlindAttacksOnTheKernelConnection plays the off-path attacker of
// RFC 5961 against a live connection between tcpfsm and the kernel's
// TCP: knowing addresses and ports but not sequence numbers, it sends
// RSTs, SYNs and data segments with random sequence and acknowledgment
// numbers to the kernel (through the TUN device, as if from tcpfsm) and
// to tcpfsm (through a raw socket in the namespace, as if from the
// kernel) while 4 MiB are echoed. Every attempt must fail on both sides.
func TestBlindAttacksOnTheKernelConnection(t *testing.T) {
	if !peertest.InNetns(t) {
		return
	}
	h, d := setupDevice(t, 0, tcpfsm.Config{})
	c, port := dialKernelEcho(t, h)
	defer c.Close()
	local := c.Endpoint().LocalAddr()
	raw, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket in the namespace: %v", err)
	}
	defer syscall.Close(raw)

	result := peertest.EchoChecked(c, peertest.Payload(4<<20))
	forger := peertest.NewForger(31)
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
		k := peertest.Attacks[i%len(peertest.Attacks)]
		// To the kernel, as if from tcpfsm.
		if err := d.WriteSegment(forger.Segment(k, ourAddr, local.Port(), kernelAddr, port), ourAddr, kernelAddr); err != nil {
			t.Fatal(err)
		}
		// To tcpfsm, as if from the kernel: a whole IPv4 packet (the
		// kernel fills in the header checksum for IPPROTO_RAW).
		tcp := forger.Segment(k, kernelAddr, port, ourAddr, local.Port())
		ip := make([]byte, 20, 20+len(tcp))
		ip[0], ip[8], ip[9] = 0x45, 64, tcpfsm.ProtocolTCP
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		src, dst := kernelAddr.As4(), ourAddr.As4()
		copy(ip[12:], src[:])
		copy(ip[16:], dst[:])
		if err := syscall.Sendto(raw, append(ip, tcp...), 0, toUs); err != nil {
			t.Fatalf("raw send: %v", err)
		}
		attempts[k.Name]++
		if i%64 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("blind attempts toward each side: %v; successes: none unless reported below", attempts)
	if ours != nil {
		tcb := c.TCB()
		st, _ := tcb.Status()
		t.Fatalf("an attack succeeded: %v (tcpfsm's error: %v); tcpfsm sent %d bytes (SND.NXT-ISS), was acknowledged to %d, received to %d (RCV.NXT-IRS), %v",
			ours, c.Endpoint().Err(), st.SndNxt.Diff(tcb.Iss), st.SndUna.Diff(tcb.Iss), st.RcvNxt.Diff(tcb.Irs), st.State)
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
