module github.com/tcpfsm/tcpfsm/interop

go 1.26.3

require github.com/tcpfsm/tcpfsm v0.0.0

require github.com/soypat/seqs v0.0.0-20260125140838-2c1c6b1bd69e

require golang.org/x/net v0.62.0

require (
	github.com/google/btree v1.1.2 // indirect
	golang.org/x/exp v0.0.0-20250711185948-6ae5c78190dc // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/time v0.15.0 // indirect
	gvisor.dev/gvisor v0.0.0-20260905035102-160fafc42237
)

replace github.com/tcpfsm/tcpfsm => ../
