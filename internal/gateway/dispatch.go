package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Dispatch: a sealed invocation goes to the invoker of step 0's placement
// over the warm path (direct.go) when the gateway knows its entity to be
// current, and through the controller otherwise. Either answers a blocking
// invocation with its complete record, which the gateway opens
// (activations.go); a blocking wait that runs out is answered 202 only once
// the record is confirmed stored.

// dispatch hands a sealed invocation to the invoker of its placement (the
// warm path, direct.go) or to the controller and, when blocking, waits for
// its record.
func (g *Gateway) dispatch(ctx context.Context, inv *invocation, res *invoked, req *wire.InvokeRequest, timeout time.Duration) (*invoked, *chainError) {
	wait := busTimeout
	if inv.blocking {
		wait = min(timeout+g.cfg.ExpirySlack, g.cfg.BlockingWait)
		if inv.wait > 0 {
			wait = min(wait, inv.wait)
		}
		// The controller may defer the running record; this gateway
		// confirms the record is stored before it answers 202.
		req.WaitMs = uint32(min(wait/time.Millisecond, math.MaxUint32))
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if g.direct(inv, req) {
		return g.sendDirect(ctx, cctx, inv, res, req) // direct.go
	}
	g.prewarmSteps(req.Steps) // load steps 1.. while step 0 runs
	var act wire.Activation
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectInvoke, req, &act)
	if inv.blocking && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// Still running: 202, for an activation whose record is stored
		// (a controller that died before it stored one leaves none).
		if cerr := g.confirmRecorded(ctx, req); cerr != nil {
			return res, cerr
		}
		return res, nil
	}
	if err != nil {
		res.misplaced = misplaced(err, nil)
		return res, busFailure(err)
	}
	if !inv.blocking {
		return res, nil
	}
	if act.ActivationID != res.id || act.Namespace != inv.caller {
		return res, &chainError{http.StatusBadGateway, "The controller answered with another activation.", nil}
	}
	res.act = &act
	res.misplaced = misplaced(nil, &act)
	return res, nil
}

// confirmRecorded checks that the record of the blocking activation req,
// about to be answered 202, is in the store, running or complete.
func (g *Gateway) confirmRecorded(ctx context.Context, req *wire.InvokeRequest) *chainError {
	ns := req.FiledIn()
	cctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	var rec wire.Activation
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectActivationGet, &wire.ActivationRef{Namespace: ns, ActivationID: req.ActivationID, Running: true}, &rec)
	if err == nil && rec.ActivationID == req.ActivationID && rec.Namespace == ns {
		return nil
	}
	return &chainError{http.StatusBadGateway, "The activation did not answer in time and its record could not be confirmed: it may have been lost with its controller. Look for the activation id later, or invoke again.", err}
}
