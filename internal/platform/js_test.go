package platform_test

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// jsEngineFile is the JavaScript engine, built once per test binary into
// a file (platform.Config.JSEngines takes files, as `clemmys up` does).
var jsEngineFile = sync.OnceValues(func() (string, error) {
	wasm, err := wasmbuild.Build("internal/jsengine")
	if err != nil {
		return "", err
	}
	// Beside the runtime binary, in the directory TestMain removes.
	p := filepath.Join(filepath.Dir(enclavePath), "jsengine.wasm")
	return p, os.WriteFile(p, wasm, 0o600)
})

// startJS starts a platform with the JavaScript engine.
func startJS(t *testing.T, opt func(*platform.Config)) *env {
	t.Helper()
	engine, err := jsEngineFile()
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, t.TempDir(), func(c *platform.Config) {
		c.JSEngines = []string{engine}
		if opt != nil {
			opt(c)
		}
	})
}

// deployJS puts a nodejs action: source text, or a zip (binary).
func (e *env) deployJS(auth, name, kind string, code []byte, binary bool, extra map[string]any) map[string]any {
	e.t.Helper()
	exec := map[string]any{"kind": kind, "code": string(code)}
	if binary {
		exec["code"], exec["binary"] = base64.StdEncoding.EncodeToString(code), true
	}
	body := map[string]any{"exec": exec}
	for k, v := range extra {
		if k == "main" {
			exec["main"] = v
			continue
		}
		body[k] = v
	}
	var got map[string]any
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, &got); st != http.StatusOK {
		e.t.Fatalf("deploy %s: status %d: %v", name, st, got)
	}
	return got
}

func zipFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, src := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(src)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// invokeFailed invokes an action blocking and returns the record of its
// failed activation (OpenWhisk answers 502).
func (e *env) invokeFailed(auth, name string, params any) map[string]any {
	e.t.Helper()
	var act map[string]any
	st, hdr := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true", params, &act)
	if st != http.StatusBadGateway {
		e.t.Fatalf("invoke %s: %d %v, want a failure (502)", name, st, act)
	}
	return e.waitActivation(auth, hdr.Get("x-openwhisk-activation-id"))
}

// jsSecret is in the deployed source: it must never be stored in
// plaintext.
const jsSecret = "js-source-secret-4f1d2a"

// TestJSAction deploys an unchanged OpenWhisk-style zipped Node.js action
// (async/await, console.log, require of a local file, a rejected promise)
// and checks its results, logs and error status; then a plain source with
// a custom entry point, __OW_* values, warm state and an update.
func TestJSAction(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()

	var info map[string]any
	if st, _ := e.call("", "GET", "/api/v1", nil, &info); st != 200 {
		t.Fatalf("GET /api/v1: %d", st)
	}
	if rt, _ := info["runtimes"].(map[string]any); rt == nil || rt["nodejs"] == nil {
		t.Fatalf("runtimes: %v", info["runtimes"])
	}

	zipped := zipFiles(t, map[string]string{
		"package.json": `{"name": "greeter", "version": "1.0.0", "main": "index.js"}`,
		"index.js": `const { greet } = require('./lib/greet');
async function main(params) {
  console.log('greeting', params.name);
  if (params.fail) {
    return Promise.reject(new Error('refusing to greet ' + params.name));
  }
  const text = await greet(params.name);
  console.error('done');
  return { text };
}
exports.main = main;
`,
		"lib/greet.js": `const SECRET = '` + jsSecret + `';
exports.greet = name => new Promise(resolve => setTimeout(() => resolve('Hello, ' + name + '!'), 5));
`,
	})
	got := e.deployJS(g, "greeter", "nodejs:default", zipped, true, nil)
	if ex := got["exec"].(map[string]any); ex["kind"] != "nodejs:20" {
		t.Fatalf("stored kind %v, want nodejs:default resolved to nodejs:20", ex["kind"])
	}

	act := e.invokeRecord(g, "greeter", map[string]any{"name": "Ada"})
	resp := act["response"].(map[string]any)
	if !success(act) || resp["result"].(map[string]any)["text"] != "Hello, Ada!" {
		t.Fatalf("activation: %v", act)
	}
	logs := act["logs"].([]any)
	if len(logs) != 2 || !strings.HasSuffix(logs[0].(string), " stdout: greeting Ada") || !strings.HasSuffix(logs[1].(string), " stderr: done") {
		t.Fatalf("logs %q", logs)
	}
	ts0, _, _ := strings.Cut(logs[0].(string), " ")
	if _, err := time.Parse(time.RFC3339Nano, ts0); err != nil {
		t.Fatalf("log timestamp %q: %v", ts0, err)
	}

	act = e.invokeFailed(g, "greeter", map[string]any{"name": "Bob", "fail": true})
	resp = act["response"].(map[string]any)
	if success(act) || resp["status"] != "application error" || resp["result"].(map[string]any)["error"] != "refusing to greet Bob" {
		t.Fatalf("rejected promise: %v", resp)
	}
	if logs := act["logs"].([]any); len(logs) < 2 || !strings.Contains(logs[1].(string), "stderr: Error: refusing to greet Bob") {
		t.Fatalf("rejected promise's logs (the stack is logged): %q", logs)
	}

	// A plain source, a custom entry point, the activation's __OW_ values,
	// global state kept by a warm instance.
	src := `let calls = 0;
function handler(params) {
  calls++;
  return { calls, name: process.env.__OW_ACTION_NAME, ns: process.env.__OW_NAMESPACE,
           id: process.env.__OW_ACTIVATION_ID, deadline: Number(process.env.__OW_DEADLINE) > Date.now() };
}`
	e.deployJS(g, "counter", "nodejs:22", []byte(src), false, map[string]any{"main": "handler"})
	first := e.invokeRecord(g, "counter", nil)
	second := e.invokeRecord(g, "counter", nil)
	r1 := first["response"].(map[string]any)["result"].(map[string]any)
	r2 := second["response"].(map[string]any)["result"].(map[string]any)
	if r1["calls"] != float64(1) || r2["calls"] != float64(2) || r1["name"] != "/guest/counter" || r1["ns"] != "guest" ||
		r1["id"] != first["activationId"] || r2["id"] != second["activationId"] || r1["deadline"] != true {
		t.Fatalf("results %v then %v (activations %v, %v)", r1, r2, first["activationId"], second["activationId"])
	}
	// Another action with the same code has its own instances.
	e.deployJS(g, "counter2", "nodejs:22", []byte(src), false, map[string]any{"main": "handler"})
	if _, res := e.invokeResult(g, "/api/v1/namespaces/_/actions/counter2", nil); res["calls"] != float64(1) {
		t.Fatalf("another action shares state: %v", res)
	}
	// An update runs the new code.
	e.deployJS(g, "counter", "nodejs:20", []byte(`function main() { return {v: 2} }`), false, nil)
	if _, res := e.invokeResult(g, "/api/v1/namespaces/_/actions/counter", nil); res["v"] != float64(2) {
		t.Fatalf("after the update: %v", res)
	}

	// Deploy-time checks.
	var body errorBody
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/bad", map[string]any{"exec": map[string]any{"kind": "nodejs:20", "code": "function main( {"}}, &body); st != 400 ||
		!strings.Contains(body.Error, "not valid JavaScript") {
		t.Fatalf("syntax error: %d %v", st, body)
	}
	checkSealedAtRest(t, e, jsSecret)
}

// TestJSMixed: sequences, packages with default parameters, triggers and
// rules work with JavaScript actions mixed with wasm ones.
func TestJSMixed(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	api := "/api/v1/namespaces/_"
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	e.deployJS(g, "inc", "nodejs:20", []byte(`exports.main = p => ({...p, n: (p.n || 0) + 1, by: (p.by || []).concat(['js'])})`), false, nil)

	// js → wasm → js
	e.deploySequence(g, "mix", "/_/inc", "/_/echo", "/_/inc")
	act := e.runSequence(g, "mix", map[string]any{"n": 1})
	res := act["response"].(map[string]any)["result"].(map[string]any)
	if !success(act) || res["n"] != float64(3) || len(res["by"].([]any)) != 2 {
		t.Fatalf("sequence: %v", act)
	}

	// A package's default parameters reach a JavaScript action in it.
	var got map[string]any
	if st, _ := e.call(g, "PUT", api+"/packages/tools", map[string]any{"parameters": kvs("greeting", "hi")}, &got); st != 200 {
		t.Fatalf("create package: %d %v", st, got)
	}
	e.deployJS(g, "tools/say", "nodejs:20", []byte(`function main(p) { return {said: p.greeting + ' ' + p.name} }`), false,
		map[string]any{"parameters": kvs("name", "default")})
	if st, res := e.invokeResult(g, api+"/actions/tools/say", map[string]any{}); st != 200 || res["said"] != "hi default" {
		t.Fatalf("package action: %d %v", st, res)
	}

	// A trigger fires a JavaScript action through a rule.
	if st, _ := e.call(g, "PUT", api+"/triggers/ping", map[string]any{"parameters": kvs("n", 10)}, &got); st != 200 {
		t.Fatalf("create trigger: %d %v", st, got)
	}
	if st, _ := e.call(g, "PUT", api+"/rules/pingInc", map[string]any{"trigger": "ping", "action": "inc"}, &got); st != 200 {
		t.Fatalf("create rule: %d %v", st, got)
	}
	var accepted map[string]string
	if st, _ := e.call(g, "POST", api+"/triggers/ping", nil, &accepted); st != http.StatusAccepted {
		t.Fatalf("fire: %d %v", st, accepted)
	}
	trig := e.waitActivation(g, accepted["activationId"])
	logs := trig["logs"].([]any)
	if len(logs) != 1 || !strings.Contains(logs[0].(string), `"activationId":"`) {
		t.Fatalf("trigger logs: %v", trig["logs"])
	}
	id := logs[0].(string)
	id = id[strings.Index(id, `"activationId":"`)+len(`"activationId":"`):]
	id = id[:strings.IndexByte(id, '"')]
	ruled := e.waitActivation(g, id)
	if r := ruled["response"].(map[string]any)["result"].(map[string]any); !success(ruled) || r["n"] != float64(11) {
		t.Fatalf("rule's activation: %v", ruled)
	}
}

// TestJSLimits: a JavaScript action that loops forever or allocates
// without bound is stopped by the same limits as a wasm one, with the same
// error, and the runtime keeps serving.
func TestJSLimits(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	e.deploy(g, "loop", wasmbuild.MustBuild(t, "internal/testfuncs/loop"), map[string]any{"timeout": 500})
	e.deployJS(g, "jsloop", "nodejs:20", []byte(`function main(p) { if (p.spin) { for (;;) {} } return {ok: true} }`), false,
		map[string]any{"limits": map[string]any{"timeout": 500}})
	e.deployJS(g, "jshog", "nodejs:20", []byte(`function main(p) { const a = []; if (p.hog) for (;;) a.push(new Array(1 << 16).fill(7)); return {ok: true} }`), false,
		map[string]any{"limits": map[string]any{"memory": 128}})

	wasmAct := e.invokeFailed(g, "loop", map[string]any{"spin": true})
	jsAct := e.invokeFailed(g, "jsloop", map[string]any{"spin": true})
	wr, jr := wasmAct["response"].(map[string]any), jsAct["response"].(map[string]any)
	if jr["status"] != wr["status"] || jr["result"].(map[string]any)["error"] != wr["result"].(map[string]any)["error"] ||
		jr["status"] != "action developer error" {
		t.Fatalf("JS loop %v, wasm loop %v", jr, wr)
	}
	hog := e.invokeFailed(g, "jshog", map[string]any{"hog": true})["response"].(map[string]any)
	if hog["status"] != "action developer error" || hog["result"].(map[string]any)["error"] != "The action exceeded its memory limit of 128 MB." {
		t.Fatalf("JS allocation: %v", hog)
	}
	for _, name := range []string{"jsloop", "jshog"} {
		if st, res := e.invokeResult(g, "/api/v1/namespaces/_/actions/"+name, nil); st != 200 || res["ok"] != true {
			t.Fatalf("%s after its limit: %d %v", name, st, res)
		}
	}
}

// TestJSPrecompiled: with PrecompileJSEngine, spare runtimes compile the
// engine before any JavaScript function is deployed, and a namespace's
// first JavaScript function loads without compiling it.
func TestJSPrecompiled(t *testing.T) {
	e := startJS(t, func(c *platform.Config) {
		c.PrecompileJSEngine = true
		c.InvokerPoolSize = 1
	})
	waitFor(t, func() bool { return strings.Contains(e.logs.String(), "JavaScript engine loaded") })
	beforeDeploy := e.logs.String()
	e.deployJS(e.guest(), "hello", "nodejs:20", []byte(`function main(p) { return {hello: p.name} }`), false, nil)
	if _, res := e.invokeResult(e.guest(), "/api/v1/namespaces/_/actions/hello", map[string]any{"name": "x"}); res["hello"] != "x" {
		t.Fatalf("result %v", res)
	}
	// The runtime the namespace got from the pool had compiled the engine
	// before the function was deployed.
	pid := ""
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "enclave runtime taken from the pool") && strings.Contains(line, "namespace=guest") {
			_, pid, _ = strings.Cut(line, "runtime_pid=")
			pid, _, _ = strings.Cut(pid, " ")
		}
	}
	if pid == "" {
		t.Fatalf("the guest runtime did not come from the pool:\n%s", e.logs.String())
	}
	compiled := false
	for _, line := range strings.Split(beforeDeploy, "\n") {
		compiled = compiled || (strings.Contains(line, "JavaScript engine loaded") && strings.Contains(line, "runtime_pid="+pid+" ")) ||
			(strings.Contains(line, "JavaScript engine loaded") && strings.HasSuffix(line, "runtime_pid="+pid))
	}
	if !compiled {
		t.Fatalf("runtime %s had not compiled the engine before the deploy:\n%s", pid, beforeDeploy)
	}
}

// TestJSEngineBinding: a JavaScript action is bound to the engine it was
// deployed on. Restarted without that engine, the platform refuses new
// nodejs actions and fails the old one's invocations with engine_missing
// (it never runs it on something else); restarted with it, the action runs
// again.
func TestJSEngineBinding(t *testing.T) {
	engine, err := jsEngineFile()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	withEngine := func(c *platform.Config) { c.JSEngines = []string{engine} }
	e := startWith(t, dir, withEngine)
	e.deployJS(e.guest(), "bound", "nodejs:20", []byte(`function main() { return {ok: true} }`), false, nil)
	auth := e.guest()
	e.p.Stop()

	e = startWith(t, dir, nil)
	var failed map[string]any
	st, _ := e.call(auth, "POST", "/api/v1/namespaces/_/actions/bound?blocking=true", nil, &failed)
	resp, _ := failed["response"].(map[string]any)
	res, _ := resp["result"].(map[string]any)
	if st == 200 || resp["status"] != "whisk internal error" || !strings.Contains(fmt.Sprint(res["error"]), "JavaScript engine") {
		t.Fatalf("without its engine: %d %v", st, failed)
	}
	var body errorBody
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/new", map[string]any{"exec": map[string]any{"kind": "nodejs:20", "code": "function main() {}"}}, &body); st != 400 ||
		!strings.Contains(body.Error, "not enabled") {
		t.Fatalf("a nodejs deploy without an engine: %d %v", st, body)
	}
	e.p.Stop()

	e = startWith(t, dir, withEngine)
	if st, res := e.invokeResult(auth, "/api/v1/namespaces/_/actions/bound", nil); st != 200 || res["ok"] != true {
		t.Fatalf("with its engine again: %d %v", st, res)
	}
}
