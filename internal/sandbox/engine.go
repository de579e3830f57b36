package sandbox

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasiModule is the only module a guest may import from.
const wasiModule = wasi_snapshot_preview1.ModuleName

// coreFeatures are the WebAssembly features a guest may use. Reference
// types are off: with them a valid module can table.grow by 2^31 entries
// and wazero allocates it all (16 GiB), killing the runtime; tables are
// outside the memory limit. Go's wasip1 output does not need them.
const coreFeatures = api.CoreFeaturesV2 &^ api.CoreFeatureReferenceTypes

// exitCodeEngineClosed is the exit code the runtime closes guests with when
// the Engine is closed; Run reports ErrClosed (it checks Engine.closed, so a
// guest exiting with this code itself is not confused with it).
const exitCodeEngineClosed = 0xdead

// Engine compiles and runs WebAssembly functions. It owns one wazero runtime
// and a shared in-memory compilation cache. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	cache   wazero.CompilationCache
	rt      wazero.Runtime
	wasi    map[string]api.FunctionDefinition // host functions a guest may import
	workers int                               // compilation workers
	closed  atomic.Bool
	runaway atomic.Bool // a halted guest did not stop

	mu       sync.Mutex             // guards compiled and every compiled.refs
	compiled map[[32]byte]*compiled // by SHA-256 of the wasm bytes

	poolMu    sync.Mutex             // guards the fields below and the pool fields of every compiled
	live      map[*instance]struct{} // instances whose guest has not returned
	idle      []*instance            // waiting for an activation, least recently used first
	idleBytes uint64                 // linear memory of the idle instances
	drained   chan struct{}          // closed when live becomes empty (set by Close)
}

// Config tunes an Engine's instances. Zero fields take the defaults.
type Config struct {
	// MaxIdlePerModule bounds the idle instances kept per compiled module
	// (warm instances of loop-convention modules, pre-initialized ones of
	// fresh-instance modules). Default 8; negative keeps none.
	MaxIdlePerModule int
	// MaxIdle bounds the idle instances kept in all. Default 32; negative
	// keeps none.
	MaxIdle int
	// MaxIdleBytes bounds the linear memory of the idle instances in all
	// (a wasm memory never shrinks: an instance keeps the most its guest
	// ever used). Default 256 MiB.
	MaxIdleBytes uint64
	// IdleTimeout closes an instance idle for that long. Default 10 min.
	IdleTimeout time.Duration
	// Prestart is how many pre-initialized instances are kept ready for a
	// fresh-instance module (once it has run, with its last memory limit).
	// Default 1; negative starts none ahead.
	Prestart int
}

// Defaults for zero Config fields.
const (
	DefaultMaxIdlePerModule = 8
	DefaultMaxIdle          = 32
	DefaultMaxIdleBytes     = 256 << 20
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultPrestart         = 1
)

func (c Config) withDefaults() Config {
	if c.MaxIdlePerModule == 0 {
		c.MaxIdlePerModule = DefaultMaxIdlePerModule
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.MaxIdleBytes == 0 {
		c.MaxIdleBytes = DefaultMaxIdleBytes
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Prestart == 0 {
		c.Prestart = DefaultPrestart
	}
	return c
}

// compiled is a module compiled once and shared by every Module made from
// the same bytes.
type compiled struct {
	digest   [32]byte
	ready    chan struct{} // closed when the fields below are set
	mod      wazero.CompiledModule
	err      error
	name     string // argv[0]
	minPages uint32 // initial memory pages
	loop     bool   // speaks the loop convention (exports loopExport or loopV2Export)
	reactor  bool   // a reactor: exports _initialize and reactorExport (reactor.go)
	loopV2   bool   // with activation metadata (exports loopV2Export)
	fresh    bool   // wants a fresh instance per activation (exports freshExport)
	hasStart bool   // has a start function, exported as startExport
	refs     int    // Modules using it; guarded by Engine.mu
	// plain is the binding of the Modules made without Data: they share
	// their warm instances.
	plain *binding

	// Guarded by Engine.poolMu.
	live    int  // instances in Engine.live
	closing bool // released: no new instances; mod is closed with the last one
	freed   bool // mod was closed
}

// NewEngine returns an Engine with the default Config.
func NewEngine() *Engine { return NewEngineWithConfig(Config{}) }

// NewEngineWithConfig returns an Engine using wazero's compiler engine where
// the platform supports it (amd64, arm64) and its interpreter elsewhere.
func NewEngineWithConfig(config Config) *Engine {
	ctx := context.Background() // only for setting up host functions; nothing blocks
	cache := wazero.NewCompilationCache()
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		// No WithCloseOnContextDone: the instrumentation (instrument.go)
		// stops guests at a fraction of its cost.
		WithCoreFeatures(coreFeatures).
		// Untrusted DWARF is not parsed; trap traces lose source lines.
		WithDebugInfoEnabled(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return &Engine{
		cfg:      config.withDefaults(),
		live:     map[*instance]struct{}{},
		cache:    cache,
		rt:       rt,
		wasi:     rt.Module(wasiModule).ExportedFunctionDefinitions(),
		workers:  runtime.GOMAXPROCS(0),
		compiled: map[[32]byte]*compiled{},
	}
}

// Close stops every running guest (their Run returns ErrClosed), closes
// idle instances and frees all compiled modules. It is safe to call more
// than once.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	e.drainIdle(nil, nil)
	e.poolMu.Lock()
	live := make([]*instance, 0, len(e.live))
	for in := range e.live {
		live = append(live, in)
	}
	var drained chan struct{}
	if len(live) > 0 {
		drained = make(chan struct{})
		e.drained = drained
	}
	e.poolMu.Unlock()
	for _, in := range live {
		in.halt(ErrClosed)
	}
	if drained != nil {
		t := time.NewTimer(haltGrace)
		select {
		case <-drained:
		case <-t.C:
			e.runaway.Store(true)
		}
		t.Stop()
	}
	err := e.rt.CloseWithExitCode(ctx, exitCodeEngineClosed)
	if cerr := e.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Runaway reports whether a guest the Engine halted (for a timeout, a
// cancellation or Close) failed to stop within a few seconds. The
// interruption checks make that impossible unless they have a bug; such a
// guest keeps a CPU busy and may hold up the Go runtime, so the process
// hosting the Engine should be replaced.
func (e *Engine) Runaway() bool { return e.runaway.Load() }

// Module is a compiled, validated function. Run may be called concurrently;
// concurrent calls never share an instance.
type Module struct {
	e *Engine
	c *compiled
	b *binding // the Data of its instances, and their pool
	// bound: made by Bind, b is its own.
	bound bool
	// oneShot runs the module in the one-shot convention even if it
	// speaks the loop one (tests compare the two).
	oneShot bool

	mu     sync.RWMutex // guards closed against instantiations in flight
	closed bool
}

// Compile validates and compiles a module. wasm must be a WASI command
// module: it exports a function "_start" with no parameters or results and
// a memory "memory", and imports only functions that wasi_snapshot_preview1
// provides (with their signatures). Anything else returns an error wrapping
// ErrInvalidModule. Compile never panics on arbitrary input.
//
// Each distinct module is compiled once per Engine: compiling the same
// bytes again, even concurrently, shares the first compilation (it costs a
// SHA-256 of the bytes). The native code stays in memory, never on disk,
// until every Module made from those bytes is closed.
func (e *Engine) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if len(wasm) == 0 {
		return nil, fmt.Errorf("%w: empty module", ErrInvalidModule)
	}
	// wazero's decoder allocates from counts in the module before reading
	// what they count; precheck makes sure they are bounded by its size.
	if err := precheckCommand(wasm); err != nil {
		return nil, err
	}
	digest := sha256.Sum256(wasm)

	e.mu.Lock()
	c, shared := e.compiled[digest]
	if !shared {
		c = &compiled{digest: digest, ready: make(chan struct{}), plain: &binding{}}
		e.compiled[digest] = c
	}
	c.refs++
	e.mu.Unlock()

	if shared {
		select {
		case <-c.ready:
		case <-ctx.Done():
			e.release(context.WithoutCancel(ctx), c)
			return nil, fmt.Errorf("sandbox: compile: %w", ctx.Err())
		}
	} else {
		e.compile(ctx, c, wasm)
	}
	if c.err != nil {
		e.release(ctx, c)
		if e.closed.Load() {
			return nil, ErrClosed
		}
		return nil, c.err
	}
	return &Module{e: e, c: c, b: c.plain}, nil
}

// compile fills c and closes c.ready.
func (e *Engine) compile(ctx context.Context, c *compiled, wasm []byte) {
	defer close(c.ready)
	defer func() {
		// wazero is fuzzed and should never panic on input, but a bug there
		// must not take the enclave runtime down. What a compiler panic can
		// leave behind is a compile-only engine entry, never an instance.
		if r := recover(); r != nil {
			c.mod, c.err = nil, fmt.Errorf("%w: %s", ErrInvalidModule, internalCompilerError)
		}
	}()
	wasm, err := instrument(wasm)
	if err != nil {
		c.err = err
		return
	}
	mod, err := e.rt.CompileModule(experimental.WithCompilationWorkers(ctx, e.workers), wasm)
	if err != nil {
		c.err = fmt.Errorf("%w: %v", ErrInvalidModule, err)
		return
	}
	minPages, err := validate(mod, c, e.wasi)
	if err != nil {
		_ = mod.Close(ctx)
		c.err = fmt.Errorf("%w: %v", ErrInvalidModule, err)
		return
	}
	c.mod, c.minPages, c.name = mod, minPages, mod.Name()
	if c.name == "" {
		c.name = "function"
	}
}

// release drops a reference to c. With the last one its idle instances are
// closed, and its compiled code is freed once no instance uses it.
func (e *Engine) release(ctx context.Context, c *compiled) {
	e.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && e.compiled[c.digest] == c {
		delete(e.compiled, c.digest)
	}
	e.mu.Unlock()
	if !last || c.mod == nil {
		return
	}
	e.poolMu.Lock()
	c.closing = true
	free := c.live == 0 && !c.freed
	c.freed = c.freed || free
	e.poolMu.Unlock()
	e.drainIdle(c, nil)
	if free {
		_ = c.mod.Close(ctx)
	}
}

// internalCompilerError is the message for a recovered compiler panic.
const internalCompilerError = "internal compiler error"

// validate checks that compiled is a WASI command module an Engine can
// run with the host functions wasi, records its calling convention in c and
// returns its initial memory size in pages.
func validate(cm wazero.CompiledModule, c *compiled, wasi map[string]api.FunctionDefinition) (uint32, error) {
	exports := cm.ExportedFunctions()
	start, command := exports["_start"]
	initialize, reactor := exports["_initialize"]
	switch {
	case command && reactor:
		return 0, errors.New(`exports both "_start" and "_initialize": a WASI module is a command or a reactor, not both`)
	case reactor:
		if len(initialize.ParamTypes()) != 0 || len(initialize.ResultTypes()) != 0 {
			return 0, errors.New(`"_initialize" must take no parameters and return no results`)
		}
		if _, ok := exports[reactorExport]; !ok {
			return 0, fmt.Errorf(`a reactor module must export %q, the function each activation calls (package sdk's Handle provides it)`, reactorExport)
		}
		c.reactor = true
	case command:
		if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
			return 0, errors.New(`"_start" must take no parameters and return no results`)
		}
	default:
		return 0, errors.New(`not a WASI module: it exports neither "_start" (a command) nor "_initialize" (a reactor)`)
	}
	if len(cm.ImportedMemories()) != 0 {
		return 0, errors.New("imported memories are not supported")
	}
	mem, ok := cm.ExportedMemories()["memory"]
	if !ok {
		return 0, errors.New(`a WASI module must export its memory as "memory"`)
	}
	var hasReactor bool
	for _, marker := range []struct {
		name string
		set  *bool
	}{{loopExport, &c.loop}, {loopV2Export, &c.loopV2}, {freshExport, &c.fresh}, {startExport, &c.hasStart}, {reactorExport, &hasReactor}} {
		f, ok := exports[marker.name]
		if !ok {
			continue
		}
		if len(f.ParamTypes()) != 0 || len(f.ResultTypes()) != 0 {
			return 0, fmt.Errorf("%q must take no parameters and return no results", marker.name)
		}
		*marker.set = true
	}
	c.loop = (c.loop || c.loopV2) && !c.reactor // a reactor's loop markers (sdk exports them in every build) are not used
	c.loopV2 = c.loopV2 && c.loop
	for _, f := range cm.ImportedFunctions() {
		module, name, _ := f.Import()
		if module != wasiModule {
			return 0, fmt.Errorf("import %q from module %q: only %q is available", name, module, wasiModule)
		}
		host, ok := wasi[name]
		if !ok {
			return 0, fmt.Errorf("import %s.%s: no such function", module, name)
		}
		if !slices.Equal(f.ParamTypes(), host.ParamTypes()) || !slices.Equal(f.ResultTypes(), host.ResultTypes()) {
			return 0, fmt.Errorf("import %s.%s: signature mismatch", module, name)
		}
	}
	return mem.Min(), nil
}

// Close releases the Module; the compiled code is freed with the last
// Module made from the same bytes. Runs in flight finish; later Runs return
// ErrClosed. It is safe to call more than once.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.bound {
		m.e.closeBinding(ctx, m.b)
	}
	m.e.release(ctx, m.c)
	return nil
}
