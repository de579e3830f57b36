package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/actrec"
	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// The warm path. A blocking single action placed on a known invoker (the
// placement cache, place.go) is sent to that invoker itself
// (wire.DirectRequest on wire.SubjectInvokerDirect): one bus hop each way
// instead of two, and no controller work on the critical path. The
// invoker stores the records as the controller would (the running record
// only if the step outlives wire.DeferReserveMs, the complete one before
// it answers), so this gateway's promise to confirm a record before it
// answers 202 holds as on the controller path. The controller stays the
// scheduler: it places (cold starts, new invokers), runs sequences and
// non-blocking activations, and reads and lists the records.
//
// A refusal as misplaced, or no responder (the invoker is gone), is what
// the controller path's misplacement is: nothing ran, the step is placed
// again (through the controller) and sealed anew under a new request id.

// direct reports whether the invocation req goes the warm path.
// It takes the entity sealed from (inv.target), known to be at the store
// revision it was read at: a sealed invocation's second request, an entity
// without a revision or one that changed go through the controller, which
// refuses a stale one.
func (g *Gateway) direct(inv *invocation, req *wire.InvokeRequest) bool {
	if g.cfg.NoDirect || inv.viaController || !inv.blocking || len(req.Steps) > 0 || req.Invoker == "" || len(req.Runtime) == 0 ||
		inv.target == nil || inv.target.trigger || req.Revision == 0 {
		return false
	}
	return g.revs.Current(store.Key(req.Namespace, req.Action), req.Revision)
}

// sendDirect sends the blocking single action req to its invoker and waits
// for its complete record within cctx (see send).
func (g *Gateway) sendDirect(ctx, cctx context.Context, inv *invocation, res *invoked, req *wire.InvokeRequest) (*invoked, *chainError) {
	a := inv.target.action
	kind := a.Kind
	if kind == "" {
		kind = kindWasm
	}
	start := actrec.Start{
		ID: req.ActivationID, Namespace: req.FiledIn(), PathNs: req.Namespace, Name: req.Action,
		Version: req.Version, Subject: req.Subject, Kind: kind,
		Limits: actrec.RunLimits(req.Limits, a.Limits), Time: g.now(),
	}
	dr := wire.DirectRequest{
		Run: wire.RunRequest{
			ActivationID: req.ActivationID, Namespace: req.Namespace, Action: req.Action,
			FunctionID: req.FunctionID, Envelope: req.Envelope, TimeoutMs: start.Limits.TimeoutMs, Runtime: req.Runtime,
		},
		Record: *start.Running(),
	}
	var act wire.Activation
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectInvokerDirect(req.Invoker), &dr, &act)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// Still running (its running record is stored), or its invoker
		// was lost with it (no record: a 502 that says so).
		if cerr := g.confirmRecorded(ctx, req); cerr != nil {
			return res, cerr
		}
		return res, nil
	}
	if we, ok := errors.AsType[*wire.Error](err); ok && (we.Code == wire.CodeMisplaced || we.Code == wire.CodeUnavailable) {
		// Placed again and sealed anew, then sent through the controller
		// (an invoker of a version without the warm path has no
		// responder on its subject).
		res.misplaced, inv.viaController = true, true
		return res, busFailure(err)
	}
	if err != nil {
		return res, busFailure(err)
	}
	if act.ActivationID != res.id || act.Namespace != inv.caller {
		return res, &chainError{http.StatusBadGateway, "The invoker answered with another activation.", nil}
	}
	res.act = &act
	return res, nil
}

// watchRevisions mirrors the action entities' store revisions
// (store.Revisions) until ctx is done, re-watching after an interruption.
// The warm path seals from cached entities without asking the controller,
// which on its own path refuses a request sealed for a revision no longer
// current (stale); the mirror is how this gateway knows its cached entity
// is current. Until it is caught up (the controller creates the bucket) no
// invocation takes the warm path.
func (g *Gateway) watchRevisions(ctx context.Context) {
	for g.cfg.JS != nil && ctx.Err() == nil {
		kv, err := store.OpenKV(ctx, g.cfg.JS, store.BucketActions)
		if err == nil {
			var stop func()
			if stop, err = g.revs.Watch(ctx, kv); err == nil {
				<-ctx.Done()
				stop()
				return
			}
		}
		g.log.Debug("watch action revisions", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// ActionRevision returns the latest store revision of the action entity
// ns/name this gateway has seen (0 if none, or deleted). Tests that change
// the store behind its back wait for it.
func (g *Gateway) ActionRevision(ns, name string) uint64 {
	return g.revs.Latest(store.Key(ns, name))
}
