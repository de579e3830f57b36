package gateway

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wire"
)

const pkgPath = "/api/v1/namespaces/_/packages/"

func TestPackageLifecycle(t *testing.T) {
	e := newEntEnv(t)
	params := []map[string]any{{"key": "apiKey", "value": "PKG-SECRET-1"}, {"key": "n", "value": 3}}
	anns := []map[string]any{{"key": "description", "value": "utilities"}}
	p := e.must(200, e.guest, "PUT", pkgPath+"utils", map[string]any{"parameters": params, "annotations": anns})
	if got := compact(p); got != `{"annotations":[{"key":"description","value":"utilities"}],"binding":{},"name":"utils","namespace":"guest","parameters":[{"key":"apiKey","value":"PKG-SECRET-1"},{"key":"n","value":3}],"publish":false,"updated":1,"version":"0.0.1"}` {
		t.Fatalf("put: %s", got)
	}
	// The controller holds the parameters sealed.
	stored := e.ctl.pkg("guest", "utils")
	if len(stored.Parameters) == 0 || bytes.Contains(stored.Parameters, []byte("PKG-SECRET-1")) || bytes.Contains(stored.Parameters, []byte("apiKey")) {
		t.Fatalf("stored parameters %q", stored.Parameters)
	}

	// Exists: 409 without overwrite, merged update with it.
	if m := e.must(409, e.guest, "PUT", pkgPath+"utils", map[string]any{}); m["error"] != msgConflict || m["code"] == "" {
		t.Fatalf("conflict: %v", m)
	}
	p = e.must(200, e.guest, "PUT", pkgPath+"utils?overwrite=true", map[string]any{"publish": true})
	if p["version"] != "0.0.2" || p["publish"] != true || compact(p["parameters"]) != compact(params) || compact(p["annotations"]) != compact(anns) {
		t.Fatalf("update keeps what it does not name: %s", compact(p))
	}

	e.ctl.addAction("guest", "utils/echo", wire.KeyValue{Key: "exec", Value: "wasm"})
	e.ctl.addAction("guest", "utils/changes", wire.KeyValue{Key: "feed", Value: true})
	e.ctl.addAction("guest", "utilsx", wire.KeyValue{Key: "exec", Value: "wasm"}) // not in the package
	p = e.must(200, e.guest, "GET", pkgPath+"utils", nil)
	if compact(p["actions"]) != `[{"annotations":[{"key":"exec","value":"wasm"}],"name":"echo","version":"0.0.1"}]` ||
		compact(p["feeds"]) != `[{"annotations":[{"key":"feed","value":true}],"name":"changes","version":"0.0.1"}]` ||
		compact(p["parameters"]) != compact(params) || compact(p["binding"]) != `{}` {
		t.Fatalf("get: %s", compact(p))
	}

	// Listing: summaries, count, paging.
	e.must(200, e.guest, "PUT", pkgPath+"zzz", nil)
	_, v, _ := e.do(e.guest, "GET", "/api/v1/namespaces/_/packages", nil)
	list, _ := v.([]any)
	if len(list) != 2 || compact(list[0]) != `{"annotations":[{"key":"description","value":"utilities"}],"binding":false,"name":"utils","namespace":"guest","publish":true,"updated":2,"version":"0.0.2"}` {
		t.Fatalf("list: %s", compact(v))
	}
	if m := e.must(200, e.guest, "GET", "/api/v1/namespaces/guest/packages?count=true", nil); compact(m) != `{"packages":2}` {
		t.Fatalf("count: %v", m)
	}
	if _, v, _ := e.do(e.guest, "GET", "/api/v1/namespaces/_/packages/?skip=1&limit=1", nil); len(v.([]any)) != 1 || v.([]any)[0].(map[string]any)["name"] != "zzz" {
		t.Fatalf("page: %s", compact(v))
	}
	for _, q := range []string{"?limit=-1", "?skip=x", "?count=maybe"} {
		e.must(400, e.guest, "GET", "/api/v1/namespaces/_/packages"+q, nil)
	}

	// Delete: 409 while it holds actions, force deletes them too.
	m := e.must(409, e.guest, "DELETE", pkgPath+"utils", nil)
	if !strings.Contains(m["error"].(string), "Package not empty (contains 2 entities)") {
		t.Fatalf("delete non-empty: %v", m)
	}
	m = e.must(200, e.guest, "DELETE", pkgPath+"utils?force=true", nil)
	if m["name"] != "utils" || compact(m["parameters"]) != compact(params) {
		t.Fatalf("deleted: %v", m)
	}
	if e.ctl.hasAction("guest", "utils/echo") || e.ctl.hasAction("guest", "utils/changes") || !e.ctl.hasAction("guest", "utilsx") {
		t.Fatal("force delete did not delete exactly the package's actions")
	}
	e.must(404, e.guest, "GET", pkgPath+"utils", nil)
	e.must(404, e.guest, "DELETE", pkgPath+"utils", nil)
	e.must(200, e.guest, "DELETE", pkgPath+"zzz", nil) // empty: no force needed
}

func TestPackagePutErrors(t *testing.T) {
	e := newEntEnv(t)
	big := `{"parameters":[{"key":"k","value":"` + strings.Repeat("x", maxEntityBodyBytes) + `"}]}`
	many := make([]map[string]any, maxKVs+1)
	for i := range many {
		many[i] = map[string]any{"key": "k", "value": i}
	}
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		msg    string
	}{
		{"bad name", pkgPath + "bad%20name%20", nil, 400, "name is not valid"},
		{"not json", pkgPath + "p", "{", 400, "malformed"},
		{"parameters not a list", pkgPath + "p", `{"parameters":{"k":"v"}}`, 400, "malformed"},
		{"empty key", pkgPath + "p", map[string]any{"parameters": []map[string]any{{"key": "", "value": 1}}}, 400, "key"},
		{"too many annotations", pkgPath + "p", map[string]any{"annotations": many}, 400, "Too many annotations"},
		{"too large", pkgPath + "p", big, 413, "too large"},
		{"bad overwrite", pkgPath + "p?overwrite=yes", nil, 400, "overwrite"},
		{"bad binding", pkgPath + "p", map[string]any{"binding": map[string]any{"namespace": "guest", "name": "a/b"}}, 400, "binding must name"},
		{"binding missing", pkgPath + "p", map[string]any{"binding": map[string]any{"namespace": "_", "name": "nope"}}, 400, msgBindingMissing},
		{"binding itself", pkgPath + "p", map[string]any{"binding": map[string]any{"name": "p"}}, 400, msgBindingSelf},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := e.must(c.status, e.guest, "PUT", c.path, c.body)
			if msg, _ := m["error"].(string); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q, want %q", msg, c.msg)
			}
		})
	}
}

// Public packages: other namespaces read them (without their parameters)
// and bind to them; private ones and missing ones are 403 alike; nothing
// else of another namespace is reachable.
func TestPackagesAcrossNamespaces(t *testing.T) {
	e := newEntEnv(t)
	secret := []map[string]any{{"key": "token", "value": "GUEST-TOKEN"}}
	e.must(200, e.guest, "PUT", pkgPath+"pub", map[string]any{"publish": true, "parameters": secret})
	e.must(200, e.guest, "PUT", pkgPath+"priv", map[string]any{"parameters": secret})
	e.must(200, e.guest, "PUT", pkgPath+"bnd", map[string]any{"publish": true, "binding": map[string]any{"namespace": "guest", "name": "pub"}})
	e.ctl.addAction("guest", "pub/hello")
	e.ctl.addAction("guest", "priv/hello")
	e.ctl.addAction("guest", "top")

	// alice reads guest's public package: no parameters.
	p := e.must(200, e.alice, "GET", "/api/v1/namespaces/guest/packages/pub", nil)
	if p["namespace"] != "guest" || compact(p["parameters"]) != `[]` || compact(p["actions"]) != `[{"annotations":[],"name":"hello","version":"0.0.1"}]` {
		t.Fatalf("public package: %s", compact(p))
	}
	if strings.Contains(compact(p), "GUEST-TOKEN") {
		t.Fatal("parameters shown to another namespace")
	}
	forbidden := []struct{ method, path string }{
		{"GET", "/api/v1/namespaces/guest/packages/priv"},
		{"GET", "/api/v1/namespaces/guest/packages/missing"},
		{"GET", "/api/v1/namespaces/guest/packages/bad%20name%20"},
		{"PUT", "/api/v1/namespaces/guest/packages/pub?overwrite=true"},
		{"DELETE", "/api/v1/namespaces/guest/packages/pub"},
		{"GET", "/api/v1/namespaces/guest/actions/priv/hello"},
		{"GET", "/api/v1/namespaces/guest/actions/top"},
		{"GET", "/api/v1/namespaces/guest/actions"},
		{"PUT", "/api/v1/namespaces/guest/actions/pub/hello"},
		{"DELETE", "/api/v1/namespaces/guest/actions/pub/hello"},
		{"GET", "/api/v1/namespaces/guest/activations"},
		{"GET", "/api/v1/namespaces/guest/triggers/t"},
		{"GET", "/api/v1/namespaces/guest/rules"},
		{"GET", "/api/v1/namespaces/guest/limits"},
		{"GET", "/api/v1/namespaces/guest"},
		{"GET", "/api/v1/namespaces/bad%20ns%20/packages/pub"},
	}
	for _, c := range forbidden {
		st, v, _ := e.do(e.alice, c.method, c.path, nil)
		m, _ := v.(map[string]any)
		if msg, _ := m["error"].(string); st != http.StatusForbidden || !strings.Contains(msg, "not authorized") {
			t.Errorf("alice %s %s: %d %v", c.method, c.path, st, v)
		}
	}
	// Another namespace's package list shows its public packages only
	// (GET /namespaces/whisk.system/packages).
	if st, v, _ := e.do(e.alice, "GET", "/api/v1/namespaces/guest/packages", nil); st != 200 || strings.Contains(compact(v), `"priv"`) || !strings.Contains(compact(v), `"name":"pub"`) {
		t.Errorf("alice lists guest's packages: %d %s", st, compact(v))
	}
	if st, v, _ := e.do(e.alice, "GET", "/api/v1/namespaces/guest/packages?count=true", nil); st != 200 || compact(v) != `{"packages":2}` {
		t.Errorf("alice counts guest's packages: %d %s", st, compact(v))
	}
	// The action of a public package is readable, its defaults hidden.
	a := e.must(200, e.alice, "GET", "/api/v1/namespaces/guest/actions/pub/hello", nil)
	if a["name"] != "hello" || compact(a["parameters"]) != `[]` {
		t.Fatalf("public action: %s", compact(a))
	}
	// The owner still reaches everything through its own name and "_".
	e.must(200, e.guest, "GET", "/api/v1/namespaces/guest/packages/priv", nil)
	if p := e.must(200, e.guest, "GET", pkgPath+"priv", nil); compact(p["parameters"]) != compact(secret) {
		t.Fatalf("owner parameters: %s", compact(p))
	}

	// Bindings: to a public package of another namespace, not to a
	// private one (nor a missing one: same 403), not to a binding.
	mine := []map[string]any{{"key": "mine", "value": "ALICE"}}
	b := e.must(200, e.alice, "PUT", pkgPath+"g", map[string]any{"binding": map[string]any{"namespace": "guest", "name": "pub"}, "parameters": mine})
	if compact(b["binding"]) != `{"name":"pub","namespace":"guest"}` {
		t.Fatalf("binding: %s", compact(b))
	}
	b = e.must(200, e.alice, "GET", pkgPath+"g", nil)
	if compact(b["parameters"]) != compact(mine) || compact(b["actions"]) != `[{"annotations":[],"name":"hello","version":"0.0.1"}]` {
		t.Fatalf("binding get: %s", compact(b))
	}
	if _, v, _ := e.do(e.alice, "GET", "/api/v1/namespaces/_/packages", nil); !strings.Contains(compact(v), `"binding":{"name":"pub","namespace":"guest"}`) {
		t.Fatalf("binding in list: %s", compact(v))
	}
	for _, c := range []struct {
		binding map[string]any
		status  int
		msg     string
	}{
		{map[string]any{"namespace": "guest", "name": "priv"}, 403, "not authorized"},
		{map[string]any{"namespace": "guest", "name": "missing"}, 403, "not authorized"},
		{map[string]any{"namespace": "guest", "name": "bnd"}, 400, msgBindingOfBinding},
	} {
		m := e.must(c.status, e.alice, "PUT", pkgPath+"x", map[string]any{"binding": c.binding})
		if !strings.Contains(m["error"].(string), c.msg) {
			t.Errorf("bind to %v: %v", c.binding, m)
		}
	}
	// A package does not turn into a binding; a binding is updated.
	e.must(200, e.alice, "PUT", pkgPath+"plain", nil)
	if m := e.must(400, e.alice, "PUT", pkgPath+"plain?overwrite=true", map[string]any{"binding": map[string]any{"namespace": "guest", "name": "pub"}}); m["error"] != msgPackageNotBinding {
		t.Fatalf("package to binding: %v", m)
	}
	e.must(200, e.alice, "PUT", pkgPath+"g?overwrite=true", map[string]any{"publish": true})
	if b := e.ctl.pkg("alice", "g"); b.Binding == nil || !b.Publish {
		t.Fatalf("binding lost on update: %+v", b)
	}
	// A binding is deleted without force (it has no actions).
	e.must(200, e.alice, "DELETE", pkgPath+"g", nil)
	if !e.ctl.hasAction("guest", "pub/hello") {
		t.Fatal("deleting a binding deleted the bound package's actions")
	}
}
