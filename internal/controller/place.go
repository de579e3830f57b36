package controller

import (
	"context"
	"errors"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Placement: before it seals an invocation, a gateway asks where its steps
// would run (wire.PlaceRequest); the controller picks each step's home
// invoker (scheduler.home) and asks it for its runtime of the namespace
// (wire.InvokerPlace), which the envelope then designates. Gateways cache
// placements; a request whose designated runtime is gone is refused as
// misplaced (checkPlaced) before anything is reserved, and the gateway
// places and seals again. The controller is untrusted: a wrong placement
// costs availability only, since a runtime runs only the steps designated
// to itself.

// placeTimeout bounds one invoker's placement (it may start a runtime).
const placeTimeout = 30 * time.Second

// homeKey is the key an action's home invoker is chosen by.
func homeKey(ns, action string) string { return ns + "/" + action }

// handlePlace places the steps of an invocation (wire.PlaceRequest →
// wire.PlaceReply).
func (c *Controller) handlePlace(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.PlaceRequest](data)
	if err != nil {
		return nil, err
	}
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	if len(req.Actions) == 0 || len(req.Actions) > maxChainSteps {
		return nil, badRequest("1 to %d steps", maxChainSteps)
	}
	for _, a := range req.Actions {
		if !validPath(a) {
			return nil, badRequest("invalid action")
		}
	}
	out := &wire.PlaceReply{Steps: make([]wire.Placement, len(req.Actions))}
	byInvoker := map[string][]byte{} // one placement per invoker
	for j, a := range req.Actions {
		id, ok := c.sched.home(homeKey(req.Namespace, a))
		if !ok && c.cfg.InvokerWait > 0 && c.sched.waitHealthy(ctx, c.cfg.InvokerWait) {
			id, ok = c.sched.home(homeKey(req.Namespace, a))
		}
		if !ok {
			return nil, wire.Errorf(wire.CodeUnavailable, msgNoInvoker)
		}
		rid, ok := byInvoker[id]
		for attempt := 0; !ok; attempt++ {
			if rid, err = c.placeOn(ctx, id, req.Namespace); err == nil {
				byInvoker[id], ok = rid, true
				break
			}
			// An invoker that does not answer is marked down: try the
			// next home.
			if attempt == 2 {
				return nil, err
			}
			if id, ok = c.sched.home(homeKey(req.Namespace, a)); !ok {
				return nil, err
			}
			rid, ok = byInvoker[id]
		}
		out.Steps[j] = wire.Placement{Invoker: id, Runtime: rid}
	}
	return out, nil
}

// placeOn asks invoker id for its runtime of namespace ns.
func (c *Controller) placeOn(ctx context.Context, id, ns string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	var rep wire.InvokerPlaced
	if err := bus.Call(ctx, c.cfg.Conn, wire.SubjectInvokerPlace(id), &wire.InvokerPlace{Namespace: ns}, &rep); err != nil {
		c.log.Warn("place", "invoker", id, "namespace", ns, "err", err)
		if we, ok := errors.AsType[*wire.Error](err); ok && we.Code == wire.CodeUnavailable {
			c.sched.markDown(id)
		}
		return nil, wire.Errorf(wire.CodeUnavailable, "the invoker could not place the namespace; retry")
	}
	if len(rep.Runtime) != runtimeIDLen {
		return nil, wire.Errorf(wire.CodeUnavailable, "the invoker answered without a runtime; retry")
	}
	c.sched.noteRuntime(id, ns, rep.Runtime)
	return rep.Runtime, nil
}

// checkPlaced refuses (wire.CodeMisplaced) an invocation whose steps
// designate an invoker that is not healthy or a runtime it does not run
// (as far as this controller knows): nothing is reserved for it, and the
// gateway places it again.
//
// Another controller replica may have placed the runtime a moment ago:
// this one learns of it from the invoker's next heartbeat. So a runtime
// not (yet) known on a healthy invoker is looked for again after that
// invoker's next heartbeat (at most placeWait) before the refusal.
func (c *Controller) checkPlaced(ctx context.Context, req *wire.InvokeRequest) error {
	type want struct {
		invoker, ns string
		rt          []byte
	}
	var wants []want
	if len(req.Steps) == 0 {
		wants = append(wants, want{req.Invoker, req.Namespace, req.Runtime})
	}
	for _, st := range req.Steps {
		wants = append(wants, want{st.Invoker, st.Namespace, st.Runtime})
	}
	for _, w := range wants {
		if c.sched.runs(w.invoker, w.ns, w.rt) {
			continue
		}
		if !c.sched.waitBeat(ctx, w.invoker, placeWait) || !c.sched.runs(w.invoker, w.ns, w.rt) {
			return wire.Errorf(wire.CodeMisplaced, msgMisplaced)
		}
	}
	return nil
}

// placeWait bounds checkPlaced's wait for an invoker's next heartbeat
// (invokers beat every second).
const placeWait = 2 * time.Second
