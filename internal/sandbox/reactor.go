package sandbox

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

// The reactor convention (see the package documentation): a module that
// exports "_initialize" and reactorExport is a WASI reactor. Its instances
// have no goroutine of their own: the activation's goroutine initializes a
// new instance (the start function, then _initialize) and calls
// reactorExport with the params on stdin, followed by end of file; the
// activation ends when the call returns. Nothing is handed between
// goroutines, and no end of activation has to be detected.

// initReactor runs a new reactor instance's start function and
// _initialize, once, on the caller's goroutine. The instance must be
// attached to an activation (its writers catch start-up output) or be
// prestarted under a halt timer.
func (in *instance) initReactor() error {
	if in.initialized {
		return nil
	}
	in.initialized = true
	ctx := context.Background()
	if in.c.hasStart {
		if _, err := in.mod.ExportedFunction(startExport).Call(ctx); err != nil {
			if exit := (*sys.ExitError)(nil); !errors.As(err, &exit) {
				return &startError{err}
			}
			return err
		}
	}
	_, err := in.mod.ExportedFunction("_initialize").Call(ctx)
	return err
}

// callReactor runs one activation in a reactor instance (or, if !run,
// only initializes it): initialization if it is new, then reactorExport.
// It returns what the guest's code returned (a trap, an exit) or ErrClosed
// if the instance was halted before it could start.
func (in *instance) callReactor(run bool) error {
	in.mu.Lock()
	if in.halted != nil {
		in.mu.Unlock()
		return ErrClosed
	}
	in.busy = true
	in.mu.Unlock()
	err := in.initReactor()
	if err == nil && run {
		_, err = in.entry.Call(context.Background())
	}
	in.mu.Lock()
	in.busy = false
	in.mu.Unlock()
	return err
}

// finish closes a reactor instance that runs no code and frees it: the
// counterpart of the end of serve for the other conventions. It is safe to
// call more than once.
func (in *instance) finish(err error) {
	in.mu.Lock()
	if in.finished {
		in.mu.Unlock()
		return
	}
	in.finished = true
	in.eof = true
	in.mu.Unlock()
	_ = in.mod.Close(context.Background())
	in.exitErr = err
	in.e.forget(in)
	close(in.exited)
}

// closeReactor ends a reactor instance: at once if no activation runs in
// it, else when that activation's call returns (halted, it traps at its
// next interruption check).
func (in *instance) closeReactor(cause error) {
	in.halt(cause)
	in.mu.Lock()
	busy := in.busy
	in.mu.Unlock()
	if !busy {
		in.finish(nil)
	}
}

// runReactor is RunActivation for a reactor module, in the instance in.
func (m *Module) runReactor(ctx context.Context, in *instance, warm bool, input []byte, lim Limits, start time.Time) (*Result, error) {
	stdout, stderr, _, actNum := in.attach(input, true, lim)
	timer := time.AfterFunc(max(lim.Timeout-time.Since(start), 0), func() { in.haltActivation(actNum, ErrTimeout) })
	// A guest that does not stop once halted has escaped the
	// instrumentation (a bug): the Engine then asks to be replaced.
	watchdog := time.AfterFunc(max(lim.Timeout-time.Since(start), 0)+haltGrace, func() { in.e.runaway.Store(true) })
	stopCancel := context.AfterFunc(ctx, func() { in.halt(cancelled{ctx.Err()}) })
	callErr := in.callReactor(true)
	stopCancel()
	timer.Stop()
	watchdog.Stop()

	in.mu.Lock()
	halted := in.halted
	in.mu.Unlock()
	completed := callErr == nil && halted == nil
	exited := !completed // a reactor's code is done once the call returned
	res := &Result{PeakMemoryBytes: in.alloc.peak.Load(), Warm: warm}
	err := m.classify(completed, halted, exited, callErr, res, in.alloc, stdout, lim)
	in.mu.Lock()
	if errors.Is(err, ErrTrap) {
		stderr.note("trap: " + callErr.Error())
	}
	res.Logs = stderr.logs()
	if !stdout.overflow {
		res.Output = bytes.Clone(stdout.buf.Bytes())
	}
	in.mu.Unlock()
	res.Duration = time.Since(start)

	reuse := completed && err == nil && !m.c.fresh && oneLine(res.Output)
	in.detach()
	if reuse {
		m.e.put(in)
	} else {
		in.finish(callErr)
	}
	return res, err
}

// prestartReactor initializes a reactor instance started ahead of its
// activation, under a halt timer; it reports whether it can serve one.
func (in *instance) prestartReactor() bool {
	timer := time.AfterFunc(DefaultTimeout, func() { in.halt(ErrTimeout) })
	err := in.callReactor(false)
	timer.Stop()
	in.mu.Lock()
	halted := in.halted
	in.mu.Unlock()
	if err != nil || halted != nil {
		in.finish(err)
		return false
	}
	return true
}
