// Package enclave is the enclave runtime: the trusted code that attests to
// the KMS, receives function keys sealed to its ephemeral key, decrypts and
// compiles function code, checks every envelope (DESIGN §3.3) and runs the
// function in the wasm sandbox, sealing its result and logs.
//
// It runs inside cmd/clemmys-enclave, a child process of the untrusted
// invoker, and speaks package ipc on stdin/stdout. It is the trusted
// computing base: it imports only the standard library, wazero (through
// sandbox), CBOR and clemmys' leaf packages (a test enforces this).
//
// One runtime serves one namespace: the first function it loads binds it,
// and it refuses functions of any other namespace, so a sandbox escape
// reaches only the tenant's own functions. It keeps at most
// Config.MaxFunctions loaded (least recently used out), and runs a chain's
// later steps itself when asked (RunChain), each with every check.
package enclave

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/sandbox"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// Error codes of refusals, beside envelope.Code's.
const (
	CodeNotLoaded   = ipc.CodeNotLoaded
	CodeBundle      = "bundle"
	CodeNamespace   = "namespace"
	CodeCode        = "code"
	CodeInvalidWasm = "invalid_module"
	CodeBadRequest  = "bad_request"
	CodeReplayFull  = "replay_cache_full"
	// CodeAfterFailure refuses a later step of a sequence whose input is
	// the failed output of the previous step.
	CodeAfterFailure = "after_failure"

	CodeInternal = "internal"
)

// msgInvalidModule is the whole plaintext report of a module the runtime
// cannot compile (see Load).
const msgInvalidModule = "the function's code is not a module this runtime can run (its owner sees why when deploying it)"

// Config configures a runtime.
type Config struct {
	Platform    string       // TEE platform name, e.g. "sim"
	Measurement []byte       // this runtime's measurement
	Attester    tee.Attester // produces evidence for key release
	// KMSKeys are the KMS identity public keys (ed25519) the runtime
	// accepts key bundles from (at least one): a bundle whose release
	// reply the pinned KMS did not sign is refused, so a rogue KMS cannot
	// feed the runtime keys or code. On real TEEs the pin must be part of
	// what is measured (the kernel command line or the image), see
	// docs/threat-model.md.
	KMSKeys []ed25519.PublicKey
	Log     *slog.Logger // runtime diagnostics only: never payloads or keys
	Now     func() time.Time
	// MaxReplayEntries bounds the replay cache; when it is full of
	// unexpired entries new steps are refused (fail closed). Default 1<<20.
	MaxReplayEntries int
	// MaxOutputBytes caps a function's result. Default 1 MiB.
	MaxOutputBytes int
	// MaxFunctions bounds the functions loaded at once (their compiled
	// code stays in memory: tens of MB for a Go module). Loading one more
	// unloads the least recently used; a step for an unloaded function is
	// refused with CodeNotLoaded and the invoker loads it again. Default
	// DefaultMaxFunctions.
	MaxFunctions int
	// MaxSessions bounds the cache of opened capsule sessions (format
	// version 2: one HPKE decapsulation per gateway session, not per step).
	// Default envelope.DefaultOpenCacheSize.
	MaxSessions int
	// Sandbox tunes the function instances: warm instances kept per
	// function and in all, their idle timeout, pre-initialized instances
	// of fresh-instance functions. Zero fields take sandbox's defaults.
	Sandbox sandbox.Config
}

// DefaultMaxFunctions is Config.MaxFunctions' default.
const DefaultMaxFunctions = 64

type function struct {
	id     envelope.FunctionIdentity
	record wire.FunctionRecord
	module *sandbox.Module
	cert   []byte       // CBOR wire.SignedCert of the receipt key, for this namespace
	used   atomic.Int64 // unix ns of the last load or run
	active atomic.Int32 // steps running: not unloaded meanwhile
}

// Runtime is an enclave runtime.
type Runtime struct {
	cfg    Config
	engine *sandbox.Engine
	eph    hpke.PrivateKey // ephemeral key: key bundles are sealed to it
	// receiptPriv signs the receipts of the steps the runtime runs; the
	// evidence binds receiptPub and the KMS certifies it (receipt.go).
	receiptPriv ed25519.PrivateKey
	receiptPub  ed25519.PublicKey
	signer      receiptSigner
	replay      *replayCache
	// id is this runtime's id (envelope.RuntimeID of eph): the only steps
	// it runs are those designated to it.
	id []byte
	// sessions caches the capsule sessions opened by envelope.Open, for
	// every loaded function; entries are bound to the function id and key.
	sessions *envelope.OpenCache
	engines  engines // JavaScript engines (engines.go)

	mu        sync.RWMutex
	namespace string               // bound by the first load
	fns       map[string]*function // by hex function id
	loading   map[string]chan struct{}
}

// New creates a runtime with a fresh ephemeral key.
func New(cfg Config) (*Runtime, error) {
	if cfg.Attester == nil {
		return nil, errors.New("enclave: no attester")
	}
	if len(cfg.KMSKeys) == 0 {
		return nil, errors.New("enclave: no KMS identity key pinned: the runtime accepts keys only from a KMS it authenticates")
	}
	for _, k := range cfg.KMSKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("enclave: a pinned KMS key is not an ed25519 public key")
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxReplayEntries <= 0 {
		cfg.MaxReplayEntries = 1 << 20
	}
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = 1 << 20
	}
	if cfg.MaxFunctions <= 0 {
		cfg.MaxFunctions = DefaultMaxFunctions
	}
	kem, err := envelope.SuiteX25519.KEM()
	if err != nil {
		return nil, err
	}
	eph, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("enclave: ephemeral key: %w", err)
	}
	receiptPub, receiptPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("enclave: receipt key: %w", err)
	}
	return &Runtime{
		cfg:         cfg,
		engine:      sandbox.NewEngineWithConfig(cfg.Sandbox),
		eph:         eph,
		receiptPriv: receiptPriv,
		receiptPub:  receiptPub,
		id:          envelope.RuntimeID(eph.PublicKey().Bytes()),
		replay:      newReplayCache(cfg.MaxReplayEntries),
		// Entries are bound to (function id, key version, function key,
		// session id, enc): one cache serves every function.
		sessions: envelope.NewOpenCache(cfg.MaxSessions, 0),
		fns:      map[string]*function{},
		loading:  map[string]chan struct{}{},
	}, nil
}

// ID returns the runtime's id, the one envelope steps designate it by.
func (r *Runtime) ID() []byte { return bytes.Clone(r.id) }

// Close releases compiled modules and zeroizes the cached capsule sessions.
func (r *Runtime) Close(ctx context.Context) error {
	r.sessions.Clear()
	r.closeEngines(ctx)
	return r.engine.Close(ctx)
}

// Hello describes the runtime.
func (r *Runtime) Hello() *ipc.Hello {
	return &ipc.Hello{Platform: r.cfg.Platform, Measurement: r.cfg.Measurement, EphemeralKey: r.eph.PublicKey().Bytes(), Version: ipc.Version}
}

// Attest returns evidence binding the KMS nonce and the ephemeral key.
func (r *Runtime) Attest(req *ipc.AttestRequest) (*ipc.AttestReply, error) {
	if len(req.Nonce) == 0 || len(req.Nonce) > 64 {
		return nil, &ipc.Error{Code: CodeBadRequest, Message: "attest: bad nonce"}
	}
	pub := r.eph.PublicKey().Bytes()
	ev, err := r.cfg.Attester.Attest(wire.ReleaseReportData(req.Nonce, pub, r.receiptPub))
	if err != nil {
		r.cfg.Log.Error("attest failed", "err", err)
		return nil, &ipc.Error{Code: CodeInternal, Message: "attestation failed"}
	}
	return &ipc.AttestReply{EphemeralKey: pub, Evidence: ev, ReceiptKey: bytes.Clone(r.receiptPub)}, nil
}

// Load opens a key bundle sealed to the ephemeral key, decrypts the code,
// checks its digest and compiles it. A JavaScript function is bound to the
// engine its code names; if that engine is not loaded, nothing is loaded
// and the reply names the engine (LoadReply.Engine).
func (r *Runtime) Load(ctx context.Context, req *ipc.LoadRequest) (*ipc.LoadReply, error) {
	fid := hex.EncodeToString(req.FunctionID)
	for {
		r.mu.Lock()
		if _, ok := r.fns[fid]; ok {
			r.mu.Unlock()
			return &ipc.LoadReply{}, nil
		}
		wait, busy := r.loading[fid]
		if !busy {
			r.loading[fid] = make(chan struct{})
			r.mu.Unlock()
			break
		}
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, &ipc.Error{Code: CodeInternal, Message: "load cancelled"}
		}
	}
	defer func() {
		r.mu.Lock()
		close(r.loading[fid])
		delete(r.loading, fid)
		r.mu.Unlock()
	}()

	start := time.Now()
	if !r.fromKMS(req) {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle is not signed by the pinned KMS identity"}
	}
	info := append(append([]byte(wire.ReleaseContext), req.Nonce...), req.FunctionID...)
	plain, err := hpke.Open(r.eph, hpke.HKDFSHA256(), hpke.AES256GCM(), info, req.SealedBundle)
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle does not open with this runtime's key"}
	}
	var b wire.KeyBundle
	if err := ipc.Unmarshal(plain, &b); err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "malformed key bundle"}
	}
	rec := b.Record
	if subtle.ConstantTimeCompare(rec.FunctionID, req.FunctionID) != 1 {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle is for another function"}
	}
	suite := envelope.Suite(rec.Suite)
	kem, err := suite.KEM()
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle names an unknown suite"}
	}
	priv, err := kem.NewPrivateKey(b.PrivateKey)
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle holds a malformed private key"}
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), rec.PublicKey) {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle's private key does not match its record"}
	}
	codeKey, err := envelope.KeyFromBytes(b.CodeKey)
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle holds a malformed code key"}
	}
	authKey, err := envelope.KeyFromBytes(b.AuthKey)
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle holds no envelope authentication key"}
	}
	cert, err := r.checkCert(req.Cert, rec.Namespace)
	if err != nil {
		return nil, &ipc.Error{Code: CodeBundle, Message: "key bundle refused: " + err.Error()}
	}
	r.mu.Lock()
	switch {
	case r.namespace == "":
		r.namespace = rec.Namespace
	case r.namespace != rec.Namespace:
		r.mu.Unlock()
		return nil, &ipc.Error{Code: CodeNamespace, Message: "this runtime serves another namespace"}
	}
	r.mu.Unlock()
	code, err := envelope.OpenCode(codeKey, rec.FunctionID, rec.CodeDigest, req.SealedCode)
	if err != nil {
		return nil, &ipc.Error{Code: CodeCode, Message: "function code does not decrypt or does not match its digest"}
	}
	mod, err := r.compileCode(ctx, code)
	if err != nil {
		// Whatever leaves the runtime here is plaintext for the invoker,
		// the controller and the stored record, and a compiler's message
		// is derived from the code (import and export names, offsets,
		// bytes): only a fixed category leaves, never the detail, not even
		// in the runtime's log, which the host reads. The gateway checks
		// modules at deploy (sandbox.Validate) and tells their owner why.
		var noEngine *errNoEngine
		var ie *ipc.Error
		switch {
		case errors.As(err, &noEngine):
			return &ipc.LoadReply{Engine: noEngine.digest[:]}, nil
		case errors.As(err, &ie):
			return nil, ie
		}
		if errors.Is(err, sandbox.ErrInvalidModule) {
			return nil, &ipc.Error{Code: CodeInvalidWasm, Message: msgInvalidModule}
		}
		reason := "internal"
		switch {
		case errors.Is(err, sandbox.ErrClosed):
			reason = "runtime closing"
		case ctx.Err() != nil:
			reason = "cancelled"
		}
		r.cfg.Log.Error("compile failed", "function", fid, "reason", reason)
		return nil, &ipc.Error{Code: CodeInternal, Message: "compilation failed"}
	}
	fn := &function{
		id: envelope.FunctionIdentity{
			FunctionID: rec.FunctionID, CodeDigest: rec.CodeDigest,
			KeyVersion: rec.KeyVersion, PrivateKey: priv, AuthKey: authKey,
			Runtime:  r.id,
			Sessions: r.sessions,
		},
		record: rec,
		module: mod,
		cert:   cert,
	}
	fn.used.Store(r.cfg.Now().UnixNano())
	r.mu.Lock()
	evicted := r.evictLocked()
	r.fns[fid] = fn
	r.mu.Unlock()
	for _, old := range evicted {
		// Steps running on it finish; its code is freed after them.
		_ = old.module.Close(context.WithoutCancel(ctx))
		r.cfg.Log.Info("function unloaded", "function", hex.EncodeToString(old.record.FunctionID), "reason", "least recently used")
	}
	ms := time.Since(start).Milliseconds()
	r.cfg.Log.Info("function loaded", "function", fid, "compile_ms", ms)
	return &ipc.LoadReply{CompileMs: ms}, nil
}

// evictLocked removes the least recently used functions without a running
// step until one more fits within MaxFunctions (or none is idle), and
// returns them. r.mu is held; Run takes a function under its read lock.
func (r *Runtime) evictLocked() []*function {
	var out []*function
	for len(r.fns) >= r.cfg.MaxFunctions {
		var lru string
		var oldest int64
		for k, fn := range r.fns {
			if u := fn.used.Load(); fn.active.Load() == 0 && (lru == "" || u < oldest) {
				lru, oldest = k, u
			}
		}
		if lru == "" {
			break // all busy: over the bound until they finish
		}
		out = append(out, r.fns[lru])
		delete(r.fns, lru)
	}
	return out
}

// refuse is the reply for a step that failed a check: nothing ran, nothing
// was sealed.
// ranButFailed is a failure after the guest ran: nothing is sealed, but the
// execution is reported.
func ranButFailed(code, msg string) *ipc.RunReply {
	r := refuse(code, msg)
	r.Executed = true
	return r
}

func refuse(code, msg string) *ipc.RunReply {
	return &ipc.RunReply{Status: wire.StatusInternalError, ErrorCode: code, ErrorMessage: msg}
}

// Run checks an envelope and, if every check passes, runs the step and seals
// its result, logs and signed receipt for the next step (or the owner).
func (r *Runtime) Run(ctx context.Context, req *ipc.RunRequest) *ipc.RunReply {
	rep, _ := r.run(ctx, req, false)
	return rep
}

// run is Run; with unsigned it leaves the receipt of a step that ran to
// the caller, to sign with others (RunChain), and the reply's Receipt
// empty.
func (r *Runtime) run(ctx context.Context, req *ipc.RunRequest, unsigned bool) (*ipc.RunReply, *unsignedReceipt) {
	r.mu.RLock()
	fn := r.fns[hex.EncodeToString(req.FunctionID)]
	if fn != nil {
		fn.active.Add(1)
	}
	r.mu.RUnlock()
	if fn == nil {
		return refuse(CodeNotLoaded, "function is not loaded in this runtime"), nil
	}
	defer fn.active.Add(-1)
	env, err := envelope.Unmarshal(req.Envelope)
	if err != nil {
		return refuse(envelope.Code(err), "malformed envelope"), nil
	}
	now := r.cfg.Now()
	fn.used.Store(now.UnixNano())
	opened, err := envelope.Open(env, &fn.id, now)
	if err != nil {
		code := envelope.Code(err)
		if code == "" {
			code = CodeInternal
		}
		return refuse(code, "envelope refused: "+code), nil
	}
	switch err := r.replay.add(opened.RequestID, opened.Step, opened.Expiry, now); {
	case errors.Is(err, envelope.ErrReplay):
		return refuse(envelope.Code(err), "step already ran: replay refused"), nil
	case err != nil:
		return refuse(CodeReplayFull, "replay cache full: step refused"), nil
	}
	if afterFailure(opened) {
		return refuse(CodeAfterFailure, "the previous step of the sequence failed: a sequence stops at its first failure"), nil
	}
	start := r.cfg.Now().UnixMilli()

	lim := env.Header.Limits
	// Zero limits take the sandbox's defaults; name those in messages.
	if lim.TimeoutMs == 0 {
		lim.TimeoutMs = uint32(sandbox.DefaultTimeout / time.Millisecond)
	}
	if lim.MemoryMB == 0 {
		lim.MemoryMB = sandbox.DefaultMemoryBytes >> 20
	}
	res, runErr := fn.module.RunActivation(ctx, sandbox.Activation{
		Params:    opened.Input,
		ID:        hex.EncodeToString(opened.RequestID),
		Namespace: fn.record.Namespace,
		Action:    "/" + fn.record.Namespace + "/" + fn.record.Action,
	}, sandbox.Limits{
		MemoryBytes:    uint64(lim.MemoryMB) << 20,
		Timeout:        time.Duration(lim.TimeoutMs) * time.Millisecond,
		MaxOutputBytes: r.cfg.MaxOutputBytes,
		MaxLogBytes:    int(lim.LogsKB) << 10,
	})
	status, result := classify(res, runErr, lim)
	var logs []byte
	if res != nil {
		logs = res.Logs
	}
	sealStart := r.cfg.Now()
	next, err := opened.SealOutput(result)
	if err != nil {
		r.cfg.Log.Error("seal output", "err", err)
		return ranButFailed(CodeInternal, "sealing the result failed"), nil
	}
	nb, err := next.Marshal()
	if err != nil {
		r.cfg.Log.Error("encode output", "err", err)
		return ranButFailed(CodeInternal, "encoding the result failed"), nil
	}
	sealedLogs, err := opened.SealLogs(logs)
	if err != nil {
		r.cfg.Log.Error("seal logs", "err", err)
		return ranButFailed(CodeInternal, "sealing the logs failed"), nil
	}
	pending, err := r.stepReceipt(fn, opened, status, opened.Input, result, logs, start, r.cfg.Now().UnixMilli())
	var receipt []byte
	if err == nil && !unsigned {
		sig, batch := r.signer.sign(r.receiptPriv, pending.body)
		receipt, err = pending.seal(sig, batch)
	}
	if err != nil {
		r.cfg.Log.Error("seal receipt", "err", err)
		return ranButFailed(CodeInternal, "sealing the receipt failed"), nil
	}
	// One line per activation: ids and the status, which travel in
	// plaintext anyway; never params, results or logs.
	r.cfg.Log.Debug("activation", "activation", hex.EncodeToString(opened.RequestID),
		"function", hex.EncodeToString(fn.record.FunctionID), "status", status, "duration_ms", r.cfg.Now().UnixMilli()-start)
	rep := &ipc.RunReply{Status: status, Envelope: nb, Logs: sealedLogs, Receipt: receipt, Executed: true, Recycle: r.engine.Runaway(),
		SealMicros: max(r.cfg.Now().Sub(sealStart).Microseconds(), 0)}
	if !unsigned {
		pending = nil
	}
	return rep, pending
}

// classify maps a sandbox outcome to an OpenWhisk status and the JSON result
// that is sealed for the owner. Error messages follow OpenWhisk's wording.
func classify(res *sandbox.Result, err error, lim envelope.Limits) (string, []byte) {
	errResult := func(msg string) []byte {
		b, _ := json.Marshal(map[string]string{"error": msg})
		return b
	}
	switch {
	case err == nil || errors.Is(err, sandbox.ErrExit):
		var obj map[string]json.RawMessage
		if res == nil || json.Unmarshal(bytes.TrimSpace(res.Output), &obj) != nil || obj == nil {
			if err != nil {
				return wire.StatusDeveloperError, errResult(fmt.Sprintf("The action failed with exit status %d and did not return a dictionary.", res.ExitCode))
			}
			return wire.StatusDeveloperError, errResult("The action did not return a dictionary.")
		}
		out, _ := json.Marshal(obj)
		if _, hasErr := obj["error"]; hasErr || err != nil {
			if !hasErr {
				return wire.StatusDeveloperError, errResult(fmt.Sprintf("The action failed with exit status %d.", res.ExitCode))
			}
			return wire.StatusApplicationError, out
		}
		return wire.StatusSuccess, out
	case errors.Is(err, sandbox.ErrTimeout):
		return wire.StatusDeveloperError, errResult(fmt.Sprintf("The action exceeded its time limits of %d milliseconds.", lim.TimeoutMs))
	case errors.Is(err, sandbox.ErrMemoryLimit):
		return wire.StatusDeveloperError, errResult(fmt.Sprintf("The action exceeded its memory limit of %d MB.", lim.MemoryMB))
	case errors.Is(err, sandbox.ErrOutputTooLarge):
		return wire.StatusDeveloperError, errResult("The action produced a response that exceeded the allowed length.")
	case errors.Is(err, sandbox.ErrTrap):
		return wire.StatusDeveloperError, errResult("The action failed: " + err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return wire.StatusInternalError, errResult("The activation was cancelled.")
	default:
		return wire.StatusDeveloperError, errResult("The action failed: " + err.Error())
	}
}

// maxChainReplyBytes bounds the sealed outputs and logs one chain reply
// carries (frames and bus messages have caps); beyond it the runtime stops
// and the invoker sends the remaining steps itself.
const maxChainReplyBytes = 8 << 20

// RunChain runs req's step and then, as long as steps succeed, each
// function of req.Then on the previous step's sealed output: a sequence
// without a round trip to the invoker per step. Each step is Run, with
// every check a step sent alone gets; a function of Then that the
// envelope's next step does not name is refused like a misrouted step, and
// the chain stops at the first step that does not succeed (or is not
// loaded here, which the invoker then loads and sends alone). The first
// step's reply carries the others in More.
func (r *Runtime) RunChain(ctx context.Context, req *ipc.RunRequest) *ipc.RunReply {
	if len(req.Then) == 0 {
		return r.Run(ctx, req)
	}
	if len(req.Then) >= envelope.MaxChain {
		return refuse(CodeBadRequest, "chain too long")
	}
	// The steps' receipts are signed together once the chain has run:
	// its replies leave together, so waiting costs no step anything, and
	// one signature serves the chain (receiptSigner batches them).
	var receipts []*unsignedReceipt
	timed := func(fid, env []byte) *ipc.RunReply {
		start := r.cfg.Now().UnixMilli()
		rep, p := r.run(ctx, &ipc.RunRequest{FunctionID: fid, Envelope: env}, true)
		rep.Start, rep.End = start, max(r.cfg.Now().UnixMilli(), start)
		receipts = append(receipts, p) // nil for a step that did not run
		return rep
	}
	first := timed(req.FunctionID, req.Envelope)
	cur, size := first, len(first.Envelope)+len(first.Logs)
	for _, fid := range req.Then {
		if cur.Status != wire.StatusSuccess || len(cur.Envelope) == 0 || first.Recycle ||
			size > maxChainReplyBytes || ctx.Err() != nil {
			break
		}
		next := timed(fid, cur.Envelope)
		if next.ErrorCode == CodeNotLoaded {
			receipts = receipts[:len(receipts)-1]
			break
		}
		first.Recycle = first.Recycle || next.Recycle
		next.Recycle = false
		first.More = append(first.More, *next)
		cur, size = next, size+len(next.Envelope)+len(next.Logs)
	}
	r.signChain(first, receipts)
	return first
}

// signChain signs the receipts of a chain's steps that ran (receipts[i]
// is reply i's: first, then first.More; nil for a step that did not run)
// and puts each in its reply. A receipt that cannot be sealed fails its
// step, and the replies of the steps after it are dropped: a chain reply
// never carries a result whose receipt is missing before it.
func (r *Runtime) signChain(first *ipc.RunReply, receipts []*unsignedReceipt) {
	reply := func(i int) *ipc.RunReply {
		if i == 0 {
			return first
		}
		return &first.More[i-1]
	}
	var ps []*unsignedReceipt
	var at []int
	for i, p := range receipts {
		if p != nil {
			ps, at = append(ps, p), append(at, i)
		}
	}
	if len(ps) == 0 {
		return
	}
	sealed, bad, err := r.signReceipts(ps)
	for k, i := range at[:len(sealed)] {
		reply(i).Receipt = sealed[k]
	}
	if err != nil {
		r.cfg.Log.Error("seal receipt", "err", err)
		i := at[bad]
		failed := ranButFailed(CodeInternal, "sealing the receipt failed")
		failed.Start, failed.End = reply(i).Start, reply(i).End
		if i == 0 {
			failed.Recycle = first.Recycle
			*first = *failed
		} else {
			first.More[i-1] = *failed
			first.More = first.More[:i]
		}
	}
}

// replayCache remembers (request id, step) until the request expires.
type replayCache struct {
	mu      sync.Mutex
	max     int
	entries map[[20]byte]time.Time
	nextGC  time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, entries: map[[20]byte]time.Time{}}
}

func (c *replayCache) add(requestID []byte, step uint32, expiry, now time.Time) error {
	var k [20]byte
	copy(k[:16], requestID)
	k[16], k[17], k[18], k[19] = byte(step>>24), byte(step>>16), byte(step>>8), byte(step)
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.entries[k]; ok && now.Before(exp) {
		return envelope.ErrReplay
	}
	if len(c.entries) >= c.max || now.After(c.nextGC) {
		for key, exp := range c.entries {
			if !now.Before(exp) {
				delete(c.entries, key)
			}
		}
		c.nextGC = now.Add(10 * time.Second)
		if len(c.entries) >= c.max {
			return errors.New("replay cache full")
		}
	}
	c.entries[k] = expiry
	return nil
}

// fromKMS reports whether a pinned KMS identity signed the release reply
// of req's bundle, to this runtime's ephemeral key.
func (r *Runtime) fromKMS(req *ipc.LoadRequest) bool {
	if len(req.BundleSig) != ed25519.SignatureSize || len(req.Nonce) == 0 || len(req.Nonce) > maxNonce || len(req.FunctionID) != 16 {
		return false
	}
	msg := wire.ReleaseReplySigned(req.Nonce, req.FunctionID, r.eph.PublicKey().Bytes(), req.SealedBundle)
	for _, k := range r.cfg.KMSKeys {
		if ed25519.Verify(k, msg, req.BundleSig) {
			return true
		}
	}
	return false
}

// maxNonce bounds a KMS nonce (40 bytes today: issue time, replica,
// random, MAC).
const maxNonce = 64
