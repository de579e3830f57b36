package gateway

import (
	"bytes"
	"strings"
	"testing"
)

const trigPath = "/api/v1/namespaces/_/triggers/"

func TestTriggerLifecycle(t *testing.T) {
	e := newEntEnv(t)
	params := []map[string]any{{"key": "webhookSecret", "value": "TRIG-SECRET"}}
	tr := e.must(200, e.guest, "PUT", trigPath+"t", map[string]any{"parameters": params, "annotations": []map[string]any{{"key": "feed", "value": "/whisk.system/alarms/alarm"}}, "limits": map[string]any{}})
	if got := compact(tr); got != `{"annotations":[{"key":"feed","value":"/whisk.system/alarms/alarm"}],"limits":{},"name":"t","namespace":"guest","parameters":[{"key":"webhookSecret","value":"TRIG-SECRET"}],"publish":false,"updated":1,"version":"0.0.1"}` {
		t.Fatalf("put: %s", got)
	}
	if s := e.ctl.trigger("guest", "t").Parameters; len(s) == 0 || bytes.Contains(s, []byte("TRIG-SECRET")) {
		t.Fatalf("stored parameters %q", s)
	}
	e.must(409, e.guest, "PUT", trigPath+"t", nil)
	tr = e.must(200, e.guest, "PUT", trigPath+"t?overwrite=true", map[string]any{"annotations": []any{}})
	if tr["version"] != "0.0.2" || compact(tr["annotations"]) != `[]` || compact(tr["parameters"]) != compact(params) {
		t.Fatalf("update: %s", compact(tr))
	}
	e.must(200, e.guest, "PUT", trigPath+"t?overwrite=true", map[string]any{"parameters": []any{}})
	if s := e.ctl.trigger("guest", "t").Parameters; len(s) != 0 {
		t.Fatalf("parameters not cleared: %q", s)
	}

	// GET lists the trigger's rules, and only its own.
	e.ctl.addAction("guest", "a")
	e.must(200, e.guest, "PUT", trigPath+"other", nil)
	e.must(200, e.guest, "PUT", rulePath+"r1", map[string]any{"trigger": "/_/t", "action": "/_/a"})
	e.must(200, e.guest, "PUT", rulePath+"r2", map[string]any{"trigger": "t", "action": "a"})
	e.must(200, e.guest, "POST", rulePath+"r2", map[string]any{"status": "inactive"})
	e.must(200, e.guest, "PUT", rulePath+"r3", map[string]any{"trigger": "other", "action": "a"})
	tr = e.must(200, e.guest, "GET", trigPath+"t", nil)
	if got := compact(tr["rules"]); got != `{"guest/r1":{"action":{"name":"a","path":"guest"},"status":"active"},"guest/r2":{"action":{"name":"a","path":"guest"},"status":"inactive"}}` {
		t.Fatalf("rules: %s", got)
	}
	if compact(tr["limits"]) != `{}` || compact(tr["parameters"]) != `[]` {
		t.Fatalf("get: %s", compact(tr))
	}

	_, v, _ := e.do(e.guest, "GET", "/api/v1/namespaces/guest/triggers", nil)
	if list, _ := v.([]any); len(list) != 2 || compact(list[1]) != `{"annotations":[],"name":"t","namespace":"guest","publish":false,"updated":3,"version":"0.0.3"}` {
		t.Fatalf("list: %s", compact(v))
	}
	if m := e.must(200, e.guest, "GET", "/api/v1/namespaces/_/triggers/?count=true", nil); compact(m) != `{"triggers":2}` {
		t.Fatalf("count: %v", m)
	}

	if m := e.must(200, e.guest, "DELETE", trigPath+"t", nil); m["name"] != "t" {
		t.Fatalf("delete: %v", m)
	}
	e.must(404, e.guest, "GET", trigPath+"t", nil)
	e.must(404, e.guest, "DELETE", trigPath+"t", nil)
	e.must(404, e.guest, "GET", trigPath+"bad%20name%20", nil)
}

func TestTriggerErrors(t *testing.T) {
	e := newEntEnv(t)
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		msg          string
	}{
		{"PUT", trigPath + "bad%20name%20", nil, 400, "name is not valid"},
		{"PUT", trigPath + "t", "[1]", 400, "malformed"},
		{"PUT", trigPath + "t", map[string]any{"parameters": []map[string]any{{"value": 1}}}, 400, "key"},
		{"PUT", trigPath + "t", strings.Repeat(" ", maxEntityBodyBytes+1), 413, "too large"},
		{"GET", "/api/v1/namespaces/_/triggers?limit=x", nil, 400, "x"},
	} {
		m := e.must(c.status, e.guest, c.method, c.path, c.body)
		if msg, _ := m["error"].(string); !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, msg, c.msg)
		}
	}
	// Another namespace's triggers are out of reach.
	e.must(200, e.guest, "PUT", trigPath+"t", map[string]any{"publish": true})
	for _, m := range []string{"GET", "PUT", "DELETE", "POST"} {
		e.must(403, e.alice, m, "/api/v1/namespaces/guest/triggers/t", nil)
	}
	e.must(403, e.alice, "GET", "/api/v1/namespaces/guest/triggers", nil)
}
