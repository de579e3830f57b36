package platform_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// Secrets kept in default parameters: never in plaintext at rest.
const (
	actionParamSecret  = "ACTION-PARAM-SECRET-4f1d"
	packageParamSecret = "PACKAGE-PARAM-SECRET-77ab"
	triggerParamSecret = "TRIGGER-PARAM-SECRET-c3e9"
	firePayloadSecret  = "FIRE-PAYLOAD-SECRET-0a5b"
)

func kvs(pairs ...any) []map[string]any {
	out := []map[string]any{}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, map[string]any{"key": pairs[i], "value": pairs[i+1]})
	}
	return out
}

// paramsOf returns an entity's parameters as a map.
func paramsOf(ent map[string]any) map[string]any {
	out := map[string]any{}
	ps, _ := ent["parameters"].([]any)
	for _, p := range ps {
		kv := p.(map[string]any)
		out[kv["key"].(string)] = kv["value"]
	}
	return out
}

// invokeResult invokes path blocking, result only, as auth.
func (e *env) invokeResult(auth, path string, params any) (int, map[string]any) {
	e.t.Helper()
	var res map[string]any
	st, _ := e.call(auth, "POST", path+"?blocking=true&result=true", params, &res)
	return st, res
}

// TestOpenWhiskActions covers OpenWhisk's action semantics: create and
// update (merge, version bump), default parameters (sealed at rest, merged,
// final), actions in packages, public packages of another namespace, the
// blocking wait and the activation list's filters.
func TestOpenWhiskActions(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	code := base64.StdEncoding.EncodeToString(echo)
	api := "/api/v1/namespaces/_"
	began := time.Now().UnixMilli()

	// Create with parameters and annotations; again without overwrite: 409.
	body := map[string]any{
		"exec":        map[string]any{"kind": "wasm", "code": code},
		"parameters":  kvs("apiKey", actionParamSecret, "n", 1),
		"annotations": kvs("description", "echoes"),
	}
	var a map[string]any
	if st, _ := e.call(g, "PUT", api+"/actions/echo", body, &a); st != 200 || a["version"] != "0.0.1" || paramsOf(a)["apiKey"] != actionParamSecret {
		t.Fatalf("create: %d %v", st, a)
	}
	var eb errorBody
	if st, _ := e.call(g, "PUT", api+"/actions/echo", body, &eb); st != http.StatusConflict {
		t.Fatalf("create again: %d %v", st, eb)
	}
	var got map[string]any
	e.call(g, "GET", api+"/actions/echo?code=false", nil, &got)
	digest := got["exec"].(map[string]any)["digest"]
	limits := got["limits"].(map[string]any)
	if paramsOf(got)["apiKey"] != actionParamSecret || digest == nil || limits["timeout"] != float64(60000) || limits["memory"] != float64(256) {
		t.Fatalf("get: %v", got)
	}

	// An update merges: only limits.memory given; parameters, annotations,
	// code and the other limits are kept; the version is bumped.
	if st, _ := e.call(g, "PUT", api+"/actions/echo?overwrite=true", map[string]any{"limits": map[string]any{"memory": 128}}, &a); st != 200 {
		t.Fatalf("update: %d %v", st, a)
	}
	e.call(g, "GET", api+"/actions/echo", nil, &got)
	limits = got["limits"].(map[string]any)
	anns, _ := json.Marshal(got["annotations"])
	if got["version"] != "0.0.2" || limits["memory"] != float64(128) || limits["timeout"] != float64(60000) ||
		paramsOf(got)["apiKey"] != actionParamSecret || got["exec"].(map[string]any)["digest"] != digest || !strings.Contains(string(anns), "echoes") {
		t.Fatalf("after update: %v", got)
	}

	// Invocations merge the defaults under the payload.
	st, res := e.invokeResult(g, api+"/actions/echo", map[string]any{"x": "y"})
	if st != 200 || res["apiKey"] != actionParamSecret || res["n"] != float64(1) || res["x"] != "y" {
		t.Fatalf("invoke after kept-code update: %d %v", st, res)
	}
	if st, res = e.invokeResult(g, api+"/actions/echo", map[string]any{"apiKey": "mine"}); st != 200 || res["apiKey"] != "mine" {
		t.Fatalf("override: %d %v", st, res)
	}
	// final: the payload may not redefine the defaults.
	if st, _ := e.call(g, "PUT", api+"/actions/echo?overwrite=true", map[string]any{"annotations": kvs("final", true)}, &a); st != 200 || a["version"] != "0.0.3" {
		t.Fatalf("update annotations: %d %v", st, a)
	}
	if st, _ := e.call(g, "POST", api+"/actions/echo?blocking=true", map[string]any{"apiKey": "mine"}, &eb); st != http.StatusBadRequest ||
		eb.Error != "Request defines parameters that are not allowed (e.g., reserved properties or already defined by the action)." {
		t.Fatalf("final parameter redefined: %d %v", st, eb)
	}
	e.call(g, "PUT", api+"/actions/echo?overwrite=true", map[string]any{"annotations": kvs("final", []string{"n"})}, nil)
	if st, _ := e.call(g, "POST", api+"/actions/echo", map[string]any{"n": 2}, &eb); st != http.StatusBadRequest {
		t.Fatalf("final list: %d %v", st, eb)
	}
	if st, res = e.invokeResult(g, api+"/actions/echo", map[string]any{"apiKey": "mine"}); st != 200 || res["apiKey"] != "mine" {
		t.Fatalf("not final: %d %v", st, res)
	}

	// Actions in a package: the package's defaults under the action's.
	pkg := map[string]any{"parameters": kvs("pkgKey", packageParamSecret, "shared", "package")}
	if st, _ := e.call(g, "PUT", api+"/packages/tools", pkg, &got); st != 200 {
		t.Fatalf("create package: %d %v", st, got)
	}
	inner := map[string]any{"exec": map[string]any{"kind": "wasm", "code": code}, "parameters": kvs("shared", "action")}
	if st, _ := e.call(g, "PUT", api+"/actions/tools/inner", inner, &a); st != 200 || a["namespace"] != "guest/tools" || a["name"] != "inner" {
		t.Fatalf("create packaged action: %d %v", st, a)
	}
	if st, res = e.invokeResult(g, api+"/actions/tools/inner", map[string]any{"p": 1}); st != 200 ||
		res["pkgKey"] != packageParamSecret || res["shared"] != "action" || res["p"] != float64(1) {
		t.Fatalf("invoke packaged action: %d %v", st, res)
	}
	e.call(g, "GET", api+"/actions/tools/inner", nil, &got)
	if p := paramsOf(got); p["pkgKey"] != packageParamSecret || p["shared"] != "action" {
		t.Fatalf("get packaged action: %v", got)
	}
	var list []map[string]any
	if st, _ := e.call(g, "GET", api+"/actions/tools/", nil, &list); st != 200 || len(list) != 1 || list[0]["name"] != "inner" {
		t.Fatalf("list package: %d %v", st, list)
	}
	var count map[string]int
	if st, _ := e.call(g, "GET", api+"/actions?count=true", nil, &count); st != 200 || count["actions"] != 2 {
		t.Fatalf("count: %d %v", st, count)
	}
	if st, _ := e.call(g, "GET", api+"/actions?limit=1", nil, &list); st != 200 || len(list) != 1 || list[0]["name"] != "inner" {
		t.Fatalf("list newest first: %d %v", st, list)
	}

	// Another namespace: the package is private (403), then public.
	uuid, key, err := e.p.Gateway.CreateNamespace(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice := uuid + ":" + key
	guestInner := "/api/v1/namespaces/guest/actions/tools/inner"
	if st, _ := e.call(alice, "POST", guestInner+"?blocking=true", nil, &eb); st != http.StatusForbidden {
		t.Fatalf("private package from another namespace: %d %v", st, eb)
	}
	if st, _ := e.call(alice, "POST", "/api/v1/namespaces/guest/actions/echo?blocking=true", nil, &eb); st != http.StatusForbidden {
		t.Fatalf("action outside a package from another namespace: %d %v", st, eb)
	}
	if st, _ := e.call(g, "PUT", api+"/packages/tools?overwrite=true", map[string]any{"publish": true}, &got); st != 200 {
		t.Fatalf("publish package: %d %v", st, got)
	}
	st, hdr := e.call(alice, "POST", guestInner+"?blocking=true", map[string]any{"from": "alice"}, &got)
	if resp, _ := got["response"].(map[string]any); st != 200 || resp["result"].(map[string]any)["from"] != "alice" {
		t.Fatalf("public package action from another namespace: %d %v", st, got)
	}
	aliceAct := hdr.Get("x-openwhisk-activation-id")
	if st, _ := e.call(alice, "GET", guestInner, nil, &got); st != 200 || len(paramsOf(got)) != 0 {
		t.Fatalf("another namespace reads a public action (without its parameters): %d %v", st, got)
	}
	// The record is the caller's (OpenWhisk): alice reads it, the owner of
	// the package does not.
	rec := e.waitActivation(alice, aliceAct)
	if r, _ := json.Marshal(rec["response"]); !bytes.Contains(r, []byte("alice")) || rec["namespace"] != "alice" || rec["subject"] != "alice" {
		t.Fatalf("the caller's record of a public action: %v", rec)
	}
	if st, _ := e.call(g, "GET", api+"/activations/"+aliceAct, nil, &eb); st != http.StatusNotFound {
		t.Fatalf("the package owner reads the caller's activation: %d", st)
	}

	// A sequence of another namespace's public actions: sealed for their
	// namespace, recorded in the caller's, readable by the caller only.
	aliceAPI := "/api/v1/namespaces/_"
	seq := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/guest/tools/inner", "/guest/tools/inner"}}}
	if st, _ := e.call(alice, "PUT", aliceAPI+"/actions/useTools", seq, &got); st != 200 {
		t.Fatalf("sequence of public actions: %d %v", st, got)
	}
	var accepted map[string]string
	if st, _ := e.call(alice, "POST", aliceAPI+"/actions/useTools", map[string]any{"via": "seq"}, &accepted); st != http.StatusAccepted {
		t.Fatalf("invoke sequence of public actions: %d %v", st, accepted)
	}
	srec := e.waitActivation(alice, accepted["activationId"])
	if sres, _ := srec["response"].(map[string]any)["result"].(map[string]any); sres["via"] != "seq" || srec["namespace"] != "alice" {
		t.Fatalf("sequence of public actions: %v", srec)
	}
	if st, _ := e.call(g, "GET", api+"/activations/"+accepted["activationId"], nil, &eb); st != http.StatusNotFound {
		t.Fatalf("the owner of the components reads the caller's sequence: %d", st)
	}
	e.deploy(alice, "mine", echo, nil)
	mixed := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/mine", "/guest/tools/inner"}}}
	e.call(alice, "PUT", aliceAPI+"/actions/mixed", mixed, nil)
	if st, _ := e.call(alice, "POST", aliceAPI+"/actions/mixed?blocking=true", nil, &eb); st != http.StatusBadRequest {
		t.Fatalf("sequence mixing namespaces: %d %v", st, eb)
	}

	// Blocking wait bounded by ?timeout: 202 with the id, then the record.
	e.deploy(g, "sleep", wasmbuild.MustBuild(t, "internal/testfuncs/sleep"), map[string]any{"timeout": 10000})
	st, _ = e.call(g, "POST", api+"/actions/sleep?blocking=true&timeout=300", map[string]any{"ms": 1500}, &accepted)
	if st != http.StatusAccepted || len(accepted["activationId"]) != 32 {
		t.Fatalf("blocking wait past timeout: %d %v", st, accepted)
	}
	if rec := e.waitActivation(g, accepted["activationId"]); rec["response"].(map[string]any)["success"] != true {
		t.Fatalf("slept: %v", rec)
	}
	// A wait long enough for the controller to defer the running record
	// (wire.MinDeferredWaitMs): it is stored when the step outlives
	// DeferReserveMs, and the gateway confirms it before the 202.
	st, _ = e.call(g, "POST", api+"/actions/sleep?blocking=true&timeout=1000", map[string]any{"ms": 2500}, &accepted)
	if st != http.StatusAccepted || len(accepted["activationId"]) != 32 {
		t.Fatalf("blocking wait past a deferring timeout: %d %v", st, accepted)
	}
	if rec := e.waitActivation(g, accepted["activationId"]); rec["response"].(map[string]any)["success"] != true {
		t.Fatalf("slept: %v", rec)
	}
	// A failing activation: 502 (application error).
	fail := wasmbuild.MustBuild(t, "internal/testfuncs/fail")
	e.deploy(g, "fail", fail, nil)
	if st, res := e.invokeResult(g, api+"/actions/fail", nil); st != http.StatusBadGateway || res["error"] == nil {
		t.Fatalf("failing action: %d %v", st, res)
	}

	// Activation list filters.
	acts := func(q string) []map[string]any {
		t.Helper()
		var out []map[string]any
		if st, _ := e.call(g, "GET", api+"/activations?"+q, nil, &out); st != 200 {
			t.Fatalf("list %s: %d", q, st)
		}
		return out
	}
	if l := acts("name=echo"); len(l) != 3 || l[0]["name"] != "echo" || l[0]["response"] != nil {
		t.Fatalf("name=echo: %d records %v", len(l), l)
	}
	// Only guest's own invocation: alice's call and her sequence's
	// components are filed in alice's namespace.
	l := acts("name=tools/inner&docs=true")
	if len(l) != 1 || l[0]["name"] != "inner" || l[0]["response"].(map[string]any)["success"] != true {
		t.Fatalf("name=tools/inner: %v", l)
	}
	if l := acts("name=echo&skip=1&limit=2"); len(l) != 2 {
		t.Fatalf("skip/limit: %v", l)
	}
	if st, _ := e.call(g, "GET", api+"/activations?name=echo&count=true", nil, &count); st != 200 || count["activations"] != 3 {
		t.Fatalf("count: %d %v", st, count)
	}
	if st, _ := e.call(g, "GET", api+"/activations?count=true&docs=true", nil, &eb); st != http.StatusBadRequest {
		t.Fatalf("count and docs: %d %v", st, eb)
	}
	all := acts("limit=0")
	newest := int64(all[0]["start"].(float64))
	if l := acts(fmt.Sprintf("since=%d", newest)); len(l) == 0 || len(l) == len(all) {
		t.Fatalf("since: %d of %d", len(l), len(all))
	}
	if l := acts(fmt.Sprintf("upto=%d", began-1)); len(l) != 0 {
		t.Fatalf("upto before the first: %v", l)
	}
	if l := acts(fmt.Sprintf("since=%d&upto=%d", began, newest)); len(l) != len(all) {
		t.Fatalf("since..upto: %d of %d", len(l), len(all))
	}

	checkSealedAtRest(t, e, actionParamSecret, packageParamSecret)
}

// TestOpenWhiskTriggers fires triggers: 204 without an active rule; 202
// and the trigger's own (sealed) activation, whose logs name the rule's
// action activation, with one.
func TestOpenWhiskTriggers(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	api := "/api/v1/namespaces/_"
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(echo)}, "parameters": kvs("own", "action")}
	if st, _ := e.call(g, "PUT", api+"/actions/echo", body, nil); st != 200 {
		t.Fatalf("create action: %d", st)
	}
	var got map[string]any
	if st, _ := e.call(g, "PUT", api+"/triggers/tick", map[string]any{"parameters": kvs("tp", triggerParamSecret, "own", "trigger")}, &got); st != 200 {
		t.Fatalf("create trigger: %d %v", st, got)
	}
	if st, _ := e.call(g, "POST", api+"/triggers/tick", map[string]any{"f": 1}, nil); st != http.StatusNoContent {
		t.Fatalf("fire without rules: %d", st)
	}
	if st, _ := e.call(g, "PUT", api+"/rules/onTick", map[string]any{"trigger": "tick", "action": "echo"}, &got); st != 200 {
		t.Fatalf("create rule: %d %v", st, got)
	}
	var accepted map[string]string
	if st, _ := e.call(g, "POST", api+"/triggers/tick", map[string]any{"f": firePayloadSecret}, &accepted); st != http.StatusAccepted || len(accepted["activationId"]) != 32 {
		t.Fatalf("fire: %d %v", st, accepted)
	}
	trig := e.waitActivation(g, accepted["activationId"])
	res := trig["response"].(map[string]any)["result"].(map[string]any)
	if trig["name"] != "tick" || res["tp"] != triggerParamSecret || res["f"] != firePayloadSecret {
		t.Fatalf("trigger activation: %v", trig)
	}
	logs, _ := trig["logs"].([]any)
	if len(logs) != 1 {
		t.Fatalf("trigger logs: %v", trig["logs"])
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(logs[0].(string)), &line); err != nil || line["success"] != true || line["rule"] != "guest/onTick" || line["action"] != "guest/echo" {
		t.Fatalf("trigger log line %q: %v", logs[0], err)
	}
	act := e.waitActivation(g, line["activationId"].(string))
	ares := act["response"].(map[string]any)["result"].(map[string]any)
	// The trigger's parameters override the action's defaults (they are the
	// action's payload).
	if act["name"] != "echo" || ares["tp"] != triggerParamSecret || ares["f"] != firePayloadSecret || ares["own"] != "trigger" {
		t.Fatalf("rule's activation: %v", act)
	}
	// A disabled rule fires nothing.
	if st, _ := e.call(g, "POST", api+"/rules/onTick", map[string]any{"status": "inactive"}, &got); st != 200 {
		t.Fatalf("disable rule: %d %v", st, got)
	}
	if st, _ := e.call(g, "POST", api+"/triggers/tick", nil, nil); st != http.StatusNoContent {
		t.Fatalf("fire with the rule disabled: %d", st)
	}
	if st, _ := e.call(g, "POST", api+"/triggers/nosuch", nil, nil); st != http.StatusNotFound {
		t.Fatalf("fire a missing trigger: %d", st)
	}

	// A sequence's defaults go into its first step's input; its
	// components' own defaults are not applied (a documented deviation).
	seq := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/echo", "/_/echo"}}, "parameters": kvs("sp", "seq")}
	if st, _ := e.call(g, "PUT", api+"/actions/twice", seq, &got); st != 200 || paramsOf(got)["sp"] != "seq" {
		t.Fatalf("create sequence with parameters: %d %v", st, got)
	}
	var sres map[string]any
	if st, _ := e.call(g, "POST", api+"/actions/twice?blocking=true&result=true", map[string]any{"q": 1}, &sres); st != 200 ||
		sres["sp"] != "seq" || sres["q"] != float64(1) || sres["own"] != nil {
		t.Fatalf("sequence with parameters: %d %v", st, sres)
	}
	// An update without exec keeps the components.
	if st, _ := e.call(g, "PUT", api+"/actions/twice?overwrite=true", map[string]any{"parameters": kvs("sp", "new")}, &got); st != 200 ||
		got["version"] != "0.0.2" || len(got["exec"].(map[string]any)["components"].([]any)) != 2 {
		t.Fatalf("update sequence: %d %v", st, got)
	}
	if st, _ := e.call(g, "POST", api+"/actions/twice?blocking=true&result=true", nil, &sres); st != 200 || sres["sp"] != "new" {
		t.Fatalf("updated sequence: %d %v", st, sres)
	}
	checkSealedAtRest(t, e, triggerParamSecret, firePayloadSecret)
}

// checkSealedAtRest reads every value (with history) of every KV bucket
// and every object: none holds a secret in plaintext.
func checkSealedAtRest(t *testing.T, e *env, secrets ...string) {
	t.Helper()
	nc, err := e.p.Bus.Connect("rest-check")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(where string, b []byte) {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in plaintext", where, s)
			}
		}
	}
	values := 0
	for name := range js.KeyValueStoreNames(ctx).Name() {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			hist, err := kv.History(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range hist {
				values++
				check("KV "+name+" "+k, en.Value())
			}
		}
	}
	if values == 0 {
		t.Error("no KV values read")
	}
	check("platform logs", []byte(e.logs.String()))
}
