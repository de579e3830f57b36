package sandbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasiModule is the only module a guest may import from.
const wasiModule = wasi_snapshot_preview1.ModuleName

// exitCodeEngineClosed is the exit code the runtime closes guests with when
// the Engine is closed; Run reports ErrClosed (it checks Engine.closed, so a
// guest exiting with this code itself is not confused with it).
const exitCodeEngineClosed = 0xdead

// Engine compiles and runs WebAssembly functions. It owns one wazero runtime
// and a shared in-memory compilation cache. It is safe for concurrent use.
type Engine struct {
	cache   wazero.CompilationCache
	rt      wazero.Runtime
	wasi    map[string]api.FunctionDefinition // host functions a guest may import
	workers int                               // compilation workers
	closed  atomic.Bool
}

// NewEngine returns an Engine using wazero's compiler engine where the
// platform supports it (amd64, arm64) and its interpreter elsewhere.
func NewEngine() *Engine {
	ctx := context.Background() // only for setting up host functions; nothing blocks
	cache := wazero.NewCompilationCache()
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithCoreFeatures(api.CoreFeaturesV2)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return &Engine{
		cache:   cache,
		rt:      rt,
		wasi:    rt.Module(wasiModule).ExportedFunctionDefinitions(),
		workers: runtime.GOMAXPROCS(0),
	}
}

// Close stops every running guest (their Run returns ErrClosed) and frees
// all compiled modules. It is safe to call more than once.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	err := e.rt.CloseWithExitCode(ctx, exitCodeEngineClosed)
	if cerr := e.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Module is a compiled, validated function. Run may be called concurrently;
// each call gets a fresh instance.
type Module struct {
	e        *Engine
	compiled wazero.CompiledModule
	name     string // argv[0]
	minPages uint32 // initial memory the module declares

	mu     sync.RWMutex // guards closed against instantiations in flight
	closed bool
}

// Compile validates and compiles a module. wasm must be a WASI command
// module: it exports a function "_start" with no parameters or results and
// a memory "memory", and imports only functions that wasi_snapshot_preview1
// provides (with their signatures). Anything else returns an error wrapping
// ErrInvalidModule. Compile never panics on arbitrary input.
//
// Compiled code stays in the Engine's in-memory cache until every Module
// compiled from the same bytes is closed; compiling the same bytes again
// is a cache hit.
func (e *Engine) Compile(ctx context.Context, wasm []byte) (m *Module, err error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if len(wasm) == 0 {
		return nil, fmt.Errorf("%w: empty module", ErrInvalidModule)
	}
	defer func() {
		// wazero is fuzzed and should never panic on input, but a bug there
		// must not take the enclave runtime down. The state it could leave
		// behind is a compile-only engine entry, never a running instance.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %s", ErrInvalidModule, internalCompilerError)
		}
	}()

	ctx = experimental.WithCompilationWorkers(ctx, e.workers)
	compiled, err := e.rt.CompileModule(ctx, wasm)
	if err != nil {
		if e.closed.Load() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	minPages, err := e.validate(compiled)
	if err != nil {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	name := compiled.Name()
	if name == "" {
		name = "function"
	}
	return &Module{e: e, compiled: compiled, name: name, minPages: minPages}, nil
}

// internalCompilerError is the message for a recovered compiler panic.
const internalCompilerError = "internal compiler error"

// validate checks that compiled is a WASI command module this Engine can
// run and returns its initial memory size in pages.
func (e *Engine) validate(compiled wazero.CompiledModule) (uint32, error) {
	start, ok := compiled.ExportedFunctions()["_start"]
	if !ok {
		return 0, errors.New(`not a WASI command module: no exported function "_start" (reactor modules are not supported)`)
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return 0, errors.New(`"_start" must take no parameters and return no results`)
	}
	if len(compiled.ImportedMemories()) != 0 {
		return 0, errors.New("imported memories are not supported")
	}
	mem, ok := compiled.ExportedMemories()["memory"]
	if !ok {
		return 0, errors.New(`a WASI module must export its memory as "memory"`)
	}
	for _, f := range compiled.ImportedFunctions() {
		module, name, _ := f.Import()
		if module != wasiModule {
			return 0, fmt.Errorf("import %q from module %q: only %q is available", name, module, wasiModule)
		}
		host, ok := e.wasi[name]
		if !ok {
			return 0, fmt.Errorf("import %s.%s: no such function", module, name)
		}
		if !slices.Equal(f.ParamTypes(), host.ParamTypes()) || !slices.Equal(f.ResultTypes(), host.ResultTypes()) {
			return 0, fmt.Errorf("import %s.%s: signature mismatch", module, name)
		}
	}
	return mem.Min(), nil
}

// Close releases the module's compiled code (once every Module compiled
// from the same bytes is closed). Runs in flight finish; later Runs return
// ErrClosed. It is safe to call more than once.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return m.compiled.Close(ctx)
}
