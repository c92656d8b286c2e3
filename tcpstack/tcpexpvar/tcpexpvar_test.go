package tcpexpvar

import (
	"encoding/json"
	"expvar"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tcpfsm/tcpfsm/tcpstack"
)

func TestPublishStaysCurrent(t *testing.T) {
	// The published variable reads the counters each time: it shows
	// them as they are, by field name, in /debug/vars too.
	var n atomic.Uint64
	stats := func() tcpstack.Stats {
		v := n.Load()
		return tcpstack.Stats{SegmentsIn: v, SegmentsOut: 2 * v, ResetsSent: 7}
	}
	v, err := Publish("tcpexpvar_test", stats)
	require.NoError(t, err)
	require.NotNil(t, expvar.Get("tcpexpvar_test"))
	require.Equal(t, v.String(), expvar.Get("tcpexpvar_test").String())

	read := func() map[string]string {
		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(expvar.Get("tcpexpvar_test").String()), &raw))
		m := map[string]string{}
		for k, v := range raw {
			m[k] = string(v)
		}
		return m
	}
	m := read()
	require.Equal(t, "0", m["SegmentsIn"])
	require.Equal(t, "7", m["ResetsSent"])
	require.Contains(t, m, "TimeWaitRecords")
	n.Store(21)
	m = read()
	require.Equal(t, "21", m["SegmentsIn"])
	require.Equal(t, "42", m["SegmentsOut"])

	rec := httptest.NewRecorder()
	expvar.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/vars", nil))
	var all map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &all))
	require.Contains(t, all, "tcpexpvar_test")
	require.Contains(t, string(all["tcpexpvar_test"]), `"SegmentsIn":21`)
}

func TestPublishRefusesWithoutPanic(t *testing.T) {
	_, err := Publish("tcpexpvar_dup", func() tcpstack.Stats { return tcpstack.Stats{} })
	require.NoError(t, err)
	_, err = Publish("tcpexpvar_dup", func() tcpstack.Stats { return tcpstack.Stats{} })
	require.ErrorIs(t, err, ErrPublished)
	_, err = Publish("", nil)
	require.Error(t, err)
	// A nil getter reads as an empty object.
	require.JSONEq(t, `{}`, Var(nil).String())
}
