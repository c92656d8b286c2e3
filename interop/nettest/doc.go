// Package nettest holds no code: its tests run golang.org/x/net/nettest's
// TestConn, the conformance test of net.Conn, on every net.Conn tcpfsm
// gives a program: a host.Conn over host.Pipe, over UDP (package
// overudp), and over a Linux TUN device against the kernel's TCP.
package nettest
