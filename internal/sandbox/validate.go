package sandbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Validate checks wasm the way Compile does — structure (precheck), the
// interruption instrumentation, WebAssembly validation, and that it is a
// WASI command module importing only what the sandbox provides, with the
// signatures it provides — without compiling it to native code or keeping
// anything. A module Validate accepts compiles in an Engine unless the
// runtime runs another version of this package.
//
// It is meant for a deployer that holds the plaintext module (the gateway,
// at deploy time): its error wraps ErrInvalidModule and says what is wrong
// and where, naming imports and exports of the module, so it may be shown
// to the module's owner but must not leave the trusted components in
// plaintext otherwise. At most two validations run at once (validation
// holds the module's decoded form in memory); the others wait for ctx.
func Validate(ctx context.Context, wasm []byte) error {
	if len(wasm) == 0 {
		return fmt.Errorf("%w: empty module", ErrInvalidModule)
	}
	if err := precheckCommand(wasm); err != nil {
		return err
	}
	select {
	case validateSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sandbox: validate: %w", ctx.Err())
	}
	defer func() { <-validateSem }()
	v := getValidator()
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %s", ErrInvalidModule, internalCompilerError)
			}
		}()
		var inst []byte
		if inst, err = instrument(wasm); err != nil {
			return
		}
		cm, cerr := v.rt.CompileModule(ctx, inst)
		if cerr != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("sandbox: validate: %w", ctx.Err())
				return
			}
			err = fmt.Errorf("%w: %v", ErrInvalidModule, cerr)
			return
		}
		defer cm.Close(context.WithoutCancel(ctx))
		if _, verr := validate(cm, &compiled{}, v.wasi); verr != nil {
			err = fmt.Errorf("%w: %v", ErrInvalidModule, verr)
		}
	}()
	return err
}

// validateSem bounds concurrent validations.
var validateSem = make(chan struct{}, 2)

// validator is a wazero runtime on the interpreter engine: it decodes and
// validates a module like the compiler engine does, at a fraction of the
// compilation time, and is never used to run anything.
type validator struct {
	rt   wazero.Runtime
	wasi map[string]api.FunctionDefinition
}

var getValidator = sync.OnceValue(func() *validator {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(coreFeatures).
		WithDebugInfoEnabled(false))
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return &validator{rt: rt, wasi: rt.Module(wasiModule).ExportedFunctionDefinitions()}
})
