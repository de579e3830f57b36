package invoker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/actrec"
	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// The warm path (wire.DirectRequest). A gateway that knows the invoker of
// a blocking single action's runtime sends the step here, one bus hop,
// instead of through the controller; this invoker then does what the
// controller would have done for it: it runs the step, stores the
// activation's records and answers with the complete record. The records
// are written as the controller writes a deferred single action's
// (protocol.md §2.3): the running record only if the step outlives
// wire.DeferReserveMs, the complete one before the answer, so an answered
// activation is always stored. The gateway keeps its promise to confirm a
// record before it answers 202.
//
// Nothing here is trusted more than the controller path: the envelope
// designates the runtime, which checks it and refuses a request id it has
// run (a copy off the bus runs nowhere); the record is routing metadata
// the gateway authenticates when it opens it (receipts, request-id MAC).

// recordTimeout bounds the writes of a direct step's records.
const recordTimeout = 30 * time.Second

// codeReplay and codeWrongRuntime are the runtime's refusals of a request
// id it has run and of a step designated to another runtime.
const (
	codeReplay       = "replay"
	codeWrongRuntime = "wrong_runtime"
)

// recordBuckets returns the activations and records buckets, opened on
// first use (the controller creates them).
func (iv *Invoker) recordBuckets(ctx context.Context) (first, complete jetstream.KeyValue, err error) {
	iv.recMu.Lock()
	defer iv.recMu.Unlock()
	if iv.recFirst == nil {
		if iv.recFirst, err = store.OpenKV(ctx, iv.cfg.JS, store.BucketActivations); err != nil {
			return nil, nil, err
		}
	}
	if iv.recComplete == nil {
		if iv.recComplete, err = store.OpenKV(ctx, iv.cfg.JS, store.BucketRecords); err != nil {
			return nil, nil, err
		}
	}
	return iv.recFirst, iv.recComplete, nil
}

func (iv *Invoker) handleDirect(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.DirectRequest](data)
	if err != nil {
		return nil, err
	}
	run, rec := &req.Run, &req.Record
	if err := checkRun(run); err != nil {
		return nil, err
	}
	if len(run.Then) > 0 || len(run.Runtime) == 0 {
		return nil, wire.Errorf(wire.CodeBadRequest, "a direct step is one designated step")
	}
	if rec.ActivationID != run.ActivationID || rec.Namespace == "" || rec.End != 0 || rec.Status != "" ||
		len(rec.Result) > 0 || len(rec.Logs) > 0 || len(rec.Receipts) > 0 || len(rec.Components) > 0 {
		return nil, wire.Errorf(wire.CodeBadRequest, "a direct step's record must be its running record")
	}
	key := store.Key(rec.Namespace, rec.ActivationID)
	first, complete, err := iv.recordBuckets(ctx)
	if err != nil {
		return nil, wire.Errorf(wire.CodeUnavailable, "the activation store is not available")
	}
	// Bound like handleRun; the records are written under the invoker's
	// lifetime too, not the subscription's.
	rctx, cancel := context.WithTimeout(iv.runCtx, time.Duration(run.TimeoutMs)*time.Millisecond+60*time.Second)
	defer cancel()
	defer iv.holding(run.ActivationID)()

	running := *rec
	running.Annotations = append([]wire.KeyValue(nil), rec.Annotations...)
	d := iv.deferReserve(first, key, &running)
	res := iv.Run(rctx, run)
	reserved, rerr := d.Settle()
	switch {
	case !res.Executed && (res.ErrorCode == wire.CodeMisplaced || res.ErrorCode == codeWrongRuntime):
		iv.metrics.direct.WithLabelValues("misplaced").Inc()
		iv.dropReserved(first, key, reserved, rerr)
		return nil, wire.Errorf(wire.CodeMisplaced, "the step designates a runtime this invoker no longer runs")
	case !res.Executed && res.ErrorCode == codeReplay:
		// A copy of a request this runtime ran: its records are the
		// original's.
		iv.metrics.direct.WithLabelValues("replay").Inc()
		iv.log.Warn("replayed direct step refused by the runtime; no record stored", "activation", run.ActivationID)
		return nil, wire.Errorf(wire.CodeConflict, "the runtime has run this request id before")
	case reserved && wire.HasCode(rerr, wire.CodeConflict):
		iv.metrics.direct.WithLabelValues("refused").Inc()
		iv.log.Error("activation id already used; record not stored", "activation", run.ActivationID)
		return nil, wire.Errorf(wire.CodeConflict, "activation id already used")
	}
	done := actrec.Complete(rec, time.Now(), res, run.Envelope)
	value, err := bus.Marshal(done)
	if err != nil {
		return nil, fmt.Errorf("invoker: encode record: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(rctx), recordTimeout)
	defer scancel()
	if reserved {
		// (A reservation that failed otherwise may still have landed.)
		_, err = complete.Put(sctx, key, value)
	} else {
		_, err = first.Create(sctx, key, value)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		iv.metrics.direct.WithLabelValues("refused").Inc()
		iv.log.Error("activation id already used; record not stored", "activation", run.ActivationID)
		return nil, wire.Errorf(wire.CodeConflict, "activation id already used")
	case err != nil:
		// The step ran: its caller gets its result, and the operator the
		// reason its record is missing.
		iv.metrics.direct.WithLabelValues("unrecorded").Inc()
		iv.log.Error("store activation record", "activation", run.ActivationID, "err", err)
	default:
		iv.metrics.direct.WithLabelValues("recorded").Inc()
	}
	iv.countDirect(done.Status)
	return bus.Encoded(value), nil // the stored record, as stored
}

// checkRun checks a run request's shape.
func checkRun(req *wire.RunRequest) error {
	if req.Namespace == "" || len(req.FunctionID) == 0 || len(req.Envelope) == 0 {
		return wire.Errorf(wire.CodeBadRequest, "incomplete run request")
	}
	if len(req.Then) > maxThen {
		return wire.Errorf(wire.CodeBadRequest, "chain too long")
	}
	for _, fid := range req.Then {
		if len(fid) == 0 || len(fid) > maxFunctionIDLen {
			return wire.Errorf(wire.CodeBadRequest, "invalid function id in chain")
		}
	}
	return nil
}

// deferReserve arms the reservation of the running record rec at key in
// first (actrec.Defer): created there only if no record holds the id.
func (iv *Invoker) deferReserve(first jetstream.KeyValue, key string, rec *wire.Activation) *actrec.Deferral {
	return actrec.Defer(func() error {
		value, err := bus.Marshal(rec)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(iv.runCtx), recordTimeout)
			_, err = first.Create(ctx, key, value)
			cancel()
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyExists):
			return wire.Errorf(wire.CodeConflict, "activation id already used")
		case err != nil:
			iv.log.Error("store running record", "activation", rec.ActivationID, "err", err)
		}
		return err
	})
}

// dropReserved deletes the running record of a step that did not run
// (misplaced), stored because the refusal took longer than
// wire.DeferReserveMs: the gateway seals the activation anew, under a new
// id, and this one never ran.
func (iv *Invoker) dropReserved(first jetstream.KeyValue, key string, reserved bool, err error) {
	if !reserved || err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(iv.runCtx), recordTimeout)
	defer cancel()
	if err := first.Delete(ctx, key); err != nil {
		iv.log.Warn("delete the running record of a misplaced step", "err", err)
	}
}

// countDirect counts a direct step answered with status.
func (iv *Invoker) countDirect(status string) {
	i := 3
	switch status {
	case wire.StatusSuccess:
		i = 0
	case wire.StatusApplicationError:
		i = 1
	case wire.StatusDeveloperError:
		i = 2
	}
	iv.directCounts[i].Add(1)
}
