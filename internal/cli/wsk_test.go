package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestParseArgs(t *testing.T) {
	c := newWskCmd("action invoke", io.Discard, io.Discard)
	c.withParams()
	c.withAnnotations()
	b := c.boolFlag("", "blocking", "b")
	args := []string{"hello", "-p", "n", "42", "-b", "--param", "s", "text", "-a", "k", `{"x":1}`, "--", "-p"}
	if err := c.parseArgs(args); err != nil {
		t.Fatal(err)
	}
	if !*b || !reflect.DeepEqual(c.args, []string{"hello", "-p"}) {
		t.Fatalf("blocking %v, args %q", *b, c.args)
	}
	want := []keyValue{{"n", float64(42)}, {"s", "text"}}
	if !reflect.DeepEqual(c.params, want) || !reflect.DeepEqual(c.annots, []keyValue{{"k", map[string]any{"x": float64(1)}}}) {
		t.Fatalf("params %v annotations %v", c.params, c.annots)
	}
	if err := newWskCmdWithParams().parseArgs([]string{"x", "-p", "only-key"}); err == nil {
		t.Fatal("-p with one argument accepted")
	}

	// -P file first, -p replaces its keys.
	f := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(f, []byte(`{"a":1,"b":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c = newWskCmdWithParams()
	if err := c.parseArgs([]string{"-P", f, "-p", "b", "3"}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.paramObject(); err != nil || !reflect.DeepEqual(m, map[string]any{"a": float64(1), "b": float64(3)}) {
		t.Fatalf("%v %v", m, err)
	}
}

func newWskCmdWithParams() *wskCmd {
	c := newWskCmd("x", io.Discard, io.Discard)
	c.withParams()
	return c
}

func TestNames(t *testing.T) {
	for name, want := range map[string]string{
		"hello":          "/api/v1/namespaces/_/actions/hello",
		"pkg/hello":      "/api/v1/namespaces/_/actions/pkg/hello",
		"/guest/hello":   "/api/v1/namespaces/guest/actions/hello",
		"/guest/p/a b":   "/api/v1/namespaces/guest/actions/p/a%20b",
		"/_/with?query#": "/api/v1/namespaces/_/actions/with%3Fquery%23",
	} {
		if got := kindAction.path(name); got != want {
			t.Errorf("path(%q) = %q, want %q", name, got, want)
		}
	}
	if q := qualify("a"); q != "/_/a" {
		t.Error(q)
	}
	if s := stripLogLine("2026-01-01T00:00:00.000000000Z stderr: a: b"); s != "a: b" {
		t.Error(s)
	}
}

// TestEntityRequests checks the requests of the trigger, rule and package
// verbs (OpenWhisk's REST API) against a recording server.
func TestEntityRequests(t *testing.T) {
	type req struct{ Method, Path, Body string }
	var (
		mu   sync.Mutex
		reqs []req
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, req{r.Method, r.URL.RequestURI(), strings.TrimSpace(string(b))})
		mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "/nope"):
			w.WriteHeader(404)
			io.WriteString(w, `{"error":"The requested resource does not exist.","code":"3f2a"}`)
		case r.Method == "POST" && strings.Contains(r.URL.Path, "/triggers/"):
			w.WriteHeader(202)
			io.WriteString(w, `{"activationId":"abc"}`)
		case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "s"):
			io.WriteString(w, `[{"namespace":"guest","name":"r1","publish":true,"status":"active"}]`)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	flags := []string{"--apihost", srv.URL, "--auth", "u:k", "--insecure", "--data-dir", t.TempDir()}
	cases := []struct {
		args []string
		out  string
		want req
	}{
		{[]string{"trigger", "create", "t", "-p", "n", "1"}, "ok: created trigger t\n",
			req{"PUT", "/api/v1/namespaces/_/triggers/t", `{"parameters":[{"key":"n","value":1}]}`}},
		{[]string{"trigger", "update", "t"}, "ok: updated trigger t\n",
			req{"PUT", "/api/v1/namespaces/_/triggers/t?overwrite=true", `{}`}},
		{[]string{"trigger", "fire", "t", "-p", "x", "y"}, "ok: triggered /_/t with id abc\n",
			req{"POST", "/api/v1/namespaces/_/triggers/t", `{"x":"y"}`}},
		{[]string{"rule", "create", "r", "t", "/guest/a"}, "ok: created rule r\n",
			req{"PUT", "/api/v1/namespaces/_/rules/r", `{"action":"/guest/a","trigger":"/_/t"}`}},
		{[]string{"rule", "disable", "r"}, "ok: disabled rule r\n",
			req{"POST", "/api/v1/namespaces/_/rules/r", `{"status":"inactive"}`}},
		{[]string{"rule", "list", "--limit", "5"}, "rules\n/guest/r1   shared   active\n",
			req{"GET", "/api/v1/namespaces/_/rules?limit=5", ``}},
		{[]string{"package", "create", "p", "--shared", "yes", "-a", "k", "v"}, "ok: created package p\n",
			req{"PUT", "/api/v1/namespaces/_/packages/p", `{"annotations":[{"key":"k","value":"v"}],"publish":true}`}},
		{[]string{"package", "delete", "p"}, "ok: deleted package p\n",
			req{"DELETE", "/api/v1/namespaces/_/packages/p", ``}},
		{[]string{"action", "create", "s", "--sequence", "a, /ns/b,pkg/c", "--timeout", "1000"}, "ok: created action s\n",
			req{"PUT", "/api/v1/namespaces/_/actions/s", `{"exec":{"components":["/_/a","/ns/b","/_/pkg/c"],"kind":"sequence"},"limits":{"timeout":1000}}`}},
	}
	for _, tc := range cases {
		mu.Lock()
		reqs = nil
		mu.Unlock()
		var out, errs bytes.Buffer
		if code := Run(append(tc.args, flags...), &out, &errs); code != 0 || out.String() != tc.out {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out.String(), errs.String(), tc.out)
			continue
		}
		mu.Lock()
		got := reqs
		mu.Unlock()
		if len(got) != 1 || got[0].Method != tc.want.Method || got[0].Path != tc.want.Path || !sameJSON(got[0].Body, tc.want.Body) {
			t.Errorf("%q: requests %+v, want %+v", tc.args, got, tc.want)
		}
	}
	var out, errs bytes.Buffer
	if code := Run(append([]string{"trigger", "get", "nope"}, flags...), &out, &errs); code != 1 ||
		errs.String() != "error: Unable to get trigger 'nope': The requested resource does not exist. (code 3f2a)\n" {
		t.Errorf("error: exit %d, %q", code, errs.String())
	}
}

func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
