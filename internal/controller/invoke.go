package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/actrec"
	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Error codes of activations the controller could not get run. They are
// plaintext protocol codes, safe to show.
const (
	ErrNoInvoker          = "no_invoker"
	ErrInvokerFailed      = "invoker_failed"
	ErrInvokerLost        = "invoker_lost"
	ErrInvokerUnavailable = "invoker_unavailable"
	ErrLost               = "lost"
)

const (
	msgNoInvoker          = "no invoker is available to run the activation"
	msgInvokerFailed      = "the invoker did not complete the activation"
	msgInvokerTimout      = "the invoker did not answer before the activation's deadline"
	msgInvokerLost        = "the invoker running the activation stopped answering (invoker lost)"
	msgStepLost           = "the activation's request or its answer was lost between the controller and the invoker"
	msgInvokerUnavailable = "the invoker the activation was placed on is gone; it did not start"
	msgMisplaced          = "the runtime the activation was sealed for is gone; it did not start"
	msgStopping           = "the controller stopped before the activation completed"
	msgLost               = "the activation did not complete"
)

// activation is an activation record on its way: a single action, a
// sequence or one component of a sequence.
type activation struct {
	id, ns, name string
	runNs        string // namespace of the action (runs there); ns files the record
	version      string
	subject      string
	key          string // store key of the record
	start        time.Time
	limits       wire.Limits
	kind         string          // "kind" annotation
	envelope     []byte          // the input envelope, kept on the record when it has no result
	cause        string          // a component's sequence
	step         uint32          // a component's chain step
	extra        []wire.KeyValue // annotations after path, kind and limits
}

// invoked returns the activation of the invocation req of the stored
// action act (of kind kindWasm or wire.KindSequence), received then.
func invoked(req *wire.InvokeRequest, act *wire.Action, received time.Time, kind string) *activation {
	a := &activation{
		id:       req.ActivationID,
		ns:       req.FiledIn(),
		runNs:    req.Namespace,
		name:     req.Action,
		version:  req.Version,
		subject:  req.Subject,
		key:      store.Key(req.FiledIn(), req.ActivationID),
		start:    received,
		limits:   mergeLimits(req.Limits, act.Limits),
		kind:     kind,
		envelope: req.Envelope,
	}
	if a.version == "" {
		a.version = act.Version
	}
	return a
}

// handleInvoke runs a sealed envelope (wire.InvokeRequest →
// wire.Activation). A blocking request is answered with the complete
// record; a non-blocking one at once with the activation id and start time.
// A request with Steps runs a sequence (see sequence.go).
func (c *Controller) handleInvoke(ctx context.Context, data []byte) (any, error) {
	received := c.now()
	req, err := bus.Decode[wire.InvokeRequest](data)
	if err != nil {
		return nil, err
	}
	if err := checkInvoke(req); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	// A sequence's components are checked while its entity is read.
	var stepsErr chan error
	if len(req.Steps) > 0 {
		stepsErr = make(chan error, 1)
		go func() { stepsErr <- c.checkStepRevisions(sctx, req.Steps) }()
	}
	act, err := c.loadAction(sctx, req.Namespace, req.Action, req.Revision)
	if stepsErr != nil {
		if serr := <-stepsErr; err == nil {
			err = serr
		}
	}
	if err != nil {
		return nil, err
	}
	// A blocking single action whose gateway confirms the record before
	// answering 202 (InvokeRequest.WaitMs) is not reserved before it runs:
	// its running record is stored only if it outlives DeferReserveMs, else
	// its complete record is its first, written once (deferral).
	deferred := req.Blocking && len(req.Steps) == 0 && req.WaitMs >= wire.MinDeferredWaitMs
	// key and running are the record to reserve, run what then happens.
	var key string
	var running *wire.Activation
	var run func() *wire.Activation
	if len(req.Steps) > 0 {
		seq, err := c.newSequence(req, act, received)
		if err != nil {
			return nil, err
		}
		key, running = seq.key, seq.running()
		run = func() *wire.Activation { return c.executeSequence(seq) }
	} else {
		if act.Kind == wire.KindSequence {
			return nil, badRequest("sequence invoked without steps")
		}
		kind := act.Kind // wasm or a nodejs kind
		if kind == "" {
			kind = kindWasm
		}
		a := invoked(req, act, received, kind)
		fid := req.FunctionID
		if len(fid) == 0 {
			if fid, err = functionID(act.Function); err != nil {
				return nil, fmt.Errorf("controller: stored action %s has no usable function record", req.Action)
			}
		}
		key, running = a.key, a.record()
		run = func() *wire.Activation { return c.execute(req, a, fid, nil) }
		if deferred {
			run = func() *wire.Activation { return c.execute(req, a, fid, c.deferReserve(a.key, running)) }
		}
	}

	// A background activation needs a slot tracked for Stop; take it
	// before the id is reserved so a refusal leaves nothing behind.
	if !req.Blocking && !c.beginBackground() {
		return nil, wire.Errorf(wire.CodeUnavailable, "the controller is stopping")
	}
	// The runtime the gateway sealed for must still be there: else it
	// places the steps again, before anything is reserved.
	if err := c.checkPlaced(ctx, req); err != nil {
		if !req.Blocking {
			c.wg.Done()
		}
		return nil, err
	}
	// Reserve the id: a running record (End 0) is created atomically, so a
	// duplicate id is refused even while the first activation runs.
	if deferred {
		return run(), nil
	}
	if err := c.reserve(sctx, key, running); err != nil {
		if !req.Blocking {
			c.wg.Done()
		}
		return nil, err
	}
	if req.Blocking {
		return run(), nil
	}
	go func() {
		defer c.wg.Done()
		run()
	}()
	return &wire.Activation{
		ActivationID: req.ActivationID,
		Namespace:    req.Namespace,
		Name:         req.Action,
		Start:        received.UnixMilli(),
	}, nil
}

// checkStepRevisions refuses (CodeStale) a sequence whose gateway sealed
// a step for a component entity that has changed or gone since: the steps
// would be routed to functions that may no longer be loadable. Steps
// without a revision are not checked, nor those the watched revisions
// (c.revs) know to be current. The reads of the others run concurrently
// (each is a store round trip); the first error in step order is returned.
func (c *Controller) checkStepRevisions(ctx context.Context, steps []wire.StepRoute) error {
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for j, st := range steps {
		if st.Revision == 0 {
			continue
		}
		key := store.Key(st.Namespace, st.Action)
		if c.revs.Current(key, st.Revision) {
			continue
		}
		wg.Go(func() {
			// Only the revision matters: the entity is not decoded.
			e, err := c.actions.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound) || (err == nil && e.Revision() != st.Revision):
				errs[j] = wire.Errorf(wire.CodeStale, "a component of the sequence changed since the invocation was sealed")
			case err != nil:
				errs[j] = fmt.Errorf("controller: load action: %w", err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// reserve creates the running record rec at key, refusing a used id.
func (c *Controller) reserve(ctx context.Context, key string, rec *wire.Activation) error {
	value, err := bus.Marshal(rec)
	if err != nil {
		return fmt.Errorf("controller: encode record: %w", err)
	}
	if _, err := c.activations.Create(ctx, key, value); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return wire.Errorf(wire.CodeConflict, "activation id already used")
		}
		return fmt.Errorf("controller: reserve activation: %w", err)
	}
	return nil
}

func checkInvoke(req *wire.InvokeRequest) error {
	if !validActivationID(req.ActivationID) {
		return badRequest("invalid activation id")
	}
	if err := checkRef(req.Namespace, req.Action); err != nil {
		return err
	}
	if req.RecordNamespace != "" {
		if err := checkNamespace(req.RecordNamespace); err != nil {
			return err
		}
	}
	if len(req.Envelope) == 0 {
		return badRequest("envelope is required")
	}
	if len(req.FunctionID) > maxFunctionIDLen {
		return badRequest("invalid function id")
	}
	if len(req.Version) > maxVersionLen || len(req.Subject) > maxSubjectLen {
		return badRequest("invalid version or subject")
	}
	if _, err := normalizeLimits(req.Limits); err != nil {
		return err
	}
	if len(req.Steps) > 0 {
		return checkSteps(req)
	}
	return nil
}

// mergeLimits takes the request's limits where set, else the action's.
func mergeLimits(req, action wire.Limits) wire.Limits { return actrec.RunLimits(req, action) }

// deferReserve arms the reservation of rec at key (actrec.Defer).
func (c *Controller) deferReserve(key string, rec *wire.Activation) *actrec.Deferral {
	return actrec.Defer(func() error {
		ctx, cancel := c.storeCtx()
		defer cancel()
		err := c.reserve(ctx, key, rec)
		if err != nil && !isConflict(err) {
			c.log.Error("store running record", "activation", rec.ActivationID, "namespace", rec.Namespace, "err", err)
		}
		return err
	})
}

// codeReplay is the runtime's refusal of a request id it has seen.
const codeReplay = "replay"

// execute sends a single action's step to an invoker, stores the complete
// record and returns it. It runs under the controller's lifetime, not a
// request's. With a deferral (not nil) the running record was not stored
// before the step was sent.
func (c *Controller) execute(req *wire.InvokeRequest, a *activation, fid []byte, d *actrec.Deferral) *wire.Activation {
	run := &wire.RunRequest{
		ActivationID: a.id,
		Namespace:    a.runNs,
		Action:       a.name,
		FunctionID:   fid,
		Envelope:     a.envelope,
		TimeoutMs:    a.limits.TimeoutMs,
		Runtime:      req.Runtime,
	}
	res, fail := c.dispatch(Dispatch{Request: req, Step: 0, Run: run, Invoker: req.Invoker}, a.limits, a.start)
	var rec *wire.Activation
	if fail != nil {
		rec = a.failed(c.now(), fail.code, fail.msg)
	} else {
		rec = a.completed(c.now(), res)
	}
	reserved, rerr := false, error(nil)
	if d != nil {
		reserved, rerr = d.Settle()
	}
	switch {
	case d == nil || (reserved && !isConflict(rerr)):
		// (A reservation that failed otherwise may still have landed.)
		c.storeAnswered(req, a.key, rec, nil)
	case reserved:
		// Another activation holds the id (only a replayed request can
		// make that happen): its records stay as they are.
		c.log.Error("activation id already used; record not stored", "activation", a.id, "namespace", a.ns)
	case fail == nil && !res.Executed && res.ErrorCode == codeReplay:
		// The runtime ran this request id before: this is a copy of a
		// request, whose record is the original's.
		c.log.Warn("replayed activation refused by the runtime; record not stored", "activation", a.id, "namespace", a.ns)
	default:
		// Done before a running record was needed: the complete record
		// is the activation's first.
		c.answer(req, a.key, rec, func() { c.storeFirst(a.key, rec) })
	}
	c.account(rec)
	return rec
}

// stepError is why a step has no answer from an invoker.
type stepError struct{ code, msg string }

func (e *stepError) Error() string { return "controller: " + e.code + ": " + e.msg }

// dispatch has one step run by an invoker: d.Run as an honest controller
// sends it, to d.Invoker, or whatever Config.Interceptor makes of it.
// limits are the step's (its time limit bounds each call to an invoker) and
// start is when the controller began the step (for the scheduling
// latency). It returns the invoker's answer or why there is none.
func (c *Controller) dispatch(d Dispatch, limits wire.Limits, start time.Time) (*wire.RunResult, *stepError) {
	timeout := time.Duration(limits.TimeoutMs)*time.Millisecond + c.cfg.ColdStartGrace
	d.SendTo = func(ctx context.Context, invoker string, run *wire.RunRequest) (*wire.RunResult, error) {
		return c.send(ctx, invoker, run, timeout, start)
	}
	send := func(ctx context.Context, run *wire.RunRequest) (*wire.RunResult, error) {
		return d.SendTo(ctx, d.Invoker, run)
	}
	var res *wire.RunResult
	var err error
	if c.cfg.Interceptor == nil {
		res, err = send(c.runCtx, d.Run)
	} else {
		res, err = c.cfg.Interceptor(c.runCtx, d, send)
	}
	switch se, ok := errors.AsType[*stepError](err); {
	case ok:
		return nil, se
	case err != nil || res == nil:
		// Only an interceptor fails otherwise.
		msg := msgInvokerFailed
		if c.runCtx.Err() != nil {
			msg = msgStopping
		}
		return nil, &stepError{ErrInvokerFailed, msg}
	}
	if !res.Executed && (res.ErrorCode == wire.CodeMisplaced || res.ErrorCode == codeWrongRuntime) {
		// The designated runtime is gone: nothing ran; the gateway places
		// the steps again and seals anew.
		return nil, &stepError{wire.CodeMisplaced, msgMisplaced}
	}
	return res, nil
}

// codeWrongRuntime is the runtime's refusal of a step designated to
// another runtime (envelope.ErrWrongRuntime).
const codeWrongRuntime = "wrong_runtime"

// send delivers run to invoker and returns its answer; an error is a
// *stepError. The invoker is the one the envelope designates a runtime of,
// so a step is never offered to another one: when it has no responder
// (it died after its last heartbeat) the step never started and fails as
// unavailable; when it stops heart-beating while the step runs, the call
// is abandoned as lost (the scheduler's sweep). This is the only place the
// controller calls invokers.
func (c *Controller) send(ctx context.Context, invoker string, run *wire.RunRequest, timeout time.Duration, start time.Time) (*wire.RunResult, error) {
	if run == nil {
		return nil, &stepError{ErrInvokerFailed, msgInvokerFailed}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done, ok := c.sched.begin(invoker, run.ActivationID, cancel)
	if !ok && c.cfg.InvokerWait > 0 && c.sched.waitHealthy(ctx, c.cfg.InvokerWait) {
		// None was healthy (this controller just started, or every invoker
		// missed a heartbeat): one is now, perhaps this one.
		done, ok = c.sched.begin(invoker, run.ActivationID, cancel)
	}
	if !ok {
		c.metrics.dispatch.WithLabelValues("no_invoker").Inc()
		c.log.Warn("designated invoker is not available", "invoker", invoker, "activation", run.ActivationID, "namespace", run.Namespace)
		return nil, &stepError{ErrNoInvoker, msgNoInvoker}
	}
	defer done()
	tctx, tcancel := context.WithTimeout(cctx, timeout)
	defer tcancel()
	var res wire.RunResult
	err := bus.Call(tctx, c.cfg.Conn, wire.SubjectInvokerRun(invoker), run, &res)
	if err == nil {
		c.metrics.dispatch.WithLabelValues("ok").Inc()
		if res.Start > 0 {
			c.metrics.scheduling.Observe(float64(max(res.Start-start.UnixMilli(), 0)) / 1000)
		}
		return &res, nil
	}
	var we *wire.Error
	switch {
	case errors.Is(context.Cause(cctx), errInvokerLost):
		c.metrics.dispatch.WithLabelValues("lost").Inc()
		c.metrics.lostInvokers.Inc()
		c.log.Warn("invoker lost during the step", "invoker", invoker, "activation", run.ActivationID, "namespace", run.Namespace)
		return nil, &stepError{ErrInvokerLost, msgInvokerLost}
	case errors.Is(context.Cause(cctx), errStepLost):
		// The invoker does not hold the step: its request or its answer
		// was lost (core NATS delivers at most once). It may have run;
		// it is not sent again (the runtime would refuse it as a replay).
		c.metrics.dispatch.WithLabelValues("lost_message").Inc()
		c.log.Warn("step lost on the bus", "invoker", invoker, "activation", run.ActivationID, "namespace", run.Namespace)
		return nil, &stepError{ErrInvokerFailed, msgStepLost}
	case errors.As(err, &we) && we.Code == wire.CodeUnavailable && ctx.Err() == nil && c.runCtx.Err() == nil:
		// No responder: the invoker is gone and never saw the step.
		c.metrics.dispatch.WithLabelValues("unavailable").Inc()
		c.log.Warn("invoker unavailable", "invoker", invoker, "activation", run.ActivationID)
		c.sched.markDown(invoker)
		return nil, &stepError{ErrInvokerUnavailable, msgInvokerUnavailable}
	}
	c.metrics.dispatch.WithLabelValues("failed").Inc()
	msg := msgInvokerFailed
	switch {
	case c.runCtx.Err() != nil:
		msg = msgStopping
	case errors.Is(err, context.DeadlineExceeded):
		msg = msgInvokerTimout
	}
	c.log.Warn("invoker call failed", "invoker", invoker, "activation", run.ActivationID,
		"namespace", run.Namespace, "action", run.Action, "err", err)
	return nil, &stepError{ErrInvokerFailed, msg}
}

// store writes the complete record rec at key. A failure is logged: the
// running record then turns into a lost one once its deadline passed.
func (c *Controller) store(key string, rec *wire.Activation) {
	if f := c.beforeStore.Load(); f != nil {
		(*f)(rec)
	}
	value, err := bus.Marshal(rec)
	if err == nil {
		ctx, cancel := c.storeCtx()
		_, err = c.records.Put(ctx, key, value)
		cancel()
	}
	if err != nil {
		c.log.Error("store activation record", "activation", rec.ActivationID, "namespace", rec.Namespace, "err", err)
	}
}

// storeAnswered writes the complete record rec at key (after the records
// queued in components, if not nil); for a blocking invocation it does so
// while rec is being answered, as OpenWhisk's invokers store a record after
// sending the result: the caller need not wait for store round trips.
// Until rec is written, reads of the record (handleActivationGet,
// handleActivationList) find it in c.answered, so a caller that got the
// answer can always read the record back from this controller. Stop waits
// for the writes. If the controller dies first, the running record is
// closed as lost after its deadline (the caller still got the answer).
func (c *Controller) storeAnswered(req *wire.InvokeRequest, key string, rec *wire.Activation, components *recordWriter) {
	c.answer(req, key, rec, func() {
		if components != nil {
			components.wait()
		}
		c.store(key, rec)
	})
}

// storeFirst writes the complete record rec at key as the activation's
// first record (clemmys_activations, with Create: a used id keeps its
// record).
func (c *Controller) storeFirst(key string, rec *wire.Activation) {
	if f := c.beforeStore.Load(); f != nil {
		(*f)(rec)
	}
	value, err := bus.Marshal(rec)
	if err == nil {
		ctx, cancel := c.storeCtx()
		_, err = c.activations.Create(ctx, key, value)
		cancel()
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another activation holds the id (only a copy of a request can
		// make that happen): its record stays.
		c.log.Error("activation id already used; record not stored", "activation", rec.ActivationID, "namespace", rec.Namespace)
		return
	}
	if err != nil {
		c.log.Error("store activation record", "activation", rec.ActivationID, "namespace", rec.Namespace, "err", err)
	}
}

// answer runs write, the storing of rec at key: at once for a background
// activation, else while rec is being answered (see storeAnswered).
func (c *Controller) answer(req *wire.InvokeRequest, key string, rec *wire.Activation, write func()) {
	if !req.Blocking {
		write()
		return
	}
	c.answered.Store(key, rec)
	c.writes.Go(func() {
		write()
		c.answered.CompareAndDelete(key, rec)
	})
}

// account counts and logs a completed activation (single action or
// sequence) the gateway asked for.
func (c *Controller) account(rec *wire.Activation) {
	c.metrics.activations.WithLabelValues(rec.Status).Inc()
	c.metrics.duration.Observe(float64(rec.End-rec.Start) / 1000)
	c.log.Info("activation", "activation", rec.ActivationID, "namespace", rec.Namespace, "action", rec.Name,
		"status", rec.Status, "error_code", rec.ErrorCode, "duration_ms", rec.End-rec.Start,
		"components", len(rec.Components))
}

// shape is what a's running record is made of.
func (a *activation) shape() *actrec.Start {
	return &actrec.Start{
		ID: a.id, Namespace: a.ns, PathNs: a.runNs, Name: a.name, Version: a.version, Subject: a.subject,
		Kind: a.kind, Limits: a.limits, Time: a.start, Cause: a.cause, Step: a.step, Extra: a.extra,
	}
}

// record is the running record (End 0, no status) of a.
func (a *activation) record() *wire.Activation { return a.shape().Running() }

// completed builds the record of a step the invoker answered.
func (a *activation) completed(end time.Time, res *wire.RunResult) *wire.Activation {
	return actrec.Complete(a.record(), end, res, a.envelope)
}

// failed builds the record of a step no invoker ran to completion.
func (a *activation) failed(end time.Time, code, msg string) *wire.Activation {
	status := wire.StatusInternalError
	if code == ErrInvokerLost {
		// OpenWhisk reports an activation whose invoker was lost as a
		// developer error: it may have run.
		status = wire.StatusDeveloperError
	}
	return actrec.Failed(a.record(), end, status, code, msg, a.envelope)
}

// isConflict reports a reservation refused because the id is used.
func isConflict(err error) bool { return wire.HasCode(err, wire.CodeConflict) }
