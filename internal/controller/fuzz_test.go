package controller

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := bus.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// malformed are requests no handler can decode.
var malformed = [][]byte{
	nil,
	{0xff},
	{0xa1},                         // map of one pair, truncated
	{0x5f, 0x41},                   // indefinite byte string, truncated
	{0x9f, 0x9f, 0x9f},             // nested indefinite arrays, truncated
	{0x01},                         // an integer, not a map
	{0x62, 0xff, 0xfe},             // text string with invalid UTF-8
	{0xa1, 0x01, 0x62, 0xff, 0xfe}, // field 1 with invalid UTF-8
	{0xa1, 0x01, 0xa1, 0x01, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // uint64 max in a small field
	{0xa1, 0x01, 0x9b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00},             // array claiming 2^32 elements
	{0xa1, 0x03, 0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},             // skip = -2^63
}

func deepNesting(n int) []byte {
	b := make([]byte, 0, n+1)
	for range n {
		b = append(b, 0x81) // array of one
	}
	return append(b, 0x00)
}

// handlers returns the controller's request handlers by subject.
func (c *Controller) handlers() map[string]func(context.Context, []byte) (any, error) {
	return map[string]func(context.Context, []byte) (any, error){
		wire.SubjectActionPut:      c.handleActionPut,
		wire.SubjectActionGet:      c.handleActionGet,
		wire.SubjectActionDelete:   c.handleActionDelete,
		wire.SubjectActionList:     c.handleActionList,
		wire.SubjectInvoke:         c.handleInvoke,
		wire.SubjectActivationGet:  c.handleActivationGet,
		wire.SubjectActivationList: c.handleActivationList,
		wire.SubjectActivationPut:  c.handleActivationPut,
		wire.SubjectPackagePut:     c.handlePackagePut,
		wire.SubjectPackageGet:     c.handlePackageGet,
		wire.SubjectPackageDelete:  c.handlePackageDelete,
		wire.SubjectPackageList:    c.handlePackageList,
		wire.SubjectTriggerPut:     c.handleTriggerPut,
		wire.SubjectTriggerGet:     c.handleTriggerGet,
		wire.SubjectTriggerDelete:  c.handleTriggerDelete,
		wire.SubjectTriggerList:    c.handleTriggerList,
		wire.SubjectRulePut:        c.handleRulePut,
		wire.SubjectRuleGet:        c.handleRuleGet,
		wire.SubjectRuleDelete:     c.handleRuleDelete,
		wire.SubjectRuleList:       c.handleRuleList,
		wire.SubjectRuleStatus:     c.handleRuleStatus,
	}
}

// rawReply mirrors the bus's reply frame.
type rawReply struct {
	Err  *wire.Error     `cbor:"1,keyasint,omitempty"`
	Body cbor.RawMessage `cbor:"2,keyasint,omitempty"`
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", succeed(e))
	inputs := append(malformed, deepNesting(100))
	for subject := range e.ctl.handlers() {
		for _, in := range inputs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			msg, err := e.nc.RequestWithContext(ctx, subject, in)
			cancel()
			if err != nil {
				t.Fatalf("%s %x: %v", subject, in, err)
			}
			var r rawReply
			if err := bus.Unmarshal(msg.Data, &r); err != nil {
				t.Fatalf("%s %x: reply: %v", subject, in, err)
			}
			if r.Err == nil || r.Err.Code != wire.CodeBadRequest {
				t.Fatalf("%s %x: reply %+v, want bad_request", subject, in, r.Err)
			}
		}
	}
	// Heartbeats are not requests; malformed ones are dropped.
	for _, in := range append(inputs, encode(t, wire.Heartbeat{InvokerID: "bad.id"}), encode(t, wire.Heartbeat{})) {
		if err := e.nc.Publish(wire.SubjectInvokerHeartbeat, in); err != nil {
			t.Fatal(err)
		}
	}
	// Still serving.
	if a := mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello")); a.Status != wire.StatusSuccess {
		t.Fatalf("record %+v", a)
	}
	if e.ctl.sched.healthy() != 1 {
		t.Fatalf("%d healthy invokers", e.ctl.sched.healthy())
	}
}

func TestHeartbeat(t *testing.T) {
	clock := newClock()
	s := newScheduler(clock.Now, time.Second)
	for _, hb := range []wire.Heartbeat{
		{InvokerID: ""},
		{InvokerID: "a.b"},
		{InvokerID: "a*"},
		{InvokerID: "a>"},
		{InvokerID: "a b"},
		{InvokerID: "é"},
		{InvokerID: string(make([]byte, 129))},
	} {
		if s.heartbeat(hb) {
			t.Errorf("heartbeat %q accepted", hb.InvokerID)
		}
	}
	if !s.heartbeat(wire.Heartbeat{InvokerID: "ok", Capacity: -5, InFlight: -1 << 62}) {
		t.Fatal("heartbeat refused")
	}
	st := s.invokers["ok"]
	if st.capacity != 1 || st.inFlight != 0 {
		t.Fatalf("state %+v", st)
	}
	s.heartbeat(wire.Heartbeat{InvokerID: "ok", Capacity: 1 << 62, InFlight: 1 << 62})
	if st.capacity != maxReported || st.inFlight != maxReported {
		t.Fatalf("state %+v", st)
	}
}

func TestSchedulerHome(t *testing.T) {
	clock := newClock()
	s := newScheduler(clock.Now, time.Second)
	if _, ok := s.home("ns/a"); ok {
		t.Fatal("placed on an empty table")
	}
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		s.heartbeat(wire.Heartbeat{InvokerID: id, Capacity: 2})
	}
	home := homeOf("ns/a", ids...)
	if id, _ := s.home("ns/a"); id != home {
		t.Fatalf("home %s, want %s", id, home)
	}
	// Actions spread over the invokers.
	seen := map[string]bool{}
	for i := range 60 {
		id, _ := s.home("ns/" + itoa(i))
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Fatalf("60 actions placed on %d of 3 invokers", len(seen))
	}
	// A full home gives way to the least loaded invoker.
	var dones []func()
	for range 2 {
		done, ok := s.begin(home, "act", func(error) {})
		if !ok {
			t.Fatal("begin on a healthy invoker")
		}
		dones = append(dones, done)
	}
	if id, _ := s.home("ns/a"); id == home {
		t.Fatal("placed on a full home invoker")
	}
	for _, d := range dones {
		d()
	}
	if id, _ := s.home("ns/a"); id != home {
		t.Fatalf("placed on %s after home had room", id)
	}
	// The loss of another invoker moves only the actions it was home of.
	other := ids[0]
	if other == home {
		other = ids[1]
	}
	s.markDown(other)
	if id, _ := s.home("ns/a"); id != home {
		t.Fatalf("losing %s moved ns/a from %s to %s", other, home, id)
	}
	// Down and stale invokers are not chosen.
	s.markDown(home)
	for range 10 {
		if id, _ := s.home("ns/a"); id == home || id == other {
			t.Fatal("placed on an invoker marked down")
		}
	}
	clock.Advance(time.Second + time.Millisecond)
	if _, ok := s.home("ns/a"); ok {
		t.Fatal("placed on a stale invoker")
	}
	if s.healthy() != 0 {
		t.Fatal("stale invokers counted healthy")
	}
}

// TestSchedulerSweep: the calls in flight to an invoker that stopped
// heart-beating are cancelled as lost, once; a heartbeat brings it back.
func TestSchedulerSweep(t *testing.T) {
	clock := newClock()
	s := newScheduler(clock.Now, time.Second)
	s.heartbeat(wire.Heartbeat{InvokerID: "a", Capacity: 4, Runtimes: []wire.RuntimeInfo{{Namespace: "ns", ID: fakeRuntime("a", "ns")}}})
	s.heartbeat(wire.Heartbeat{InvokerID: "b", Capacity: 4})
	if !s.runs("a", "ns", fakeRuntime("a", "ns")) || s.runs("a", "ns", fakeRuntime("b", "ns")) || s.runs("b", "ns", fakeRuntime("a", "ns")) {
		t.Fatal("runs does not follow the heartbeats")
	}
	var cancelled []error
	doneA, _ := s.begin("a", "act-a", func(err error) { cancelled = append(cancelled, err) })
	defer doneA()
	doneB, _ := s.begin("b", "act-b", func(err error) { t.Error("cancelled a call to a healthy invoker") })
	if lost := s.sweep(); len(lost) != 0 {
		t.Fatalf("lost %v while all are healthy", lost)
	}
	clock.Advance(700 * time.Millisecond)
	s.heartbeat(wire.Heartbeat{InvokerID: "b", Capacity: 4})
	clock.Advance(400 * time.Millisecond)
	if lost := s.sweep(); !slices.Equal(lost, []string{"a"}) || len(cancelled) != 1 || !errors.Is(cancelled[0], errInvokerLost) {
		t.Fatalf("sweep lost %v, cancelled %v", lost, cancelled)
	}
	if s.sweep() != nil || len(cancelled) != 1 {
		t.Fatal("a lost invoker was swept twice")
	}
	if s.runs("a", "ns", fakeRuntime("a", "ns")) {
		t.Fatal("a lost invoker still runs its runtimes")
	}
	if _, ok := s.begin("a", "act-c", func(error) {}); ok {
		t.Fatal("a call began on a lost invoker")
	}
	doneB()
	// Placements this controller made count before the heartbeats list them.
	s.noteRuntime("b", "ns2", fakeRuntime("b", "ns2"))
	if !s.runs("b", "ns2", fakeRuntime("b", "ns2")) {
		t.Fatal("a fresh placement does not count")
	}
}

// TestSchedulerStepLost: a call the invoker's heartbeats stop holding,
// past the grace, is cancelled as lost on the bus, after missesLost
// heartbeats in a row; one held, too recent, or of a heartbeat that does
// not report what it holds, is not.
func TestSchedulerStepLost(t *testing.T) {
	clock := newClock()
	s := newScheduler(clock.Now, time.Second)
	beat := func(reports bool, held ...string) {
		s.heartbeat(wire.Heartbeat{InvokerID: "a", Capacity: 4, Received: held, ReportsReceived: reports})
	}
	beat(true)
	cancelled := map[string]error{}
	begin := func(act string) func() {
		done, ok := s.begin("a", act, func(err error) { cancelled[act] = err })
		if !ok {
			t.Fatalf("begin %s", act)
		}
		return done
	}
	defer begin("held")()
	defer begin("lost")()
	defer begin("unreported")()
	// Within the grace nothing counts, held or not.
	beat(true, "held")
	beat(true, "held")
	if len(cancelled) != 0 {
		t.Fatalf("cancelled within the grace: %v", cancelled)
	}
	clock.Advance(1100 * time.Millisecond)
	beat(true, "held", "unreported")
	beat(false) // reports nothing: counts for nothing
	if len(cancelled) != 0 {
		t.Fatalf("cancelled after one miss: %v", cancelled)
	}
	clock.Advance(500 * time.Millisecond)
	defer begin("recent")()
	beat(true, "held")
	if !errors.Is(cancelled["lost"], errStepLost) || len(cancelled) != 1 {
		t.Fatalf("after two misses: %v", cancelled)
	}
	// "unreported" was held by the first beat past the grace: one miss so far.
	beat(true, "held")
	if !errors.Is(cancelled["unreported"], errStepLost) || cancelled["held"] != nil || cancelled["recent"] != nil {
		t.Fatalf("after the next beat: %v", cancelled)
	}
	s.mu.Lock()
	out := s.invokers["a"].outstanding
	s.mu.Unlock()
	if out != 2 {
		t.Fatalf("outstanding %d, want 2 (held, recent)", out)
	}
}

func TestSchedulerTableBounded(t *testing.T) {
	clock := newClock()
	s := newScheduler(clock.Now, time.Second)
	for i := range maxInvokers {
		if !s.heartbeat(wire.Heartbeat{InvokerID: "i" + itoa(i), Capacity: 1}) {
			t.Fatalf("heartbeat %d refused", i)
		}
	}
	if s.heartbeat(wire.Heartbeat{InvokerID: "one-more"}) {
		t.Fatal("table grew past its bound")
	}
	// Known invokers still beat.
	if !s.heartbeat(wire.Heartbeat{InvokerID: "i0"}) {
		t.Fatal("known invoker refused")
	}
	// Long-silent invokers are forgotten to make room.
	clock.Advance(forgetAfter*time.Second + time.Second)
	if !s.heartbeat(wire.Heartbeat{InvokerID: "one-more"}) {
		t.Fatal("silent invokers were not forgotten")
	}
	if len(s.invokers) != 1 {
		t.Fatalf("%d invokers", len(s.invokers))
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// FuzzHandlers feeds arbitrary bytes to every request handler: none may
// panic, and every refusal must be a user-safe *wire.Error.
func FuzzHandlers(f *testing.F) {
	e := newEnvStarted(f, false)
	c := e.ctl
	subjects := []string{
		wire.SubjectActionPut, wire.SubjectActionGet, wire.SubjectActionDelete, wire.SubjectActionList,
		wire.SubjectInvoke, wire.SubjectActivationGet, wire.SubjectActivationList, wire.SubjectActivationPut,
		wire.SubjectPackagePut, wire.SubjectPackageGet, wire.SubjectPackageDelete, wire.SubjectPackageList,
		wire.SubjectTriggerPut, wire.SubjectTriggerGet, wire.SubjectTriggerDelete, wire.SubjectTriggerList,
		wire.SubjectRulePut, wire.SubjectRuleGet, wire.SubjectRuleDelete, wire.SubjectRuleList, wire.SubjectRuleStatus,
	}
	hs := c.handlers()
	if len(hs) != len(subjects) {
		f.Fatal("subjects out of date")
	}
	// A stored action and a completed activation to find.
	put := actionPut(f, "guest", "hello", "f1")
	if _, err := c.handleActionPut(context.Background(), encode(f, put)); err != nil {
		f.Fatal(err)
	}
	inv := invokeReq("guest", "hello")
	done := triggerRecord(e, "guest", "hello")
	done.ActivationID = inv.ActivationID
	if _, err := c.handleActivationPut(context.Background(), encode(f, done)); err != nil {
		f.Fatal(err)
	}

	seeds := [][]byte{
		encode(f, put),
		encode(f, wire.ActionRef{Namespace: "guest", Name: "hello"}),
		encode(f, wire.ListRequest{Namespace: "guest", Limit: 3}),
		encode(f, wire.ListRequest{Namespace: "guest", Name: "hello", Skip: 1}),
		encode(f, invokeReq("guest", "hello")),
		encode(f, wire.ActivationRef{Namespace: "guest", ActivationID: inv.ActivationID}),
		encode(f, wire.PackagePut{Package: wire.Package{Namespace: "guest", Name: "pkg", Binding: &wire.Binding{Namespace: "o", Name: "p"}}}),
		encode(f, wire.TriggerPut{Trigger: wire.Trigger{Namespace: "guest", Name: "t"}}),
		encode(f, wire.RulePut{Rule: wire.Rule{Namespace: "guest", Name: "r", Trigger: "/guest/t", Action: "/guest/hello"}}),
		encode(f, wire.EntityRef{Namespace: "guest", Name: "pkg", Force: true}),
		encode(f, wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleInactive}),
		encode(f, wire.ListRequest{Namespace: "guest", Name: "/guest/t", Count: true, Since: 1, Upto: 1 << 50}),
		encode(f, map[int]any{1: map[int]any{1: "guest", 2: "x", 7: []any{map[int]any{1: "k", 2: map[any]any{1.5: []byte{1}}}}}, 2: []byte{1}}),
		deepNesting(40),
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	for i, m := range malformed {
		f.Add(uint8(i), m)
	}
	f.Fuzz(func(t *testing.T, op uint8, data []byte) {
		c.heartbeat(data)
		subject := subjects[int(op)%len(subjects)]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := hs[subject](ctx, data)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) {
				t.Fatalf("%s: error %v (%T) is not a wire error", subject, err, err)
			}
			return
		}
		if v == nil {
			t.Fatalf("%s: nil reply without error", subject)
		}
		if _, err := bus.Marshal(v); err != nil {
			t.Fatalf("%s: reply cannot be encoded: %v", subject, err)
		}
	})
}

// FuzzActionAnnotations stores actions whose annotation values are
// arbitrary CBOR: whatever put accepts, get and list must read back.
func FuzzActionAnnotations(f *testing.F) {
	e := newEnvStarted(f, false)
	c := e.ctl
	for _, seed := range [][]byte{
		{0x01},
		{0xf7},             // undefined
		{0xf9, 0x7e, 0x00}, // float16 NaN
		{0xc1, 0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0}, // epoch time NaN
		{0xc0, 0x61, 0x78},                         // tag 0, not a date
		{0xc2, 0x41, 0x01},                         // bignum
		{0xd9, 0xd9, 0xf7, 0x01},                   // self-described
		{0xa1, 0x41, 0x01, 0x02},                   // byte string key
		{0xa1, 0xf9, 0x7e, 0x00, 0x02},             // NaN key
		{0xa2, 0x01, 0x02, 0x01, 0x03},             // duplicate keys
		{0xd8, 0x1e, 0x82, 0x01, 0x00},             // rational with zero denominator
		deepNesting(28),
	} {
		f.Add(seed)
	}
	ref := encode(f, wire.ActionRef{Namespace: "guest", Name: "a"})
	list := encode(f, wire.ListRequest{Namespace: "guest"})
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := actionPut(t, "guest", "a", "f")
		p.Overwrite = true
		p.Action.Annotations = []wire.KeyValue{{Key: "k", Value: cbor.RawMessage(raw)}}
		data, err := bus.Marshal(p)
		if err != nil {
			return // not well-formed CBOR
		}
		ctx := context.Background()
		if _, err := c.handleActionPut(ctx, data); err != nil {
			if _, ok := errors.AsType[*wire.Error](err); !ok {
				t.Fatalf("put: %v", err)
			}
			return
		}
		if _, err := c.handleActionGet(ctx, ref); err != nil {
			t.Fatalf("get after put: %v", err)
		}
		if _, err := c.handleActionList(ctx, list); err != nil {
			t.Fatalf("list after put: %v", err)
		}
	})
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	_, err := call[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "nope"})
	wantCode(t, err, wire.CodeNotFound)
	_, err = call[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello")) // no invoker: nothing placed
	wantCode(t, err, wire.CodeMisplaced)
	e.startInvoker("inv0", succeed(e))
	mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))

	got := gather(t, e)
	for name, want := range map[string]float64{
		"clemmys_controller_requests_total code=ok op=action.put":          1,
		"clemmys_controller_requests_total code=not_found op=action.get":   1,
		"clemmys_controller_requests_total code=ok op=invoke":              1,
		"clemmys_controller_requests_total code=misplaced op=invoke":       1,
		"clemmys_controller_requests_total code=ok op=place":               1,
		"clemmys_controller_activations_total status=whisk internal error": 0,
		"clemmys_controller_activations_total status=success":              1,
		"clemmys_controller_dispatch_total result=ok":                      1,
		"clemmys_controller_healthy_invokers":                              1,
		"clemmys_controller_activation_duration_seconds":                   1,
		"clemmys_controller_scheduling_latency_seconds":                    1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
