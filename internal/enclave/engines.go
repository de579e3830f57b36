package enclave

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/fncode"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/sandbox"
)

// JavaScript engines: a JavaScript function's sealed code names, by
// SHA-256, the engine module it runs on (package fncode), and the code
// digest the KMS signed covers that name. Engines are public code kept
// outside this binary; the invoker hands them over (ipc.OpEngine), the
// runtime hashes what it received and compiles it once, and a function
// runs only on the engine whose bytes have the digest its code names. An
// invoker can have spare runtimes compile the engine before any function
// needs it: a JavaScript cold start then compiles nothing.

// maxEngines bounds the engines kept compiled (each makes the runtime
// ~300 MiB resident, measured with goja's 20 MB module); loading one more
// drops the least recently loaded. The
// functions running on a dropped engine keep its compiled code.
const maxEngines = 4

// maxEngineBytes bounds an engine module.
const maxEngineBytes = 32 << 20

// Environment of a JavaScript function's instances, read by the engine
// (internal/jsengine).
const (
	envJSMain = "CLEMMYS_JS_MAIN"
	envJSKind = "CLEMMYS_JS_KIND"
	// jsCodeFile is the function's code file under sandbox.DataDir.
	jsCodeFile = "code"
)

// CodeEngine refuses an engine module that does not compile.
const CodeEngine = "invalid_engine"

type engineEntry struct {
	module *sandbox.Module
	loaded time.Time
}

// engines are the compiled engines by digest.
type engines struct {
	mu sync.Mutex
	m  map[[32]byte]*engineEntry
}

// LoadEngine compiles a JavaScript engine module and keeps it by its
// SHA-256 digest.
func (r *Runtime) LoadEngine(ctx context.Context, req *ipc.EngineRequest) (*ipc.EngineReply, error) {
	if len(req.Wasm) == 0 || len(req.Wasm) > maxEngineBytes {
		return nil, &ipc.Error{Code: CodeBadRequest, Message: "engine module missing or too large"}
	}
	digest := sha256.Sum256(req.Wasm)
	start := time.Now()
	r.engines.mu.Lock()
	if e, ok := r.engines.m[digest]; ok {
		e.loaded = time.Now()
		r.engines.mu.Unlock()
		return &ipc.EngineReply{Digest: digest[:]}, nil
	}
	r.engines.mu.Unlock()
	mod, err := r.engine.Compile(ctx, req.Wasm)
	if err != nil {
		if errors.Is(err, sandbox.ErrInvalidModule) {
			return nil, &ipc.Error{Code: CodeEngine, Message: err.Error()}
		}
		r.cfg.Log.Error("engine compile failed", "engine", hex.EncodeToString(digest[:]), "err", err)
		return nil, &ipc.Error{Code: CodeInternal, Message: "compiling the engine failed"}
	}
	r.engines.mu.Lock()
	if r.engines.m == nil {
		r.engines.m = map[[32]byte]*engineEntry{}
	}
	var drop []*sandbox.Module
	if old, ok := r.engines.m[digest]; ok { // compiled concurrently
		drop = append(drop, old.module)
	}
	r.engines.m[digest] = &engineEntry{module: mod, loaded: time.Now()}
	for len(r.engines.m) > maxEngines {
		keys := make([][32]byte, 0, len(r.engines.m))
		for k := range r.engines.m {
			keys = append(keys, k)
		}
		oldest := slices.MinFunc(keys, func(a, b [32]byte) int { return r.engines.m[a].loaded.Compare(r.engines.m[b].loaded) })
		drop = append(drop, r.engines.m[oldest].module)
		delete(r.engines.m, oldest)
	}
	r.engines.mu.Unlock()
	for _, m := range drop {
		_ = m.Close(context.WithoutCancel(ctx))
	}
	ms := time.Since(start).Milliseconds()
	r.cfg.Log.Info("engine loaded", "engine", hex.EncodeToString(digest[:]), "compile_ms", ms)
	return &ipc.EngineReply{Digest: digest[:], CompileMs: ms}, nil
}

// errNoEngine: a JavaScript function's engine is not loaded.
type errNoEngine struct{ digest [32]byte }

func (e *errNoEngine) Error() string { return "engine not loaded" }

// compileCode compiles a function's opened code: a wasm module, or a
// JavaScript function bound to its engine (errNoEngine if the engine is
// not loaded).
func (r *Runtime) compileCode(ctx context.Context, plain []byte) (*sandbox.Module, error) {
	if !fncode.IsJS(plain) {
		return r.engine.Compile(ctx, plain)
	}
	js, err := fncode.ParseJS(plain)
	if err != nil {
		return nil, &ipc.Error{Code: CodeInvalidWasm, Message: "malformed JavaScript function code"}
	}
	r.engines.mu.Lock()
	e := r.engines.m[js.Engine]
	r.engines.mu.Unlock()
	if e == nil {
		return nil, &errNoEngine{js.Engine}
	}
	env := map[string]string{envJSKind: js.Kind}
	if js.Main != "" {
		env[envJSMain] = js.Main
	}
	mod, err := e.module.Bind(sandbox.Data{Files: map[string][]byte{jsCodeFile: js.Code}, Env: env})
	if errors.Is(err, sandbox.ErrClosed) {
		return nil, &errNoEngine{js.Engine} // dropped meanwhile
	}
	if err != nil {
		return nil, &ipc.Error{Code: CodeInvalidWasm, Message: msgInvalidModule} // no detail: see Load
	}
	return mod, nil
}

// closeEngines releases the compiled engines.
func (r *Runtime) closeEngines(ctx context.Context) {
	r.engines.mu.Lock()
	defer r.engines.mu.Unlock()
	for k, e := range r.engines.m {
		_ = e.module.Close(ctx)
		delete(r.engines.m, k)
	}
}
