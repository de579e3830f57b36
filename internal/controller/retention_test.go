package controller

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

var soak = flag.Bool("soak", false, "run the retention soak test with 100 000 activations")

// setRetention writes a namespace's retention settings as a gateway does
// (the controller does not check the gateway's MAC).
func (e *env) setRetention(ns string, age time.Duration, count int) {
	e.t.Helper()
	ctx := testCtx(e.t)
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := store.KV(ctx, js, store.BucketLimits, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	l := wire.NamespaceLimits{Namespace: ns}
	if age > 0 {
		s := int64(age / time.Second)
		l.RetentionSeconds = &s
	}
	if count > 0 {
		l.RetentionCount = &count
	}
	v, _ := bus.Marshal(&l)
	if _, err := kv.Put(ctx, store.Key("ns", ns), v); err != nil {
		e.t.Fatal(err)
	}
}

// streamMsgs is how many messages the stream of bucket holds.
func (e *env) streamMsgs(bucket string) (msgs, bytes uint64) {
	e.t.Helper()
	s, err := e.ctl.cfg.JS.Stream(testCtx(e.t), "KV_"+bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(testCtx(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs, info.State.Bytes
}

func (e *env) count(ns string) int {
	e.t.Helper()
	return mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: ns, Count: true}).Count
}

// The sweeper deletes records past the default age, a namespace's own age
// and its count, both entries of an activation (first entry and complete
// record), and leaves the rest listable.
func TestRetention(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetentionInterval = -1 })
	e.put(actionPut(t, "guest", "hello", "f1"))
	inv := e.startInvoker("inv0", succeed(e))

	// Eight days ago: guest's invocations (with complete records) and
	// alice's trigger records.
	var old []string
	for range 3 {
		a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
		old = append(old, a.ActivationID)
		mustCall[wire.Activation](e, wire.SubjectActivationPut, triggerRecord(e, "alice", "tick"))
	}
	waitFor(t, "records written", func() bool { n, _ := e.streamMsgs(store.BucketRecords); return n == 3 })
	e.clock.Advance(8 * 24 * time.Hour)
	inv.beat()
	var recent []string
	for range 2 {
		a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
		recent = append(recent, a.ActivationID)
	}
	// bob: ten recent records, keeps 4.
	for range 10 {
		mustCall[wire.Activation](e, wire.SubjectActivationPut, triggerRecord(e, "bob", "tick"))
	}
	e.setRetention("bob", 0, 4)
	// carol keeps 30 days: her 9-day-old records stay.
	e.setRetention("carol", 30*24*time.Hour, 0)
	mustCall[wire.Activation](e, wire.SubjectActivationPut, triggerRecord(e, "carol", "tick"))
	e.clock.Advance(24 * time.Hour)
	waitFor(t, "records written", func() bool { n, _ := e.streamMsgs(store.BucketRecords); return n == 5 })

	n, err := e.ctl.Sweep(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3+3+6 {
		t.Fatalf("deleted %d, want 12", n)
	}
	for ns, want := range map[string]int{"guest": 2, "alice": 0, "bob": 4, "carol": 1} {
		if got := e.count(ns); got != want {
			t.Errorf("%s: %d activations, want %d", ns, got, want)
		}
	}
	if msgs, _ := e.streamMsgs(store.BucketRecords); msgs != 2 {
		t.Errorf("records bucket holds %d messages, want 2", msgs)
	}
	if msgs, _ := e.streamMsgs(store.BucketActivations); msgs != 2+4+1 {
		t.Errorf("activations bucket holds %d messages, want 7 (deletions leave no marker)", msgs)
	}
	for _, id := range old {
		if _, err := call[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: id}); err == nil {
			t.Errorf("old activation %s still readable", id)
		}
	}
	for _, id := range recent {
		mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: id})
	}
	// bob's newest four are the ones kept.
	l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "bob", Limit: 10})
	if len(l.Activations) != 4 {
		t.Fatalf("bob lists %d", len(l.Activations))
	}
	// Nothing more to do.
	if n, err := e.ctl.Sweep(testCtx(t)); err != nil || n != 0 {
		t.Fatalf("second sweep: %d %v", n, err)
	}
}

// TestRetentionSoak writes many activations into a namespace that keeps
// 1 000, sweeping as it goes, and checks the store stays bounded: 2 000
// activations, or 100 000 with -soak (go test -run Soak -soak
// ./internal/controller/).
func TestRetentionSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak (-short)")
	}
	total, keep := 2_000, 1_000
	if *soak {
		total = 100_000
	}
	e := newEnv(t, func(c *Config) { c.RetentionInterval = -1 })
	e.setRetention("soak", 0, keep)
	ctx := context.Background()
	var peakMsgs, peakBytes uint64
	for i := 0; i < total; i++ {
		rec := triggerRecord(e, "soak", "tick")
		v, _ := bus.Marshal(&rec)
		if _, err := e.ctl.activations.Create(ctx, store.Key("soak", rec.ActivationID), v); err != nil {
			t.Fatal(err)
		}
		if (i+1)%keep == 0 {
			if _, err := e.ctl.Sweep(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			msgs, bytes := e.streamMsgs(store.BucketActivations)
			peakMsgs, peakBytes = max(peakMsgs, msgs), max(peakBytes, bytes)
		}
	}
	msgs, bytes := e.streamMsgs(store.BucketActivations)
	t.Logf("%d activations written; the store holds %d (%d bytes); at most %d (%d bytes) after any sweep", total, msgs, bytes, peakMsgs, peakBytes)
	if msgs != uint64(keep) || peakMsgs > uint64(keep) {
		t.Fatalf("store holds %d (peak %d), want %d", msgs, peakMsgs, keep)
	}
	if got := e.count("soak"); got != keep {
		t.Fatalf("listing counts %d", got)
	}
}
