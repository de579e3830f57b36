package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// Defaults for zero Limits fields.
const (
	DefaultMemoryBytes    = 256 << 20
	DefaultTimeout        = 60 * time.Second
	DefaultMaxOutputBytes = 1 << 20
	DefaultMaxLogBytes    = 1 << 20

	// maxMemoryBytes is all a 32-bit WebAssembly memory can address.
	maxMemoryBytes = 1 << 32
)

// Limits bound one Run. Zero fields take the defaults above.
type Limits struct {
	MemoryBytes    uint64        // max linear memory, rounded down to 64 KiB pages (at most 4 GiB); 0 = 256 MiB
	Timeout        time.Duration // wall-clock time for the whole run; 0 = 60 s
	MaxOutputBytes int           // stdout cap; 0 = 1 MiB
	MaxLogBytes    int           // stderr cap; 0 = 1 MiB. Logs beyond it are dropped and a marker line "[clemmys: logs truncated at N bytes]" is appended
}

// withDefaults returns l with zero fields set to their defaults and memory
// rounded down to whole pages.
func (l Limits) withDefaults() Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = DefaultMemoryBytes
	}
	l.MemoryBytes = min(l.MemoryBytes, maxMemoryBytes) / wasmPageSize * wasmPageSize
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if l.MaxLogBytes <= 0 {
		l.MaxLogBytes = DefaultMaxLogBytes
	}
	return l
}

// Result is what a run produced.
type Result struct {
	Output          []byte        // stdout; nil if it exceeded MaxOutputBytes
	Logs            []byte        // stderr, capped (plus Run's marker lines)
	ExitCode        uint32        // the guest's exit status (0 unless it exited)
	Duration        time.Duration // instantiation plus execution
	PeakMemoryBytes uint64        // largest linear memory the guest had
}

// errOutputTooLarge is the cancellation cause when stdout overflows.
var errOutputTooLarge = errors.New("output cap reached")

// Run instantiates a fresh instance with input on stdin, runs _start, and
// returns what it wrote: params JSON on stdin, result JSON on stdout, logs on
// stderr. The guest gets no file system, no network, args [name], no
// environment, a real clock and crypto/rand as its random source.
//
// A guest that exits 0 (or returns from _start) succeeds. Otherwise the
// error wraps one of ErrTimeout, ErrMemoryLimit, ErrOutputTooLarge, ErrExit
// (non-zero exit status, not otherwise classified: an sdk application error
// is ErrExit with ExitCode 1), ErrTrap, ErrInvalidModule (the module cannot
// be instantiated), ErrClosed, or ctx.Err() if ctx ended first. Whenever the
// guest ran, the Result is returned too, with its logs, so the owner can see
// why it failed.
func (m *Module) Run(ctx context.Context, input []byte, lim Limits) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: run not started: %w", err)
	}
	lim = lim.withDefaults()
	if uint64(m.c.minPages)*wasmPageSize > lim.MemoryBytes {
		return nil, fmt.Errorf("%w: the module needs %d bytes of initial memory, the limit is %d bytes",
			ErrMemoryLimit, uint64(m.c.minPages)*wasmPageSize, lim.MemoryBytes)
	}

	start := time.Now()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(lim.Timeout, func() { cancel(ErrTimeout) })
	defer timer.Stop()

	stdout := &capWriter{limit: lim.MaxOutputBytes, onOverflow: func() { cancel(errOutputTooLarge) }}
	stderr := &capWriter{limit: lim.MaxLogBytes}
	alloc := &limitedAllocator{limit: lim.MemoryBytes}

	cfg := wazero.NewModuleConfig().
		WithName("").         // anonymous: many instances of one module coexist
		WithStartFunctions(). // we call _start ourselves, to see how it ended
		WithArgs(m.c.name).
		WithStdin(bytes.NewReader(input)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(func(ns int64) { sleep(runCtx, ns) }).
		WithOsyield(runtime.Gosched)

	mod, err := m.instantiate(experimental.WithMemoryAllocator(runCtx, alloc), cfg)
	instantiated := err == nil
	if instantiated {
		_, err = mod.ExportedFunction("_start").Call(runCtx)
		if exit := (*sys.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == 0 {
			err = nil // proc_exit(0)
		}
		_ = mod.Close(context.WithoutCancel(ctx))
	} else if errors.Is(err, ErrClosed) || m.e.closed.Load() {
		return nil, ErrClosed // nothing ran
	}

	res := &Result{
		Duration:        time.Since(start),
		PeakMemoryBytes: alloc.peak.Load(),
	}
	guestErr := err
	err = m.classify(ctx, runCtx, guestErr, instantiated, res, alloc, stdout, lim)
	if errors.Is(err, ErrTrap) {
		// The error keeps the first line ("wasm error: unreachable"); the
		// wasm stack trace, which names only the owner's code, goes to the
		// owner's logs.
		stderr.note("trap: " + guestErr.Error())
	}
	res.Logs = stderr.logs()
	if !stdout.overflow {
		res.Output = stdout.buf.Bytes()
	}
	return res, err
}

// instantiate makes a fresh instance unless the Module is closed.
func (m *Module) instantiate(ctx context.Context, cfg wazero.ModuleConfig) (api.Module, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.e.rt.InstantiateModule(ctx, m.c.mod, cfg)
}

// classify turns how the guest ended into the Run error and fills
// res.ExitCode. The first matching case wins.
func (m *Module) classify(ctx, runCtx context.Context, err error, instantiated bool, res *Result, alloc *limitedAllocator, stdout *capWriter, lim Limits) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitCode()
	}
	// wazero reports a cancelled run as an exit with a reserved code; only
	// believe it if the run's context really ended (a guest can exit with
	// any code).
	cancelled := exit != nil && runCtx.Err() != nil &&
		(exit.ExitCode() == sys.ExitCodeContextCanceled || exit.ExitCode() == sys.ExitCodeDeadlineExceeded)
	if cancelled {
		res.ExitCode = 0 // not the guest's status
	}

	switch {
	case err != nil && m.e.closed.Load():
		return ErrClosed
	case stdout.overflow:
		// Even if the guest then exited 0, its result is truncated.
		return fmt.Errorf("%w: the function wrote more than %d bytes to stdout", ErrOutputTooLarge, lim.MaxOutputBytes)
	case err == nil:
		return nil
	case cancelled && ctx.Err() != nil:
		return fmt.Errorf("sandbox: run cancelled: %w", ctx.Err())
	case cancelled && errors.Is(context.Cause(runCtx), ErrTimeout):
		return fmt.Errorf("%w: the function ran longer than %v and was stopped", ErrTimeout, lim.Timeout)
	case alloc.denied.Load() != 0:
		return fmt.Errorf("%w: the function tried to grow its memory to %d bytes, the limit is %d bytes",
			ErrMemoryLimit, alloc.denied.Load(), lim.MemoryBytes)
	case exit != nil:
		return fmt.Errorf("%w: exit status %d", ErrExit, exit.ExitCode())
	case !instantiated:
		// A link or data-segment error, or a trap in a start section.
		return fmt.Errorf("%w: cannot instantiate: %s", ErrInvalidModule, firstLine(err.Error()))
	default:
		return fmt.Errorf("%w: %s", ErrTrap, firstLine(err.Error()))
	}
}

// sleep blocks for ns nanoseconds or until ctx ends, so that a sleeping
// guest can be stopped (wazero's default sleep is time.Sleep).
func sleep(ctx context.Context, ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
