package invoker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/clemmys/clemmys/internal/ipc"
)

// JavaScript engines. A JavaScript function runs on an engine module
// (internal/jsengine, public code) that its sealed code names by SHA-256
// (package fncode): the runtime checks the engine it is given against that
// digest. The invoker keeps the engine files it was configured with
// (Config.Engines) and hands a runtime the one a function needs when the
// runtime's load reply asks for it (ipc.LoadReply.Engine), then loads the
// function again. With Config.PrecompileEngine, every spare runtime
// compiles the first engine as soon as it has started, so that the first
// JavaScript function of a namespace compiles nothing (the engine is
// public, so this binds a spare to nothing).

// maxEngineFileBytes bounds an engine file.
const maxEngineFileBytes = 32 << 20

// CodeEngineMissing is the error code of a function whose engine this
// invoker does not have.
const CodeEngineMissing = "engine_missing"

// engineFiles indexes the configured engine files by digest.
type engineFiles struct {
	paths map[[32]byte]string
	first [32]byte // the one spares compile ahead
}

// indexEngines reads and hashes the engine files.
func indexEngines(paths []string) (*engineFiles, error) {
	ef := &engineFiles{paths: map[[32]byte]string{}}
	for i, p := range paths {
		b, err := readEngine(p)
		if err != nil {
			return nil, err
		}
		d := sha256.Sum256(b)
		ef.paths[d] = p
		if i == 0 {
			ef.first = d
		}
	}
	return ef, nil
}

func readEngine(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("invoker: JavaScript engine: %w", err)
	}
	if st.Size() > maxEngineFileBytes {
		return nil, fmt.Errorf("invoker: JavaScript engine %s is larger than %d bytes", path, maxEngineFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("invoker: JavaScript engine: %w", err)
	}
	return b, nil
}

// engine returns the engine module with the digest.
func (iv *Invoker) engine(digest [32]byte) ([]byte, error) {
	missing := &ipc.Error{Code: CodeEngineMissing, Message: fmt.Sprintf(
		"the function's JavaScript engine (sha256 %s) is not installed on this invoker: deploy the function again", hex.EncodeToString(digest[:]))}
	if iv.engines == nil {
		return nil, missing
	}
	path, ok := iv.engines.paths[digest]
	if !ok {
		return nil, missing
	}
	b, err := readEngine(path)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(b) != digest {
		iv.log.Error("JavaScript engine file changed since the invoker started", "path", path)
		return nil, missing
	}
	return b, nil
}

// ensureEngine makes the runtime p hold the engine, once per runtime
// (concurrent callers share one load).
func (iv *Invoker) ensureEngine(ctx context.Context, p *runtimeProc, digest [32]byte) error {
	key := hex.EncodeToString(digest[:])
	for {
		p.mu.Lock()
		if p.engines == nil {
			p.engines = map[string]*loadState{}
		}
		st, ok := p.engines[key]
		if !ok {
			st = &loadState{done: make(chan struct{})}
			p.engines[key] = st
			p.mu.Unlock()
			st.err = iv.sendEngine(ctx, p, digest)
			close(st.done)
			return st.err
		}
		p.mu.Unlock()
		select {
		case <-st.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if st.err == nil {
			return nil
		}
		p.mu.Lock()
		if p.engines[key] == st {
			delete(p.engines, key) // the next caller tries again
		}
		p.mu.Unlock()
		return st.err
	}
}

func (iv *Invoker) sendEngine(ctx context.Context, p *runtimeProc, digest [32]byte) error {
	wasm, err := iv.engine(digest)
	if err != nil {
		return err
	}
	var rep ipc.EngineReply
	if err := p.call(ctx, ipc.OpEngine, &ipc.EngineRequest{Wasm: wasm}, &rep); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if string(rep.Digest) != string(digest[:]) {
		return fmt.Errorf("invoker: the runtime compiled another engine than the one sent")
	}
	iv.enginesSent.Add(1)
	iv.log.Info("JavaScript engine loaded", "engine", hex.EncodeToString(digest[:]), "compile_ms", rep.CompileMs,
		"runtime_pid", p.cmd.Process.Pid)
	return nil
}

// EnginesLoaded returns how many times a runtime of this invoker compiled
// a JavaScript engine it was sent (ahead, in a spare, or for a load).
func (iv *Invoker) EnginesLoaded() uint64 { return iv.enginesSent.Load() }

// precompile has a spare runtime compile the first engine in the
// background, if configured.
func (iv *Invoker) precompile(p *runtimeProc) {
	if !iv.cfg.PrecompileEngine || iv.engines == nil || len(iv.engines.paths) == 0 {
		return
	}
	iv.wg.Add(1)
	go func() {
		defer iv.wg.Done()
		// Not at once: the spare was started because one was taken, most
		// likely for a cold start running now, which the compile (seconds
		// of CPU on every core) would slow down. A load that needs the
		// engine meanwhile compiles it itself.
		select {
		case <-time.After(precompileDelay):
		case <-iv.runCtx.Done():
			return
		}
		if !p.alive() {
			return
		}
		ctx, cancel := context.WithTimeout(iv.runCtx, precompileTimeout)
		defer cancel()
		if err := iv.ensureEngine(ctx, p, iv.engines.first); err != nil && iv.runCtx.Err() == nil && p.alive() {
			iv.log.Warn("precompiling the JavaScript engine", "err", err)
		}
	}()
}

// precompileTimeout bounds an engine compile ahead of time.
const precompileTimeout = 2 * time.Minute

// precompileDelay is how long a new spare waits before it compiles the
// engine.
const precompileDelay = time.Second

// loadWithEngine sends a load and, if the runtime asks for the
// function's engine, the engine and the load again.
func (iv *Invoker) loadWithEngine(ctx context.Context, p *runtimeProc, req *ipc.LoadRequest) (*ipc.LoadReply, error) {
	var lr ipc.LoadReply
	if err := p.call(ctx, ipc.OpLoad, req, &lr); err != nil {
		return nil, err
	}
	if len(lr.Engine) == 0 {
		return &lr, nil
	}
	if len(lr.Engine) != sha256.Size {
		return nil, fmt.Errorf("invoker: the runtime asked for a malformed engine digest")
	}
	var digest [32]byte
	copy(digest[:], lr.Engine)
	if err := iv.ensureEngine(ctx, p, digest); err != nil {
		return nil, err
	}
	lr = ipc.LoadReply{}
	if err := p.call(ctx, ipc.OpLoad, req, &lr); err != nil {
		return nil, err
	}
	if len(lr.Engine) != 0 {
		return nil, fmt.Errorf("invoker: the runtime still lacks the engine it was given")
	}
	return &lr, nil
}
