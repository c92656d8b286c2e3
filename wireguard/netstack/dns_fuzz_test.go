package netstack

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzDNSAnswers feeds the reply reader arbitrary bytes, as a server on
// the other end of the tunnel may send: no panic, and every address it
// returns parses.
func FuzzDNSAnswers(f *testing.F) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("example.org."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}})
	msg, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg)
	f.Fuzz(func(t *testing.T, msg []byte) {
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil {
			return
		}
		addrs, err := answers(&p, h, q)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if _, err := netip.ParseAddr(a); err != nil {
				t.Fatalf("answer %q is not an address: %v", a, err)
			}
		}
	})
}
