package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// Placements. An envelope designates, per step, the one enclave runtime
// that may run it (envelope version 3): a step captured on the bus then
// runs nowhere else, and the runtime's replay cache keeps it from running
// twice there. So before sealing, the gateway needs each step's runtime and
// the invoker that runs it: it asks the controller (wire.PlaceRequest) and
// keeps the answers per action for placementTTL, so a warm invocation asks
// nothing. A request the controller refuses as misplaced (the runtime or
// its invoker was replaced) is placed and sealed again with a new request
// id; nothing ran for the refused one. A placement is routing metadata
// from the untrusted controller: a wrong one costs availability, never
// confidentiality or integrity (no other runtime accepts the step, and a
// runtime that is not attested has no key to open it).

// placementTTL is how long a placement is used before the gateway asks
// again, so load moves as invokers come and go.
const placementTTL = time.Minute

// maxPlacements bounds the placement cache.
const maxPlacements = 16384

// maxPlaceAttempts is how often an invocation is sealed anew after a
// misplacement.
const maxPlaceAttempts = 3

type placement struct {
	wire.Placement
	at time.Time
}

type placements struct{ m boundedMap[string, placement] }

func placementKey(ns, action string) string { return ns + "\x00" + action }

// place returns the placement of each step, from the cache or the
// controller (fresh: ignore the cache).
func (g *Gateway) place(ctx context.Context, steps []step, fresh bool) ([]wire.Placement, *chainError) {
	out := make([]wire.Placement, len(steps))
	now := g.now()
	missing := false
	for j, st := range steps {
		p, ok := g.placements.m.get(placementKey(st.action.Namespace, st.action.Name))
		if fresh || !ok || now.Sub(p.at) >= placementTTL {
			missing = true
			break
		}
		out[j] = p.Placement
	}
	if !missing {
		return out, nil
	}
	req := wire.PlaceRequest{Namespace: steps[0].action.Namespace, Actions: make([]string, len(steps))}
	for j, st := range steps {
		req.Actions[j] = st.action.Name
	}
	var rep wire.PlaceReply
	cctx, cancel := boundCall(ctx)
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectPlace, &req, &rep)
	cancel()
	if err != nil {
		return nil, busFailure(err)
	}
	if len(rep.Steps) != len(steps) {
		return nil, &chainError{http.StatusBadGateway, "The controller placed another number of steps.", nil}
	}
	for j, p := range rep.Steps {
		if len(p.Runtime) != envelope.RuntimeIDSize || p.Invoker == "" {
			return nil, &chainError{http.StatusBadGateway, "The controller answered with a malformed placement.", nil}
		}
		out[j] = p
		g.placements.m.put(placementKey(steps[j].action.Namespace, steps[j].action.Name), placement{p, now}, maxPlacements)
	}
	return out, nil
}

// misplaced reports whether an invocation was refused or failed without
// running because the runtime it designates is gone.
func misplaced(err error, act *wire.Activation) bool {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		return we.Code == wire.CodeMisplaced
	}
	return act != nil && act.ErrorCode != "" && (act.ErrorCode == wire.CodeMisplaced || act.ErrorCode == "invoker_unavailable")
}

// placeSteps places p's steps (fresh: ignore the cache) and writes each
// step's runtime into the header's chain and the routes; it returns step
// 0's placement, where the request goes.
func (g *Gateway) placeSteps(ctx context.Context, p *plan, fresh bool) (wire.Placement, *chainError) {
	places, cerr := g.place(withStageBound(ctx), p.steps, fresh)
	if cerr != nil {
		return wire.Placement{}, cerr
	}
	for j := range p.chain {
		p.chain[j].Runtime = places[j].Runtime
	}
	for j := range p.routes {
		p.routes[j].Invoker, p.routes[j].Runtime = places[j].Invoker, places[j].Runtime
	}
	return places[0], nil
}
