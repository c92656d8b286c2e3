package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm"
)

func TestEchoBetweenTwoHosts(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	la, lb := Pipe(a, b)
	big := tcpfsm.StackConfig{Endpoint: tcpfsm.EndpointConfig{SendBuffer: 1 << 20, Config: tcpfsm.Config{RecvBuffer: 1 << 20}}}
	ha, err := New(la, big)
	require.NoError(t, err)
	hb, err := New(lb, big)
	require.NoError(t, err)
	defer ha.Close()
	defer hb.Close()
	ln, err := hb.Listen(80, nil)
	require.NoError(t, err)
	var srvGot bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, io.TeeReader(c, &srvGot))
		_ = c.(*Conn).CloseWrite()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := ha.Dial(ctx, a, netip.AddrPortFrom(b, 80), nil)
	require.NoError(t, err)
	data := make([]byte, 10<<20)
	for i := 0; i+4 <= len(data); i += 4 { // each word holds its own offset
		binary.BigEndian.PutUint32(data[i:], uint32(i))
	}
	go func() {
		_, _ = c.Write(data)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	<-done
	sg := srvGot.Bytes()
	j := 0
	for j < len(sg) && j < len(data) && sg[j] == data[j] {
		j++
	}
	if !bytes.Equal(data, sg) {
		w := j &^ 3
		t.Fatalf("server read %d, first difference at %d: the bytes there came from offset %d; %d bytes later from %d",
			len(sg), j, binary.BigEndian.Uint32(sg[w:]), 4096, binary.BigEndian.Uint32(sg[w+4096:]))
	}
	k := 0
	for k < len(got) && k < len(data) && got[k] == data[k] {
		k++
	}
	require.True(t, bytes.Equal(data, got), "%d of %d bytes, first difference at %d", len(got), len(data), k)
}
