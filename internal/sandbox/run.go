package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	// Warm: the activation ran in an instance started before this Run (a
	// warm instance that served earlier activations, or a pre-initialized
	// one), so it did not wait for the guest to start.
	Warm bool
}

// errOutputTooLarge is the halt cause when stdout overflows.
var errOutputTooLarge = errors.New("output cap reached")

// cancelled is the halt cause when Run's context ends.
type cancelled struct{ err error }

func (c cancelled) Error() string { return "sandbox: run cancelled: " + c.err.Error() }
func (c cancelled) Unwrap() error { return c.err }

// Run runs one activation with input as params and returns what the guest
// wrote: result JSON on stdout, logs on stderr. The guest gets no file
// system, no network, args [name], no environment (but LoopEnv=1 in the
// loop convention), a real clock and crypto/rand as its random source.
//
// A one-shot module runs in a fresh instance, params on stdin, until it
// exits. A loop-convention module gets the params as one line, in a warm
// instance if one is idle (or a pre-initialized one, used once, if the
// module asks for fresh instances), and the activation ends when the guest
// asks for its next input; the instance then waits for the next activation
// if the guest wrote exactly one line to stdout and nothing went wrong.
// Anything else (a timeout, an exit, a trap, too much output, malformed
// output) ends the instance.
//
// A guest that exits 0 (or returns from _start, or completes a loop
// activation) succeeds. Otherwise the error wraps one of ErrTimeout,
// ErrMemoryLimit, ErrOutputTooLarge, ErrExit (non-zero exit status, not
// otherwise classified: an sdk application error in one shot is ErrExit
// with ExitCode 1), ErrTrap, ErrInvalidModule (the module cannot be
// instantiated), ErrClosed, or ctx.Err() if ctx ended first. Whenever the
// guest ran, the Result is returned too, with its logs, so the owner can see
// why it failed.
func (m *Module) Run(ctx context.Context, input []byte, lim Limits) (*Result, error) {
	return m.RunActivation(ctx, Activation{Params: input}, lim)
}

// Activation is one activation's input: its params and the metadata a
// module of the loop convention version 2 gets with them (the others get
// only the params).
type Activation struct {
	Params []byte
	// ID, Namespace and Action name the activation (OpenWhisk's
	// __OW_ACTIVATION_ID, __OW_NAMESPACE, __OW_ACTION_NAME).
	ID, Namespace, Action string
}

// RunActivation is Run with the activation's metadata. A module of the
// loop convention version 2 gets them with its params, and its deadline:
// the time its time limit ends.
func (m *Module) RunActivation(ctx context.Context, act Activation, lim Limits) (*Result, error) {
	input := act.Params
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: run not started: %w", err)
	}
	lim = lim.withDefaults()
	if uint64(m.c.minPages)*wasmPageSize > lim.MemoryBytes {
		return nil, fmt.Errorf("%w: the module needs %d bytes of initial memory, the limit is %d bytes",
			ErrMemoryLimit, uint64(m.c.minPages)*wasmPageSize, lim.MemoryBytes)
	}

	start := time.Now()
	in, warm, err := m.acquire(lim.MemoryBytes)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, ErrClosed // nothing ran
		}
		return &Result{Duration: time.Since(start)}, err
	}
	c := m.c
	if c.reactor {
		return m.runReactor(ctx, in, warm, input, lim, start)
	}
	line, eof := input, true
	switch {
	case m.loop() && c.loopV2:
		line, eof = loopLineV2(act, start.Add(lim.Timeout)), false
	case m.loop():
		line, eof = loopLine(input), false
	}
	stdout, stderr, waiting, actNum := in.attach(line, eof, lim)
	timer := time.AfterFunc(max(lim.Timeout-time.Since(start), 0), func() { in.haltActivation(actNum, ErrTimeout) })
	select {
	case <-waiting:
	case <-in.exited:
	case <-in.stopped:
	case <-ctx.Done():
		in.halt(cancelled{ctx.Err()})
	}
	timer.Stop()

	completed := closed(waiting) // a loop activation ended normally
	in.mu.Lock()
	halted := in.halted
	in.mu.Unlock()
	exited := false
	switch {
	case completed:
	case halted != nil:
		exited = in.awaitExit()
	default:
		<-in.exited
		exited = true
	}

	res := &Result{PeakMemoryBytes: in.alloc.peak.Load(), Warm: warm}
	var exitErr error
	if exited {
		exitErr = in.exitErr
	}
	err = m.classify(completed, halted, exited, exitErr, res, in.alloc, stdout, lim)
	in.mu.Lock()
	if errors.Is(err, ErrTrap) {
		// The error keeps the first line ("wasm error: unreachable"); the
		// wasm stack trace, which names only the owner's code, goes to the
		// owner's logs.
		stderr.note("trap: " + exitErr.Error())
	}
	res.Logs = stderr.logs()
	if !stdout.overflow {
		res.Output = bytes.Clone(stdout.buf.Bytes())
	}
	in.mu.Unlock()
	res.Duration = time.Since(start)

	// Keep the instance if it can serve another activation.
	reuse := completed && halted == nil && err == nil && !c.fresh && oneLine(res.Output)
	in.detach()
	if reuse {
		m.e.put(in)
	} else if !exited {
		in.close()
	}
	return res, err
}

// loop reports whether m's activations use the loop convention.
func (m *Module) loop() bool { return m.c.loop && !m.oneShot }

// warm reports whether m's instances serve more than one activation: the
// loop convention's and a reactor's (which has no one-shot form).
func (m *Module) warm() bool { return m.loop() || m.c.reactor }

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// acquire returns an instance for one activation: an idle one of a loop
// module, or a new one. warm reports an idle one.
func (m *Module) acquire(limit uint64) (in *instance, warm bool, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	c := m.c
	if m.warm() {
		in = m.e.take(c, m.b, limit)
	}
	if in == nil {
		in, err = m.e.newInstance(c, m.b, limit, m.loop())
	} else {
		warm = true
	}
	if err == nil && m.warm() && c.fresh && m.e.cfg.Prestart > 0 {
		m.e.prestart(c, m.b, limit) // the next activation's instance
	}
	return in, warm, err
}

// classify turns how the activation ended into the Run error and fills
// res.ExitCode. The first matching case wins.
func (m *Module) classify(completed bool, halted error, exited bool, exitErr error, res *Result, alloc *limitedAllocator, stdout *capWriter, lim Limits) error {
	var exit *sys.ExitError
	if errors.As(exitErr, &exit) {
		res.ExitCode = exit.ExitCode()
	}
	succeeded := completed || (exited && (exitErr == nil || (exit != nil && exit.ExitCode() == 0)))
	if halted != nil && !succeeded {
		res.ExitCode = 0 // not the guest's status
	}
	var startErr *startError

	switch {
	case !succeeded && m.e.closed.Load():
		return ErrClosed
	case stdout.overflow:
		// Even if the guest then exited 0, its result is truncated.
		return fmt.Errorf("%w: the function wrote more than %d bytes to stdout", ErrOutputTooLarge, lim.MaxOutputBytes)
	case succeeded:
		return nil
	case errors.As(halted, new(cancelled)):
		return halted
	case errors.Is(halted, ErrTimeout):
		return fmt.Errorf("%w: the function ran longer than %v and was stopped", ErrTimeout, lim.Timeout)
	case halted != nil:
		// Closed, or stopped for a reason handled above.
		return ErrClosed
	case errors.As(exitErr, &startErr):
		// A trap in the start function: the module cannot be instantiated.
		return instantiationError(startErr.err)
	case alloc.denied.Load() != 0:
		return fmt.Errorf("%w: the function tried to grow its memory to %d bytes, the limit is %d bytes",
			ErrMemoryLimit, alloc.denied.Load(), lim.MemoryBytes)
	case exit != nil:
		return fmt.Errorf("%w: exit status %d", ErrExit, exit.ExitCode())
	default:
		return fmt.Errorf("%w: %s", ErrTrap, firstLine(exitErr.Error()))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
