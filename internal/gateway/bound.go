package gateway

import (
	"context"
	"time"
)

// Stage bounds. The stages of an invocation that may call the controller
// or the KMS (load the entity, resolve the chain of versions, place) are
// each bounded by busTimeout as a whole, but most invocations are
// answered from the caches and make no call at all. A stage's bound is
// therefore carried as a deadline value (withStageBound) and becomes a
// timer only where a call is made (boundCall): a cached stage arms and
// stops no timer and registers nothing with the request's context.

type stageDeadlineKey struct{}

// withStageBound returns ctx carrying the deadline of a stage that starts
// now: busTimeout from now, or ctx's own deadline if that is earlier
// (boundCall applies both).
func withStageBound(ctx context.Context) context.Context {
	return context.WithValue(ctx, stageDeadlineKey{}, time.Now().Add(busTimeout))
}

// boundCall returns the context for one call to another service within
// ctx's stage: bounded by the stage's deadline (withStageBound), by
// busTimeout if ctx carries none and has no deadline of its own, else by
// ctx's deadline. The caller calls cancel when the call returns.
func boundCall(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Value(stageDeadlineKey{}).(time.Time); ok {
		return context.WithDeadline(ctx, d)
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, busTimeout)
}
