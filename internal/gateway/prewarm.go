package gateway

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Prewarms (wire.Prewarm) have a function loaded — key release to an
// attested runtime, code fetch, compilation — before it is invoked: after a
// deploy, and for the later steps of a sequence while its first step runs.
// They are best effort: a failure is logged, never shown to the caller.

// prewarmTimeout bounds asking the controller for a prewarm (it answers
// once an invoker has accepted it, not when the function is loaded).
const prewarmTimeout = 2 * time.Second

// prewarm asks the controller to prewarm a newly deployed function version
// and waits until an invoker has accepted it (two bus round trips; the load
// itself runs in the background), before the deploy is answered. The
// invoker loads a function once: an invocation that arrives while the
// prewarm loads waits for that load rather than starting its own.
func (g *Gateway) prewarm(ctx context.Context, ns, action string, fid []byte) {
	ctx, cancel := context.WithTimeout(ctx, prewarmTimeout)
	defer cancel()
	var rep wire.PrewarmReply
	err := bus.Call(ctx, g.cfg.Conn, wire.SubjectPrewarm, &wire.Prewarm{Namespace: ns, Action: action, FunctionID: fid}, &rep)
	if err != nil {
		g.log.Warn("prewarm", "namespace", ns, "action", action, "function", hex.EncodeToString(fid), "err", err)
		return
	}
	g.log.Debug("prewarm", "namespace", ns, "action", action, "invoker", rep.InvokerID, "loaded", rep.Loaded)
}

// stepPrewarmInterval is the default of Config.StepPrewarmInterval: how long after asking for a sequence step's
// function to be prewarmed the gateway asks again: a warm sequence invoked
// back to back would otherwise cost two bus round trips per later step and
// invocation, for functions that are loaded already. Asking again now and
// then covers a runtime that was replaced meanwhile.
const stepPrewarmInterval = 10 * time.Second

// maxPrewarmMemory bounds the memory of prewarmed steps; when full it
// starts over.
const maxPrewarmMemory = 4096

// stepPrewarms remembers when each function (by id) was last prewarmed as
// a later sequence step.
type stepPrewarms struct {
	interval time.Duration
	last     boundedMap[string, time.Time]
}

// due reports whether function fid should be prewarmed now, and if so
// records that it is.
func (p *stepPrewarms) due(fid []byte, now time.Time) bool {
	return p.last.update(string(fid), maxPrewarmMemory, func(t time.Time, ok bool) (time.Time, bool) {
		return now, !ok || now.Sub(t) >= p.interval
	})
}

// prewarmSteps asks, without waiting, for steps 1.. of a sequence to be
// prewarmed (each function once, and not again within
// stepPrewarmInterval; step 0 is about to run anyway).
func (g *Gateway) prewarmSteps(routes []wire.StepRoute) {
	if len(routes) < 2 {
		return
	}
	now := g.now()
	seen := map[string]bool{string(routes[0].FunctionID): true}
	for _, st := range routes[1:] {
		if seen[string(st.FunctionID)] {
			continue
		}
		seen[string(st.FunctionID)] = true
		if !g.stepPrewarms.due(st.FunctionID, now) {
			continue
		}
		g.metrics.stepPrewarms.Inc()
		b, err := bus.Marshal(&wire.Prewarm{Namespace: st.Namespace, Action: st.Action, FunctionID: st.FunctionID})
		if err == nil {
			err = g.cfg.Conn.Publish(wire.SubjectPrewarm, b)
		}
		if err != nil {
			g.log.Warn("prewarm sequence step", "namespace", st.Namespace, "action", st.Action, "err", err)
			return
		}
	}
}
