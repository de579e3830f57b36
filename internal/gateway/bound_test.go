package gateway

import (
	"context"
	"testing"
	"time"
)

// A stage's bound reaches the calls made in it and nothing else arms a
// timer; a call outside a stage keeps its caller's deadline or gets
// busTimeout.
func TestBoundCall(t *testing.T) {
	before := time.Now()
	stage := withStageBound(context.Background())
	if _, ok := stage.Deadline(); ok {
		t.Fatal("a stage bound armed a deadline before any call")
	}
	after := time.Now()
	within := func(what string, ctx context.Context, lo, hi time.Time) {
		t.Helper()
		d, ok := ctx.Deadline()
		if !ok || d.Before(lo) || d.After(hi) {
			t.Errorf("%s: deadline %v (set %v), want within [%v, %v]", what, d, ok, lo, hi)
		}
	}
	c, cancel := boundCall(stage)
	within("call in a stage", c, before.Add(busTimeout), after.Add(busTimeout))
	cancel()
	if c.Err() == nil {
		t.Error("cancel did not end the call's context")
	}

	// A caller's earlier deadline wins, inside a stage or not.
	early, cancelEarly := context.WithDeadline(context.Background(), before.Add(time.Second))
	defer cancelEarly()
	c, cancel = boundCall(withStageBound(early))
	within("stage under an earlier deadline", c, before.Add(time.Second), before.Add(time.Second))
	cancel()
	c, cancel = boundCall(early)
	within("call under a deadline", c, before.Add(time.Second), before.Add(time.Second))
	cancel()
	if early.Err() != nil {
		t.Error("a call's cancel ended its caller's context")
	}

	// Neither: busTimeout from the call.
	lo := time.Now()
	c, cancel = boundCall(context.Background())
	within("unbounded caller", c, lo.Add(busTimeout), time.Now().Add(busTimeout))
	cancel()
}
