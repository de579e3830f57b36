package gateway

import (
	"net/http"
	"testing"
)

func checkCORS(t *testing.T, what string, res *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Headers": "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent",
		"Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD, PATCH",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEntEnv(t)
	// Preflights: 200 without credentials, on any path.
	for _, path := range []string{"/api/v1/namespaces/_/actions/hello", "/api/v1/namespaces/guest/packages", "/api/v1", "/nowhere", "/admin/v1/namespaces"} {
		st, v, res := e.do("", "OPTIONS", path, nil)
		if st != http.StatusOK || v != nil {
			t.Errorf("OPTIONS %s: %d %v", path, st, v)
		}
		checkCORS(t, "OPTIONS "+path, res)
	}
	// Every other response carries the headers too: success, 401, 403, 404.
	for _, c := range []struct {
		cred, method, path string
		status             int
	}{
		{e.guest, "GET", "/api/v1/namespaces/_/packages", 200},
		{"", "GET", "/api/v1/namespaces/_/packages", 401},
		{e.alice, "GET", "/api/v1/namespaces/guest/triggers", 403},
		{e.guest, "GET", "/api/v1/namespaces/_/rules/nope", 404},
		{"", "GET", "/api/v1", 200},
	} {
		st, _, res := e.do(c.cred, c.method, c.path, nil)
		if st != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, st, c.status)
		}
		checkCORS(t, c.method+" "+c.path, res)
	}
	// Preflights are counted under their own route label.
	mfs, err := e.g.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "clemmys_gateway_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == preflightRoute && labels["code"] == "200" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	if n != 5 {
		t.Errorf("preflights counted: %v", n)
	}
}
