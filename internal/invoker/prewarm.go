package invoker

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Prewarms (wire.Prewarm): the controller asks this invoker to load a
// function before its first invocation, after a deploy or while the first
// step of a sequence runs. The load is the one a step would do
// (ensureLoaded: key release to the attested runtime, code fetch,
// decryption, compilation), so a step arriving meanwhile waits for it
// rather than loading twice. The compiled module stays in the runtime's
// memory only. Prewarms are best effort: they are acknowledged when
// accepted, run in the background and their failures are only logged.

const (
	// maxPrewarmsPending bounds the accepted prewarms not yet done (they
	// come from the untrusted bus); more are refused as unavailable.
	maxPrewarmsPending = 64
	// prewarmLoads is how many prewarm loads run at once. One: a
	// compilation already uses every core (the sandbox compiles with
	// GOMAXPROCS workers), and prewarms should not crowd out the loads of
	// steps that are waiting.
	prewarmLoads = 1
	// prewarmTimeout bounds one prewarm, waiting for a load slot included.
	prewarmTimeout = 60 * time.Second
	// prewarmServeLimit bounds the prewarm requests handled at once (each
	// is answered at once).
	prewarmServeLimit = 16
	// maxFunctionIDLen bounds a function id from the bus.
	maxFunctionIDLen = 64
)

// Prewarmed returns how many prewarms ended with their function loaded
// (also when it was loaded already).
func (iv *Invoker) Prewarmed() uint64 { return iv.prewarmed.Load() }

func (iv *Invoker) handlePrewarm(_ context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.Prewarm](data)
	if err != nil {
		return nil, err
	}
	if req.Namespace == "" || len(req.FunctionID) == 0 || len(req.FunctionID) > maxFunctionIDLen {
		return nil, wire.Errorf(wire.CodeBadRequest, "incomplete prewarm request")
	}
	if iv.isLoaded(req.Namespace, req.FunctionID) {
		iv.prewarmed.Add(1)
		return &wire.PrewarmReply{InvokerID: iv.cfg.ID, Loaded: true}, nil
	}
	if iv.prewarmsPending.Add(1) > maxPrewarmsPending {
		iv.prewarmsPending.Add(-1)
		return nil, wire.Errorf(wire.CodeUnavailable, "too many prewarms pending")
	}
	// Handlers end before Stop waits for iv.wg (it stops serving first).
	iv.wg.Add(1)
	go func() {
		defer iv.wg.Done()
		defer iv.prewarmsPending.Add(-1)
		ctx, cancel := context.WithTimeout(iv.runCtx, prewarmTimeout)
		defer cancel()
		iv.prewarmInBackground(ctx, req)
	}()
	return &wire.PrewarmReply{InvokerID: iv.cfg.ID}, nil
}

// prewarmInBackground runs an accepted prewarm and logs its outcome.
func (iv *Invoker) prewarmInBackground(ctx context.Context, req *wire.Prewarm) {
	log := iv.log.With("namespace", req.Namespace, "action", req.Action, "function", hex.EncodeToString(req.FunctionID))
	select {
	case iv.prewarmSem <- struct{}{}:
		defer func() { <-iv.prewarmSem }()
	case <-ctx.Done():
		log.Warn("prewarm dropped: no load slot before its deadline")
		return
	}
	start := time.Now()
	cold, err := iv.prewarm(ctx, req.Namespace, req.FunctionID)
	if err != nil {
		// Not a step: nobody waits for the outcome. A step of the
		// function retries the load and reports why it fails.
		log.Warn("prewarm failed", "err", err)
		return
	}
	iv.prewarmed.Add(1)
	if cold {
		log.Info("function prewarmed", "ms", time.Since(start).Milliseconds())
	}
}

// prewarm makes sure fid is loaded in namespace's runtime (starting or
// taking one). It reports whether the function was not loaded yet.
func (iv *Invoker) prewarm(ctx context.Context, namespace string, fid []byte) (bool, error) {
	for attempt := 0; ; attempt++ {
		p, err := iv.runtime(namespace)
		if err != nil {
			return false, err
		}
		cold, err := iv.ensureLoaded(ctx, p, fid)
		if err != nil && attempt == 0 && errors.Is(err, errRuntimeGone) && ctx.Err() == nil {
			continue // the runtime died before or while loading: once more on a fresh one
		}
		return cold, err
	}
}
