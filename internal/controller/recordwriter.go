package controller

import (
	"sync/atomic"

	"github.com/clemmys/clemmys/internal/wire"
)

// recordWriter writes the component records of one sequence in the
// background, in the order they were queued, while the controller goes on
// with the next step: a record write is a store round trip, and a sequence
// makes two per step (the running record, then the complete one). The
// sequence's own record is written only after wait, so a caller that sees
// the sequence complete finds every component record stored.
//
// A component whose running record cannot be created still runs (the
// write's outcome is known only later); the sequence then completes as a
// store failure (ErrStoreFailed, no result), so a step never runs without
// the sequence saying its records are incomplete.
type recordWriter struct {
	c      *Controller
	ops    chan recordOp
	done   chan struct{}
	failed atomic.Bool
}

type recordOp struct {
	key    string
	rec    *wire.Activation
	create bool // reserve (running record) rather than store
}

// recordQueue is how many writes may wait; a sequence has at most
// 2·maxChainSteps.
const recordQueue = 2 * maxChainSteps

func (c *Controller) newRecordWriter() *recordWriter {
	w := &recordWriter{c: c, ops: make(chan recordOp, recordQueue), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *recordWriter) run() {
	defer close(w.done)
	for op := range w.ops {
		if !op.create {
			w.c.store(op.key, op.rec)
			continue
		}
		ctx, cancel := w.c.storeCtx()
		err := w.c.reserve(ctx, op.key, op.rec)
		cancel()
		if err != nil {
			w.c.log.Error("reserve component activation", "activation", op.rec.Cause, "step", op.rec.Step, "err", err)
			w.failed.Store(true)
		}
	}
}

// reserve queues the creation of running record rec at key.
func (w *recordWriter) reserve(key string, rec *wire.Activation) {
	w.ops <- recordOp{key: key, rec: rec, create: true}
}

// store queues the write of complete record rec at key.
func (w *recordWriter) store(key string, rec *wire.Activation) {
	w.ops <- recordOp{key: key, rec: rec}
}

// wait writes what is queued and reports whether a running record could
// not be created. The writer cannot be used afterwards.
func (w *recordWriter) wait() (failed bool) {
	close(w.ops)
	<-w.done
	return w.failed.Load()
}
