// Package tcpexpvar exposes a tcpstack.Stack's counters through package
// expvar, so they appear in /debug/vars beside the runtime's:
//
//	h, _ := host.New(link, host.Config{})
//	tcpexpvar.Publish("tcpfsm", h.Stats)
//
// The counters are read when the variable is, through the function
// given, so they stay current; they appear as a JSON object with one
// member per field of tcpstack.Stats, by field name.
package tcpexpvar

import (
	"errors"
	"expvar"
	"fmt"

	"github.com/tcpfsm/tcpfsm/tcpstack"
)

// Var returns an expvar.Var whose value is what stats returns when the
// variable is read (package expvar reads it for each request of
// /debug/vars). stats must be safe to call from any goroutine, as
// host.Host.Stats is. A nil stats gives an empty object.
func Var(stats func() tcpstack.Stats) expvar.Var {
	return expvar.Func(func() any {
		if stats == nil {
			return struct{}{}
		}
		return stats()
	})
}

// ErrPublished is Publish's error for a name already published.
var ErrPublished = errors.New("tcpexpvar: name already published")

// Publish publishes Var(stats) under name, as expvar.Publish does, and
// returns it. Where expvar.Publish panics, it returns an error: for an
// empty name, and for a name already published (ErrPublished).
func Publish(name string, stats func() tcpstack.Stats) (v expvar.Var, err error) {
	if name == "" {
		return nil, errors.New("tcpexpvar: empty name")
	}
	if expvar.Get(name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrPublished, name)
	}
	defer func() {
		if recover() != nil { // published by another goroutine meanwhile
			v, err = nil, fmt.Errorf("%w: %q", ErrPublished, name)
		}
	}()
	v = Var(stats)
	expvar.Publish(name, v)
	return v, nil
}
