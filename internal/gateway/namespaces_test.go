package gateway

import (
	"testing"
)

func TestLimits(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {},
			`{"concurrentInvocations":100,"firesPerMinute":600,"invocationsPerMinute":600,"maxActionConcurrency":500,"maxActionLogs":10,"maxActionMemory":512,"maxActionTimeout":300000,"minActionConcurrency":1,"minActionLogs":0,"minActionMemory":128,"minActionTimeout":100}`},
		{"configured", func(c *Config) { c.InvocationsPerMinute, c.FiresPerMinute, c.ConcurrentInvocations = 5, -1, 7 },
			`{"concurrentInvocations":7,"invocationsPerMinute":5,"maxActionConcurrency":500,"maxActionLogs":10,"maxActionMemory":512,"maxActionTimeout":300000,"minActionConcurrency":1,"minActionLogs":0,"minActionMemory":128,"minActionTimeout":100}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEntEnv(t, c.cfg)
			for _, path := range []string{"/api/v1/namespaces/_/limits", "/api/v1/namespaces/guest/limits"} {
				if got := compact(e.must(200, e.guest, "GET", path, nil)); got != c.want {
					t.Errorf("%s: %s", path, got)
				}
			}
			e.must(403, e.alice, "GET", "/api/v1/namespaces/guest/limits", nil)
			e.must(401, "", "GET", "/api/v1/namespaces/guest/limits", nil)
		})
	}
}

func TestNamespaceEntities(t *testing.T) {
	e := newEntEnv(t)
	e.must(200, e.guest, "PUT", pkgPath+"p", nil)
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	e.ctl.addAction("guest", "a")
	e.must(200, e.guest, "PUT", rulePath+"r", map[string]any{"trigger": "t", "action": "a"})
	e.must(200, e.alice, "PUT", pkgPath+"alices", nil)
	m := e.must(200, e.guest, "GET", "/api/v1/namespaces/_", nil)
	for k, n := range map[string]int{"actions": 1, "packages": 1, "triggers": 1, "rules": 1} {
		if l, _ := m[k].([]any); len(l) != n {
			t.Errorf("%s: %s", k, compact(m[k]))
		}
	}
	if p := m["packages"].([]any)[0].(map[string]any); p["name"] != "p" {
		t.Errorf("packages: %v", p)
	}
	m = e.must(200, e.alice, "GET", "/api/v1/namespaces/alice", nil)
	if compact(m["actions"]) != `[]` || compact(m["rules"]) != `[]` || len(m["packages"].([]any)) != 1 {
		t.Errorf("alice: %s", compact(m))
	}
}
