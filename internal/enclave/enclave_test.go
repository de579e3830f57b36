package enclave

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// fixture is a runtime with functions loaded the way the KMS and the
// invoker would load them, and the gateway-side secrets to talk to it.
type fixture struct {
	rt      *Runtime
	gwKey   envelope.Key
	kmsKey  ed25519.PrivateKey // the KMS identity the runtime pins
	records map[string]*loadedFn
	// lastLoad is the runtime's reply to the last load.
	lastLoad *ipc.LoadReply
	// cert, if set, replaces the KMS's certificate of the receipt key in
	// loads (nil: a genuine one).
	cert func(namespace string) []byte
}

// genuineCert is the certificate the KMS issues with a release: the
// runtime's receipt key, for namespace, signed by the pinned KMS key.
func (f *fixture) genuineCert(t testing.TB, namespace string) []byte {
	t.Helper()
	att, err := f.rt.Attest(&ipc.AttestRequest{Nonce: []byte("cert nonce")})
	if err != nil {
		t.Fatal(err)
	}
	return signCert(t, f.kmsKey, wire.RuntimeCert{RuntimeID: envelope.RuntimeID(att.EphemeralKey), ReceiptKey: att.ReceiptKey,
		Namespace: namespace, Platform: sim.Platform, Issued: 1})
}

func signCert(t testing.TB, key ed25519.PrivateKey, c wire.RuntimeCert) []byte {
	t.Helper()
	body, err := ipc.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ipc.Marshal(&wire.SignedCert{Cert: body, Sig: ed25519.Sign(key, wire.CertMessage(body))})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

type loadedFn struct {
	rec  wire.FunctionRecord
	pub  hpke.PublicKey
	priv hpke.PrivateKey
}

func newFixture(t testing.TB, mutate ...func(*Config)) *fixture {
	t.Helper()
	p, err := sim.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := sha256.Sum256([]byte("test runtime"))
	kmsPub, kmsKey, _ := ed25519.GenerateKey(nil)
	cfg := Config{Platform: sim.Platform, Measurement: m[:], Attester: p.Attester(m[:], 1, false), KMSKeys: []ed25519.PublicKey{kmsPub}}
	for _, f := range mutate {
		f(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return &fixture{rt: rt, gwKey: envelope.NewKey(), records: map[string]*loadedFn{}, kmsKey: kmsKey}
}

// load plays the KMS (sealing a key bundle to the runtime's ephemeral key)
// and the invoker (handing over the sealed code).
func (f *fixture) load(t testing.TB, name, namespace string, wasm []byte) (*loadedFn, error) {
	t.Helper()
	kem, _ := envelope.SuiteX25519.KEM()
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	fid := make([]byte, 16)
	rand.Read(fid)
	return f.loadAs(t, name, namespace, wasm, fid, priv)
}

// reload loads fn again under its id and key, as an invoker does after the
// runtime unloaded it.
func (f *fixture) reload(t testing.TB, fn *loadedFn, wasm []byte) {
	t.Helper()
	if _, err := f.loadAs(t, fn.rec.Action, fn.rec.Namespace, wasm, fn.rec.FunctionID, fn.priv); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) loadAs(t testing.TB, name, namespace string, wasm, fid []byte, priv hpke.PrivateKey) (*loadedFn, error) {
	t.Helper()
	kem, _ := envelope.SuiteX25519.KEM()
	privBytes, _ := priv.Bytes()
	digest := sha256.Sum256(wasm)
	rec := wire.FunctionRecord{FunctionID: fid, Namespace: namespace, Action: name, KeyVersion: 1,
		CodeDigest: digest[:], Suite: uint16(envelope.SuiteX25519), PublicKey: priv.PublicKey().Bytes()}
	codeKey := envelope.NewKey()
	bundle, _ := ipc.Marshal(wire.KeyBundle{Record: rec, PrivateKey: privBytes, CodeKey: codeKey.Bytes(),
		AuthKey: envelope.AuthKey(f.gwKey, namespace).Bytes()})
	nonce := make([]byte, 32)
	rand.Read(nonce)
	ephPub, err := kem.NewPublicKey(f.rt.Hello().EphemeralKey)
	if err != nil {
		t.Fatal(err)
	}
	info := append(append([]byte(wire.ReleaseContext), nonce...), fid...)
	sealedBundle, err := hpke.Seal(ephPub, hpke.HKDFSHA256(), hpke.AES256GCM(), info, bundle)
	if err != nil {
		t.Fatal(err)
	}
	sealedCode, err := envelope.SealCode(codeKey, fid, digest[:], wasm)
	if err != nil {
		t.Fatal(err)
	}
	sig := ed25519.Sign(f.kmsKey, wire.ReleaseReplySigned(nonce, fid, f.rt.Hello().EphemeralKey, sealedBundle))
	cert := f.genuineCert(t, namespace)
	if f.cert != nil {
		cert = f.cert(namespace)
	}
	f.lastLoad, err = f.rt.Load(context.Background(), &ipc.LoadRequest{FunctionID: fid, Nonce: nonce, SealedBundle: sealedBundle, SealedCode: sealedCode, BundleSig: sig, Cert: cert})
	if err != nil {
		return nil, err
	}
	fn := &loadedFn{rec: rec, pub: priv.PublicKey(), priv: priv}
	f.records[name] = fn
	return fn, nil
}

// seal plays the gateway.
func (f *fixture) seal(t testing.TB, fn *loadedFn, params string, timeout time.Duration, lim envelope.Limits) (*envelope.Envelope, envelope.Key) {
	t.Helper()
	return f.sealChain(t, []*loadedFn{fn}, params, timeout, lim)
}

// sealChain seals a chain of the functions fns, in order.
func (f *fixture) sealChain(t testing.TB, fns []*loadedFn, params string, timeout time.Duration, lim envelope.Limits) (*envelope.Envelope, envelope.Key) {
	t.Helper()
	return f.sealChainWith(t, nil, fns, params, timeout, lim)
}

// sealChainWith is sealChain with capsules under sessions (nil: a new
// session per function each time, as the package-level Seal does).
func (f *fixture) sealChainWith(t testing.TB, sessions *envelope.Sessions, fns []*loadedFn, params string, timeout time.Duration, lim envelope.Limits) (*envelope.Envelope, envelope.Key) {
	t.Helper()
	reqID := make([]byte, 16)
	rand.Read(reqID)
	ns := fns[0].rec.Namespace
	h := envelope.Header{
		Version: envelope.Version, Suite: envelope.SuiteX25519, RequestID: reqID, Namespace: ns,
		Expiry: time.Now().Add(timeout).UnixMilli(), Limits: lim,
	}
	var pubs []hpke.PublicKey
	for _, fn := range fns {
		h.Chain = append(h.Chain, envelope.Step{Name: "/" + fn.rec.Namespace + "/" + fn.rec.Action, FunctionID: fn.rec.FunctionID, CodeDigest: fn.rec.CodeDigest, KeyVersion: 1, Runtime: f.rt.ID()})
		pubs = append(pubs, fn.pub)
	}
	rs := envelope.RequestSecret(f.gwKey, reqID)
	env, err := sessions.Seal(h, rs, envelope.AuthKey(f.gwKey, ns), pubs, []byte(params))
	if err != nil {
		t.Fatal(err)
	}
	return env, rs
}

func marshal(t testing.TB, e *envelope.Envelope) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var defaultLimits = envelope.Limits{TimeoutMs: 10000, MemoryMB: 128, LogsKB: 64}

func openReply(t testing.TB, rep *ipc.RunReply, rs envelope.Key, sent *envelope.Envelope) (map[string]any, string) {
	t.Helper()
	if rep.ErrorCode != "" {
		t.Fatalf("step refused: %s %s", rep.ErrorCode, rep.ErrorMessage)
	}
	out, err := envelope.Unmarshal(rep.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sent.Header.Digest()
	res, err := envelope.OpenResult(out, rs, want)
	if err != nil {
		t.Fatalf("open result: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(res, &m); err != nil {
		t.Fatalf("result is not JSON: %v", err)
	}
	logs, err := envelope.OpenLogs(&sent.Header, rs, 0, rep.Logs)
	if err != nil {
		t.Fatalf("open logs: %v", err)
	}
	return m, string(logs)
}

func TestRunHello(t *testing.T) {
	f := newFixture(t)
	fn, err := f.load(t, "hello", "alice", wasmbuild.MustBuild(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	env, rs := f.seal(t, fn, `{"name":"Clemmys"}`, time.Minute, defaultLimits)
	rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	if rep.Status != wire.StatusSuccess {
		t.Fatalf("status %q (%s)", rep.Status, rep.ErrorMessage)
	}
	res, logs := openReply(t, rep, rs, env)
	if res["greeting"] != "Hello Clemmys!" {
		t.Fatalf("result %v", res)
	}
	if !strings.Contains(logs, "Clemmys") {
		t.Fatalf("logs %q do not carry the function's log line", logs)
	}

	// The same envelope again is a replay: refused, nothing sealed.
	rep = f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	if rep.ErrorCode != "replay" || rep.Envelope != nil || rep.Logs != nil {
		t.Fatalf("replay: got %+v", rep)
	}
}

// TestDesignatedRuntime: a step runs only in the runtime its envelope
// designates. Another runtime holding the same function (another invoker,
// or the same invoker's runtime restarted: a new key, a new id) refuses it
// without running anything, so a step captured on the bus runs at most
// once anywhere (the designated runtime's replay cache does the rest).
func TestDesignatedRuntime(t *testing.T) {
	a := newFixture(t)
	b := newFixture(t)
	b.gwKey = a.gwKey // one gateway secret, one namespace auth key
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	kem, _ := envelope.SuiteX25519.KEM()
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	fid := make([]byte, 16)
	rand.Read(fid)
	fa, err := a.loadAs(t, "echo", "alice", wasm, fid, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.loadAs(t, "echo", "alice", wasm, fid, priv); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.rt.ID(), b.rt.ID()) {
		t.Fatal("two runtimes share an id")
	}
	env, _ := a.seal(t, fa, `{"x":1}`, time.Minute, defaultLimits) // designates a
	req := &ipc.RunRequest{FunctionID: fid, Envelope: marshal(t, env)}
	if rep := b.rt.Run(context.Background(), req); rep.ErrorCode != "wrong_runtime" || rep.Executed || rep.Envelope != nil {
		t.Fatalf("another runtime: %+v", rep)
	}
	if rep := a.rt.Run(context.Background(), req); rep.Status != wire.StatusSuccess {
		t.Fatalf("the designated runtime: %+v", rep)
	}
	if rep := b.rt.Run(context.Background(), req); rep.ErrorCode != "wrong_runtime" || rep.Executed {
		t.Fatalf("another runtime, after the step ran: %+v", rep)
	}
	if rep := a.rt.Run(context.Background(), req); rep.ErrorCode != "replay" || rep.Executed {
		t.Fatalf("the designated runtime again: %+v", rep)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	fn, err := f.load(t, "echo", "alice", wasm)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.load(t, "echo2", "alice", wasm)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(e *envelope.Envelope) []byte
		fid    []byte
		want   string
	}{
		{"expired", nil, nil, "expired"},
		{"garbage", func(*envelope.Envelope) []byte { return []byte("not an envelope") }, nil, "malformed"},
		{"tampered namespace", func(e *envelope.Envelope) []byte { e.Header.Namespace = "mallory"; return marshal(t, e) }, nil, "auth"},
		{"flipped body bit", func(e *envelope.Envelope) []byte { e.Body[len(e.Body)-1] ^= 1; return marshal(t, e) }, nil, "body"},
		{"step index", func(e *envelope.Envelope) []byte { e.Step = 1; return marshal(t, e) }, nil, "step"},
		{"routed to another function", nil, other.rec.FunctionID, "wrong_function"},
		{"not loaded", nil, []byte("0123456789abcdef"), CodeNotLoaded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := time.Minute
			if tt.want == "expired" {
				timeout = -time.Second
			}
			env, _ := f.seal(t, fn, `{"log":"ran"}`, timeout, defaultLimits)
			b := marshal(t, env)
			if tt.mutate != nil {
				b = tt.mutate(env)
			}
			fid := fn.rec.FunctionID
			if tt.fid != nil {
				fid = tt.fid
			}
			rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fid, Envelope: b})
			if rep.ErrorCode != tt.want {
				t.Fatalf("error code %q (%s), want %q", rep.ErrorCode, rep.ErrorMessage, tt.want)
			}
			if rep.Status != wire.StatusInternalError || rep.Envelope != nil || rep.Logs != nil {
				t.Fatalf("a refused step must seal nothing: %+v", rep)
			}
		})
	}
}

func TestLoadRefusals(t *testing.T) {
	f := newFixture(t)
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	if _, err := f.load(t, "echo", "alice", wasm); err != nil {
		t.Fatal(err)
	}
	// One runtime serves one namespace.
	_, err := f.load(t, "echo", "bob", wasm)
	if ie, ok := err.(*ipc.Error); !ok || ie.Code != CodeNamespace {
		t.Fatalf("other namespace: got %v", err)
	}
	// A bundle sealed to someone else's key does not open.
	_, err = f.rt.Load(context.Background(), &ipc.LoadRequest{FunctionID: make([]byte, 16), Nonce: []byte("n"), SealedBundle: []byte("junk"), SealedCode: []byte("junk")})
	if ie, ok := err.(*ipc.Error); !ok || ie.Code != CodeBundle {
		t.Fatalf("junk bundle: got %v", err)
	}
	// Not a wasm module (digest matches, code decrypts): clear error.
	_, err = f.load(t, "bad", "alice", []byte("\x00asm\x01\x00\x00\x00garbage"))
	if ie, ok := err.(*ipc.Error); !ok || ie.Code != CodeInvalidWasm {
		t.Fatalf("invalid module: got %v", err)
	}
}

// secretImportModule is a WASI command that imports SECRETMOD.SECRETFN,
// which the sandbox does not provide: the names are the function's code.
var secretImportModule = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type 0: [] -> []
	"\x02\x16\x01\x09SECRETMOD\x08SECRETFN\x00\x00" + // import func 0
	"\x03\x02\x01\x00" + // func 1: type 0
	"\x05\x03\x01\x00\x01" + // memory, min 1 page
	"\x07\x13\x02\x06_start\x00\x01\x06memory\x02\x00" +
	"\x0a\x04\x01\x02\x00\x0b")

// TestLoadRefusalLeaksNoCode: a module the runtime cannot compile is
// reported as a fixed category; neither the reply (plaintext for the
// invoker and controller) nor the runtime's log (read by the host) carries
// anything derived from the code.
func TestLoadRefusalLeaksNoCode(t *testing.T) {
	var logs syncBuf
	f := newFixture(t, func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	_, err := f.load(t, "secret", "alice", secretImportModule)
	ie, ok := err.(*ipc.Error)
	if !ok || ie.Code != CodeInvalidWasm {
		t.Fatalf("got %v, want an %s refusal", err, CodeInvalidWasm)
	}
	if ie.Message != msgInvalidModule {
		t.Errorf("message %q, want the fixed category %q", ie.Message, msgInvalidModule)
	}
	for _, where := range []string{ie.Message, logs.String()} {
		if strings.Contains(where, "SECRET") {
			t.Errorf("code-derived names left the runtime: %q", where)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunawayGuests(t *testing.T) {
	f := newFixture(t)
	loop, err := f.load(t, "loop", "alice", wasmbuild.MustBuild(t, "./internal/testfuncs/loop"))
	if err != nil {
		t.Fatal(err)
	}
	hog, err := f.load(t, "memhog", "alice", wasmbuild.MustBuild(t, "./internal/testfuncs/memhog"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		fn   *loadedFn
		lim  envelope.Limits
		want string
	}{
		{loop, envelope.Limits{TimeoutMs: 300, MemoryMB: 128, LogsKB: 64}, "exceeded its time limits of 300 milliseconds"},
		{hog, envelope.Limits{TimeoutMs: 20000, MemoryMB: 64, LogsKB: 64}, "exceeded its memory limit of 64 MB"},
	}
	for _, tt := range tests {
		t.Run(tt.fn.rec.Action, func(t *testing.T) {
			env, rs := f.seal(t, tt.fn, `{}`, time.Minute, tt.lim)
			rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: tt.fn.rec.FunctionID, Envelope: marshal(t, env)})
			if rep.Status != wire.StatusDeveloperError {
				t.Fatalf("status %q (%s %s)", rep.Status, rep.ErrorCode, rep.ErrorMessage)
			}
			res, _ := openReply(t, rep, rs, env)
			if msg, _ := res["error"].(string); !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q, want it to contain %q", msg, tt.want)
			}
		})
	}
}

// The runtime decapsulates each gateway session once (envelope format 2):
// steps sealed by one envelope.Sessions open from the runtime's session
// cache, one cache serves every loaded function, and Close zeroizes it.
func TestSessionCache(t *testing.T) {
	f := newFixture(t)
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	a, err := f.load(t, "echo-a", "alice", wasm)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.load(t, "echo-b", "alice", wasm)
	if err != nil {
		t.Fatal(err)
	}
	var sessions envelope.Sessions
	run := func(fn *loadedFn, p string) *ipc.RunReply {
		params := fmt.Sprintf(`{"p":%q}`, p)
		t.Helper()
		reqID := make([]byte, 16)
		rand.Read(reqID)
		h := envelope.Header{
			Version: envelope.Version, Suite: envelope.SuiteX25519, RequestID: reqID, Namespace: fn.rec.Namespace,
			Chain:  []envelope.Step{{Name: "/" + fn.rec.Namespace + "/" + fn.rec.Action, FunctionID: fn.rec.FunctionID, CodeDigest: fn.rec.CodeDigest, KeyVersion: 1, Runtime: f.rt.ID()}},
			Expiry: time.Now().Add(time.Minute).UnixMilli(), Limits: defaultLimits,
		}
		rs := envelope.RequestSecret(f.gwKey, reqID)
		env, err := sessions.Seal(h, rs, envelope.AuthKey(f.gwKey, fn.rec.Namespace), []hpke.PublicKey{fn.pub}, []byte(params))
		if err != nil {
			t.Fatal(err)
		}
		rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
		if rep.ErrorCode == "" {
			res, _ := openReply(t, rep, rs, env)
			if res["p"] != p {
				t.Fatalf("result %v", res)
			}
		}
		return rep
	}
	for i := range 3 {
		if rep := run(a, fmt.Sprint("a", i)); rep.Status != wire.StatusSuccess {
			t.Fatalf("a: %s %s", rep.ErrorCode, rep.ErrorMessage)
		}
	}
	for i := range 2 {
		if rep := run(b, fmt.Sprint("b", i)); rep.Status != wire.StatusSuccess {
			t.Fatalf("b: %s %s", rep.ErrorCode, rep.ErrorMessage)
		}
	}
	if sessions.Encapsulations() != 2 {
		t.Fatalf("gateway side: %d encapsulations", sessions.Encapsulations())
	}
	if hits, misses := f.rt.sessions.Stats(); hits != 3 || misses != 2 {
		t.Fatalf("runtime side: %d hits, %d misses, want 3, 2", hits, misses)
	}
	if err := f.rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.rt.sessions.Len() != 0 {
		t.Fatal("Close kept the sessions")
	}
}

// TestUnloadLeastRecentlyUsed: a runtime keeps at most MaxFunctions loaded;
// loading one more unloads the least recently used (load or run), whose
// steps are then refused as not loaded, before any check that would
// remember them (the invoker loads it again and resends the same step).
func TestUnloadLeastRecentlyUsed(t *testing.T) {
	var tick atomic.Int64
	base := time.Now()
	f := newFixture(t, func(c *Config) {
		c.MaxFunctions = 2
		c.Now = func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	})
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	load := func(name string) *loadedFn {
		fn, err := f.load(t, name, "alice", wasm)
		if err != nil {
			t.Fatal(err)
		}
		return fn
	}
	run := func(fn *loadedFn, env *envelope.Envelope) *ipc.RunReply {
		return f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	}
	a, b := load("a"), load("b")
	envA, _ := f.seal(t, a, `{"n":1}`, time.Minute, defaultLimits)
	if rep := run(a, envA); rep.Status != wire.StatusSuccess {
		t.Fatalf("a: %+v", rep)
	}
	c := load("c") // b is the least recently used
	envB, _ := f.seal(t, b, `{"n":2}`, time.Minute, defaultLimits)
	rep := run(b, envB)
	if rep.ErrorCode != CodeNotLoaded || rep.Executed {
		t.Fatalf("b after unloading: %+v", rep)
	}
	for _, fn := range []*loadedFn{a, c} {
		env, _ := f.seal(t, fn, `{"n":3}`, time.Minute, defaultLimits)
		if rep := run(fn, env); rep.Status != wire.StatusSuccess {
			t.Fatalf("%s: %+v", fn.rec.Action, rep)
		}
	}
	// Loaded again under its id (as the invoker does), the same envelope
	// runs: the refusal did not count it as seen.
	f.reload(t, b, wasm)
	if rep := run(b, envB); rep.Status != wire.StatusSuccess {
		t.Fatalf("b reloaded: %+v", rep)
	}
	f.rt.mu.RLock()
	n := len(f.rt.fns)
	f.rt.mu.RUnlock()
	if n != 2 {
		t.Fatalf("%d functions loaded, bound 2", n)
	}
}

// TestRunChain: a chain request runs each step on the previous one's
// sealed output inside the runtime, with every step's checks: it stops at
// a failing step, at a function the envelope does not name next (refused
// like a misrouted step) and before a function that is not loaded; a step
// of the chain cannot be replayed alone afterwards.
func TestRunChain(t *testing.T) {
	f := newFixture(t)
	echo := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	fail := wasmbuild.MustBuild(t, "./internal/testfuncs/fail")
	load := func(name string, wasm []byte) *loadedFn {
		fn, err := f.load(t, name, "alice", wasm)
		if err != nil {
			t.Fatal(err)
		}
		return fn
	}
	a, b, c, boom := load("a", echo), load("b", echo), load("c", echo), load("boom", fail)
	ids := func(fns ...*loadedFn) [][]byte {
		var out [][]byte
		for _, fn := range fns {
			out = append(out, fn.rec.FunctionID)
		}
		return out
	}
	statuses := func(rep *ipc.RunReply) []string {
		out := []string{rep.Status + "/" + rep.ErrorCode}
		for _, m := range rep.More {
			out = append(out, m.Status+"/"+m.ErrorCode)
		}
		return out
	}

	env, rs := f.sealChain(t, []*loadedFn{a, b, c}, `{"x":"y"}`, time.Minute, defaultLimits)
	rep := f.rt.RunChain(context.Background(), &ipc.RunRequest{FunctionID: a.rec.FunctionID, Envelope: marshal(t, env), Then: ids(b, c)})
	if got := statuses(rep); fmt.Sprint(got) != "[success/ success/ success/]" {
		t.Fatalf("chain: %v", got)
	}
	last := rep.More[1]
	out, err := envelope.Unmarshal(last.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	res, err := envelope.OpenResult(out, rs, [32]byte{})
	if err != nil || !strings.Contains(string(res), `"x":"y"`) {
		t.Fatalf("final result %q, %v", res, err)
	}
	if rep.Start == 0 || rep.More[0].Start < rep.End || rep.More[1].End < rep.More[1].Start {
		t.Fatalf("times %d-%d, %d-%d, %d-%d", rep.Start, rep.End, rep.More[0].Start, rep.More[0].End, rep.More[1].Start, rep.More[1].End)
	}
	// Each step's receipt, of that step, and the chain's steps signed
	// together: one signature over a batch of the three (nothing else ran
	// meanwhile), each receipt verifiable alone.
	att, err := f.rt.Attest(&ipc.AttestRequest{Nonce: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	var sig []byte
	for j, sealed := range [][]byte{rep.Receipt, rep.More[0].Receipt, rep.More[1].Receipt} {
		signed, err := envelope.OpenReceipt(&env.Header, rs, uint32(j), sealed)
		if err != nil {
			t.Fatalf("receipt of step %d: %v", j, err)
		}
		var sr wire.SignedReceipt
		var rc wire.Receipt
		if err := ipc.Unmarshal(signed, &sr); err != nil {
			t.Fatal(err)
		}
		if err := ipc.Unmarshal(sr.Receipt, &rc); err != nil {
			t.Fatal(err)
		}
		if rc.Step != uint32(j) || rc.Steps != 3 || rc.Status != wire.StatusSuccess {
			t.Errorf("receipt of step %d: %+v", j, rc)
		}
		if !wire.ReceiptSigned(att.ReceiptKey, &sr) {
			t.Fatalf("receipt of step %d does not verify", j)
		}
		if sr.Batch == nil || sr.Batch.Size != 3 || sr.Batch.Index != uint32(j) || (sig != nil && !bytes.Equal(sig, sr.Sig)) {
			t.Fatalf("receipt of step %d: batch %+v, not one signature for the chain", j, sr.Batch)
		}
		sig = sr.Sig
	}
	// Step 1 again, alone, on its input: a replay.
	if again := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: b.rec.FunctionID, Envelope: rep.Envelope}); again.ErrorCode != "replay" {
		t.Fatalf("replayed step 1: %+v", again)
	}

	for _, tc := range []struct {
		name  string
		chain []*loadedFn // sealed
		then  [][]byte    // asked
		want  string
	}{
		{"a failing step ends it", []*loadedFn{a, boom, c}, ids(boom, c), "[success/ application error/]"},
		{"swapped functions", []*loadedFn{a, b, c}, ids(c, b), "[success/ whisk internal error/wrong_function]"},
		{"not loaded", []*loadedFn{a, b, c}, [][]byte{[]byte("0123456789abcdef"), c.rec.FunctionID}, "[success/]"},
		{"longer than the envelope", []*loadedFn{a, b}, ids(b, c), "[success/ success/ whisk internal error/step]"},
	} {
		env, _ := f.sealChain(t, tc.chain, `{}`, time.Minute, defaultLimits)
		rep := f.rt.RunChain(context.Background(), &ipc.RunRequest{FunctionID: tc.chain[0].rec.FunctionID, Envelope: marshal(t, env), Then: tc.then})
		if got := fmt.Sprint(statuses(rep)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		// A step that ran has its receipt; a refused one none.
		for j, m := range append([]ipc.RunReply{*rep}, rep.More...) {
			if m.Executed != (len(m.Receipt) > 0) {
				t.Errorf("%s: step %d executed %v with a %d-byte receipt", tc.name, j, m.Executed, len(m.Receipt))
			}
		}
	}
}
