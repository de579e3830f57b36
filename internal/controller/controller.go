// Package controller is clemmys' untrusted controller. It stores action,
// package, trigger and rule entities, sealed code and activation records in
// JetStream and schedules invocations onto invokers, seeing only plaintext
// metadata (names, limits, sizes, timing, the success/failure bit) and
// ciphertext. It never holds or needs a key: the function record it stores
// is signed by the KMS and verified by the trusted gateway and enclave
// runtime, not here.
//
// An invocation names the store revision of the entities the gateway
// sealed for; one that has changed since is refused (wire.CodeStale). The
// controller knows current revisions from a watch of the actions bucket
// and keeps the entities it read (revisions.go), so a warm invocation
// reads none from the store. A sequence's steps are offered to the invoker
// as one chain (sequence.go): the runtime runs the later steps itself when
// it has them loaded, and the controller files a component record for each
// step either way. A blocking invocation is answered while its complete
// records are written (storeAnswered); until then reads find them in
// Controller.answered. A blocking single action whose gateway confirms
// records before a 202 (wire.InvokeRequest.WaitMs) is sent without a
// reservation: its running record is stored only if it runs longer than
// wire.DeferReserveMs, else its complete record is written once as its
// first (invoke.go, actrec.Deferral).
//
// Concurrency (which lock guards what, and the lock order):
//
//   - Controller.mu guards started, stopping, stops and runCtx/cancelRun
//     while Start sets them. It is never
//     held while calling out (bus, JetStream) and never taken with
//     scheduler.mu held.
//   - scheduler.mu guards the invoker table (scheduler.invokers). It is a
//     leaf lock.
//   - revisions.mu guards the watched revisions and kept entities. It is
//     a leaf lock.
//
// Background activations (non-blocking invokes) are registered only through
// Controller.beginBackground, which adds them in Controller.wg so that
// Stop can wait for them; record writes after an answer are counted in
// Controller.writes, which Stop waits for after them.
//
// Sequences: an invocation with wire.InvokeRequest.Steps runs the chain
// step by step, each step's sealed output envelope being the next step's
// input. Every step gets a component activation record of its own (Cause:
// the sequence's activation id), and the sequence's record lists them.
// The controller cannot open, check or alter what flows between steps; the
// enclave runtime checks each step against the authenticated chain in the
// envelope header.
//
// Config.Interceptor is a test seam that models an untrusted controller: it
// sits between the controller and its invokers and may rewrite, replay,
// drop or answer any step. It is nil in production. It gives an attacker
// nothing: the controller is untrusted and its operator can change it at
// will, which is exactly the threat the attack suite plays with it.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Defaults.
const (
	DefaultHeartbeatTimeout = 5 * time.Second
	DefaultInvokerWait      = 3 * time.Second
	DefaultColdStartGrace   = 60 * time.Second
	DefaultStopGrace        = 10 * time.Second

	// storeTimeout bounds one JetStream operation of a handler.
	storeTimeout = 30 * time.Second
	// serveLimit is the number of requests of one subject handled at once.
	serveLimit = 256
)

// Config configures a controller.
type Config struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	Log  *slog.Logger
	// Replicas is the replica count of the JetStream buckets this service
	// creates (store.KV): 0 or 1 on a single server, 3 on a cluster.
	Replicas int
	// HeartbeatTimeout: an invoker is considered down after this long
	// without a heartbeat. Default 5 s.
	HeartbeatTimeout time.Duration
	// InvokerWait is how long an activation that finds no healthy invoker
	// waits for one to announce itself before it fails as no_invoker
	// (invokers heartbeat every second). Default 3 s; negative: no wait.
	InvokerWait time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ColdStartGrace is added to an action's time limit to bound the call to
	// its invoker (room for a cold start). Default 60 s.
	ColdStartGrace time.Duration
	// StopGrace bounds how long Stop lets running activations finish before
	// it cancels them. Default 10 s.
	StopGrace time.Duration
	// Interceptor sees every step before it reaches an invoker (see the
	// package comment).
	Interceptor Interceptor // nil in production
	// Retention is how long activation records are kept in namespaces
	// that set no age of their own (retention.go). Default
	// wire.DefaultRetentionSeconds (7 days); negative: records are kept
	// forever (and no namespace's settings are applied).
	Retention time.Duration
	// RetentionInterval is how often the retention sweeper runs; default
	// DefaultRetentionInterval. Negative: only Sweep calls sweep (tests).
	RetentionInterval time.Duration
}

// Dispatch describes one step the controller is about to send to an invoker.
type Dispatch struct {
	Request *wire.InvokeRequest // the invocation as received from the gateway
	Step    int                 // chain step index (0 for a single action)
	Run     *wire.RunRequest    // what an honest controller sends
	Invoker string              // where an honest controller sends it: the invoker the gateway sealed for
	// SendTo delivers a run request to another invoker (send delivers to
	// Invoker), for interceptors that play a controller sending a step
	// elsewhere.
	SendTo func(ctx context.Context, invoker string, run *wire.RunRequest) (*wire.RunResult, error)
}

// Interceptor sits between the controller and its invokers. It may send
// Run unchanged, rewrite it, send something else, several things, or
// nothing (then it returns a result of its own). send delivers a run
// request to the designated invoker (Dispatch.Invoker) and returns its
// answer; Dispatch.SendTo to any other.
//
// It is called once per step. An error of send is how the step's record
// reports a failed dispatch. The step's time limit bounds each send, not
// the interceptor.
type Interceptor func(ctx context.Context, d Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error)

// Controller serves the controller subjects of package wire.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	actions jetstream.KeyValue
	// activations holds each activation's first record, written once when
	// it starts (running, or complete for records made whole, such as a
	// trigger's), in start order; records holds the complete records of
	// those that started running. See activationlist.go.
	activations jetstream.KeyValue
	records     jetstream.KeyValue
	packages    jetstream.KeyValue
	triggers    jetstream.KeyValue
	rules       jetstream.KeyValue
	code        jetstream.ObjectStore
	sched       *scheduler
	metrics     *metrics
	revs        *revisions // of the actions bucket, while started

	// runCtx is the lifetime of activations (blocking and background). It
	// is derived from Start's context and cancelled by Stop after StopGrace.
	runCtx    context.Context
	cancelRun context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopping bool
	stops    []func() // heartbeat subscription and subject servers

	wg sync.WaitGroup // background activations

	// answered holds the complete records of blocking activations that
	// were answered and are being written (key → *wire.Activation), so
	// that reads see them at once; writes counts those writes for Stop.
	answered sync.Map
	writes   sync.WaitGroup

	// beforeStore, if set (by tests), is called with each complete record
	// before it is written.
	beforeStore atomic.Pointer[func(rec *wire.Activation)]
}

// New opens the controller's buckets. Start begins serving.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Conn == nil || cfg.JS == nil {
		return nil, errors.New("controller: Conn and JS are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.InvokerWait == 0 {
		cfg.InvokerWait = DefaultInvokerWait
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ColdStartGrace <= 0 {
		cfg.ColdStartGrace = DefaultColdStartGrace
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.Retention == 0 {
		cfg.Retention = wire.DefaultRetentionSeconds * time.Second
	}
	if cfg.RetentionInterval == 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	actions, err := store.KV(ctx, cfg.JS, store.BucketActions, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	activations, err := store.KV(ctx, cfg.JS, store.BucketActivations, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	records, err := store.KV(ctx, cfg.JS, store.BucketRecords, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	var entities [3]jetstream.KeyValue
	for i, bucket := range []string{bucketPackages, bucketTriggers, bucketRules} {
		if entities[i], err = store.KV(ctx, cfg.JS, bucket, cfg.Replicas); err != nil {
			return nil, err
		}
	}
	code, err := store.Objects(ctx, cfg.JS, store.ObjectsCode, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:         cfg,
		log:         cfg.Log,
		actions:     actions,
		activations: activations,
		records:     records,
		packages:    entities[0],
		triggers:    entities[1],
		rules:       entities[2],
		code:        code,
		sched:       newScheduler(cfg.Now, cfg.HeartbeatTimeout),
		revs:        newRevisions(),
	}
	// Replaced by Start; lets handlers run (in tests) before Start.
	c.runCtx, c.cancelRun = context.WithCancel(context.WithoutCancel(ctx))
	c.metrics = newMetrics(c.sched.healthy)
	return c, nil
}

// Metrics returns the controller's metrics registry.
func (c *Controller) Metrics() *prometheus.Registry { return c.metrics.reg }

// Start serves every controller subject in queue group wire.QueueController
// and tracks invoker heartbeats. Cancelling ctx stops serving and cancels
// running activations; Stop does so gracefully.
func (c *Controller) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started || c.stopping {
		c.mu.Unlock()
		return errors.New("controller: already started")
	}
	c.started = true
	c.runCtx, c.cancelRun = context.WithCancel(ctx)
	c.mu.Unlock()

	var stops []func()
	undo := func() {
		for _, stop := range stops {
			stop()
		}
	}
	hbSub, err := c.cfg.Conn.Subscribe(wire.SubjectInvokerHeartbeat, func(m *nats.Msg) {
		c.heartbeat(m.Data)
	})
	if err != nil {
		return fmt.Errorf("controller: subscribe heartbeats: %w", err)
	}
	stops = append(stops, func() { _ = hbSub.Unsubscribe() })
	stopWatch, err := c.revs.Watch(ctx, c.actions)
	if err != nil {
		undo()
		return err
	}
	stops = append(stops, stopWatch)
	stops = append(stops, c.watchInvokers())
	if c.cfg.RetentionInterval > 0 && c.cfg.Retention > 0 {
		sctx, stopSweep := context.WithCancel(ctx)
		swept := make(chan struct{})
		go func() {
			defer close(swept)
			c.runRetention(sctx)
		}()
		stops = append(stops, func() { stopSweep(); <-swept })
	}
	handlers := []struct {
		subject string
		h       bus.Handler
	}{
		{wire.SubjectActionPut, c.instrument("action.put", c.handleActionPut)},
		{wire.SubjectActionGet, c.instrument("action.get", c.handleActionGet)},
		{wire.SubjectActionDelete, c.instrument("action.delete", c.handleActionDelete)},
		{wire.SubjectActionList, c.instrument("action.list", c.handleActionList)},
		{wire.SubjectInvoke, c.instrument("invoke", c.handleInvoke)},
		{wire.SubjectPrewarm, c.instrument("prewarm", c.handlePrewarm)},
		{wire.SubjectPlace, c.instrument("place", c.handlePlace)},
		{wire.SubjectActivationGet, c.instrument("activation.get", c.handleActivationGet)},
		{wire.SubjectActivationList, c.instrument("activation.list", c.handleActivationList)},
		{wire.SubjectActivationPut, c.instrument("activation.put", c.handleActivationPut)},
		{wire.SubjectPackagePut, c.instrument("package.put", c.handlePackagePut)},
		{wire.SubjectPackageGet, c.instrument("package.get", c.handlePackageGet)},
		{wire.SubjectPackageDelete, c.instrument("package.delete", c.handlePackageDelete)},
		{wire.SubjectPackageList, c.instrument("package.list", c.handlePackageList)},
		{wire.SubjectTriggerPut, c.instrument("trigger.put", c.handleTriggerPut)},
		{wire.SubjectTriggerGet, c.instrument("trigger.get", c.handleTriggerGet)},
		{wire.SubjectTriggerDelete, c.instrument("trigger.delete", c.handleTriggerDelete)},
		{wire.SubjectTriggerList, c.instrument("trigger.list", c.handleTriggerList)},
		{wire.SubjectRulePut, c.instrument("rule.put", c.handleRulePut)},
		{wire.SubjectRuleGet, c.instrument("rule.get", c.handleRuleGet)},
		{wire.SubjectRuleDelete, c.instrument("rule.delete", c.handleRuleDelete)},
		{wire.SubjectRuleList, c.instrument("rule.list", c.handleRuleList)},
		{wire.SubjectRuleStatus, c.instrument("rule.status", c.handleRuleStatus)},
	}
	for _, h := range handlers {
		stop, err := bus.Serve(ctx, c.cfg.Conn, c.log, h.subject, wire.QueueController, serveLimit, h.h)
		if err != nil {
			undo()
			return err
		}
		stops = append(stops, stop)
	}
	// Make sure the server has seen every subscription before callers are
	// told the controller is up.
	if err := c.cfg.Conn.Flush(); err != nil {
		undo()
		return fmt.Errorf("controller: flush subscriptions: %w", err)
	}
	c.mu.Lock()
	if c.stopping { // Stop ran concurrently
		c.mu.Unlock()
		undo()
		return errors.New("controller: stopped while starting")
	}
	c.stops = stops
	c.mu.Unlock()
	return nil
}

// Stop stops serving, lets running activations finish for at most
// StopGrace, cancels the rest and waits until their records are stored.
// It is safe to call more than once.
func (c *Controller) Stop() {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return
	}
	c.stopping = true
	stops := c.stops
	c.stops = nil
	c.mu.Unlock()

	grace := time.AfterFunc(c.cfg.StopGrace, c.cancelRun)
	defer grace.Stop()
	// Each stop waits for its in-flight handlers; blocking invokes run under
	// runCtx, so the grace timer bounds them too.
	var swg sync.WaitGroup
	for _, stop := range stops {
		swg.Go(stop)
	}
	swg.Wait()
	c.wg.Wait()
	c.writes.Wait()
	c.cancelRun()
}

// instrument counts the outcomes of h by wire error code.
func (c *Controller) instrument(op string, h bus.Handler) bus.Handler {
	return func(ctx context.Context, data []byte) (any, error) {
		v, err := h(ctx, data)
		code := "ok"
		if err != nil {
			code = wire.CodeInternal
			if we, ok := errors.AsType[*wire.Error](err); ok {
				code = we.Code
			}
		}
		c.metrics.requests.WithLabelValues(op, code).Inc()
		return v, err
	}
}

// beginBackground registers a background activation for Stop; the caller
// calls c.wg.Done when it ends. It reports false if the controller is
// stopping.
func (c *Controller) beginBackground() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return false
	}
	c.wg.Add(1)
	return true
}

func (c *Controller) now() time.Time { return c.cfg.Now() }

// ActionRevision returns the latest store revision of the action entity
// ns/name this controller has seen change (0 if none, or deleted). The
// store may be ahead by the time a change takes to reach the controller;
// tests that change the store behind the controller's back wait for it.
func (c *Controller) ActionRevision(ns, name string) uint64 {
	return c.revs.Latest(store.Key(ns, name))
}

// sweepInterval is how often the controller looks for invokers that
// stopped heart-beating (their calls in flight are then abandoned as lost).
const sweepInterval = 250 * time.Millisecond

// watchInvokers sweeps the scheduler until the returned stop is called.
func (c *Controller) watchInvokers() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(sweepInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, id := range c.sched.sweep() {
				c.log.Warn("invoker lost: its steps in flight are abandoned", "invoker", id)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// heartbeat records an invoker heartbeat.
func (c *Controller) heartbeat(data []byte) {
	var hb wire.Heartbeat
	if err := bus.Unmarshal(data, &hb); err != nil {
		c.log.Warn("malformed heartbeat", "size", len(data))
		return
	}
	if !c.sched.heartbeat(hb) {
		c.log.Warn("heartbeat refused", "invoker_id_len", len(hb.InvokerID))
		return
	}
	// Activations gateways sent the invoker directly (the warm path).
	d := c.sched.directDelta(hb.InvokerID, hb.Direct)
	for _, s := range []struct {
		status string
		n      uint64
	}{{wire.StatusSuccess, d.Success}, {wire.StatusApplicationError, d.ApplicationError},
		{wire.StatusDeveloperError, d.DeveloperError}, {wire.StatusInternalError, d.InternalError}} {
		if s.n > 0 {
			c.metrics.direct.WithLabelValues(s.status).Add(float64(s.n))
		}
	}
}

// storeCtx returns a context for persisting a record that must be written
// even when the activation was cancelled (but not for ever).
func (c *Controller) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.runCtx), storeTimeout)
}
