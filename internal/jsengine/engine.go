package main

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"github.com/dop251/goja_nodejs/require"
	"github.com/dop251/goja_nodejs/url"
)

//go:embed prelude.js
var preludeSource string

//go:embed buffer.js
var bufferSource string

// maxCallStackSize bounds JavaScript recursion: deeper calls throw a
// RangeError, as Node's do, instead of growing the stack until the
// memory limit.
const maxCallStackSize = 10000

// engine is one JavaScript runtime serving one function.
type engine struct {
	rt      *goja.Runtime
	stdout  io.Writer
	logs    io.Writer
	now     func() time.Time
	version string // process.version

	env     *goja.Object  // process.env
	main    goja.Callable // the action
	initErr error         // why the action could not be loaded

	prelude   *goja.Object // what prelude.js returned
	stringify goja.Callable
	parse     goja.Callable
	timers    timers
}

// nodeVersions are the versions process.version reports per kind.
var nodeVersions = map[string]string{
	"nodejs:20":      "v20.0.0",
	"nodejs:22":      "v22.0.0",
	"nodejs:default": "v20.0.0",
}

func newEngine(stdout, logs io.Writer, kind string) *engine {
	version := nodeVersions[kind]
	if version == "" {
		version = nodeVersions["nodejs:default"]
	}
	e := &engine{rt: goja.New(), stdout: stdout, logs: logs, now: nowFunc, version: version}
	e.rt.SetMaxCallStackSize(maxCallStackSize)
	e.rt.SetFieldNameMapper(goja.UncapFieldNameMapper())
	json := e.rt.Get("JSON").ToObject(e.rt)
	e.stringify, _ = goja.AssertFunction(json.Get("stringify"))
	e.parse, _ = goja.AssertFunction(json.Get("parse"))
	if err := e.setup(); err != nil {
		// The prelude is the engine's own code: a failure is a bug, but
		// it is reported like a broken action rather than crashing.
		e.initErr = fmt.Errorf("engine: setting up the globals failed: %v", err)
	}
	return e
}

// setup defines the globals and the require function. Modules are
// required from files the action's zip holds (none for a plain source).
func (e *engine) setup() error {
	g := e.rt.GlobalObject()
	fn, err := e.rt.RunScript("clemmys:prelude", preludeSource)
	if err != nil {
		return err
	}
	call, _ := goja.AssertFunction(fn)
	ret, err := call(goja.Undefined(), e.natives(), g)
	if err != nil {
		return err
	}
	e.prelude = ret.ToObject(e.rt)
	e.env = g.Get("process").ToObject(e.rt).Get("env").ToObject(e.rt)
	return nil
}

// enableRequire installs require over the files of the action (nil for a
// plain source) and the core modules.
func (e *engine) enableRequire(files map[string][]byte) (*require.RequireModule, error) {
	reg := require.NewRegistry(
		require.WithLoader(func(p string) ([]byte, error) {
			if b, ok := files[p]; ok {
				return b, nil
			}
			return nil, require.ModuleFileDoesNotExistError
		}),
		require.WithPathResolver(resolvePath),
	)
	modules := e.prelude.Get("modules").ToObject(e.rt)
	for _, name := range modules.Keys() {
		exports := modules.Get(name)
		e.registerModule(reg, name, func(_ *goja.Runtime, m *goja.Object) { _ = m.Set("exports", exports) })
	}
	unavailable := e.prelude.Get("unavailable").ToObject(e.rt)
	errFn, _ := goja.AssertFunction(e.prelude.Get("unavailableError"))
	for _, name := range unavailable.Keys() {
		e.registerModule(reg, name, func(_ *goja.Runtime, _ *goja.Object) {
			v, err := errFn(goja.Undefined(), e.rt.ToValue(name))
			if err != nil {
				panic(err)
			}
			panic(e.rt.NewGoError(errors.New(v.ToObject(e.rt).Get("message").String())))
		})
	}
	rm := reg.Enable(e.rt)
	// Buffer and URL come from goja_nodejs' core modules.
	buffer.Enable(e.rt)
	url.Enable(e.rt)
	fix, err := e.rt.RunScript("clemmys:buffer", bufferSource)
	if err != nil {
		return nil, err
	}
	call, _ := goja.AssertFunction(fix)
	if _, err := call(goja.Undefined(), e.natives(), e.rt.Get("Buffer")); err != nil {
		return nil, err
	}
	return rm, nil
}

// registerModule registers a core module under its name and "node:"name.
func (e *engine) registerModule(reg *require.Registry, name string, load require.ModuleLoader) {
	reg.RegisterNativeModule(name, load)
	reg.RegisterNativeModule("node:"+name, load)
}

// resolvePath joins require paths; the action's files live under /action.
func resolvePath(base, p string) string {
	if strings.HasPrefix(p, "/") {
		return cleanPath(p)
	}
	return cleanPath(base + "/" + p)
}

// validMain is an entry point: a JavaScript identifier.
var validMain = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// load loads the action: a zip (its "PK" magic) or a source text. A
// failure is kept in initErr and answered to every activation.
func (e *engine) load(code []byte, main string) {
	if e.initErr != nil {
		return
	}
	if main == "" {
		main = "main"
	}
	if !validMain.MatchString(main) {
		e.initErr = fmt.Errorf("the entry point %q is not a JavaScript identifier", main)
		return
	}
	var err error
	if isZip(code) {
		err = e.loadZip(code, main)
	} else {
		err = e.loadSource(code, main)
	}
	if err != nil {
		e.initErr = err
	}
}

// loadSource evaluates a plain source as a CommonJS module whose own
// top-level function named main is the action, unless it exports one.
func (e *engine) loadSource(code []byte, main string) error {
	if _, err := e.enableRequire(nil); err != nil {
		return fmt.Errorf("engine: %v", err)
	}
	// The wrapper is on the first line, so the action's line numbers are
	// unchanged in its stack traces.
	src := "(function (exports, require, module, __filename, __dirname) {" + string(code) +
		"\n;return typeof " + main + " === 'function' ? " + main + " : undefined;\n})"
	prg, err := goja.Compile("/action/index.js", src, false)
	if err != nil {
		return fmt.Errorf("the action's code does not compile: %s", syntaxMessage(err))
	}
	wrapper, err := e.rt.RunProgram(prg)
	if err != nil {
		return e.initError(err)
	}
	call, _ := goja.AssertFunction(wrapper)
	module := e.rt.NewObject()
	exports := e.rt.NewObject()
	_ = module.Set("exports", exports)
	_ = module.Set("id", ".")
	_ = module.Set("filename", "/action/index.js")
	local, err := call(goja.Undefined(), exports, e.rt.Get("require"), module, e.rt.ToValue("/action/index.js"), e.rt.ToValue("/action"))
	if err != nil {
		return e.initError(err)
	}
	if fn := exported(module.Get("exports"), main, e.rt); fn != nil {
		e.main = fn
		return nil
	}
	if fn, ok := goja.AssertFunction(local); ok {
		e.main = fn
		return nil
	}
	return fmt.Errorf("the action has no function %q (define function %s(params), or set exports.%s)", main, main, main)
}

// exported finds the action among a module's exports: exports[main], or
// the exports themselves if they are a function.
func exported(v goja.Value, main string, rt *goja.Runtime) goja.Callable {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return nil
	}
	obj := v.ToObject(rt)
	if fn, ok := goja.AssertFunction(obj.Get(main)); ok {
		return fn
	}
	if fn, ok := goja.AssertFunction(v); ok {
		return fn
	}
	return nil
}

// initError describes an exception thrown while the action loads.
func (e *engine) initError(err error) error {
	return fmt.Errorf("initializing the action failed: %s", e.errorMessage(err))
}

// syntaxMessage is a compile error without the engine's wrapper.
func syntaxMessage(err error) string {
	var ex *goja.CompilerSyntaxError
	if errors.As(err, &ex) && ex.File != nil {
		return "SyntaxError: " + ex.Message + " (" + ex.File.Position(ex.Offset).String() + ")"
	}
	return "SyntaxError: " + strings.TrimPrefix(err.Error(), "SyntaxError: ")
}

// errorMessage is the message of a JavaScript exception (its stack goes
// to the logs).
func (e *engine) errorMessage(err error) string {
	var ex *goja.Exception
	if !errors.As(err, &ex) {
		var ie *goja.InterruptedError
		if errors.As(err, &ie) {
			return "interrupted"
		}
		return err.Error()
	}
	v := ex.Value()
	if obj, ok := v.(*goja.Object); ok {
		if stack := obj.Get("stack"); stack != nil && !goja.IsUndefined(stack) {
			e.logLine(true, stack.String())
		}
		if msg := obj.Get("message"); msg != nil && !goja.IsUndefined(msg) {
			if name := obj.Get("name"); name != nil && !goja.IsUndefined(name) && name.String() != "Error" {
				return name.String() + ": " + msg.String()
			}
			return msg.String()
		}
	}
	return v.String()
}

// activate runs one activation and writes its result line. It reports
// whether the activation failed (an application error).
func (e *engine) activate(params []byte) (failed bool) {
	if e.initErr != nil {
		e.writeError(e.initErr.Error())
		return true
	}
	result, err := e.invoke(params)
	var app *applicationError
	switch {
	case errors.As(err, &app):
		e.writeResult(app.value)
		return true
	case err != nil:
		e.writeError(err.Error())
		return true
	}
	e.writeResult(result)
	return false
}

// applicationError is an action's failure: a thrown error or a rejected
// promise, answered as {"error": value}.
type applicationError struct{ value []byte }

func (a *applicationError) Error() string { return string(a.value) }

// invoke calls the action with params and returns the JSON of its result,
// waiting for a promise to settle (running timers meanwhile).
func (e *engine) invoke(params []byte) ([]byte, error) {
	arg, err := e.parse(goja.Undefined(), e.rt.ToValue(string(params)))
	if err != nil {
		return nil, errors.New("parameters are not valid JSON")
	}
	e.timers.activation++
	v, err := e.call(e.main, goja.Undefined(), arg)
	if err != nil {
		return nil, e.failure(err)
	}
	if p, ok := v.Export().(*goja.Promise); ok {
		if err := e.await(p); err != nil {
			return nil, err
		}
		if p.State() == goja.PromiseStateRejected {
			return nil, e.rejection(p.Result())
		}
		v = p.Result()
	} else if obj, ok := v.(*goja.Object); ok {
		if _, thenable := goja.AssertFunction(obj.Get("then")); thenable {
			p, resolve, _ := e.rt.NewPromise()
			_ = resolve(obj)
			if err := e.await(p); err != nil {
				return nil, err
			}
			if p.State() == goja.PromiseStateRejected {
				return nil, e.rejection(p.Result())
			}
			v = p.Result()
		}
	}
	return e.resultJSON(v)
}

// call calls fn.
func (e *engine) call(fn goja.Callable, this goja.Value, args ...goja.Value) (goja.Value, error) {
	return fn(this, args...)
}

// failure turns what the action threw into the activation's error.
func (e *engine) failure(err error) error {
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return e.rejection(ex.Value())
	}
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		// goja's is not catchable in JavaScript, unlike Node's RangeError.
		e.logLine(true, "RangeError: Maximum call stack size exceeded\n"+strings.TrimSpace(so.Error()))
		return &applicationError{value: mustJSON(map[string]string{"error": "RangeError: Maximum call stack size exceeded"})}
	}
	return err
}

// rejection is the error result of a thrown or rejected value: an Error's
// message (its stack goes to the logs), a string as is, any other value as
// its JSON, as OpenWhisk's Node.js runtime reports them.
func (e *engine) rejection(v goja.Value) error {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return &applicationError{value: mustJSON(map[string]string{"error": "The action failed without a reason."})}
	}
	if obj, ok := v.(*goja.Object); ok {
		if isError(obj, e.rt) {
			if stack := obj.Get("stack"); stack != nil && !goja.IsUndefined(stack) {
				e.logLine(true, stack.String())
			}
			msg := ""
			if m := obj.Get("message"); m != nil && !goja.IsUndefined(m) {
				msg = m.String()
			}
			return &applicationError{value: mustJSON(map[string]string{"error": msg})}
		}
		b, err := e.stringify(goja.Undefined(), obj)
		if err == nil && !goja.IsUndefined(b) {
			return &applicationError{value: []byte(`{"error":` + b.String() + `}`)}
		}
		return &applicationError{value: mustJSON(map[string]string{"error": obj.String()})}
	}
	b, err := e.stringify(goja.Undefined(), v)
	if err == nil && !goja.IsUndefined(b) {
		return &applicationError{value: []byte(`{"error":` + b.String() + `}`)}
	}
	return &applicationError{value: mustJSON(map[string]string{"error": v.String()})}
}

// isError reports whether obj is an Error (instanceof Error).
func isError(obj *goja.Object, rt *goja.Runtime) bool {
	ctor := rt.Get("Error")
	return ctor != nil && rt.InstanceOf(obj, ctor.ToObject(rt))
}

// resultJSON is the JSON of the action's result: undefined or null is {}.
func (e *engine) resultJSON(v goja.Value) ([]byte, error) {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return []byte("{}"), nil
	}
	s, err := e.call(e.stringify, goja.Undefined(), v)
	if err != nil {
		return nil, fmt.Errorf("the action's result cannot be converted to JSON: %s", e.errorMessage(err))
	}
	if goja.IsUndefined(s) {
		return []byte("{}"), nil
	}
	return []byte(s.String()), nil
}

// await runs timers until p settles. A promise that nothing can settle
// any more (no timer left) fails the activation.
func (e *engine) await(p *goja.Promise) error {
	for p.State() == goja.PromiseStatePending {
		t := e.timers.next()
		if t == nil {
			return &applicationError{value: mustJSON(map[string]string{
				"error": "The action returned a promise that never settles: nothing is left that could resolve it (no timer is pending)."})}
		}
		if d := t.due.Sub(e.now()); d > 0 {
			time.Sleep(d)
		}
		if err := e.fire(t); err != nil {
			return err
		}
	}
	return nil
}

// exitFunc is process.exit: the guest ends with the code, the instance
// with it (a variable for tests).
var exitFunc = os.Exit

func mustJSON(v any) []byte {
	b, err := jsonMarshal(v)
	if err != nil {
		return []byte(`{"error":"unknown error"}`)
	}
	return b
}
