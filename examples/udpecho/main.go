// Command udpecho runs an echo server and client that speak TCP over UDP
// (tcpfsm's overudp package), between two processes or in one.
//
//	go run ./examples/udpecho -listen 127.0.0.1:9000            # terminal 1: the server
//	go run ./examples/udpecho -connect 127.0.0.1:9000 hello TCP  # terminal 2: the client
//	go run ./examples/udpecho                                   # both in one process
//
// The client sends its arguments (or a default line), half-closes, and
// prints what comes back: the bytes went through tcpfsm's handshake,
// windows, retransmission and teardown, carried in UDP datagrams.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tcpfsm/tcpfsm/overudp"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

const port = 7 // the TCP port inside the UDP transport

func main() {
	listen := flag.String("listen", "", "run the server on this UDP address")
	connect := flag.String("connect", "", "run the client against this UDP address")
	flag.Parse()
	msg := strings.Join(flag.Args(), " ")
	if msg == "" {
		msg = "hello over tcpfsm, over UDP"
	}
	var err error
	switch {
	case *listen != "":
		err = serve(*listen, nil)
	case *connect != "":
		var reply string
		reply, err = client(*connect, msg)
		fmt.Println(reply)
	default:
		reply, e := both(msg)
		err = e
		fmt.Println(reply)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpecho:", err)
		os.Exit(1)
	}
}

// serve echoes every connection on addr until the listener fails. If
// ready is not nil it receives the address once the server listens.
func serve(addr string, ready chan<- net.Addr) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	tr, err := overudp.New(pc, tcpstack.Config{})
	if err != nil {
		return err
	}
	defer tr.Close()
	ln, err := tr.Listen(port)
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- pc.LocalAddr()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c) // echo until the client half-closes
			_ = c.(*overudp.Conn).CloseWrite()
		}()
	}
}

// client sends msg to the echo server at addr and returns the echo.
func client(addr, msg string) (string, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", err
	}
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return "", err
	}
	tr, err := overudp.New(pc, tcpstack.Config{})
	if err != nil {
		return "", err
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.DialContextAddrPort(ctx, raddr.AddrPort(), port)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// both runs a server and a client in one process.
func both(msg string) (string, error) {
	ready := make(chan net.Addr, 1)
	errs := make(chan error, 1)
	go func() { errs <- serve("127.0.0.1:0", ready) }()
	select {
	case a := <-ready:
		return client(a.String(), msg)
	case err := <-errs:
		return "", err
	}
}
