// Package invoker is the untrusted host side of execution: it takes steps
// from the controller on its NATS subject, keeps one enclave runtime child
// process per namespace (restarting crashed ones), proxies the runtimes'
// key-release traffic to the KMS, fetches sealed code from the store, limits
// concurrency and publishes heartbeats.
//
// Cold starts are cut two ways (DESIGN §4). A pool of spare runtimes
// (Config.PoolSize), started and past their hello but bound to no namespace
// yet, gives a namespace without a runtime one at once; the runtime binds
// the namespace when it loads its first function, and the pool is refilled
// in the background (pool.go). Prewarms (wire.Prewarm, prewarm.go) load a
// function — key release, code fetch, compilation — before its first
// invocation.
//
// A step may name the later steps of its chain (wire.RunRequest.Then): the
// invoker passes on those its runtime has loaded, and the runtime runs them
// one after the other on its own sealed outputs (wire.RunResult.More). A
// runtime keeps a bounded number of functions loaded; a step refused as not
// loaded is loaded again and resent. At Start the invoker starts one
// runtime and refuses one of another frame protocol version (ipc.Version).
//
// It never holds a key: everything it moves is sealed for the runtime, the
// next step or the owner.
//
// Locks: Invoker.mu guards runtimes, starting, pool and closed; it may be
// held while taking a runtimeProc's mu (never the other way round).
// Goroutines other than request handlers (heartbeats, the pool filler,
// background prewarms) are counted in Invoker.wg, which Stop waits for.
package invoker

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/wire"
)

// Config configures an invoker.
type Config struct {
	ID          string // unique invoker id, e.g. "invoker0"
	Conn        *nats.Conn
	JS          jetstream.JetStream
	EnclavePath string   // the clemmys-enclave binary
	EnclaveArgs []string // e.g. --tee sim --sim-dir DIR
	// Capacity is the number of activations run at once; more wait for a
	// slot until their deadline. Default 16.
	Capacity          int
	HeartbeatInterval time.Duration // default 1 s
	// StopGrace is how long Stop lets running steps finish before it
	// abandons them. Default 10 s.
	StopGrace time.Duration
	// PoolSize is the number of spare enclave runtimes kept started (past
	// their hello, bound to no namespace) so that a namespace's first step
	// does not wait for a process to start. Default 2; negative: no pool.
	PoolSize int
	Log      *slog.Logger

	// Engines are the JavaScript engine modules (files) the runtimes may
	// need: a JavaScript function runs on the engine it was deployed with
	// (engine.go). With PrecompileEngine, every spare runtime compiles the
	// first one ahead.
	Engines          []string
	PrecompileEngine bool
}

// DefaultPoolSize is Config.PoolSize's default.
const DefaultPoolSize = 2

// Invoker runs steps in enclave runtimes.
type Invoker struct {
	cfg     Config
	metrics *metrics
	codeMu  sync.Mutex
	code    jetstream.ObjectStore // opened on first use (the controller creates it)
	// recFirst and recComplete are the activations and records buckets,
	// for the records of direct steps (direct.go); opened on first use.
	recMu       sync.Mutex
	recFirst    jetstream.KeyValue
	recComplete jetstream.KeyValue
	// directCounts counts the direct steps answered, by status:
	// success, application, developer, internal error (Heartbeat.Direct).
	directCounts [4]atomic.Uint64
	sem          chan struct{}
	log          *slog.Logger

	// received counts the run requests held, by activation id (holding).
	recvMu   sync.Mutex
	received map[string]int

	// engines are the JavaScript engine files by digest (engine.go).
	engines *engineFiles
	// enginesSent counts engines its runtimes compiled.
	enginesSent atomic.Uint64

	// executions counts steps whose guest a runtime started (every check
	// passed); refused steps do not count.
	executions atomic.Uint64
	// prewarmed counts prewarms that ended with the function loaded.
	prewarmed atomic.Uint64
	// prewarmsPending counts accepted prewarms not yet done.
	prewarmsPending atomic.Int64
	// prewarmSem bounds the prewarm loads running at once.
	prewarmSem chan struct{}
	// poolWake (buffered 1) asks the pool filler to check the pool.
	poolWake chan struct{}

	mu       sync.Mutex
	runtimes map[string]*runtimeProc // by namespace
	starting map[string]chan struct{}
	pool     []*runtimeProc // spare runtimes, bound to no namespace, oldest first
	closed   bool

	// runCtx bounds every step; Stop cancels it once StopGrace is over.
	runCtx    context.Context
	cancelRun context.CancelFunc
	stopServe func()
	stopBeat  chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

// New creates an invoker. Start begins taking work.
func New(ctx context.Context, cfg Config) (*Invoker, error) {
	if cfg.ID == "" || cfg.Conn == nil || cfg.JS == nil || cfg.EnclavePath == "" {
		return nil, errors.New("invoker: ID, Conn, JS and EnclavePath are required")
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 16
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	engines, err := indexEngines(cfg.Engines)
	if err != nil {
		return nil, err
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	iv := &Invoker{
		runCtx:     runCtx,
		cancelRun:  cancelRun,
		cfg:        cfg,
		engines:    engines,
		sem:        make(chan struct{}, cfg.Capacity),
		received:   map[string]int{},
		log:        cfg.Log.With("invoker", cfg.ID),
		runtimes:   map[string]*runtimeProc{},
		starting:   map[string]chan struct{}{},
		stopBeat:   make(chan struct{}),
		prewarmSem: make(chan struct{}, prewarmLoads),
		poolWake:   make(chan struct{}, 1),
	}
	iv.metrics = iv.newMetrics()
	return iv, nil
}

// Start subscribes to the invoker's run and prewarm subjects, starts
// heartbeats and starts filling the pool of spare runtimes.
func (iv *Invoker) Start(ctx context.Context) error {
	stopRun, err := bus.Serve(ctx, iv.cfg.Conn, iv.log, wire.SubjectInvokerRun(iv.cfg.ID), "", runServeLimit(iv.cfg.Capacity), iv.handleRun)
	if err != nil {
		return err
	}
	stopPrewarm, err := bus.Serve(ctx, iv.cfg.Conn, iv.log, wire.SubjectInvokerPrewarm(iv.cfg.ID), "", prewarmServeLimit, iv.handlePrewarm)
	if err != nil {
		stopRun()
		return err
	}
	stopPlace, err := bus.Serve(ctx, iv.cfg.Conn, iv.log, wire.SubjectInvokerPlace(iv.cfg.ID), "", prewarmServeLimit, iv.handlePlace)
	if err != nil {
		stopRun()
		stopPrewarm()
		return err
	}
	stopDirect, err := bus.Serve(ctx, iv.cfg.Conn, iv.log, wire.SubjectInvokerDirect(iv.cfg.ID), "", runServeLimit(iv.cfg.Capacity), iv.handleDirect)
	if err != nil {
		stopRun()
		stopPrewarm()
		stopPlace()
		return err
	}
	iv.stopServe = func() {
		var wg sync.WaitGroup
		wg.Go(stopPrewarm)
		wg.Go(stopPlace)
		wg.Go(stopDirect)
		stopRun()
		wg.Wait()
	}
	// One runtime now, so that a missing, broken or mismatched runtime
	// binary fails Start with its reason rather than every activation.
	p, err := iv.startProc("")
	if err != nil {
		iv.stopServe()
		return err
	}
	if iv.cfg.PoolSize <= 0 || !iv.addSpare(p) {
		p.stop(time.Second)
	} else {
		iv.precompile(p)
	}
	// The first heartbeat is on the server when Start returns, so a
	// controller already running counts this invoker at once.
	iv.beat()
	if err := iv.cfg.Conn.Flush(); err != nil {
		iv.log.Warn("heartbeat", "err", err)
	}
	iv.wg.Add(1)
	go iv.heartbeat()
	if iv.cfg.PoolSize > 0 {
		iv.wg.Add(1)
		go iv.fillPool()
	}
	return nil
}

// ErrRuntimeVersion: the runtime binary speaks another frame protocol
// version than this invoker (an old clemmys-enclave left next to a new
// clemmys, or the reverse).
var ErrRuntimeVersion = errors.New("invoker: enclave runtime of another version")

// Executions returns how many steps this invoker's runtimes executed (all
// envelope checks passed and the guest started). Refused steps are not
// counted: the attack suite uses it as its "nothing ran" side channel.
func (iv *Invoker) Executions() uint64 { return iv.executions.Load() }

// Stop stops taking work, waits up to StopGrace for running steps (then
// abandons them and any prewarm) and stops the runtimes, spare ones
// included, killing those that do not exit. It is safe to call more than
// once.
func (iv *Invoker) Stop() {
	iv.stopOnce.Do(iv.stop)
}

func (iv *Invoker) stop() {
	close(iv.stopBeat)
	// Runtimes get time to finish what they run; after abandoned steps
	// nobody waits for their results.
	grace := 5 * time.Second
	if iv.stopServe != nil {
		served := make(chan struct{})
		go func() {
			iv.stopServe()
			close(served)
		}()
		select {
		case <-served:
		case <-time.After(iv.cfg.StopGrace):
			iv.log.Warn("abandoning running steps", "grace", iv.cfg.StopGrace)
			iv.cancelRun()
			<-served
			grace = time.Second
		}
	}
	iv.cancelRun()
	iv.wg.Wait()
	iv.mu.Lock()
	iv.closed = true
	rts := slices.Collect(maps.Values(iv.runtimes))
	rts = append(rts, iv.pool...)
	iv.runtimes = map[string]*runtimeProc{}
	iv.pool = nil
	iv.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(grace)
		}()
	}
	wg.Wait()
}

func (iv *Invoker) heartbeat() {
	defer iv.wg.Done()
	t := time.NewTicker(iv.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-iv.stopBeat:
			return
		case <-t.C:
		}
		iv.beat()
	}
}

// beat publishes one heartbeat.
func (iv *Invoker) beat() {
	hb := wire.Heartbeat{InvokerID: iv.cfg.ID, Capacity: iv.cfg.Capacity, InFlight: len(iv.sem), Time: time.Now().UnixMilli(),
		Runtimes: iv.runtimeInfos()}
	hb.Received, hb.ReportsReceived = iv.receivedIDs()
	hb.Direct = wire.DirectCounts{Success: iv.directCounts[0].Load(), ApplicationError: iv.directCounts[1].Load(),
		DeveloperError: iv.directCounts[2].Load(), InternalError: iv.directCounts[3].Load()}
	if b, err := bus.Marshal(hb); err == nil {
		if err := iv.cfg.Conn.Publish(wire.SubjectInvokerHeartbeat, b); err != nil {
			iv.log.Warn("heartbeat", "err", err)
		}
	}
}

func (iv *Invoker) handleRun(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.RunRequest](data)
	if err != nil {
		return nil, err
	}
	if err := checkRun(req); err != nil {
		return nil, err
	}
	// The step may wait for a slot, load the function and run: bound it by
	// the action's time limit plus room for a cold start. It is bound to
	// the invoker's lifetime rather than the subscription's, so that Stop
	// lets running steps finish (within StopGrace) instead of dropping
	// their results.
	ctx, cancel := context.WithTimeout(iv.runCtx, time.Duration(req.TimeoutMs)*time.Millisecond+60*time.Second)
	defer cancel()
	defer iv.holding(req.ActivationID)()
	return iv.Run(ctx, req), nil
}

// holding records that the run request of activation id is held (from
// its receipt until its answer), for the heartbeats' Received; the caller
// calls the returned func when it answers.
func (iv *Invoker) holding(id string) func() {
	iv.recvMu.Lock()
	iv.received[id]++
	iv.recvMu.Unlock()
	return func() {
		iv.recvMu.Lock()
		if iv.received[id]--; iv.received[id] <= 0 {
			delete(iv.received, id)
		}
		iv.recvMu.Unlock()
	}
}

// receivedIDs returns the activation ids of the run requests held now and
// whether they are all it was sent: not when the run subscription is
// saturated (requests then wait unseen in the bus client) or there are
// more than a heartbeat carries.
func (iv *Invoker) receivedIDs() ([]string, bool) {
	iv.recvMu.Lock()
	defer iv.recvMu.Unlock()
	n := 0
	for _, c := range iv.received {
		n += c
	}
	if n >= runServeLimit(iv.cfg.Capacity) || len(iv.received) > wire.MaxHeartbeatReceived {
		return nil, false
	}
	ids := make([]string, 0, len(iv.received))
	for id := range iv.received {
		ids = append(ids, id)
	}
	return ids, true
}

// runServeLimit is how many run requests are handled at once (those
// beyond wait for a slot in the subscription).
func runServeLimit(capacity int) int { return 4 * capacity }

// Run runs one step and reports its outcome; platform failures become
// internal-error results with a safe message.
func (iv *Invoker) Run(ctx context.Context, req *wire.RunRequest) *wire.RunResult {
	start := time.Now()
	fail := func(code, msg string) *wire.RunResult {
		return &wire.RunResult{Status: wire.StatusInternalError, ErrorCode: code, ErrorMessage: msg,
			Start: start.UnixMilli(), End: time.Now().UnixMilli()}
	}
	select {
	case iv.sem <- struct{}{}:
	default:
		iv.metrics.waiting.Inc()
		select {
		case iv.sem <- struct{}{}:
			iv.metrics.waiting.Dec()
		case <-ctx.Done():
			iv.metrics.waiting.Dec()
			return fail("overloaded", "no invoker capacity before the deadline")
		}
	}
	defer func() { <-iv.sem }()
	res := iv.run(ctx, req, start, fail)
	iv.metrics.steps.WithLabelValues(res.Status).Inc()
	// One line per activation step, ids and outcome only (never data);
	// its arguments cost allocations (hex, boxing), so only when logged.
	if iv.log.Enabled(ctx, slog.LevelDebug) {
		iv.log.Debug("activation", "activation", req.ActivationID, "namespace", req.Namespace,
			"function", hex.EncodeToString(req.FunctionID), "chained", len(res.More), "status", res.Status,
			"error_code", res.ErrorCode, "init_ms", res.InitMs, "duration_ms", res.End-res.Start)
	}
	return res
}

func (iv *Invoker) run(ctx context.Context, req *wire.RunRequest, start time.Time, fail func(code, msg string) *wire.RunResult) *wire.RunResult {
	// A runtime found dead before the step reached it (it crashed between
	// two activations) is restarted and the step tried once more: it never
	// ran. A runtime that dies while the step runs is not retried, since
	// the step may have had effects.
	for attempt := 0; ; attempt++ {
		retry := attempt == 0 && ctx.Err() == nil
		p, err := iv.runtime(req.Namespace)
		if err != nil {
			iv.log.Error("start runtime", "namespace", req.Namespace, "err", err)
			return fail("runtime_start", "the enclave runtime could not be started")
		}
		if !bytes.Equal(p.id, req.Runtime) {
			// The envelope designates another runtime (one this invoker
			// replaced, or never had): it would refuse it. Nothing ran.
			return fail(wire.CodeMisplaced, "the step designates a runtime this invoker no longer runs")
		}
		loadStart := time.Now()
		cold, err := iv.ensureLoaded(ctx, p, req.FunctionID)
		if err != nil {
			if retry && errors.Is(err, errRuntimeGone) {
				iv.log.Warn("enclave runtime exited while loading; restarting it", "namespace", req.Namespace, "activation", req.ActivationID)
				continue
			}
			return iv.loadFailure(start, req, err)
		}
		// The init time is what this step waited for its function to be
		// loaded, by itself or by a load in progress (a prewarm, another
		// step): zero if it was loaded already.
		var initMs int64
		if cold {
			initMs = time.Since(loadStart).Milliseconds()
		}
		runStart := time.Now()
		var rep ipc.RunReply
		err = p.call(ctx, ipc.OpRun, &ipc.RunRequest{FunctionID: req.FunctionID, Envelope: req.Envelope,
			Then: p.loadedPrefix(req.Then)}, &rep)
		if err != nil {
			if retry && errors.Is(err, errNotSent) {
				iv.log.Warn("enclave runtime gone before the step reached it; restarting it", "namespace", req.Namespace, "activation", req.ActivationID)
				continue
			}
			if errors.Is(err, errRuntimeGone) {
				return fail("runtime_crashed", "the enclave runtime exited during the activation")
			}
			if ctx.Err() != nil {
				return fail("timeout", "the activation did not finish before its deadline")
			}
			iv.log.Error("run", "activation", req.ActivationID, "err", err)
			return fail("invoker_failed", "the step could not be run")
		}
		if rep.ErrorCode == ipc.CodeNotLoaded && !rep.Executed && attempt < maxReloads && ctx.Err() == nil {
			// The runtime unloaded the function (it keeps a bounded
			// number); nothing ran: load it again and resend.
			p.forget(req.FunctionID)
			iv.log.Info("function unloaded by its runtime; loading it again", "namespace", req.Namespace, "activation", req.ActivationID)
			continue
		}
		if rep.Recycle {
			iv.recycle(p)
		}
		res := iv.result(&rep)
		res.Start, res.End, res.InitMs = runStart.UnixMilli(), time.Now().UnixMilli(), initMs
		if len(rep.More) > 0 {
			// Chained steps: the runtime timed each, the first included.
			res.Start, res.End = max(rep.Start, res.Start), min(max(rep.End, rep.Start), res.End)
			res.More = make([]wire.RunResult, len(rep.More))
			for k := range rep.More {
				res.More[k] = *iv.result(&rep.More[k])
				res.More[k].Start, res.More[k].End = rep.More[k].Start, rep.More[k].End
			}
		}
		return res
	}
}

// result converts a runtime's reply of one step (its own fields, not
// More) and counts the execution.
func (iv *Invoker) result(rep *ipc.RunReply) *wire.RunResult {
	if rep.Executed {
		iv.executions.Add(1)
	}
	return &wire.RunResult{
		Status: rep.Status, Envelope: rep.Envelope, Logs: rep.Logs, Receipt: rep.Receipt, SealMicros: rep.SealMicros,

		ErrorCode: rep.ErrorCode, ErrorMessage: rep.ErrorMessage, Executed: rep.Executed,
	}
}

// maxThen bounds the chain steps one run request may carry.
const maxThen = 63

// loadedPrefix returns the longest prefix of fids whose functions are
// loaded in p: the steps the runtime can run after the first one without
// waiting for a load (the invoker's caller sends the others alone, which
// loads them).
func (p *runtimeProc) loadedPrefix(fids [][]byte) [][]byte {
	if len(fids) > maxThen {
		fids = fids[:maxThen]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, fid := range fids {
		if !p.loaded[hex.EncodeToString(fid)].succeeded() {
			return fids[:i]
		}
	}
	return fids
}

func (iv *Invoker) loadFailure(start time.Time, req *wire.RunRequest, err error) *wire.RunResult {
	res := &wire.RunResult{Status: wire.StatusInternalError, Start: start.UnixMilli(), End: time.Now().UnixMilli()}
	var we *wire.Error
	var ie *ipc.Error
	switch {
	case errors.As(err, &we) && (we.Code == wire.CodeUnavailable || we.Code == wire.CodeInternal):
		// The KMS is down or failed: not a refusal.
		iv.log.Error("load", "activation", req.ActivationID, "err", err)
		res.ErrorCode, res.ErrorMessage = "kms_unavailable", "the key management service could not release the function's keys"
	case errors.As(err, &we):
		// A KMS refusal (policy, attestation): its message is meant for
		// operators and owners.
		res.ErrorCode, res.ErrorMessage = we.Code, "key release refused: "+we.Message
	case errors.As(err, &ie):
		res.ErrorCode, res.ErrorMessage = ie.Code, "loading the function failed: "+ie.Message
		if ie.Code == "invalid_module" {
			res.Status = wire.StatusDeveloperError
		}
	case errors.Is(err, jetstream.ErrObjectNotFound):
		res.ErrorCode, res.ErrorMessage = "code_missing", "the function version's code is no longer available"
	default:
		iv.log.Error("load", "activation", req.ActivationID, "err", err)
		res.ErrorCode, res.ErrorMessage = "load_failed", "loading the function failed"
	}
	return res
}

// runtime returns the namespace's runtime: the running one, else a spare
// from the pool (which it binds to the namespace), else a new one.
func (iv *Invoker) runtime(namespace string) (*runtimeProc, error) {
	for {
		iv.mu.Lock()
		if iv.closed {
			iv.mu.Unlock()
			return nil, errors.New("invoker: stopped")
		}
		if p := iv.runtimes[namespace]; p != nil && p.alive() {
			iv.mu.Unlock()
			return p, nil
		}
		if wait, ok := iv.starting[namespace]; ok {
			iv.mu.Unlock()
			<-wait
			continue
		}
		if p := iv.takeSpareLocked(); p != nil {
			p.namespace = namespace
			iv.runtimes[namespace] = p
			iv.mu.Unlock()
			iv.wakePool()
			iv.log.Info("enclave runtime taken from the pool", "namespace", namespace, "runtime_pid", p.cmd.Process.Pid)
			return p, nil
		}
		ch := make(chan struct{})
		iv.starting[namespace] = ch
		iv.mu.Unlock()
		iv.wakePool() // the pool is empty

		p, err := iv.startProc(namespace)
		if err == nil {
			iv.log.Info("enclave runtime started", "namespace", namespace,
				"platform", p.hello.Platform, "measurement", hex.EncodeToString(p.hello.Measurement))
		}
		iv.mu.Lock()
		delete(iv.starting, namespace)
		closed := iv.closed
		if err == nil && !closed {
			iv.runtimes[namespace] = p
		}
		iv.mu.Unlock()
		close(ch)
		if err == nil && closed {
			// Stop ran meanwhile: do not leave the process behind.
			p.stop(time.Second)
			return nil, errors.New("invoker: stopped")
		}
		return p, err
	}
}

// startProc starts a runtime process and waits for its hello.
func (iv *Invoker) startProc(namespace string) (*runtimeProc, error) {
	manifest := iv.readManifest()
	p, err := startRuntime(iv.cfg.EnclavePath, iv.cfg.EnclaveArgs, namespace, iv.log)
	if err != nil {
		return nil, err
	}
	p.manifest = manifest
	var h ipc.Hello
	ctx, cancel := context.WithTimeout(iv.runCtx, helloTimeout)
	err = p.call(ctx, ipc.OpHello, struct{}{}, &h)
	cancel()
	if err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("invoker: enclave runtime hello: %w", err)
	}
	if h.Version != ipc.Version {
		p.stop(time.Second)
		return nil, fmt.Errorf("%w: %s speaks frame protocol version %d, this invoker %d: use the clemmys-enclave built from the same source",
			ErrRuntimeVersion, iv.cfg.EnclavePath, h.Version, ipc.Version)
	}
	p.hello = &h
	p.id = envelope.RuntimeID(h.EphemeralKey)
	return p, nil
}

// helloTimeout bounds a new runtime's hello.
const helloTimeout = 10 * time.Second

// ensureLoaded loads the function into the runtime once: KMS nonce →
// runtime evidence → KMS release (sealed to the runtime) → sealed code →
// load. Concurrent callers for one function share one load. It reports
// whether the function was not loaded yet when called (a cold start): this
// call loaded it or waited for a load in progress.
func (iv *Invoker) ensureLoaded(ctx context.Context, p *runtimeProc, fid []byte) (cold bool, err error) {
	key := hex.EncodeToString(fid)
	for {
		p.mu.Lock()
		st, ok := p.loaded[key]
		if !ok {
			st = &loadState{done: make(chan struct{})}
			p.loaded[key] = st
			p.mu.Unlock()
			t0 := time.Now()
			st.err = iv.load(ctx, p, fid)
			close(st.done)
			if st.err == nil {
				iv.metrics.loads.WithLabelValues("ok").Inc()
				iv.metrics.loadTime.Observe(time.Since(t0).Seconds())
			} else {
				iv.metrics.loads.WithLabelValues("failed").Inc()
			}
			return true, st.err
		}
		p.mu.Unlock()
		select {
		case <-st.done:
		default:
			cold = true
			select {
			case <-st.done:
			case <-ctx.Done():
				return cold, ctx.Err()
			}
		}
		if st.err == nil {
			return cold, nil
		}
		// A failed load (refused, or its caller gave up) is retried by
		// the next caller.
		cold = true
		p.mu.Lock()
		if p.loaded[key] == st {
			delete(p.loaded, key)
		}
		p.mu.Unlock()
	}
}

// maxReloads bounds how often one step reloads a function its runtime
// unloaded before it could run.
const maxReloads = 2

// forget drops the record that fid is loaded in p (a completed load only:
// one in progress is waited for by ensureLoaded).
func (p *runtimeProc) forget(fid []byte) {
	key := hex.EncodeToString(fid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.loaded[key]; ok && st.finished() {
		delete(p.loaded, key)
	}
}

// isLoaded reports whether fid is loaded in namespace's runtime.
func (iv *Invoker) isLoaded(namespace string, fid []byte) bool {
	iv.mu.Lock()
	p := iv.runtimes[namespace]
	iv.mu.Unlock()
	if p == nil || !p.alive() {
		return false
	}
	p.mu.Lock()
	st := p.loaded[hex.EncodeToString(fid)]
	p.mu.Unlock()
	return st.succeeded()
}

func (iv *Invoker) load(ctx context.Context, p *runtimeProc, fid []byte) error {
	var nonce wire.Nonce
	if err := bus.Call(ctx, iv.cfg.Conn, wire.SubjectKMSNonce, struct{}{}, &nonce); err != nil {
		return fmt.Errorf("kms nonce: %w", err)
	}
	if !wire.ValidReplica(nonce.Replica) {
		return errors.New("kms nonce: no valid replica id")
	}
	var att ipc.AttestReply
	if err := p.call(ctx, ipc.OpAttest, &ipc.AttestRequest{Nonce: nonce.Nonce}, &att); err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	var rel wire.ReleaseReply
	if err := bus.Call(ctx, iv.cfg.Conn, wire.SubjectKMSReleaseAt(nonce.Replica), &wire.ReleaseRequest{
		Nonce: nonce.Nonce, EphemeralKey: att.EphemeralKey, Evidence: att.Evidence, FunctionID: fid,
		Manifest: p.manifest, ReceiptKey: att.ReceiptKey,
	}, &rel); err != nil {
		return fmt.Errorf("kms release: %w", err)
	}
	objs, err := iv.codeStore(ctx)
	if err != nil {
		return fmt.Errorf("fetch code: %w", err)
	}
	obj, err := fetchCode(ctx, objs, hex.EncodeToString(fid))
	if err != nil {
		return fmt.Errorf("fetch code: %w", err)
	}
	lr, err := iv.loadWithEngine(ctx, p, &ipc.LoadRequest{
		FunctionID: fid, Nonce: nonce.Nonce, SealedBundle: rel.Sealed, SealedCode: obj, BundleSig: rel.Sig,
		Cert: rel.Cert,
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	iv.log.Info("function loaded", "function", hex.EncodeToString(fid), "compile_ms", lr.CompileMs)
	return nil
}
