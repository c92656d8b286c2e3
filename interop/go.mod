module github.com/tcpfsm/tcpfsm/interop

go 1.26

require github.com/tcpfsm/tcpfsm v0.0.0

replace github.com/tcpfsm/tcpfsm => ../
