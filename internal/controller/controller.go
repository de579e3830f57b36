// Package controller is clemmys' untrusted controller. It stores action
// entities, sealed code and activation records in JetStream and schedules
// invocations onto invokers, seeing only plaintext metadata (names, limits,
// sizes, timing, the success/failure bit) and ciphertext. It never holds or
// needs a key: the function record it stores is signed by the KMS and
// verified by the trusted gateway and enclave runtime, not here.
//
// Concurrency (which lock guards what, and the lock order):
//
//   - Controller.mu guards started, stopping, stops and hbSub. It is never
//     held while calling out (bus, JetStream) and never taken with
//     scheduler.mu held.
//   - scheduler.mu guards the invoker table (scheduler.invokers). It is a
//     leaf lock.
//
// Background activations (non-blocking invokes) are started only through
// Controller.goActivation, which registers them in Controller.wg so that
// Stop can wait for them.
package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
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
	// HeartbeatTimeout: an invoker is considered down after this long
	// without a heartbeat. Default 5 s.
	HeartbeatTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ColdStartGrace is added to an action's time limit to bound the call to
	// its invoker (room for a cold start). Default 60 s.
	ColdStartGrace time.Duration
	// StopGrace bounds how long Stop lets running activations finish before
	// it cancels them. Default 10 s.
	StopGrace time.Duration
}

// Controller serves the controller subjects of package wire.
type Controller struct {
	cfg         Config
	log         *slog.Logger
	actions     jetstream.KeyValue
	activations jetstream.KeyValue
	code        jetstream.ObjectStore
	sched       *scheduler
	metrics     *metrics

	// runCtx is the lifetime of activations (blocking and background). It
	// is derived from Start's context and cancelled by Stop after StopGrace.
	runCtx    context.Context
	cancelRun context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopping bool
	stops    []func()
	hbSub    *nats.Subscription

	wg sync.WaitGroup // background activations
}

// New opens the controller's buckets. Start begins serving.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Conn == nil || cfg.JS == nil {
		return nil, errors.New("controller: Conn and JS are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
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
	actions, err := store.KV(ctx, cfg.JS, store.BucketActions)
	if err != nil {
		return nil, err
	}
	activations, err := store.KV(ctx, cfg.JS, store.BucketActivations)
	if err != nil {
		return nil, err
	}
	code, err := store.Objects(ctx, cfg.JS, store.ObjectsCode)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:         cfg,
		log:         cfg.Log,
		actions:     actions,
		activations: activations,
		code:        code,
		sched:       newScheduler(cfg.Now, cfg.HeartbeatTimeout),
	}
	c.metrics = newMetrics(c.sched.healthy)
	return c, nil
}

// Metrics returns the controller's metrics registry.
func (c *Controller) Metrics() *prometheus.Registry { return c.metrics.reg }

// Start serves every controller subject in queue group wire.QueueController
// and tracks invoker heartbeats. Cancelling ctx stops serving and cancels
// running activations; Stop does so gracefully.
func (c *Controller) Start(ctx context.Context) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopping {
		return errors.New("controller: already started")
	}
	c.started = true
	c.runCtx, c.cancelRun = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			c.stopLocked()
		}
	}()
	c.hbSub, err = c.cfg.Conn.Subscribe(wire.SubjectInvokerHeartbeat, func(m *nats.Msg) {
		c.heartbeat(m.Data)
	})
	if err != nil {
		return err
	}
	handlers := []struct {
		subject string
		h       bus.Handler
	}{
		{wire.SubjectActionPut, c.handleActionPut},
		{wire.SubjectActionGet, c.handleActionGet},
		{wire.SubjectActionDelete, c.handleActionDelete},
		{wire.SubjectActionList, c.handleActionList},
		{wire.SubjectInvoke, c.handleInvoke},
		{wire.SubjectActivationGet, c.handleActivationGet},
		{wire.SubjectActivationList, c.handleActivationList},
	}
	for _, h := range handlers {
		stop, err := bus.Serve(ctx, c.cfg.Conn, c.log, h.subject, wire.QueueController, serveLimit, h.h)
		if err != nil {
			return err
		}
		c.stops = append(c.stops, stop)
	}
	// Make sure the server has seen every subscription before callers are
	// told the controller is up.
	return c.cfg.Conn.Flush()
}

// stopLocked undoes a failed Start; c.mu is held.
func (c *Controller) stopLocked() {
	if c.hbSub != nil {
		_ = c.hbSub.Unsubscribe()
	}
	for _, stop := range c.stops {
		stop()
	}
	c.stops = nil
	c.cancelRun()
	c.stopping = true
}

// Stop stops serving, lets running activations finish for at most
// StopGrace, cancels the rest and waits until their records are stored.
func (c *Controller) Stop() {
	c.mu.Lock()
	if c.stopping || !c.started {
		c.stopping = true
		c.mu.Unlock()
		return
	}
	c.stopping = true
	stops, sub := c.stops, c.hbSub
	c.stops = nil
	c.mu.Unlock()

	if sub != nil {
		_ = sub.Unsubscribe()
	}
	grace := time.AfterFunc(c.cfg.StopGrace, c.cancelRun)
	defer grace.Stop()
	// Each stop waits for its in-flight handlers (blocking invokes run under
	// runCtx, so they are bounded by the grace timer too).
	var swg sync.WaitGroup
	for _, stop := range stops {
		swg.Go(stop)
	}
	swg.Wait()
	c.wg.Wait()
	c.cancelRun()
}

// goActivation runs f in the background, tracked for Stop. It reports false
// if the controller is stopping.
func (c *Controller) goActivation(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return false
	}
	c.wg.Go(f)
	return true
}

func (c *Controller) now() time.Time { return c.cfg.Now() }

// heartbeat records an invoker heartbeat.
func (c *Controller) heartbeat(data []byte) {
	var hb wire.Heartbeat
	if err := bus.Unmarshal(data, &hb); err != nil {
		c.log.Warn("malformed heartbeat", "size", len(data))
		return
	}
	if !c.sched.heartbeat(hb) {
		c.log.Warn("heartbeat refused", "invoker_id_len", len(hb.InvokerID))
	}
}

// storeCtx returns a context for persisting a record that must be written
// even when the activation was cancelled (but not for ever).
func (c *Controller) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.runCtx), storeTimeout)
}
