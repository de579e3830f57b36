package gateway

import (
	"strings"
	"testing"
)

const rulePath = "/api/v1/namespaces/_/rules/"

func TestRuleLifecycle(t *testing.T) {
	e := newEntEnv(t)
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	e.must(200, e.guest, "PUT", trigPath+"t2", nil)
	e.must(200, e.guest, "PUT", pkgPath+"pkg", nil)
	e.ctl.addAction("guest", "a")
	e.ctl.addAction("guest", "pkg/b")

	// The openwhisk npm client sends "/_/t" and "/_/a".
	rl := e.must(200, e.guest, "PUT", rulePath+"r", map[string]any{"trigger": "/_/t", "action": "/_/a", "annotations": []map[string]any{{"key": "k", "value": "v"}}})
	if got := compact(rl); got != `{"action":{"name":"a","path":"guest"},"annotations":[{"key":"k","value":"v"}],"name":"r","namespace":"guest","publish":false,"status":"active","trigger":{"name":"t","path":"guest"},"updated":4,"version":"0.0.1"}` {
		t.Fatalf("put: %s", got)
	}
	if rl := e.ctl.rule("guest", "r"); rl.Trigger != "/guest/t" || rl.Action != "/guest/a" {
		t.Fatalf("stored %+v", rl)
	}
	e.must(409, e.guest, "PUT", rulePath+"r", map[string]any{"trigger": "t", "action": "a"})

	// Disable, update (keeps the status and what it does not name), enable.
	if rl := e.must(200, e.guest, "POST", rulePath+"r", map[string]any{"status": "inactive"}); rl["status"] != "inactive" {
		t.Fatalf("disable: %v", rl)
	}
	rl = e.must(200, e.guest, "PUT", rulePath+"r?overwrite=true", map[string]any{"action": "pkg/b"})
	if rl["status"] != "inactive" || compact(rl["action"]) != `{"name":"b","path":"guest/pkg"}` || compact(rl["trigger"]) != `{"name":"t","path":"guest"}` || rl["version"] != "0.0.2" {
		t.Fatalf("update: %s", compact(rl))
	}
	if rl := e.must(200, e.guest, "POST", rulePath+"r", `{"status":"active"}`); rl["status"] != "active" {
		t.Fatalf("enable: %v", rl)
	}
	if rl := e.must(200, e.guest, "GET", rulePath+"r", nil); rl["status"] != "active" || compact(rl["action"]) != `{"name":"b","path":"guest/pkg"}` {
		t.Fatalf("get: %v", rl)
	}

	e.must(200, e.guest, "PUT", rulePath+"r2", map[string]any{"trigger": "/guest/t2", "action": "/guest/pkg/b"})
	_, v, _ := e.do(e.guest, "GET", "/api/v1/namespaces/_/rules", nil)
	if list, _ := v.([]any); len(list) != 2 || list[1].(map[string]any)["name"] != "r2" {
		t.Fatalf("list: %s", compact(v))
	}
	if m := e.must(200, e.guest, "GET", "/api/v1/namespaces/guest/rules?count=true", nil); compact(m) != `{"rules":2}` {
		t.Fatalf("count: %v", m)
	}
	if m := e.must(200, e.guest, "DELETE", rulePath+"r", nil); m["name"] != "r" {
		t.Fatalf("delete: %v", m)
	}
	e.must(404, e.guest, "GET", rulePath+"r", nil)
	e.must(404, e.guest, "DELETE", rulePath+"r", nil)
	e.must(404, e.guest, "POST", rulePath+"r", map[string]any{"status": "active"})
}

func TestRuleErrors(t *testing.T) {
	e := newEntEnv(t)
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	e.must(200, e.guest, "PUT", pkgPath+"pub", map[string]any{"publish": true})
	e.must(200, e.guest, "PUT", pkgPath+"priv", nil)
	e.ctl.addAction("guest", "a")
	e.ctl.addAction("guest", "pub/x")
	e.ctl.addAction("guest", "priv/x")
	e.must(200, e.alice, "PUT", trigPath+"t", nil)
	e.must(200, e.alice, "PUT", pkgPath+"bound", map[string]any{"binding": map[string]any{"namespace": "guest", "name": "pub"}})

	for _, c := range []struct {
		name   string
		cred   string
		body   any
		status int
		msg    string
	}{
		{"no trigger", e.guest, map[string]any{"action": "a"}, 400, "trigger must be"},
		{"no action", e.guest, map[string]any{"trigger": "t"}, 400, "action must be"},
		{"bad trigger", e.guest, map[string]any{"trigger": "/guest/p/t", "action": "a"}, 400, "trigger must be"},
		{"bad action", e.guest, map[string]any{"trigger": "t", "action": "/guest"}, 400, "action must be"},
		{"bad action path", e.guest, map[string]any{"trigger": "t", "action": "a/b/c"}, 400, "action must be"},
		{"missing trigger", e.guest, map[string]any{"trigger": "nope", "action": "a"}, 404, "trigger /guest/nope does not exist"},
		{"missing action", e.guest, map[string]any{"trigger": "t", "action": "nope"}, 404, "action /guest/nope does not exist"},
		{"missing package action", e.guest, map[string]any{"trigger": "t", "action": "pub/nope"}, 404, "action /guest/pub/nope does not exist"},
		{"not json", e.guest, "{", 400, "malformed"},
		{"foreign trigger", e.alice, map[string]any{"trigger": "/guest/t", "action": "/guest/pub/x"}, 403, "not authorized"},
		{"foreign action", e.alice, map[string]any{"trigger": "t", "action": "/guest/a"}, 403, "not authorized"},
		{"foreign private package", e.alice, map[string]any{"trigger": "t", "action": "/guest/priv/x"}, 403, "not authorized"},
		{"foreign missing package", e.alice, map[string]any{"trigger": "t", "action": "/guest/nope/x"}, 403, "not authorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := e.must(c.status, c.cred, "PUT", rulePath+"r", c.body)
			if msg, _ := m["error"].(string); !strings.Contains(msg, c.msg) {
				t.Fatalf("%q, want %q", msg, c.msg)
			}
		})
	}

	// An action in a public package of another namespace, directly or
	// through a binding.
	rl := e.must(200, e.alice, "PUT", rulePath+"r", map[string]any{"trigger": "/_/t", "action": "/guest/pub/x"})
	if compact(rl["action"]) != `{"name":"x","path":"guest/pub"}` || compact(rl["trigger"]) != `{"name":"t","path":"alice"}` {
		t.Fatalf("public action: %s", compact(rl))
	}
	rl = e.must(200, e.alice, "PUT", rulePath+"rb", map[string]any{"trigger": "t", "action": "bound/x"})
	if compact(rl["action"]) != `{"name":"x","path":"alice/bound"}` {
		t.Fatalf("bound action: %s", compact(rl))
	}

	for _, body := range []any{map[string]any{"status": "paused"}, map[string]any{}, "", "nope"} {
		e.must(400, e.alice, "POST", rulePath+"r", body)
	}
	e.must(400, e.guest, "PUT", rulePath+"bad%20name%20", nil)
	for _, m := range []string{"GET", "PUT", "DELETE", "POST"} {
		e.must(403, e.guest, m, "/api/v1/namespaces/alice/rules/r", nil)
	}
}

// A controller that answers a put with another entity than the one put is
// refused, for each kind of entity.
func TestPutAnsweredWithAnother(t *testing.T) {
	e := newEntEnv(t)
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	e.ctl.addAction("guest", "a")
	e.ctl.misname.Store(true)
	for _, tc := range []struct {
		kind, path string
		body       any
	}{
		{"package", pkgPath + "p", nil},
		{"trigger", trigPath + "t2", nil},
		{"rule", rulePath + "r", map[string]any{"trigger": "t", "action": "a"}},
	} {
		st, body, _ := e.do(e.guest, "PUT", tc.path, tc.body)
		if want := "The controller answered with another " + tc.kind + "."; st != 502 || !strings.Contains(compact(body), want) {
			t.Errorf("%s: %d %s, want 502 %q", tc.kind, st, compact(body), want)
		}
	}
}
