package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Go guests used by the tests, built once per process.
const (
	pkgHello   = "examples/hello"
	pkgEcho    = "internal/testfuncs/echo"
	pkgLoop    = "internal/testfuncs/loop"
	pkgMemhog  = "internal/testfuncs/memhog"
	pkgFail    = "internal/testfuncs/fail"
	pkgBigout  = "internal/testfuncs/bigout"
	pkgLoglots = "internal/testfuncs/loglots"
	pkgSleep   = "internal/testfuncs/sleep"
	pkgProbe   = "internal/testfuncs/probe"
	pkgCompute = "internal/testfuncs/compute"
	pkgCounter = "internal/testfuncs/counter"
	pkgFresh   = "internal/testfuncs/counterfresh"
)

// shared is the Engine most tests use; its modules are compiled once.
var shared = struct {
	once    sync.Once
	engine  *Engine
	mu      sync.Mutex
	modules map[string]*Module // by package, and package + "/oneshot"
}{modules: map[string]*Module{}}

func TestMain(m *testing.M) {
	code := m.Run()
	if e := shared.engine; e != nil {
		if err := e.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "closing engine:", err)
			code = 1
		}
		if n := len(e.live); n != 0 {
			fmt.Fprintf(os.Stderr, "%d instances left after Engine.Close\n", n)
			code = 1
		}
	}
	os.Exit(code)
}

func sharedEngine() *Engine {
	shared.once.Do(func() { shared.engine = NewEngine() })
	return shared.engine
}

// goModule returns the shared compiled module for a Go package (built with
// the sdk: it speaks the loop convention).
func goModule(t testing.TB, pkg string) *Module { return sharedModule(t, pkg, false) }

// oneShotModule is goModule in the one-shot convention.
func oneShotModule(t testing.TB, pkg string) *Module { return sharedModule(t, pkg, true) }

func sharedModule(t testing.TB, pkg string, oneShot bool) *Module {
	t.Helper()
	wasm := wasmbuild.MustBuild(t, pkg)
	key := pkg
	if oneShot {
		key += "/oneshot"
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if m, ok := shared.modules[key]; ok {
		return m
	}
	m, err := sharedEngine().Compile(context.Background(), wasm)
	if err != nil {
		t.Fatalf("Compile(%s): %v", pkg, err)
	}
	if !m.c.loop {
		t.Fatalf("%s (built with the sdk) does not speak the loop convention", pkg)
	}
	m.oneShot = oneShot
	shared.modules[key] = m
	return m
}

// rawModule compiles hand-written wasm in the shared engine.
func rawModule(t testing.TB, wasm []byte) *Module {
	t.Helper()
	m, err := sharedEngine().Compile(context.Background(), wasm)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("output = %s, want %s", got, want)
	}
}

const truncMarker = "[clemmys: logs truncated at 1000 bytes]\n"

// goCase is a run of a Go guest and what it must produce.
type goCase struct {
	name     string
	pkg      string
	input    string
	lim      Limits
	wantErr  error  // nil for success
	wantOut  string // JSON; "" to skip, "-" for nil output
	wantLogs string // exact; "" to skip
	logsHas  string // substring
	exitCode uint32
	anyExit  bool // exit code not checked
	// appErr: an error the sdk reports in its result: in one shot, wantErr
	// with exitCode; in the loop convention a success (the instance goes
	// on).
	appErr bool
}

func TestRunGo(t *testing.T) {
	tests := []goCase{
		{name: "hello", pkg: pkgHello, input: `{"name":"Ada"}`,
			wantOut: `{"greeting":"Hello Ada!"}`, wantLogs: "hello: greeting Ada\n"},
		{name: "hello default", pkg: pkgHello, input: `{}`,
			wantOut: `{"greeting":"Hello world!"}`, wantLogs: "hello: greeting world\n"},
		{name: "hello empty stdin", pkg: pkgHello, input: ``,
			wantOut: `{"greeting":"Hello world!"}`},
		{name: "echo", pkg: pkgEcho, input: `{"a":1,"b":[true,null,"x"],"c":{"d":1.5},"log":"a log line"}`,
			wantOut: `{"a":1,"b":[true,null,"x"],"c":{"d":1.5},"log":"a log line"}`, wantLogs: "a log line\n"},
		{name: "echo stray stdout is logged", pkg: pkgEcho, input: `{"print":"printed"}`,
			wantOut: `{"print":"printed"}`, wantLogs: "printed\n"},
		{name: "echo no log", pkg: pkgEcho, input: `{"k":"v"}`, wantOut: `{"k":"v"}`},
		{name: "echo bad input", pkg: pkgEcho, input: `[1]`,
			wantErr: ErrExit, exitCode: 2, appErr: true, wantOut: `{"error":"parameters must be a JSON object"}`},
		{name: "echo multi-line input", pkg: pkgEcho, input: "{\n\"a\": \"b\"\n}\n",
			wantOut: `{"a":"b"}`},
		{name: "echo invalid multi-line input", pkg: pkgEcho, input: "{\"a\": \"b\nc\"}",
			wantErr: ErrExit, exitCode: 2, appErr: true},
		{name: "fail", pkg: pkgFail, input: `{"message":"boom"}`,
			wantErr: ErrExit, exitCode: 1, appErr: true, wantOut: `{"error":"boom"}`},
		{name: "loop timeout", pkg: pkgLoop, input: `{}`, lim: Limits{Timeout: 300 * time.Millisecond},
			wantErr: ErrTimeout, wantOut: "", wantLogs: ""},
		{name: "sleep timeout", pkg: pkgSleep, input: `{}`, lim: Limits{Timeout: 300 * time.Millisecond},
			wantErr: ErrTimeout},
		{name: "sleep short", pkg: pkgSleep, input: `{"ms":10}`, wantOut: `{}`},
		{name: "memhog", pkg: pkgMemhog, input: `{}`, lim: Limits{MemoryBytes: 64 << 20},
			wantErr: ErrMemoryLimit, exitCode: 2, logsHas: "out of memory"},
		{name: "bigout over cap", pkg: pkgBigout, input: `{"bytes":2000}`, lim: Limits{MaxOutputBytes: 1000},
			wantErr: ErrOutputTooLarge, wantOut: "-", anyExit: true},
		{name: "bigout under cap", pkg: pkgBigout, input: `{"bytes":100}`, lim: Limits{MaxOutputBytes: 1000},
			wantOut: `{"data":"` + strings.Repeat("x", 101) + `"}`},
		{name: "loglots under cap", pkg: pkgLoglots, input: `{"bytes":1000}`, lim: Limits{MaxLogBytes: 1000},
			wantOut: `{}`, wantLogs: strings.Repeat(strings.Repeat("l", 79)+"\n", 12) + strings.Repeat("l", 39) + "\n"},
		{name: "loglots over cap", pkg: pkgLoglots, input: `{"bytes":5000}`, lim: Limits{MaxLogBytes: 1000},
			wantOut: `{}`, wantLogs: strings.Repeat(strings.Repeat("l", 79)+"\n", 12) + strings.Repeat("l", 40) + "\n" + truncMarker},
	}
	for _, tt := range tests {
		for _, loop := range []bool{true, false} {
			name := tt.name + "/oneshot"
			if loop {
				name = tt.name + "/loop"
			}
			t.Run(name, func(t *testing.T) {
				tt := tt // modified below
				m := oneShotModule(t, tt.pkg)
				if loop {
					m = goModule(t, tt.pkg)
					if tt.appErr {
						tt.wantErr, tt.exitCode = nil, 0
					}
				}
				runGoCase(t, m, tt)
			})
		}
	}
}

func runGoCase(t *testing.T, m *Module, tt goCase) *Result {
	t.Helper()
	res, err := m.Run(context.Background(), []byte(tt.input), tt.lim)
	t.Logf("err: %v", err)
	if tt.wantErr == nil && err != nil {
		t.Fatalf("Run: %v (logs %q)", err, logsOf(res))
	}
	if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
		t.Fatalf("Run error = %v, want %v (logs %q)", err, tt.wantErr, logsOf(res))
	}
	if res == nil {
		t.Fatal("Run returned no Result")
	}
	switch tt.wantOut {
	case "":
	case "-":
		if res.Output != nil {
			t.Errorf("Output = %.100q, want nil", res.Output)
		}
	default:
		jsonEqual(t, res.Output, tt.wantOut)
	}
	if tt.wantLogs != "" && string(res.Logs) != tt.wantLogs {
		t.Errorf("Logs = %q, want %q", res.Logs, tt.wantLogs)
	}
	if !strings.Contains(string(res.Logs), tt.logsHas) {
		t.Errorf("Logs = %q, want them to contain %q", res.Logs, tt.logsHas)
	}
	if !tt.anyExit && res.ExitCode != tt.exitCode {
		t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.exitCode)
	}
	if lim := tt.lim.withDefaults(); res.PeakMemoryBytes > lim.MemoryBytes || res.PeakMemoryBytes == 0 {
		t.Errorf("PeakMemoryBytes = %d, want in (0, %d]", res.PeakMemoryBytes, lim.MemoryBytes)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v", res.Duration)
	}
	return res
}

func logsOf(r *Result) []byte {
	if r == nil {
		return nil
	}
	return r.Logs
}

func TestRunRaw(t *testing.T) {
	tests := []struct {
		name     string
		wasm     []byte
		lim      Limits
		wantErr  error
		exitCode uint32
		wantOut  string
		logsHas  string
	}{
		{name: "nop", wasm: tinyNop},
		{name: "write", wasm: tinyWrite, wantOut: "{}\n"},
		{name: "exit 0", wasm: tinyExit(0)},
		{name: "exit 3", wasm: tinyExit(3), wantErr: ErrExit, exitCode: 3},
		{name: "exit with reserved cancel code", wasm: tinyExit(-1), wantErr: ErrExit, exitCode: 0xffffffff},
		{name: "exit with reserved deadline code", wasm: tinyExit(-0x10000001), wantErr: ErrExit, exitCode: 0xefffffff},
		{name: "trap", wasm: tinyTrap, wantErr: ErrTrap, logsHas: "[clemmys: trap: wasm error: unreachable"},
		{name: "loop", wasm: tinyLoop, lim: Limits{Timeout: 100 * time.Millisecond}, wantErr: ErrTimeout},
		{name: "grow within limit", wasm: tinyGrow(3, true), lim: Limits{MemoryBytes: 4 * wasmPageSize}},
		{name: "grow past limit traps", wasm: tinyGrow(4, true), lim: Limits{MemoryBytes: 4 * wasmPageSize}, wantErr: ErrMemoryLimit},
		{name: "grow past limit handled", wasm: tinyGrow(4, false), lim: Limits{MemoryBytes: 4 * wasmPageSize}},
		{name: "limit rounds down to pages", wasm: tinyGrow(3, true), lim: Limits{MemoryBytes: 4*wasmPageSize - 1}, wantErr: ErrMemoryLimit},
		{name: "initial memory over limit", wasm: func() []byte {
			m := command(nil)
			m.memory = &[2]uint32{20, 0}
			return m.bytes()
		}(), lim: Limits{MemoryBytes: 10 * wasmPageSize}, wantErr: ErrMemoryLimit},
		{name: "declared max above limit", wasm: func() []byte {
			m := command(concat(i32Const(1), []byte{opMemoryGrow, 0x00, opDrop}))
			m.memory = &[2]uint32{1, 65536}
			return m.bytes()
		}(), lim: Limits{MemoryBytes: 2 * wasmPageSize}},
		{name: "data segment out of range", wasm: func() []byte {
			m := command(nil)
			m.data = []wasmData{{wasmPageSize - 1, []byte("xy")}}
			return m.bytes()
		}(), wantErr: ErrInvalidModule},
		{name: "start section traps", wasm: func() []byte {
			m := command(nil)
			m.funcs = append(m.funcs, wasmFunc{typ: 0, body: []byte{opUnreachable}})
			start := uint32(1)
			m.start = &start
			return m.bytes()
		}(), wantErr: ErrInvalidModule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rawModule(t, tt.wasm)
			res, err := m.Run(context.Background(), nil, tt.lim)
			t.Logf("err: %v", err)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == ErrMemoryLimit && res == nil {
				return // refused before instantiation
			}
			if res == nil {
				t.Fatal("no Result")
			}
			if res.ExitCode != tt.exitCode {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.exitCode)
			}
			if string(res.Output) != tt.wantOut {
				t.Errorf("Output = %q, want %q", res.Output, tt.wantOut)
			}
			if !strings.Contains(string(res.Logs), tt.logsHas) {
				t.Errorf("Logs = %q, want them to contain %q", res.Logs, tt.logsHas)
			}
			if strings.Contains(err2s(err), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
		})
	}
}

func err2s(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCompileInvalid(t *testing.T) {
	hello := wasmbuild.MustBuild(t, pkgHello)
	withImport := func(module, name string, typ funcType) []byte {
		m := command(nil)
		m.types = append(m.types, typ)
		m.imports = []wasmImport{{module: module, name: name, kind: 0, desc: uleb(1)}}
		m.exports[0].idx = 1
		return m.bytes()
	}
	tests := []struct {
		name    string
		wasm    []byte
		wantMsg string
	}{
		{"nil", nil, "empty module"},
		{"empty", []byte{}, "empty module"},
		{"garbage", []byte("this is not wasm at all"), ""},
		{"magic only", []byte("\x00asm"), ""},
		{"bad version", []byte("\x00asm\x02\x00\x00\x00"), ""},
		{"empty module", wasmModule{}.bytes(), "_start"},
		{"truncated hello", hello[:len(hello)/2], ""},
		{"hello with a flipped byte in the code", invalidFlip(t, hello, len(hello)/3), ""},
		{"reactor without its entry point", func() []byte {
			m := command(nil)
			m.exports[0].name = "_initialize"
			return m.bytes()
		}(), reactorExport},
		{"neither command nor reactor", func() []byte {
			m := command(nil)
			m.exports[0].name = "main"
			return m.bytes()
		}(), "_start"},
		{"_start takes params", func() []byte {
			m := command(nil)
			m.types[0] = funcType{params: []valType{i32}}
			return m.bytes()
		}(), "_start"},
		{"_start is not a function", func() []byte {
			m := command(nil)
			m.exports = []wasmExport{{"_start", 2, 0}, {"memory", 2, 0}}
			return m.bytes()
		}(), "_start"},
		{"no memory export", func() []byte {
			m := command(nil)
			m.exports = m.exports[:1]
			return m.bytes()
		}(), "memory"},
		{"no memory", func() []byte {
			m := command(nil)
			m.memory = nil
			m.exports = m.exports[:1]
			return m.bytes()
		}(), "memory"},
		{"import from env", withImport("env", "f", funcType{}), `module "env"`},
		{"unknown wasi function", withImport("wasi_snapshot_preview1", "no_such_fn", funcType{}), "no such function"},
		{"wrong wasi signature", withImport("wasi_snapshot_preview1", "proc_exit", funcType{params: []valType{i32, i32}}), "signature"},
		{"imported global", func() []byte {
			m := command(nil)
			m.imports = []wasmImport{{module: "wasi_snapshot_preview1", name: "g", kind: 3, desc: []byte{i32, 0x00}}}
			return m.bytes()
		}(), "global"},
		{"imported memory", func() []byte {
			m := command(nil)
			m.memory = nil
			m.imports = []wasmImport{{module: "wasi_snapshot_preview1", name: "memory", kind: 2, desc: limits(1, 0)}}
			return m.bytes()
		}(), ""},
	}
	e := sharedEngine()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := e.Compile(context.Background(), tt.wasm)
			t.Logf("err: %v", err)
			if !errors.Is(err, ErrInvalidModule) {
				if m != nil {
					_ = m.Close(context.Background())
				}
				t.Fatalf("Compile error = %v, want ErrInvalidModule", err)
			}
			if m != nil {
				t.Error("Compile returned a Module with an error")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
			// What the gateway checks at deploy refuses it too.
			verr := Validate(context.Background(), tt.wasm)
			if !errors.Is(verr, ErrInvalidModule) || !strings.Contains(verr.Error(), tt.wantMsg) {
				t.Errorf("Validate error = %v, want ErrInvalidModule mentioning %q", verr, tt.wantMsg)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}

// invalidFlip returns b with one byte flipped, at from or the first
// position after it where wazero itself (its interpreter, without this
// package's checks) refuses the result: a flipped byte can leave a module
// valid (an immediate, a data byte), and which one does depends on how the
// module was built, so the position is found rather than fixed.
func invalidFlip(t *testing.T, b []byte, from int) []byte {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	for i := from; i < len(b) && i < from+4096; i++ {
		c := flip(b, i)
		if cm, err := rt.CompileModule(ctx, c); err == nil {
			_ = cm.Close(ctx)
			continue
		}
		return c
	}
	t.Fatalf("no flipped byte within 4096 of %d makes an invalid module", from)
	return nil
}

// An imported global cannot be checked through wazero's API; it must still
// be reported as an invalid module, at the latest by Run.
func TestImportedGlobalIsInvalid(t *testing.T) {
	m := command(nil)
	m.imports = []wasmImport{{module: "wasi_snapshot_preview1", name: "g", kind: 3, desc: []byte{i32, 0x00}}}
	mod, err := sharedEngine().Compile(context.Background(), m.bytes())
	if err == nil {
		defer mod.Close(context.Background())
		_, err = mod.Run(context.Background(), nil, Limits{})
	}
	if !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("error = %v, want ErrInvalidModule", err)
	}
}

func TestRunIsolation(t *testing.T) {
	t.Run("loop", func(t *testing.T) { testIsolation(t, goModule(t, pkgProbe), []string{LoopEnv + "=1"}) })
	t.Run("oneshot", func(t *testing.T) { testIsolation(t, oneShotModule(t, pkgProbe), nil) })
}

func testIsolation(t *testing.T, m *Module, wantEnv []string) {
	var seen []string
	for range 2 {
		res, err := m.Run(context.Background(), nil, Limits{})
		if err != nil {
			t.Fatalf("Run: %v (logs %q)", err, logsOf(res))
		}
		var got struct {
			Args      []string `json:"args"`
			Env       []string `json:"env"`
			UnixMS    int64    `json:"unix_ms"`
			FSError   string   `json:"fs_error"`
			OpenError string   `json:"open_error"`
			NetError  string   `json:"net_error"`
			Rand      string   `json:"rand"`
		}
		if err := json.Unmarshal(res.Output, &got); err != nil {
			t.Fatalf("output %q: %v", res.Output, err)
		}
		if len(got.Args) != 1 || got.Args[0] != "function" {
			t.Errorf("args = %q, want [function]", got.Args)
		}
		if !slices.Equal(got.Env, wantEnv) {
			t.Errorf("env = %q, want %q", got.Env, wantEnv)
		}
		if got.FSError == "" || got.OpenError == "" {
			t.Errorf("guest can read the file system: readdir error %q, open error %q", got.FSError, got.OpenError)
		}
		if got.NetError == "" {
			t.Error("guest can dial the network")
		}
		if d := time.Since(time.UnixMilli(got.UnixMS)); d < -time.Minute || d > time.Minute {
			t.Errorf("guest clock is off by %v", d)
		}
		seen = append(seen, got.Rand)
	}
	if seen[0] == seen[1] || len(seen[0]) != 32 {
		t.Errorf("random source is not random: %q", seen)
	}
}

func TestRunConcurrent(t *testing.T) {
	m := goModule(t, pkgEcho)
	const goroutines, runs = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*runs)
	for g := range goroutines {
		wg.Go(func() {
			for r := range runs {
				id := fmt.Sprintf("g%d-r%d", g, r)
				in := fmt.Sprintf(`{"id":%q,"log":"log of %s","pad":%q}`, id, id, strings.Repeat(id, 100))
				res, err := m.Run(context.Background(), []byte(in), Limits{})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				var out map[string]any
				if err := json.Unmarshal(res.Output, &out); err != nil {
					errs <- fmt.Errorf("%s: output %q: %w", id, res.Output, err)
					return
				}
				if out["id"] != id || out["pad"] != strings.Repeat(id, 100) {
					errs <- fmt.Errorf("%s: got output of %v", id, out["id"])
				}
				if want := "log of " + id + "\n"; string(res.Logs) != want {
					errs <- fmt.Errorf("%s: logs %q, want %q", id, res.Logs, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunContext(t *testing.T) {
	m := goModule(t, pkgLoop)
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := m.Run(ctx, nil, Limits{Timeout: time.Minute})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := m.Run(ctx, nil, Limits{Timeout: time.Minute})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
			t.Fatalf("error = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := m.Run(ctx, nil, Limits{})
		if !errors.Is(err, context.Canceled) || res != nil {
			t.Fatalf("Run = %v, %v; want nil, context.Canceled", res, err)
		}
	})
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	e := NewEngine()
	loop, err := e.Compile(ctx, tinyLoop)
	if err != nil {
		t.Fatal(err)
	}

	// Two Modules from the same bytes share compiled code; closing one
	// (twice) must not break the other.
	a, err := e.Compile(ctx, tinyWrite)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Compile(ctx, tinyWrite)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(ctx, nil, Limits{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run on closed Module: %v, want ErrClosed", err)
	}
	if res, err := b.Run(ctx, nil, Limits{}); err != nil || string(res.Output) != "{}\n" {
		t.Fatalf("Run on the other Module: %v", err)
	}

	// Closing the Engine stops a running guest.
	done := make(chan error, 1)
	go func() {
		_, err := loop.Run(ctx, nil, Limits{Timeout: time.Minute})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("running guest after Engine.Close: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Engine.Close did not stop a running guest")
	}
	if err := e.Close(ctx); err != nil {
		t.Errorf("second Engine.Close: %v", err)
	}
	if _, err := e.Compile(ctx, tinyNop); !errors.Is(err, ErrClosed) {
		t.Errorf("Compile after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Run(ctx, nil, Limits{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Engine.Close: %v, want ErrClosed", err)
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{}.withDefaults()
	want := Limits{MemoryBytes: 256 << 20, Timeout: time.Minute, MaxOutputBytes: 1 << 20, MaxLogBytes: 1 << 20}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if got := (Limits{MemoryBytes: 1 << 40}).withDefaults().MemoryBytes; got != 1<<32 {
		t.Errorf("huge memory limit = %d, want 4 GiB", got)
	}
	if got := (Limits{MemoryBytes: 100_000}).withDefaults().MemoryBytes; got != wasmPageSize {
		t.Errorf("memory limit 100000 = %d, want one page", got)
	}
}

func TestCapWriter(t *testing.T) {
	w := &capWriter{limit: 10}
	for _, s := range []string{"hello", " wor", "ld and more"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	w.note("x")
	if got, want := string(w.logs()), "hello worl\n[clemmys: logs truncated at 10 bytes]\n[clemmys: x]\n"; got != want {
		t.Errorf("logs = %q, want %q", got, want)
	}
	if got := (&capWriter{limit: 10}).logs(); got != nil {
		t.Errorf("empty logs = %q, want nil", got)
	}

	overflowed := 0
	out := &capWriter{limit: 4, onOverflow: func() { overflowed++ }}
	if _, err := out.Write([]byte("1234")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := out.Write([]byte("5")); err == nil {
			t.Fatal("write past the output cap succeeded")
		}
	}
	if overflowed != 1 || !out.overflow {
		t.Errorf("onOverflow called %d times", overflowed)
	}

	long := &capWriter{limit: 1}
	long.note(strings.Repeat("é", maxNoteBytes))
	if l := long.logs(); len(l) > maxNoteBytes+64 || !bytes.HasSuffix(l, []byte("…]\n")) {
		t.Errorf("long note not cut: %d bytes", len(l))
	}
}

func TestCompileShared(t *testing.T) {
	ctx := context.Background()
	e := NewEngine()
	defer e.Close(ctx)
	hello := wasmbuild.MustBuild(t, pkgHello)

	// Concurrent compiles of the same bytes compile once and share it.
	mods := make([]*Module, 4)
	var wg sync.WaitGroup
	for i := range mods {
		wg.Go(func() {
			m, err := e.Compile(ctx, hello)
			if err != nil {
				t.Error(err)
				return
			}
			mods[i] = m
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, m := range mods[1:] {
		if m.c != mods[0].c {
			t.Fatal("concurrent compiles of the same bytes were not shared")
		}
	}

	// A waiter whose context ends gives up without disturbing the others.
	// (The compilation is done, so Compile may also return a Module.)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if m, err := e.Compile(cancelled, hello); err == nil {
		_ = m.Close(ctx)
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("Compile with cancelled ctx: %v", err)
	}

	// Closing all but one keeps the code; closing the last frees it.
	for _, m := range mods[1:] {
		_ = m.Close(ctx)
	}
	if res, err := mods[0].Run(ctx, nil, Limits{}); err != nil || !strings.Contains(string(res.Output), "Hello world!") {
		t.Fatalf("Run after closing the other Modules: %v", err)
	}
	_ = mods[0].Close(ctx)
	e.mu.Lock()
	left := len(e.compiled)
	e.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d compiled modules left after closing every Module", left)
	}

	// Invalid bytes are not cached as a failure forever, and fail the same
	// way for concurrent callers.
	if _, err := e.Compile(ctx, tinyNop[:len(tinyNop)-1]); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("truncated module: %v", err)
	}
	m, err := e.Compile(ctx, hello)
	if err != nil {
		t.Fatal(err)
	}
	_ = m.Close(ctx)
}
