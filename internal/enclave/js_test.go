package enclave

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/fncode"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// jsCode is a JavaScript function's plaintext for the engine engine.
func jsCode(t testing.TB, engine []byte, src, main string) []byte {
	t.Helper()
	plain, err := (&fncode.JS{Engine: sha256.Sum256(engine), Kind: "nodejs:20", Main: main, Code: []byte(src)}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

func TestRunJS(t *testing.T) {
	f := newFixture(t)
	engine := wasmbuild.MustBuild(t, "./internal/jsengine")
	code := jsCode(t, engine, `
		async function hello(p) {
			console.log('in', process.env.__OW_ACTION_NAME);
			return {greeting: 'Hello ' + p.name + '!', ns: process.env.__OW_NAMESPACE, id: process.env.__OW_ACTIVATION_ID};
		}`, "hello")

	// Without its engine nothing loads, and the reply names the engine.
	fn, err := f.load(t, "hello", "alice", code)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(engine)
	if f.lastLoad == nil || string(f.lastLoad.Engine) != string(digest[:]) {
		t.Fatalf("load without the engine: %+v", f.lastLoad)
	}
	env, _ := f.seal(t, fn, `{}`, time.Minute, defaultLimits)
	if rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)}); rep.ErrorCode != CodeNotLoaded {
		t.Fatalf("run without the engine: %+v", rep)
	}

	// A runtime keeps engines by the digest of what it received: another
	// module does not stand in for the named one.
	if _, err := f.rt.LoadEngine(context.Background(), &ipc.EngineRequest{Wasm: wasmbuild.MustBuild(t, "./examples/hello")}); err != nil {
		t.Fatal(err)
	}
	f.reload(t, fn, code)
	if len(f.lastLoad.Engine) == 0 {
		t.Fatal("a function loaded on another engine than its code names")
	}

	rep, err := f.rt.LoadEngine(context.Background(), &ipc.EngineRequest{Wasm: engine})
	if err != nil || string(rep.Digest) != string(digest[:]) {
		t.Fatalf("load engine: %v %+v", err, rep)
	}
	f.reload(t, fn, code)
	if len(f.lastLoad.Engine) != 0 {
		t.Fatalf("still missing the engine: %+v", f.lastLoad)
	}
	env, rs := f.seal(t, fn, `{"name":"JS"}`, time.Minute, defaultLimits)
	run := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	if run.Status != wire.StatusSuccess {
		t.Fatalf("status %q (%s)", run.Status, run.ErrorMessage)
	}
	res, logs := openReply(t, run, rs, env)
	if res["greeting"] != "Hello JS!" || res["ns"] != "alice" || res["id"] != hexID(env.Header.RequestID) {
		t.Fatalf("result %v", res)
	}
	if !strings.Contains(logs, " stdout: in /alice/hello") {
		t.Fatalf("logs %q", logs)
	}
}

// A JavaScript error is an application error; a JavaScript function that
// loops forever is stopped like a wasm one, with the same status and
// message.
func TestRunJSFailures(t *testing.T) {
	f := newFixture(t)
	engine := wasmbuild.MustBuild(t, "./internal/jsengine")
	if _, err := f.rt.LoadEngine(context.Background(), &ipc.EngineRequest{Wasm: engine}); err != nil {
		t.Fatal(err)
	}
	code := jsCode(t, engine, `function main(p) { if (p.loop) for (;;) {} return Promise.reject(new Error('no way')) }`, "")
	fn, err := f.load(t, "fail", "alice", code)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := f.load(t, "loop", "alice", wasmbuild.MustBuild(t, "./internal/testfuncs/loop"))
	if err != nil {
		t.Fatal(err)
	}
	env, rs := f.seal(t, fn, `{}`, time.Minute, defaultLimits)
	rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	res, _ := openReply(t, rep, rs, env)
	if rep.Status != wire.StatusApplicationError || res["error"] != "no way" {
		t.Fatalf("rejected promise: %q %v", rep.Status, res)
	}

	lim := defaultLimits
	lim.TimeoutMs = 300
	var results []map[string]any
	var statuses []string
	for _, target := range []*loadedFn{fn, loop} {
		env, rs := f.seal(t, target, `{"loop":true}`, time.Minute, lim)
		rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: target.rec.FunctionID, Envelope: marshal(t, env)})
		res, _ := openReply(t, rep, rs, env)
		results, statuses = append(results, res), append(statuses, rep.Status)
	}
	if statuses[0] != wire.StatusDeveloperError || statuses[0] != statuses[1] || results[0]["error"] != results[1]["error"] {
		t.Fatalf("JS loop: %s %v; wasm loop: %s %v", statuses[0], results[0], statuses[1], results[1])
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
