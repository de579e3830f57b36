package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// instance is one started instance of a compiled module: a wazero module
// whose _start runs on its own goroutine, reading its stdin from the host.
//
// In the one-shot convention an instance serves one activation: its stdin
// is the params followed by end of file, and the activation ends when _start
// returns. In the loop convention its stdin is an endless stream of
// activations: the host delivers one params line and the activation ends
// when the guest asks for more input with none pending (it blocks in
// fd_read), so everything the guest wrote in between belongs to that
// activation, exactly; or when it exits.
type instance struct {
	e     *Engine
	c     *compiled
	b     *binding // its Data and pool
	mod   api.Module
	stop  api.MutableGlobal // the instrumentation's stop flag
	alloc *limitedAllocator
	limit uint64 // memory limit in bytes, fixed for the instance's life

	exited  chan struct{} // closed when _start has returned and the module is closed
	exitErr error         // what _start returned; set before exited is closed

	mu      sync.Mutex
	cond    *sync.Cond    // signalled when input, eof or halted change
	input   []byte        // unread input
	eof     bool          // reads return end of file once input is consumed
	waiting chan struct{} // closed when the guest waits for input with none pending
	out     *capWriter    // stdout of the current activation
	log     *capWriter    // stderr of the current activation
	halted  error         // why the host stopped the guest, nil if it did not
	stopped chan struct{} // closed with halted: wakes sleeping guests
	served  int           // activations attached so far
	current int           // the attached activation (its number in served), 0 if none

	// A reactor instance (reactor.go) has no goroutine: its code runs on
	// the activation's. entry is its reactorExport; initialized is set by
	// the goroutine that ran _initialize; busy (guarded by mu) while code
	// runs; finished (guarded by mu) once closed.
	reactor     bool
	entry       api.Function
	initialized bool
	busy        bool
	finished    bool

	idleTimer *time.Timer // guarded by Engine.poolMu
	idleBytes uint64      // memory counted in Engine.idleBytes; guarded by Engine.poolMu
}

// newInstance instantiates c with a memory limit and starts its _start on a
// new goroutine, in the loop convention if loop. The caller must hold a
// reference to c (a Module) while it runs. Errors wrap ErrInvalidModule (it
// cannot be instantiated) or are ErrClosed.
func (e *Engine) newInstance(c *compiled, b *binding, limit uint64, loop bool) (*instance, error) {
	in := &instance{
		e: e, c: c, b: b, limit: limit,
		alloc:   &limitedAllocator{limit: limit},
		exited:  make(chan struct{}),
		waiting: make(chan struct{}),
		stopped: make(chan struct{}),
		out:     pendingOutput(),
		log:     pendingLogs(),
	}
	in.cond = sync.NewCond(&in.mu)
	cfg := wazero.NewModuleConfig().
		WithName("").         // anonymous: many instances of one module coexist
		WithStartFunctions(). // _start runs on the instance's goroutine
		WithArgs(c.name).
		WithStdin(in).
		WithStdout(instanceWriter{in, false}).
		WithStderr(instanceWriter{in, true}).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(in.sleep).
		WithOsyield(runtime.Gosched)
	cfg = b.configure(cfg)
	if loop {
		cfg = cfg.WithEnv(LoopEnv, "1")
	}

	e.poolMu.Lock()
	if e.closed.Load() || c.closing {
		e.poolMu.Unlock()
		return nil, ErrClosed
	}
	e.live[in] = struct{}{}
	c.live++
	e.poolMu.Unlock()

	// Instantiation runs no guest code (the instrumentation turned a start
	// section into an export, called below), so it cannot hang.
	ctx := experimental.WithMemoryAllocator(context.Background(), in.alloc)
	mod, err := e.rt.InstantiateModule(ctx, c.mod, cfg)
	if err != nil {
		in.exitErr = err
		e.forget(in)
		close(in.exited)
		if e.closed.Load() {
			return nil, ErrClosed
		}
		return nil, instantiationError(err)
	}
	in.mu.Lock()
	in.mod = mod
	in.stop = mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	if in.halted != nil { // Engine.Close ran meanwhile
		in.stop.Set(1)
	}
	if c.reactor {
		in.reactor, in.entry = true, mod.ExportedFunction(reactorExport)
	}
	in.mu.Unlock()
	if !c.reactor {
		go in.serve()
	}
	return in, nil
}

// serve runs the guest until it returns, then frees the instance.
func (in *instance) serve() {
	ctx := context.Background()
	var err error
	if in.c.hasStart {
		// The module's start function, as instantiation would have run it.
		// If it exits, the guest is over; a trap means the module cannot
		// be instantiated.
		_, err = in.mod.ExportedFunction(startExport).Call(ctx)
		if exit := (*sys.ExitError)(nil); err != nil && !errors.As(err, &exit) {
			err = &startError{err}
		}
	}
	if err == nil {
		_, err = in.mod.ExportedFunction("_start").Call(ctx)
	}
	_ = in.mod.Close(ctx)
	in.exitErr = err
	in.mu.Lock()
	in.eof = true // nobody reads any more
	in.mu.Unlock()
	in.e.forget(in)
	close(in.exited)
}

// startError is a trap in the module's start function: the module cannot be
// instantiated.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// halt stops the guest for cause: it traps at its next interruption check
// and its reads and sleeps return at once. Only the first cause is kept.
// It is safe to call from any goroutine, any number of times.
func (in *instance) halt(cause error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.halted != nil {
		return
	}
	in.halted = cause
	in.eof = true
	close(in.stopped)
	if in.stop != nil {
		in.stop.Set(1)
	}
	in.cond.Broadcast()
}

// haltActivation halts the guest for cause if activation number act is
// still attached: a timer that fires as its activation ends must not halt
// the instance once it serves another.
func (in *instance) haltActivation(act int, cause error) {
	in.mu.Lock()
	current := in.current == act
	in.mu.Unlock()
	if current {
		in.halt(cause)
	}
}

// Read is the guest's stdin (fd_read, on the guest's goroutine).
func (in *instance) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		switch {
		case len(in.input) > 0:
			n := copy(p, in.input)
			in.input = in.input[n:]
			return n, nil
		case in.eof:
			return 0, io.EOF
		}
		select {
		case <-in.waiting:
		default:
			close(in.waiting) // the activation, if any, is over
		}
		in.cond.Wait()
	}
}

// attach makes in serve an activation: its stdout and stderr go to fresh
// writers with the activation's caps (which first receive anything the
// guest wrote since the last activation, such as start-up logs), and
// input is delivered, followed by end of file if eof. It returns the
// writers, a channel closed when the guest next waits for input and the
// activation's number.
func (in *instance) attach(input []byte, eof bool, lim Limits) (out, log *capWriter, waiting <-chan struct{}, act int) {
	out = &capWriter{limit: lim.MaxOutputBytes, onOverflow: func() {}}
	log = &capWriter{limit: lim.MaxLogBytes}
	in.mu.Lock()
	defer in.mu.Unlock()
	_, _ = out.Write(in.out.buf.Bytes())
	_, _ = log.Write(in.log.buf.Bytes())
	if in.log.overflow {
		log.note("earlier logs truncated")
	}
	in.out, in.log = out, log
	in.input, in.eof = input, eof
	in.waiting = make(chan struct{})
	in.served++
	in.current = in.served
	in.cond.Broadcast()
	return out, log, in.waiting, in.current
}

// detach ends the activation: later output goes to pending writers, and
// later refused memory growth is the next activation's. (Resetting that in
// attach instead lost a refusal made before it: the guest of a one-shot
// module starts running when its instance is made, and a tiny one can hit
// the memory limit before Run attaches, then was reported as a plain trap.)
func (in *instance) detach() {
	in.mu.Lock()
	in.out, in.log = pendingOutput(), pendingLogs()
	in.current = 0
	in.alloc.denied.Store(0)
	in.mu.Unlock()
}

// pendingOutput and pendingLogs collect what a guest writes between
// activations (start-up, or after its result); attach hands it to the next
// activation.
func pendingOutput() *capWriter {
	return &capWriter{limit: DefaultMaxOutputBytes, onOverflow: func() {}}
}

func pendingLogs() *capWriter { return &capWriter{limit: DefaultMaxLogBytes} }

// instanceWriter is an instance's stdout or stderr.
type instanceWriter struct {
	in     *instance
	stderr bool
}

func (w instanceWriter) Write(p []byte) (int, error) {
	in := w.in
	in.mu.Lock()
	cw := in.out
	if w.stderr {
		cw = in.log
	}
	n, err := cw.Write(p)
	overflow := !w.stderr && cw.overflow
	in.mu.Unlock()
	if overflow {
		in.halt(errOutputTooLarge)
	}
	return n, err
}

// sleep blocks for ns nanoseconds or until the guest is halted (wazero's
// default sleep is time.Sleep).
func (in *instance) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.stopped:
	}
}

// awaitExit waits for a halted guest to stop. A guest traps within a few
// thousand interruption checks of being halted, which takes microseconds;
// one that has not stopped after haltGrace has escaped the instrumentation
// (a bug): the Engine then reports itself as runaway.
func (in *instance) awaitExit() bool {
	t := time.NewTimer(haltGrace)
	defer t.Stop()
	select {
	case <-in.exited:
		return true
	case <-t.C:
		in.e.runaway.Store(true)
		return false
	}
}

// haltGrace bounds how long a halted guest may take to stop.
const haltGrace = 5 * time.Second

// forget removes an instance that has exited from the Engine's books, and
// frees its compiled module if it was the last user of a released one.
func (e *Engine) forget(in *instance) {
	e.poolMu.Lock()
	delete(e.live, in)
	in.c.live--
	free := in.c.closing && in.c.live == 0 && !in.c.freed
	if free {
		in.c.freed = true
	}
	if len(e.live) == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
	e.poolMu.Unlock()
	if free && in.c.mod != nil {
		_ = in.c.mod.Close(context.Background())
	}
}

// take removes and returns an idle instance of c with the binding and
// the memory limit, the most recently used one, or nil.
func (e *Engine) take(c *compiled, b *binding, limit uint64) *instance {
	e.poolMu.Lock()
	defer e.poolMu.Unlock()
	for i := len(e.idle) - 1; i >= 0; i-- {
		in := e.idle[i]
		if in.c != c || in.b != b || in.limit != limit {
			continue
		}
		e.removeIdle(i)
		in.mu.Lock()
		halted := in.halted != nil
		in.mu.Unlock()
		if halted || closed(in.exited) { // a pre-started guest that died starting, say
			in.close()
			continue
		}
		return in
	}
	return nil
}

// removeIdle removes e.idle[i]. e.poolMu must be held.
func (e *Engine) removeIdle(i int) {
	in := e.idle[i]
	e.idle = append(e.idle[:i], e.idle[i+1:]...)
	e.idleBytes -= in.idleBytes
	in.b.idle--
	in.idleTimer.Stop()
}

// put makes an instance waiting for input available to later activations,
// within the pool's bounds (evicting the least recently used instances);
// if it cannot be kept it is closed.
func (e *Engine) put(in *instance) {
	c, b := in.c, in.b
	var evict []*instance
	size := in.alloc.peak.Load() // the memory's size: it never shrinks
	e.poolMu.Lock()
	if e.closed.Load() || c.closing || b.closing || e.cfg.MaxIdlePerModule <= 0 || e.cfg.MaxIdle <= 0 || size > e.cfg.MaxIdleBytes {
		e.poolMu.Unlock()
		in.close()
		return
	}
	if b.idle >= e.cfg.MaxIdlePerModule {
		for i, old := range e.idle {
			if old.c == c && old.b == b {
				e.removeIdle(i)
				evict = append(evict, old)
				break
			}
		}
	}
	for len(e.idle) > 0 && (len(e.idle) >= e.cfg.MaxIdle || e.idleBytes+size > e.cfg.MaxIdleBytes) {
		evict = append(evict, e.idle[0])
		e.removeIdle(0)
	}
	in.idleBytes = size
	e.idle = append(e.idle, in)
	e.idleBytes += size
	b.idle++
	in.idleTimer = time.AfterFunc(e.cfg.IdleTimeout, func() { e.expire(in) })
	e.poolMu.Unlock()
	for _, old := range evict {
		old.close()
	}
}

// expire closes an instance that stayed idle for IdleTimeout.
func (e *Engine) expire(in *instance) {
	e.poolMu.Lock()
	i := slices.Index(e.idle, in)
	if i >= 0 {
		e.removeIdle(i)
	}
	e.poolMu.Unlock()
	if i >= 0 {
		in.close()
	}
}

// drainIdle closes every idle instance of c, or of b, or every one if
// both are nil.
func (e *Engine) drainIdle(c *compiled, b *binding) {
	var drained []*instance
	e.poolMu.Lock()
	for i := 0; i < len(e.idle); {
		if in := e.idle[i]; (c == nil || in.c == c) && (b == nil || in.b == b) {
			e.removeIdle(i)
			drained = append(drained, in)
			continue
		}
		i++
	}
	e.poolMu.Unlock()
	for _, in := range drained {
		in.close()
	}
}

// prestart keeps Config.Prestart instances of a fresh-instance module
// started ahead of its activations, in the pool, so that an activation
// takes a pre-initialized instance (and uses it once) instead of waiting
// for the guest's runtime to start. It starts at most one at a time.
func (e *Engine) prestart(c *compiled, b *binding, limit uint64) {
	e.poolMu.Lock()
	ready := 0
	for _, in := range e.idle {
		if in.c == c && in.b == b && in.limit == limit {
			ready++
		}
	}
	if e.closed.Load() || c.closing || b.closing || b.starting || ready >= e.cfg.Prestart {
		e.poolMu.Unlock()
		return
	}
	b.starting = true
	e.poolMu.Unlock()
	go func() {
		in, err := e.newInstance(c, b, limit, true)
		if err == nil && in.reactor && !in.prestartReactor() {
			err = ErrClosed
		}
		e.poolMu.Lock()
		b.starting = false
		e.poolMu.Unlock()
		if err != nil {
			return
		}
		e.put(in)
		e.prestart(c, b, limit) // until Prestart are ready
	}()
}

// close ends an instance that serves no activation: end of file on stdin
// (an SDK guest exits cleanly) and a halt in case it does not read.
func (in *instance) close() {
	if in.reactor {
		in.closeReactor(ErrClosed)
		return
	}
	in.halt(ErrClosed)
}

// instantiationError is the error for an instance that could not be made.
func instantiationError(err error) error {
	return fmt.Errorf("%w: cannot instantiate: %s", ErrInvalidModule, firstLine(err.Error()))
}
