//go:build linux

// Package load measures one net/http server under load from real
// clients, side by side on three TCP stacks: tcpfsm (package host on a
// TUN device), gVisor's netstack (on a TUN device of its own) and the
// kernel's TCP. The clients are the usual tools, run as processes on the
// kernel's side: ab, wrk, curl and hping3 for a SYN flood, with Go probes
// that measure how legitimate connections fare during the flood, and Go
// clients that read slowly (each with a small receive buffer, stalled
// for a while with the server's window to it shut, then reading on),
// upload to a handler that reads slowly in the same way (the server's
// window shut), or go away in the middle of a download with a reset. After the loads and
// an idle period the tcpfsm server must hold no connection and no more
// goroutines than at its start.
//
// Each server runs in a child process of the test binary, so the heap
// figures of one stack are not mixed with another's or with the clients'.
// Everything happens inside a user and network namespace that the test
// creates: the only addresses in play are loopback and the two TUN
// devices' subnets.
//
// TestLoad runs a short suite by default (sized for under three minutes
// on two cores) and fails if the tcpfsm server breaks the limits named
// in load_test.go; gVisor and the kernel are only reported. It prints a
// markdown table of all three side by side. Its environment:
//
//	LOAD_FULL=1       the full suite (or -load.full); `make load` runs it
//	LOAD_REPORT=file  also write the table to file (relative paths are
//	                  taken from this package's directory)
//	LOAD_IDLE=30s     the idle period before the last heap figure
//	LOAD_ONLY=tcpfsm  measure only these servers (comma-separated kinds)
//	LOAD_LOADS=wrk    run only the loads whose names contain this
//	LOAD_CPUPROFILE=dir  write each server's CPU profile to dir/KIND.pprof
//	LOAD_RXOFFLOAD=0  tcpfsm's device without receive offload (no
//	                  super-segments or partial checksums from the kernel)
//	CI=true           fail, rather than skip, when a client is missing
//
// The clients come from the packages apache2-utils (ab), wrk, curl,
// hping3 and iproute2 (ip).
package load
