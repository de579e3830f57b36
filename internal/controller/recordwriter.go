package controller

import (
	"sync"
	"sync/atomic"

	"github.com/clemmys/clemmys/internal/wire"
)

// recordWriter writes the component records of one sequence in the
// background, in the order they were queued, while the controller goes on
// with the next step: a record write is a store round trip, and a sequence
// makes up to two per step (the running record, then the complete one).
// The sequence's own record is written only after wait, so a reader of the
// store that finds the sequence complete finds every component record
// stored. Until a queued complete record is written, reads find it in
// Controller.answered.
//
// A component whose running record cannot be created still runs (the
// write's outcome is known only later); the sequence then completes as a
// store failure (ErrStoreFailed, no result), so a step never runs without
// the sequence saying its records are incomplete. waitCreates tells that
// outcome without waiting for the complete records.
type recordWriter struct {
	c        *Controller
	ops      chan recordOp
	done     chan struct{}
	failed   atomic.Bool
	creates  sync.WaitGroup // queued running-record creations
	closeOps func()         // closes ops, once
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
	w.closeOps = sync.OnceFunc(func() { close(w.ops) })
	go w.run()
	return w
}

func (w *recordWriter) run() {
	defer close(w.done)
	for op := range w.ops {
		if !op.create {
			w.c.store(op.key, op.rec)
			w.c.answered.CompareAndDelete(op.key, op.rec)
			continue
		}
		ctx, cancel := w.c.storeCtx()
		err := w.c.reserve(ctx, op.key, op.rec)
		cancel()
		if err != nil {
			w.c.log.Error("reserve component activation", "activation", op.rec.Cause, "step", op.rec.Step, "err", err)
			w.failed.Store(true)
		}
		w.creates.Done()
	}
}

// reserve queues the creation of running record rec at key.
func (w *recordWriter) reserve(key string, rec *wire.Activation) {
	w.creates.Add(1)
	w.ops <- recordOp{key: key, rec: rec, create: true}
}

// store queues the write of complete record rec at key; reads find it at
// once.
func (w *recordWriter) store(key string, rec *wire.Activation) {
	w.c.answered.Store(key, rec)
	w.ops <- recordOp{key: key, rec: rec}
}

// waitCreates waits for the queued running-record creations and reports
// whether one failed. Queueing must be over.
func (w *recordWriter) waitCreates() (failed bool) {
	w.creates.Wait()
	return w.failed.Load()
}

// wait writes what is queued and reports whether a running record could
// not be created. Nothing can be queued afterwards; wait can be called
// again.
func (w *recordWriter) wait() (failed bool) {
	w.closeOps()
	<-w.done
	return w.failed.Load()
}
