package sandbox

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// pkgJSEngine is the JavaScript engine of the nodejs kinds.
const pkgJSEngine = "internal/jsengine"

// jsEngine compiles the JavaScript engine once per test binary into a
// shared Engine (compiling it takes seconds).
var jsEngine = sync.OnceValues(func() (*Module, error) {
	wasm, err := wasmbuild.Build(pkgJSEngine)
	if err != nil {
		return nil, err
	}
	return NewEngine().Compile(context.Background(), wasm)
})

func mustJSEngine(t testing.TB) *Module {
	t.Helper()
	m, err := jsEngine()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// jsFunction binds the engine to a function's code, closed with the test.
func jsFunction(t testing.TB, code []byte, main string) *Module {
	t.Helper()
	env := map[string]string{"CLEMMYS_JS_KIND": "nodejs:20"}
	if main != "" {
		env["CLEMMYS_JS_MAIN"] = main
	}
	m, err := mustJSEngine(t).Bind(Data{Files: map[string][]byte{"code": code}, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func jsResult(t *testing.T, res *Result) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("output %q: %v (logs %q)", res.Output, err, res.Logs)
	}
	return out
}

func TestJSActivation(t *testing.T) {
	m := jsFunction(t, []byte(`
		let calls = 0;
		async function main(params) {
			calls++;
			console.log('hello', params.name);
			await new Promise(r => setTimeout(r, 2));
			console.error('after the timer');
			return {greeting: 'Hello ' + params.name, calls, env: {
				id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE,
				action: process.env.__OW_ACTION_NAME, deadline: process.env.__OW_DEADLINE}};
		}`), "")
	for i := 1; i <= 3; i++ {
		before := time.Now()
		res, err := m.RunActivation(context.Background(), Activation{
			Params: []byte(`{"name": "JS"}`), ID: "00aa", Namespace: "guest", Action: "/guest/hello",
		}, Limits{Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("activation %d: %v (logs %q)", i, err, logsOf(res))
		}
		out := jsResult(t, res)
		if out["greeting"] != "Hello JS" || out["calls"] != float64(i) {
			t.Fatalf("activation %d: %v", i, out)
		}
		env := out["env"].(map[string]any)
		if env["id"] != "00aa" || env["ns"] != "guest" || env["action"] != "/guest/hello" {
			t.Fatalf("env %v", env)
		}
		var deadline int64
		if err := json.Unmarshal([]byte(env["deadline"].(string)), &deadline); err != nil ||
			deadline < before.Add(30*time.Second).UnixMilli() || deadline > time.Now().Add(30*time.Second).UnixMilli() {
			t.Fatalf("deadline %v, want about 30 s from now", env["deadline"])
		}
		lines := strings.Split(strings.TrimSpace(string(res.Logs)), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], " stdout: hello JS") || !strings.HasSuffix(lines[1], " stderr: after the timer") {
			t.Fatalf("logs %q", res.Logs)
		}
		if i > 1 && !res.Warm {
			t.Fatalf("activation %d did not run warm", i)
		}
	}
}

// Two functions on one engine module never share an instance: each has
// its own global state and its own pool.
func TestJSFunctionsDoNotShareInstances(t *testing.T) {
	code := []byte(`let n = 0; function main() { n++; return {n} }`)
	a, b := jsFunction(t, code, ""), jsFunction(t, code, "")
	run := func(m *Module) float64 {
		res, err := m.Run(context.Background(), nil, Limits{})
		if err != nil {
			t.Fatal(err, logsOf(res))
		}
		return jsResult(t, res)["n"].(float64)
	}
	if got := []float64{run(a), run(a), run(b), run(a), run(b)}; !equalFloats(got, []float64{1, 2, 1, 3, 2}) {
		t.Fatalf("counts %v", got)
	}
	if idleOf(a) != 1 || idleOf(b) != 1 {
		t.Fatalf("idle a=%d b=%d, want 1 each", idleOf(a), idleOf(b))
	}
	// Closing one function ends its instances only.
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if idleOf(b) != 0 || idleOf(a) != 1 {
		t.Fatalf("after closing b: idle a=%d b=%d", idleOf(a), idleOf(b))
	}
	if _, err := b.Run(context.Background(), nil, Limits{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("run of a closed function: %v", err)
	}
	if got := run(a); got != 4 {
		t.Fatalf("a after b closed: %v", got)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A JavaScript function that loops forever or allocates without bound is
// stopped by the same limits, with the same errors, as a wasm one, and its
// next activation runs in a fresh instance.
func TestJSLimits(t *testing.T) {
	m := jsFunction(t, []byte(`
		function main(p) {
			if (p.loop) { for (;;) {} }
			if (p.hog) { const a = []; for (;;) a.push(new Array(1 << 16).fill(1)); }
			if (p.wait) { return new Promise(r => setTimeout(r, 60000)); }
			return {ok: true};
		}`), "")
	tests := []struct {
		params string
		lim    Limits
		want   error
	}{
		{`{"loop": true}`, Limits{Timeout: 300 * time.Millisecond}, ErrTimeout},
		{`{"hog": true}`, Limits{MemoryBytes: 64 << 20}, ErrMemoryLimit},
		{`{"wait": true}`, Limits{Timeout: 300 * time.Millisecond}, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			res, err := m.Run(context.Background(), []byte(tt.params), tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v (logs %q)", err, tt.want, logsOf(res))
			}
			res, err = m.Run(context.Background(), []byte(`{}`), tt.lim)
			if err != nil || jsResult(t, res)["ok"] != true {
				t.Fatalf("after the limit: %v, %q", err, res.Output)
			}
			if res.Warm {
				t.Fatal("the activation after a limit ran in the instance that hit it")
			}
		})
	}
}

func TestJSZip(t *testing.T) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, src := range map[string]string{
		"package.json": `{"main": "src/index.js"}`,
		"src/index.js": `const { shout } = require('./util'); exports.main = async p => ({said: shout(p.word)})`,
		"src/util.js":  `exports.shout = w => w.toUpperCase() + '!'`,
	} {
		w, _ := zw.Create(name)
		_, _ = w.Write([]byte(src))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	m := jsFunction(t, b.Bytes(), "")
	res, err := m.Run(context.Background(), []byte(`{"word":"hi"}`), Limits{})
	if err != nil {
		t.Fatal(err, logsOf(res))
	}
	if got := jsResult(t, res)["said"]; got != "HI!" {
		t.Fatalf("said %v", got)
	}
}

func TestLoopLineV2(t *testing.T) {
	deadline := time.UnixMilli(1700000000123)
	tests := []struct {
		act  Activation
		want string
	}{
		{Activation{Params: []byte(` {"a": [1, 2],
			"b": "x"} `), ID: "ab", Namespace: "guest", Action: "/guest/f"},
			`{"value":{"a":[1,2],"b":"x"},"activation_id":"ab","namespace":"guest","action_name":"/guest/f","deadline":"1700000000123"}`},
		{Activation{}, `{"value":{},"deadline":"1700000000123"}`},
		{Activation{Params: []byte("not\njson"), Action: "a\"b"}, `{"value":"not\njson","action_name":"a\"b","deadline":"1700000000123"}`},
	}
	for _, tt := range tests {
		got := loopLineV2(tt.act, deadline)
		if string(got) != tt.want+"\n" {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func FuzzLoopLineV2(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "id", "ns")
	f.Add([]byte("{\n}"), "", "\n")
	f.Add([]byte("\xff"), "\x00", "x")
	f.Fuzz(func(t *testing.T, params []byte, id, ns string) {
		line := loopLineV2(Activation{Params: params, ID: id, Namespace: ns}, time.Now())
		if !oneLine(line) {
			t.Fatalf("not one line: %q", line)
		}
		var msg struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(line, &msg); err != nil || len(msg.Value) == 0 {
			t.Fatalf("line %q: %v", line, err)
		}
	})
}

func TestBindRefusesBadData(t *testing.T) {
	m := compileIn(t, newEngine(t, Config{}), pkgHello)
	for _, d := range []Data{
		{Files: map[string][]byte{"a/b": nil}},
		{Files: map[string][]byte{"..": nil}},
		{Files: map[string][]byte{"": nil}},
		{Env: map[string]string{"A=B": "c"}},
		{Env: map[string]string{LoopEnv: "1"}},
		{Env: map[string]string{"A": "b\x00"}},
		{Files: map[string][]byte{"big": make([]byte, MaxDataBytes+1)}},
	} {
		if _, err := m.Bind(d); !errors.Is(err, ErrInvalidData) {
			t.Errorf("Bind(%v): %v, want ErrInvalidData", d.Env, err)
		}
	}
}

func TestMemFS(t *testing.T) {
	fsys := memFS{"code": []byte("x"), "other": []byte("yz")}
	if err := fstest.TestFS(fsys, "code", "other"); err != nil {
		t.Fatal(err)
	}
}

// jsHello is the JavaScript hello, as examples/hello is Go's.
const jsHello = `function main(params) { return {greeting: 'Hello ' + (params.name || 'stranger') + '!'} }`

// BenchmarkRunJSHello is one activation of the JavaScript hello (compare
// BenchmarkRunHello/warm for Go's):
//
//   - compile: compiling the engine module (once per runtime);
//   - cold: a function bound to the compiled engine and its first
//     activation: the guest's Go runtime and goja start, the code loads;
//   - warm: an idle instance reused.
func BenchmarkRunJSHello(b *testing.B) {
	in := []byte(`{"name":"bench"}`)
	ctx := context.Background()
	b.Run("compile", func(b *testing.B) {
		wasm := wasmbuild.MustBuild(b, pkgJSEngine)
		b.SetBytes(int64(len(wasm)))
		for b.Loop() {
			e := NewEngine()
			if _, err := e.Compile(ctx, wasm); err != nil {
				b.Fatal(err)
			}
			_ = e.Close(ctx)
		}
	})
	b.Run("cold", func(b *testing.B) {
		engine := mustJSEngine(b)
		lat := make([]time.Duration, 0, 256)
		for b.Loop() {
			t0 := time.Now()
			m, err := engine.Bind(Data{Files: map[string][]byte{"code": []byte(jsHello)}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Run(ctx, in, Limits{}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			_ = m.Close(ctx)
		}
		reportPercentiles(b, lat)
	})
	b.Run("warm", func(b *testing.B) {
		m := jsFunction(b, []byte(jsHello), "")
		benchmarkRun(b, m, in)
	})
}
