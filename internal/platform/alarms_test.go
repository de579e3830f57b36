package platform_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// feed invokes an alarms feed action with a lifecycle event, as the
// openwhisk client's feeds API and `wsk trigger create --feed` do.
func (e *env) feed(auth, kind, event, trigger string, params map[string]any) (int, map[string]any) {
	e.t.Helper()
	body := map[string]any{"lifecycleEvent": event, "triggerName": "/guest/" + trigger, "authKey": auth}
	for k, v := range params {
		body[k] = v
	}
	var act map[string]any
	st, _ := e.call(auth, "POST", "/api/v1/namespaces/whisk.system/actions/alarms/"+kind+"?blocking=true", body, &act)
	resp, _ := act["response"].(map[string]any)
	res, _ := resp["result"].(map[string]any)
	return st, res
}

// fires counts the trigger's activations.
func (e *env) fires(trigger string) int {
	e.t.Helper()
	var n map[string]int
	e.call(e.guest(), "GET", "/api/v1/namespaces/_/activations?count=true&name="+trigger, nil, &n)
	return n["activations"]
}

// TestAlarms: an alarm feed fires its trigger on schedule, with the feed
// lifecycle (CREATE, READ, UPDATE, PAUSE, UNPAUSE, DELETE), its schedule
// survives a restart, and a once alarm fires once.
func TestAlarms(t *testing.T) {
	dir := t.TempDir()
	e := startWith(t, dir, nil)
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e.deploy(g, "alarmecho", echo, nil)
	for _, tr := range []string{"tick", "once"} {
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/triggers/"+tr, map[string]any{}, nil); st != 200 {
			t.Fatalf("trigger %s: %d", tr, st)
		}
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/rules/r"+tr, map[string]any{"trigger": "/_/" + tr, "action": "/_/alarmecho"}, nil); st != 200 {
			t.Fatalf("rule %s: %d", tr, st)
		}
	}
	// Refusals: a bad cron, a missing trigger, another namespace's trigger.
	if st, res := e.feed(g, "alarm", "CREATE", "tick", map[string]any{"cron": "not a cron"}); st != http.StatusBadGateway || res["error"] == nil {
		t.Errorf("bad cron: %d %v", st, res)
	}
	if st, res := e.feed(g, "alarm", "CREATE", "nosuch", map[string]any{"cron": "* * * * * *"}); st != http.StatusBadGateway || res["error"] == nil {
		t.Errorf("missing trigger: %d %v", st, res)
	}
	var act map[string]any
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/whisk.system/actions/alarms/alarm?blocking=true",
		map[string]any{"lifecycleEvent": "CREATE", "triggerName": "/other/tick", "cron": "* * * * * *"}, &act); st != http.StatusBadGateway {
		t.Errorf("another namespace's trigger: %d %v", st, act)
	}

	// Every second, with a payload.
	if st, res := e.feed(g, "alarm", "CREATE", "tick", map[string]any{"cron": "* * * * * *", "trigger_payload": map[string]any{"who": "alarm"}}); st != 200 {
		t.Fatalf("create: %d %v", st, res)
	}
	if st, res := e.feed(g, "alarm", "CREATE", "tick", map[string]any{"cron": "* * * * * *"}); st != http.StatusBadGateway {
		t.Errorf("second create: %d %v", st, res)
	}
	waitFor(t, func() bool { return e.fires("tick") >= 2 })
	st, res := e.feed(g, "alarm", "READ", "tick", nil)
	cfg, _ := res["config"].(map[string]any)
	status, _ := res["status"].(map[string]any)
	if st != 200 || cfg["cron"] != "* * * * * *" || status["active"] != true || cfg["payload"].(map[string]any)["who"] != "alarm" {
		t.Fatalf("read: %d %v", st, res)
	}
	// The rule's action got the payload.
	waitFor(t, func() bool {
		var list []map[string]any
		e.call(g, "GET", "/api/v1/namespaces/_/activations?name=alarmecho&docs=true&limit=1", nil, &list)
		if len(list) != 1 {
			return false
		}
		res, _ := list[0]["response"].(map[string]any)["result"].(map[string]any)
		return res["who"] == "alarm"
	})

	// Paused, it does not fire; unpaused it does.
	if st, _ := e.feed(g, "alarm", "PAUSE", "tick", nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	if _, res := e.feed(g, "alarm", "READ", "tick", nil); res["status"].(map[string]any)["active"] != false {
		t.Errorf("paused: %v", res)
	}
	time.Sleep(1500 * time.Millisecond) // a tick in flight lands
	n := e.fires("tick")
	if st, _ := e.feed(g, "alarm", "UPDATE", "tick", map[string]any{"cron": "*/1 * * * * *"}); st != 200 {
		t.Fatalf("update: %d", st)
	}
	if _, res := e.feed(g, "alarm", "READ", "tick", nil); res["config"].(map[string]any)["cron"] != "*/1 * * * * *" {
		t.Errorf("updated: %v", res)
	}
	if st, _ := e.feed(g, "alarm", "UNPAUSE", "tick", nil); st != 200 {
		t.Fatalf("unpause: %d", st)
	}
	waitFor(t, func() bool { return e.fires("tick") > n })

	// A restart keeps the schedule.
	e.p.Stop()
	e = startWith(t, dir, nil)
	n = e.fires("tick")
	waitFor(t, func() bool { return e.fires("tick") >= n+2 })

	// Deleted, it stops.
	if st, _ := e.feed(g, "alarm", "DELETE", "tick", nil); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	if st, _ := e.feed(g, "alarm", "READ", "tick", nil); st != http.StatusBadGateway {
		t.Errorf("read after delete: %d", st)
	}

	// Once, two seconds from now: it fires exactly once.
	at := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	if st, res := e.feed(g, "once", "CREATE", "once", map[string]any{"date": at}); st != 200 {
		t.Fatalf("once: %d %v", st, res)
	}
	waitFor(t, func() bool { return e.fires("once") == 1 })
	if _, res := e.feed(g, "once", "READ", "once", nil); res["status"].(map[string]any)["active"] != false {
		t.Errorf("once after firing: %v", res)
	}
	// Interval: a minute is the shortest; it is stored and read back.
	if st, res := e.feed(g, "interval", "CREATE", "once", map[string]any{"minutes": 2}); st != http.StatusBadGateway {
		t.Errorf("interval on a trigger with an alarm: %d %v", st, res)
	}
	if st, _ := e.feed(g, "once", "DELETE", "once", nil); st != 200 {
		t.Fatalf("delete once: %d", st)
	}
	if st, res := e.feed(g, "interval", "CREATE", "once", map[string]any{"minutes": 2}); st != 200 {
		t.Fatalf("interval: %d %v", st, res)
	}
	if _, res := e.feed(g, "interval", "READ", "once", nil); res["config"].(map[string]any)["minutes"] != 2.0 {
		t.Errorf("interval read: %v", res)
	}
}
