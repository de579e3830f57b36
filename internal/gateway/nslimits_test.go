package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Limits set through the admin API are stored on the bus, shown by GET
// /namespaces/_/limits, enforced on the next request (throttles with
// OpenWhisk's 429 messages, action limit ceilings with its 400 messages),
// and reset by DELETE.
func TestNamespaceLimitsAdmin(t *testing.T) {
	e := newEntEnv(t)
	admin, err := e.g.NewAdminCredential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lp := adminPrefix + "/guest/limits"
	e.must(401, e.guest, "PUT", lp, map[string]any{"firesPerMinute": 1})
	e.must(404, admin, "PUT", adminPrefix+"/nobody/limits", map[string]any{"firesPerMinute": 1})
	for _, bad := range []any{
		map[string]any{"firesPerMinute": "x"},
		map[string]any{"maxActionTimeout": 5},
		map[string]any{"activationRetentionCount": 0},
		map[string]any{"unknown": 1},
		`{"firesPerMinute": 1`,
	} {
		e.must(400, admin, "PUT", lp, bad)
	}
	m := e.must(200, admin, "PUT", lp, map[string]any{
		"firesPerMinute": 1, "concurrentInvocations": 3, "maxActionTimeout": 1000, "maxActionMemory": 192,
		"activationRetentionSeconds": 3600,
	})
	if got := compact(m["set"]); got != `{"activationRetentionSeconds":3600,"concurrentInvocations":3,"firesPerMinute":1,"maxActionMemory":192,"maxActionTimeout":1000}` {
		t.Fatalf("set: %s", got)
	}
	// A second PUT merges; null resets one field.
	m = e.must(200, admin, "PUT", lp, map[string]any{"concurrentInvocations": nil, "invocationsPerMinute": 7})
	if got := compact(m["set"]); got != `{"activationRetentionSeconds":3600,"firesPerMinute":1,"invocationsPerMinute":7,"maxActionMemory":192,"maxActionTimeout":1000}` {
		t.Fatalf("merged: %s", got)
	}
	want := `{"concurrentInvocations":100,"firesPerMinute":1,"invocationsPerMinute":7,"maxActionConcurrency":500,"maxActionLogs":10,"maxActionMemory":192,"maxActionTimeout":1000,"minActionConcurrency":1,"minActionLogs":0,"minActionMemory":128,"minActionTimeout":100}`
	if got := compact(e.must(200, e.guest, "GET", "/api/v1/namespaces/_/limits", nil)); got != want {
		t.Fatalf("user limits: %s", got)
	}
	// alice keeps the defaults.
	if got := compact(e.must(200, e.alice, "GET", "/api/v1/namespaces/_/limits", nil)); !strings.Contains(got, `"firesPerMinute":600`) {
		t.Fatalf("alice: %s", got)
	}

	// Throttle: the second fire of the minute is refused.
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	if st, v, _ := e.do(e.guest, "POST", trigPath+"t", map[string]any{}); st >= 400 {
		t.Fatalf("first fire: %d %v", st, v)
	}
	st, v, _ := e.do(e.guest, "POST", trigPath+"t", map[string]any{})
	if mm, _ := v.(map[string]any); st != http.StatusTooManyRequests || mm["error"] != "Too many requests in the last minute (count: 2, allowed: 1)." {
		t.Fatalf("second fire: %d %v", st, v)
	}

	// Ceilings: a deploy above them is refused with OpenWhisk's message.
	seq := func(limits map[string]any) map[string]any {
		return map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/a"}}, "limits": limits}
	}
	st, v, _ = e.do(e.guest, "PUT", "/api/v1/namespaces/_/actions/s", seq(map[string]any{"timeout": 2000}))
	if mm, _ := v.(map[string]any); st != 400 || !strings.Contains(mm["error"].(string), "duration 2000 milliseconds exceeds allowed threshold of 1000 milliseconds") {
		t.Fatalf("timeout above ceiling: %d %v", st, v)
	}
	st, v, _ = e.do(e.guest, "PUT", "/api/v1/namespaces/_/actions/s", seq(map[string]any{"memory": 512}))
	if mm, _ := v.(map[string]any); st != 400 || !strings.Contains(mm["error"].(string), "memory 512 MB exceeds allowed threshold of 192 MB") {
		t.Fatalf("memory above ceiling: %d %v", st, v)
	}
	// Invocations are clamped to the ceilings (also the defaults).
	if l := e.g.clampLimits("guest", wire.Limits{}); l.TimeoutMs != 1000 || l.MemoryMB != 192 || l.LogsMB != 0 {
		t.Fatalf("clamped defaults: %+v", l)
	}
	if l := e.g.clampLimits("alice", wire.Limits{TimeoutMs: 5000}); l.TimeoutMs != 5000 || l.MemoryMB != 0 {
		t.Fatalf("alice clamped: %+v", l)
	}

	// Reset.
	e.must(200, admin, "DELETE", lp, nil)
	if got := compact(e.must(200, e.guest, "GET", "/api/v1/namespaces/_/limits", nil)); !strings.Contains(got, `"firesPerMinute":600`) {
		t.Fatalf("after reset: %s", got)
	}
}

// A second gateway on the same bus enforces what the first one stored
// (watch), and ignores an entry whose MAC does not verify.
func TestNamespaceLimitsReplicated(t *testing.T) {
	e := newEntEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	g2, err := New(ctx, Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Conn: e.g.cfg.Conn, JS: e.g.cfg.JS, KMS: e.g.cfg.KMS})
	if err != nil {
		t.Fatal(err)
	}
	go g2.watchLimits(ctx)
	n := 2
	if err := e.g.SetNamespaceLimits(ctx, wire.NamespaceLimits{Namespace: "guest", InvocationsPerMinute: &n}, 0); err != nil {
		t.Fatal(err)
	}
	waitLimit(t, g2, "guest", 2)
	for i := 0; i < 2; i++ {
		if _, th := g2.limits.admitInvocation("guest"); th != nil {
			t.Fatalf("invocation %d refused", i)
		}
	}
	if _, th := g2.limits.admitInvocation("guest"); th == nil || th.allowed != 2 {
		t.Fatalf("third invocation: %+v", th)
	}
	// A gateway started after the write enforces it from its first request.
	g3, err := New(ctx, Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Conn: e.g.cfg.Conn, JS: e.g.cfg.JS, KMS: e.g.cfg.KMS})
	if err != nil {
		t.Fatal(err)
	}
	if got := g3.limits.effective("guest").invokesPerMinute; got != 2 {
		t.Fatalf("new gateway: %d", got)
	}
	// Forged by whoever controls the store: ignored.
	kv, err := e.g.limitsKV(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := 1 << 20
	forged, _ := bus.Marshal(&wire.NamespaceLimits{Namespace: "guest", InvocationsPerMinute: &big, Tag: make([]byte, 32)})
	if _, err := kv.Put(ctx, store.Key("ns", "guest"), forged); err != nil {
		t.Fatal(err)
	}
	waitLimit(t, g2, "guest", DefaultInvocationsPerMinute)
}

// waitLimit waits for g's watch to show ns's invocations per minute.
func waitLimit(t *testing.T, g *Gateway, ns string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for g.limits.effective(ns).invokesPerMinute != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: invocations per minute %d, want %d", ns, g.limits.effective(ns).invokesPerMinute, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func FuzzNamespaceLimitsBody(f *testing.F) {
	f.Add([]byte(`{"firesPerMinute": 1, "maxActionTimeout": null}`))
	f.Add([]byte(`{"activationRetentionSeconds": 99999999999999}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var body map[string]json.RawMessage
		if json.Unmarshal(raw, &body) != nil {
			_ = jsonDetail(raw, json.Unmarshal(raw, &body))
			return
		}
		var l wire.NamespaceLimits
		if mergeNamespaceLimits(&l, body) == "" && l.MaxActionTimeoutMs != nil && (*l.MaxActionTimeoutMs < minTimeoutMs || *l.MaxActionTimeoutMs > maxTimeoutMs) {
			t.Fatalf("timeout out of range accepted: %d", *l.MaxActionTimeoutMs)
		}
	})
}

func TestJSONDetail(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"{not json", "invalid character 'n' looking for beginning of object key string at input index 1 (line 1, position 2)"},
		{"{\n  \"a\": 1,\n  x}", "at input index 14 (line 3, position 3)"},
		{`{"a": 1`, "unexpected end of JSON input at input index 7 (line 1, position 8)"},
		{`{"exec": 3}`, `field "exec" must be an object, not number, at input index 10`},
		{``, "the body is empty"},
	} {
		var v struct {
			Exec map[string]any `json:"exec"`
		}
		if got := jsonDetail([]byte(c.body), json.Unmarshal([]byte(c.body), &v)); !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want %q", c.body, got, c.want)
		}
	}
}
