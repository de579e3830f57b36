package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Error codes of activations the controller could not get run. They are
// plaintext protocol codes, safe to show.
const (
	ErrNoInvoker     = "no_invoker"
	ErrInvokerFailed = "invoker_failed"
	ErrLost          = "lost"
)

const (
	msgNoInvoker     = "no invoker is available to run the activation"
	msgInvokerFailed = "the invoker did not complete the activation"
	msgInvokerTimout = "the invoker did not answer before the activation's deadline"
	msgStopping      = "the controller stopped before the activation completed"
	msgLost          = "the activation did not complete"
)

// maxDispatchAttempts is how many invokers a step is offered to when the
// chosen one turns out to have no responder (it died after its last
// heartbeat). A step an invoker may have received is never sent twice.
const maxDispatchAttempts = 3

// invocation is one accepted InvokeRequest on its way to an invoker.
type invocation struct {
	req      *wire.InvokeRequest
	key      string
	version  string
	limits   wire.Limits
	fid      []byte
	received time.Time
}

// handleInvoke runs a sealed envelope (wire.InvokeRequest →
// wire.Activation). A blocking request is answered with the complete
// record; a non-blocking one at once with the activation id and start time.
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
	act, err := c.loadAction(sctx, req.Namespace, req.Action)
	if err != nil {
		return nil, err
	}
	inv := &invocation{
		req:      req,
		key:      store.Key(req.Namespace, req.ActivationID),
		version:  req.Version,
		limits:   mergeLimits(req.Limits, act.Limits),
		fid:      req.FunctionID,
		received: received,
	}
	if inv.version == "" {
		inv.version = act.Version
	}
	if len(inv.fid) == 0 {
		if inv.fid, err = functionID(act.Function); err != nil {
			return nil, fmt.Errorf("controller: stored action %s has no usable function record", req.Action)
		}
	}

	// A background activation needs a slot tracked for Stop; take it
	// before the id is reserved so a refusal leaves nothing behind.
	if !req.Blocking && !c.beginBackground() {
		return nil, wire.Errorf(wire.CodeUnavailable, "the controller is stopping")
	}
	// Reserve the id: a running record (End 0) is created atomically, so a
	// duplicate id is refused even while the first activation runs.
	if err := c.reserve(sctx, inv); err != nil {
		if !req.Blocking {
			c.wg.Done()
		}
		return nil, err
	}
	if req.Blocking {
		return c.execute(inv), nil
	}
	go func() {
		defer c.wg.Done()
		c.execute(inv)
	}()
	return &wire.Activation{
		ActivationID: req.ActivationID,
		Namespace:    req.Namespace,
		Name:         req.Action,
		Start:        received.UnixMilli(),
	}, nil
}

// reserve creates the running record of inv, refusing a used id.
func (c *Controller) reserve(ctx context.Context, inv *invocation) error {
	value, err := bus.Marshal(inv.record())
	if err != nil {
		return fmt.Errorf("controller: encode record: %w", err)
	}
	if _, err := c.activations.Create(ctx, inv.key, value); err != nil {
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
	return nil
}

// mergeLimits takes the request's limits where set, else the action's.
func mergeLimits(req, action wire.Limits) wire.Limits {
	l := action
	if req.TimeoutMs != 0 {
		l.TimeoutMs = req.TimeoutMs
	}
	if req.MemoryMB != 0 {
		l.MemoryMB = req.MemoryMB
	}
	if req.LogsMB != 0 {
		l.LogsMB = req.LogsMB
	}
	l, _ = normalizeLimits(l)
	l.Concurrency = 1 // one activation per instance
	return l
}

// execute sends the step to an invoker, stores the complete record and
// returns it. It runs under the controller's lifetime, not a request's.
func (c *Controller) execute(inv *invocation) *wire.Activation {
	rec := c.dispatch(inv)
	c.finish(inv, rec)
	return rec
}

// dispatch runs the step on an invoker and builds the complete record.
func (c *Controller) dispatch(inv *invocation) *wire.Activation {
	req := inv.req
	run := wire.RunRequest{
		ActivationID: req.ActivationID,
		Namespace:    req.Namespace,
		Action:       req.Action,
		FunctionID:   inv.fid,
		Envelope:     req.Envelope,
		TimeoutMs:    inv.limits.TimeoutMs,
	}
	timeout := time.Duration(inv.limits.TimeoutMs)*time.Millisecond + c.cfg.ColdStartGrace
	tried := map[string]bool{}
	for range maxDispatchAttempts {
		id, ok := c.sched.pick(req.Namespace, tried)
		if !ok {
			break
		}
		tried[id] = true
		ctx, cancel := context.WithTimeout(c.runCtx, timeout)
		var res wire.RunResult
		err := bus.Call(ctx, c.cfg.Conn, wire.SubjectInvokerRun(id), run, &res)
		cancel()
		c.sched.done(id)
		if err == nil {
			c.metrics.dispatch.WithLabelValues("ok").Inc()
			if res.Start > 0 {
				c.metrics.scheduling.Observe(float64(max(res.Start-inv.received.UnixMilli(), 0)) / 1000)
			}
			return inv.completed(c.now(), &res)
		}
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeUnavailable && c.runCtx.Err() == nil {
			// No responder: the invoker is gone and never saw the step.
			c.metrics.dispatch.WithLabelValues("unavailable").Inc()
			c.log.Warn("invoker unavailable", "invoker", id, "activation", req.ActivationID)
			c.sched.markDown(id)
			continue
		}
		c.metrics.dispatch.WithLabelValues("failed").Inc()
		msg := msgInvokerFailed
		switch {
		case c.runCtx.Err() != nil:
			msg = msgStopping
		case errors.Is(err, context.DeadlineExceeded):
			msg = msgInvokerTimout
		}
		c.log.Warn("invoker call failed", "invoker", id, "activation", req.ActivationID,
			"namespace", req.Namespace, "action", req.Action, "err", err)
		return inv.failed(c.now(), ErrInvokerFailed, msg)
	}
	c.metrics.dispatch.WithLabelValues("no_invoker").Inc()
	c.log.Warn("no invoker for activation", "activation", req.ActivationID, "namespace", req.Namespace, "tried", len(tried))
	return inv.failed(c.now(), ErrNoInvoker, msgNoInvoker)
}

// finish stores the complete record and accounts for it.
func (c *Controller) finish(inv *invocation, rec *wire.Activation) {
	value, err := bus.Marshal(rec)
	if err == nil {
		ctx, cancel := c.storeCtx()
		_, err = c.activations.Put(ctx, inv.key, value)
		cancel()
	}
	if err != nil {
		c.log.Error("store activation record", "activation", rec.ActivationID, "namespace", rec.Namespace, "err", err)
	}
	c.metrics.activations.WithLabelValues(rec.Status).Inc()
	c.metrics.duration.Observe(float64(rec.End-rec.Start) / 1000)
	c.log.Info("activation", "activation", rec.ActivationID, "namespace", rec.Namespace, "action", rec.Name,
		"status", rec.Status, "error_code", rec.ErrorCode, "duration_ms", rec.End-rec.Start)
}

// record is the running record (End 0, no status) of inv.
func (inv *invocation) record() *wire.Activation {
	req := inv.req
	return &wire.Activation{
		ActivationID: req.ActivationID,
		Namespace:    req.Namespace,
		Name:         req.Action,
		Version:      inv.version,
		Subject:      req.Subject,
		Start:        inv.received.UnixMilli(),
		Annotations:  inv.annotations(),
	}
}

func (inv *invocation) annotations() []wire.KeyValue {
	return []wire.KeyValue{
		{Key: "path", Value: inv.req.Namespace + "/" + inv.req.Action},
		{Key: "kind", Value: kindWasm},
		{Key: "limits", Value: map[string]any{
			"timeout":     inv.limits.TimeoutMs,
			"memory":      inv.limits.MemoryMB,
			"logs":        inv.limits.LogsMB,
			"concurrency": inv.limits.Concurrency,
		}},
	}
}

// completed builds the record of a step the invoker answered.
func (inv *invocation) completed(end time.Time, res *wire.RunResult) *wire.Activation {
	rec := inv.record()
	rec.End = max(end.UnixMilli(), rec.Start)
	rec.Status = res.Status
	switch res.Status {
	case wire.StatusSuccess, wire.StatusApplicationError, wire.StatusDeveloperError, wire.StatusInternalError:
	default:
		rec.Status = wire.StatusInternalError
	}
	rec.ErrorCode = truncate(res.ErrorCode, maxErrorFieldLen)
	rec.ErrorMessage = truncate(res.ErrorMessage, maxErrorFieldLen)
	rec.Result = res.Envelope
	rec.Logs = res.Logs
	if len(rec.Result) == 0 {
		rec.Envelope = inv.req.Envelope
	}
	if res.Start > 0 {
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "waitTime", Value: max(res.Start-rec.Start, 0)})
	}
	if res.InitMs > 0 {
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "initTime", Value: res.InitMs})
	}
	return rec
}

// failed builds the record of a step no invoker ran to completion.
func (inv *invocation) failed(end time.Time, code, msg string) *wire.Activation {
	rec := inv.record()
	rec.End = max(end.UnixMilli(), rec.Start)
	rec.Status = wire.StatusInternalError
	rec.ErrorCode = code
	rec.ErrorMessage = msg
	rec.Envelope = inv.req.Envelope
	return rec
}
