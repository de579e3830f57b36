package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// fakeClock is a manual clock: time moves only when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is an embedded bus, a started controller on its own connection and
// a client connection (the gateway's side).
type env struct {
	t     testing.TB
	srv   *bus.Server
	nc    *nats.Conn // client side
	clock *fakeClock
	ctl   *Controller
}

// newEnv starts a bus and a controller. Options mutate the controller's
// Config before New.
func newEnv(t testing.TB, opts ...func(*Config)) *env {
	t.Helper()
	return newEnvStarted(t, true, opts...)
}

func newEnvStarted(t testing.TB, start bool, opts ...func(*Config)) *env {
	t.Helper()
	srv, err := bus.Start(context.Background(), bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	e := &env{t: t, srv: srv, nc: connect(t, srv, "client"), clock: newClock()}
	cnc := connect(t, srv, "controller")
	js, err := jetstream.New(cnc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Conn: cnc, JS: js, Log: testLog(t), Now: e.clock.Now,
		ColdStartGrace: 2 * time.Second,
		StopGrace:      5 * time.Second,
		// The tests of a missing invoker do not wait for one (see
		// TestInvokeWaitsForAnInvoker).
		InvokerWait: -1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.ctl, err = New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the controller stops before the
	// connections close and the server shuts down.
	t.Cleanup(e.ctl.Stop)
	if start {
		if err := e.ctl.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func connect(t testing.TB, srv *bus.Server, name string) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call sends req to subject and decodes the reply into a new T.
func call[T any](e *env, subject string, req any) (*T, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if subject == wire.SubjectInvoke {
		req = e.placed(ctx, req)
	}
	v := new(T)
	if err := bus.Call(ctx, e.nc, subject, req, v); err != nil {
		return nil, err
	}
	return v, nil
}

// placed plays the gateway placing an invoke request before sealing it:
// a request that names no invoker gets the controller's placement. One
// that cannot be placed (no invoker) goes as it is, and is refused as
// misplaced.
func (e *env) placed(ctx context.Context, req any) any {
	var r *wire.InvokeRequest
	switch v := req.(type) {
	case wire.InvokeRequest:
		r = &v
	case *wire.InvokeRequest:
		c := *v
		r = &c
	default:
		return req
	}
	if r.Invoker != "" || (len(r.Steps) > 0 && r.Steps[0].Invoker != "") {
		return r
	}
	place := func(ns, action string) (wire.Placement, bool) {
		var rep wire.PlaceReply
		err := bus.Call(ctx, e.nc, wire.SubjectPlace, &wire.PlaceRequest{Namespace: ns, Actions: []string{action}}, &rep)
		if err != nil || len(rep.Steps) != 1 {
			return wire.Placement{}, false
		}
		return rep.Steps[0], true
	}
	if len(r.Steps) == 0 {
		if p, ok := place(r.Namespace, r.Action); ok {
			r.Invoker, r.Runtime = p.Invoker, p.Runtime
		}
		return r
	}
	// A gateway places the steps of one namespace at once; the tests'
	// sequences may mix namespaces.
	r.Steps = slices.Clone(r.Steps)
	for j, st := range r.Steps {
		if p, ok := place(st.Namespace, st.Action); ok {
			r.Steps[j].Invoker, r.Steps[j].Runtime = p.Invoker, p.Runtime
		}
	}
	return r
}

// fakeRuntime is the runtime id a fake invoker places ns on.
func fakeRuntime(invoker, ns string) []byte {
	h := sha256.Sum256([]byte("fake runtime\x00" + invoker + "\x00" + ns))
	return h[:]
}

// mustCall is call that fails the test on error.
func mustCall[T any](e *env, subject string, req any) *T {
	e.t.Helper()
	v, err := call[T](e, subject, req)
	if err != nil {
		e.t.Fatalf("%s: %v", subject, err)
	}
	return v
}

// wantCode fails the test unless err is a *wire.Error with code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("err = %v (%T), want wire error %q", err, err, code)
	}
	if we.Code != code {
		t.Fatalf("err = %v, want code %q", err, code)
	}
}

// signed returns a signed function record for fid (the signature is junk:
// the controller does not verify it).
func signed(t testing.TB, fid []byte) wire.SignedRecord {
	t.Helper()
	rec, err := bus.Marshal(wire.FunctionRecord{FunctionID: fid, Namespace: "ns", Action: "a", Created: 1})
	if err != nil {
		t.Fatal(err)
	}
	return wire.SignedRecord{Record: rec, Sig: make([]byte, 64)}
}

// fidOf returns a 16-byte function id derived from s.
func fidOf(s string) []byte {
	h := fnv.New128a()
	h.Write([]byte(s))
	return h.Sum(nil)
}

// actionPut is a valid put of ns/name whose function id derives from fidSeed.
func actionPut(t testing.TB, ns, name, fidSeed string) wire.ActionPut {
	return wire.ActionPut{
		Action: wire.Action{
			Namespace: ns, Name: name,
			Function: signed(t, fidOf(fidSeed)),
			CodeSize: 1234,
		},
		SealedCode: []byte("sealed code of " + fidSeed),
	}
}

func (e *env) put(p wire.ActionPut) *wire.Action {
	e.t.Helper()
	return mustCall[wire.Action](e, wire.SubjectActionPut, p)
}

// code returns the stored code object of fid, or nil if there is none.
func (e *env) code(fid []byte) []byte {
	e.t.Helper()
	b, err := e.ctl.code.GetBytes(testCtx(e.t), hex.EncodeToString(fid))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

var idSeq atomic.Uint64

// newID returns a fresh activation id.
func newID() string { return fmt.Sprintf("%032x", idSeq.Add(1)<<8|0xab) }

// invokeReq is a blocking invocation of ns/name.
func invokeReq(ns, name string) wire.InvokeRequest {
	return wire.InvokeRequest{
		ActivationID: newID(), Namespace: ns, Action: name,
		Subject: "alice", Envelope: []byte("sealed envelope"), Blocking: true,
	}
}

// stored returns the activation record at ns/id as stored, running or not,
// once the controller wrote the complete record of an answered activation
// (Controller.storeAnswered).
func (e *env) stored(ns, id string) *wire.Activation {
	e.t.Helper()
	waitFor(e.t, "the record write of "+id, func() bool {
		_, writing := e.ctl.answered.Load(store.Key(ns, id))
		return !writing
	})
	return e.storedNow(ns, id)
}

// storedNow returns the activation record at ns/id in the store now: the
// complete record if there is one, else the one written when it started.
func (e *env) storedNow(ns, id string) *wire.Activation {
	e.t.Helper()
	for _, kv := range []jetstream.KeyValue{e.ctl.records, e.ctl.activations} {
		ent, err := kv.Get(testCtx(e.t), store.Key(ns, id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		var a wire.Activation
		if err := bus.Unmarshal(ent.Value(), &a); err != nil {
			e.t.Fatal(err)
		}
		return &a
	}
	return nil
}

// waitDone polls until the activation ns/id is complete and returns it.
func (e *env) waitDone(ns, id string) *wire.Activation {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a := e.stored(ns, id); a != nil && a.End != 0 {
			return a
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("activation %s did not complete", id)
	return nil
}

// stopWaiting calls Stop in the background and checks that it is still
// waiting 200 ms later (while what says); the channel closes when Stop
// returns.
func (e *env) stopWaiting(t testing.TB, what string) <-chan struct{} {
	t.Helper()
	stopped := make(chan struct{})
	go func() {
		e.ctl.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatalf("Stop returned while %s", what)
	case <-time.After(200 * time.Millisecond):
	}
	return stopped
}

// waitStopped waits up to 10 s for a Stop started by stopWaiting.
func waitStopped(t testing.TB, stopped <-chan struct{}) {
	t.Helper()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runFunc answers one run request of a fake invoker.
type runFunc func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error)

// fakeInvoker serves wire.SubjectInvokerRun(id) with a canned answer and
// publishes heartbeats when told to.
type fakeInvoker struct {
	e        *env
	id       string
	nc       *nats.Conn
	capacity int
	run      runFunc
	calls    atomic.Int32

	mu         sync.Mutex
	reqs       []*wire.RunRequest
	namespaces []string // placed on it
}

// startInvoker starts a fake invoker that answers with run and announces it.
// A nil run makes an invoker that died after its heartbeat: nobody serves
// its run subject.
func (e *env) startInvoker(id string, run runFunc) *fakeInvoker {
	e.t.Helper()
	inv := &fakeInvoker{e: e, id: id, nc: connect(e.t, e.srv, "invoker-"+id), capacity: 4, run: run}
	if run != nil {
		stop, err := bus.Serve(context.Background(), inv.nc, testLog(e.t), wire.SubjectInvokerRun(id), "", 0,
			func(ctx context.Context, data []byte) (any, error) {
				req, err := bus.Decode[wire.RunRequest](data)
				if err != nil {
					return nil, err
				}
				inv.calls.Add(1)
				inv.mu.Lock()
				inv.reqs = append(inv.reqs, req)
				inv.mu.Unlock()
				return inv.run(ctx, req)
			})
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(stop)
		stopPlace, err := bus.Serve(context.Background(), inv.nc, testLog(e.t), wire.SubjectInvokerPlace(id), "", 0,
			func(ctx context.Context, data []byte) (any, error) {
				req, err := bus.Decode[wire.InvokerPlace](data)
				if err != nil {
					return nil, err
				}
				inv.mu.Lock()
				if !slices.Contains(inv.namespaces, req.Namespace) {
					inv.namespaces = append(inv.namespaces, req.Namespace)
				}
				inv.mu.Unlock()
				inv.publishBeat()
				return &wire.InvokerPlaced{Runtime: fakeRuntime(id, req.Namespace)}, nil
			})
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(stopPlace)
		if err := inv.nc.Flush(); err != nil {
			e.t.Fatal(err)
		}
	}
	inv.beat()
	return inv
}

// publishBeat publishes a heartbeat listing the namespaces placed on it.
func (inv *fakeInvoker) publishBeat() {
	inv.mu.Lock()
	hb := wire.Heartbeat{InvokerID: inv.id, Capacity: inv.capacity, Time: time.Now().UnixMilli()}
	for _, ns := range inv.namespaces {
		hb.Runtimes = append(hb.Runtimes, wire.RuntimeInfo{Namespace: ns, ID: fakeRuntime(inv.id, ns)})
	}
	inv.mu.Unlock()
	b, err := bus.Marshal(hb)
	if err == nil {
		err = inv.nc.Publish(wire.SubjectInvokerHeartbeat, b)
	}
	if err != nil {
		inv.e.t.Error(err)
	}
}

// beat publishes a heartbeat and waits until the controller counts the
// invoker as healthy.
func (inv *fakeInvoker) beat() {
	inv.e.t.Helper()
	inv.publishBeat()
	waitFor(inv.e.t, "heartbeat of "+inv.id, func() bool { return inv.e.healthy(inv.id) })
}

func (inv *fakeInvoker) requests() []*wire.RunRequest {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return slices.Clone(inv.reqs)
}

// healthy reports whether the controller's scheduler counts id as healthy.
func (e *env) healthy(id string) bool {
	s := e.ctl.sched
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.invokers[id]
	return ok && s.isHealthy(st, now)
}

// succeed is an invoker answer: a successful step that started 25 ms after
// the controller received the invocation (on the test clock).
func succeed(e *env) runFunc {
	return func(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
		now := e.clock.Now().UnixMilli()
		return &wire.RunResult{
			Status: wire.StatusSuccess, Envelope: []byte("sealed result"), Logs: []byte("sealed logs"),
			Start: now + 25, End: now + 40,
		}, nil
	}
}

// gate is an invoker answer that waits until release is closed (or the
// call is cancelled) and then succeeds; started is signalled per call.
type gate struct {
	started chan string
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan string, 16), release: make(chan struct{})} }

func (g *gate) run(ctx context.Context, req *wire.RunRequest) (*wire.RunResult, error) {
	g.started <- req.ActivationID
	select {
	case <-g.release:
		return &wire.RunResult{Status: wire.StatusSuccess, Envelope: []byte("late result")}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) waitStarted(t testing.TB) string {
	t.Helper()
	select {
	case id := <-g.started:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("the invoker was never called")
		return ""
	}
}

// homeOf returns which of ids the scheduler picks first for ns when all
// are healthy and idle.
func homeOf(key string, ids ...string) string {
	best, bestW := "", uint64(0)
	for _, id := range ids {
		if w := homeWeight(id, key); best == "" || w > bestW || (w == bestW && id < best) {
			best, bestW = id, w
		}
	}
	return best
}

// annotation returns the value of key in anns.
func annotation(anns []wire.KeyValue, key string) (any, bool) {
	for _, kv := range anns {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}
