package gateway

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestPrewarmRequests(t *testing.T) {
	srv, err := bus.Start(context.Background(), bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("gateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var clockMu sync.Mutex
	clock := time.Unix(1700000000, 0)
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	g := &Gateway{cfg: Config{Conn: nc, Now: now}, log: log, stepPrewarms: stepPrewarms{interval: stepPrewarmInterval}, metrics: newMetrics()}

	// Nobody serves prewarms: a deploy's prewarm fails quietly.
	g.prewarm(context.Background(), "guest", "hello", []byte("f0"))

	var (
		mu  sync.Mutex
		got []string
	)
	cnc, err := srv.Connect("controller")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	stop, err := bus.Serve(context.Background(), cnc, log, wire.SubjectPrewarm, wire.QueueController, 0, func(_ context.Context, data []byte) (any, error) {
		req, err := bus.Decode[wire.Prewarm](data)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		got = append(got, req.Namespace+"/"+req.Action+"="+string(req.FunctionID))
		mu.Unlock()
		return &wire.PrewarmReply{InvokerID: "inv"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := cnc.Flush(); err != nil {
		t.Fatal(err)
	}
	seen := func(n int) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			out := slices.Clone(got)
			mu.Unlock()
			if len(out) >= n || time.Now().After(deadline) {
				slices.Sort(out)
				return out
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// A deploy: answered before the deploy is.
	g.prewarm(context.Background(), "guest", "hello", []byte("f0"))
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d prewarms received when prewarm returned, want 1", n)
	}

	// A sequence: steps 1.., each function once, not step 0's.
	mu.Lock()
	got = nil
	mu.Unlock()
	step := func(name string) wire.StepRoute {
		return wire.StepRoute{Namespace: "guest", Action: name, FunctionID: []byte("f-" + name)}
	}
	g.prewarmSteps([]wire.StepRoute{step("a"), step("b"), step("a"), step("c"), step("b")})
	want := []string{"guest/b=f-b", "guest/c=f-c"}
	if out := seen(len(want)); !slices.Equal(out, want) {
		t.Fatalf("prewarms %v, want %v", out, want)
	}
	// Nothing more arrives: one step or none asks for nothing, and the
	// same steps are not asked for again within stepPrewarmInterval.
	g.prewarmSteps([]wire.StepRoute{step("x")})
	g.prewarmSteps(nil)
	clockMu.Lock()
	clock = clock.Add(stepPrewarmInterval - time.Second)
	clockMu.Unlock()
	g.prewarmSteps([]wire.StepRoute{step("a"), step("b"), step("c")})
	// The gateway counts a step prewarm when it decides to publish it:
	// no waiting to see that nothing arrives.
	var m dto.Metric
	if err := g.metrics.stepPrewarms.Write(&m); err != nil || m.GetCounter().GetValue() != 2 {
		n := m.GetCounter().GetValue()
		t.Fatalf("%v step prewarms asked, want 2", n)
	}
	// Once the interval has passed, they are.
	clockMu.Lock()
	clock = clock.Add(2 * time.Second)
	clockMu.Unlock()
	g.prewarmSteps([]wire.StepRoute{step("a"), step("b"), step("c")})
	want = []string{"guest/b=f-b", "guest/b=f-b", "guest/c=f-c", "guest/c=f-c"}
	if out := seen(len(want)); !slices.Equal(out, want) {
		t.Fatalf("prewarms %v, want %v", out, want)
	}
}
