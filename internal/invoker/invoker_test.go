package invoker

import (
	"bytes"
	"context"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// enclavePath is the clemmys-enclave binary built by TestMain.
var enclavePath string

func TestMain(m *testing.M) {
	if os.Getenv(oldRuntimeEnv) != "" {
		oldRuntime()
		return
	}
	dir, err := os.MkdirTemp("", "clemmys-invoker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enclavePath = filepath.Join(dir, "clemmys-enclave")
	cmd := exec.Command("go", "build", "-o", enclavePath, "./cmd/clemmys-enclave")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build clemmys-enclave: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func meas(s string) []byte {
	m := sha256.Sum256([]byte(s))
	return m[:]
}

var (
	kmsMeas     = meas("kms binary")
	gatewayMeas = meas("gateway binary")
	otherMeas   = meas("some other enclave runtime")
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// env is a bus, a simulated TEE platform, a real KMS, an attested gateway
// client of it and a running invoker whose runtimes are real
// clemmys-enclave processes.
type env struct {
	t        testing.TB
	nc       *nats.Conn // the test's own connection: plays gateway and controller
	code     jetstream.ObjectStore
	kc       *kmsclient.Client
	gwSecret envelope.Key
	enclave  []byte // measurement of the enclave binary
	iv       *Invoker
	releases atomic.Int64 // key-release requests seen on the bus
}

func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	dir := t.TempDir()
	srv, err := bus.Start(ctx, bus.Options{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	connect := func(name string) (*nats.Conn, jetstream.JetStream) {
		t.Helper()
		nc, err := srv.Connect(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}

	simDir := filepath.Join(dir, "sim")
	plat, err := sim.LoadOrCreate(simDir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t}
	if e.enclave, err = sim.MeasureFile(enclavePath); err != nil {
		t.Fatal(err)
	}
	verifiers := tee.NewRegistry()
	verifiers.Add(sim.Platform, sim.NewVerifier(plat.PublicKey()))

	knc, kjs := connect("kms")
	k, err := kms.New(ctx, kms.Config{
		Conn: knc, JS: kjs, Verifiers: verifiers,
		Attester:            plat.Attester(kmsMeas, 1, false),
		StorageKey:          plat.SealingKey("kms storage"),
		DefaultPolicy:       wire.Policy{Measurements: [][]byte{e.enclave}},
		GatewayMeasurements: [][]byte{gatewayMeas},
		Log:                 testLog(t).With("service", "kms"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)

	var js jetstream.JetStream
	e.nc, js = connect("test")
	if e.code, err = store.Objects(ctx, js, store.ObjectsCode, 1); err != nil {
		t.Fatal(err)
	}
	// The bus is untrusted and anyone may listen: count key releases.
	spy, err := e.nc.Subscribe(wire.SubjectKMSReleaseAt("*"), func(*nats.Msg) { e.releases.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spy.Unsubscribe() })
	e.kc = kmsclient.New(kmsclient.Config{
		Conn: e.nc, Attester: plat.Attester(gatewayMeas, 1, false), Verifiers: verifiers,
		KMSMeasurements: [][]byte{kmsMeas}, Log: testLog(t).With("service", "gateway"),
	})
	if err := e.kc.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if e.gwSecret, err = e.kc.GatewaySecret(ctx); err != nil {
		t.Fatal(err)
	}

	inc, ijs := connect("invoker")
	cfg := Config{
		ID: "inv-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), Conn: inc, JS: ijs,
		EnclavePath:       enclavePath,
		EnclaveArgs:       []string{"--tee", sim.Platform, "--sim-dir", simDir, "--kms-key", hex.EncodeToString(k.SignKey())},
		Capacity:          4,
		HeartbeatInterval: 50 * time.Millisecond,
		Log:               testLog(t).With("service", "invoker"),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if e.iv, err = New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.iv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.iv.Stop()
		if left := childEnclaves(t); len(left) > 0 {
			t.Errorf("enclave runtimes left after Stop: %v", left)
		}
	})
	return e
}

// fn is a deployed function version.
type fn struct {
	rec *wire.FunctionRecord
	pub hpke.PublicKey
}

// deploy plays the gateway and the controller: it registers the function
// with the KMS, seals the module with the code key and stores it.
func (e *env) deploy(namespace, action string, wasm []byte, storeCode bool) *fn {
	e.t.Helper()
	ctx := testCtx(e.t, 20*time.Second)
	digest := sha256.Sum256(wasm)
	rec, _, codeKey, err := e.kc.CreateFunction(ctx, wire.CreateFunction{
		Namespace: namespace, Action: action, CodeDigest: digest[:], Suite: uint16(envelope.SuiteX25519),
	})
	if err != nil {
		e.t.Fatalf("create function: %v", err)
	}
	if storeCode {
		sealed, err := envelope.SealCode(codeKey, rec.FunctionID, digest[:], wasm)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.code.PutBytes(ctx, hex.EncodeToString(rec.FunctionID), sealed); err != nil {
			e.t.Fatal(err)
		}
	}
	kem, err := envelope.SuiteX25519.KEM()
	if err != nil {
		e.t.Fatal(err)
	}
	pub, err := kem.NewPublicKey(rec.PublicKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return &fn{rec: rec, pub: pub}
}

// call is one sealed invocation.
type call struct {
	req    *wire.RunRequest
	sent   *envelope.Envelope
	secret envelope.Key
}

// seal plays the gateway: it seals params for f and builds the run request
// the controller would send.
func (e *env) seal(f *fn, params string) *call {
	e.t.Helper()
	reqID := make([]byte, envelope.RequestIDSize)
	rand.Read(reqID)
	rid := e.place(f.rec.Namespace)
	h := envelope.Header{
		Version: envelope.Version, Suite: envelope.SuiteX25519, RequestID: reqID, Namespace: f.rec.Namespace,
		Chain: []envelope.Step{{
			Name:       "/" + f.rec.Namespace + "/" + f.rec.Action,
			FunctionID: f.rec.FunctionID, CodeDigest: f.rec.CodeDigest, KeyVersion: f.rec.KeyVersion,
			Runtime: rid,
		}},
		Expiry: time.Now().Add(time.Minute).UnixMilli(),
		Limits: envelope.Limits{TimeoutMs: 20000, MemoryMB: 128, LogsKB: 64},
	}
	secret := envelope.RequestSecret(e.gwSecret, reqID)
	sent, err := envelope.Seal(h, secret, envelope.AuthKey(e.gwSecret, f.rec.Namespace), []hpke.PublicKey{f.pub}, []byte(params))
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := sent.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	return &call{
		req: &wire.RunRequest{
			ActivationID: hex.EncodeToString(reqID), Namespace: f.rec.Namespace, Action: f.rec.Action,
			FunctionID: f.rec.FunctionID, Envelope: b, TimeoutMs: h.Limits.TimeoutMs, Runtime: rid,
		},
		sent: sent, secret: secret,
	}
}

// place plays the controller placing namespace ns: the id of the
// invoker's runtime of ns, which envelopes designate.
func (e *env) place(ns string) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rep wire.InvokerPlaced
	if err := bus.Call(ctx, e.nc, wire.SubjectInvokerPlace(e.iv.cfg.ID), &wire.InvokerPlace{Namespace: ns}, &rep); err != nil {
		e.t.Fatal(err)
	}
	return rep.Runtime
}

// outcome is a run result with its sealed parts opened.
type outcome struct {
	res     wire.RunResult
	out     map[string]any // opened result; nil if nothing was sealed
	logs    string
	latency time.Duration
}

// send sends c's run request to the invoker's subject, as the controller
// does, and opens whatever comes back sealed.
func (e *env) send(c *call) (*outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := &outcome{}
	start := time.Now()
	if err := bus.Call(ctx, e.nc, wire.SubjectInvokerRun(e.iv.cfg.ID), c.req, &o.res); err != nil {
		return nil, err
	}
	o.latency = time.Since(start)
	if len(o.res.Envelope) == 0 {
		if len(o.res.Logs) != 0 {
			return nil, errors.New("logs without a result")
		}
		return o, nil
	}
	got, err := envelope.Unmarshal(o.res.Envelope)
	if err != nil {
		return nil, fmt.Errorf("result envelope: %w", err)
	}
	d, err := c.sent.Header.Digest()
	if err != nil {
		return nil, err
	}
	plain, err := envelope.OpenResult(got, c.secret, d)
	if err != nil {
		return nil, fmt.Errorf("open result: %w", err)
	}
	if err := json.Unmarshal(plain, &o.out); err != nil {
		return nil, fmt.Errorf("result is not a JSON object: %w: %q", err, plain)
	}
	logs, err := envelope.OpenLogs(&c.sent.Header, c.secret, 0, o.res.Logs)
	if err != nil {
		return nil, fmt.Errorf("open logs: %w", err)
	}
	o.logs = string(logs)
	return o, nil
}

// run seals and sends, failing the test on transport errors.
func (e *env) run(f *fn, params string) *outcome {
	e.t.Helper()
	o, err := e.send(e.seal(f, params))
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

// wantSuccess checks a successful run whose result has key = value.
func wantSuccess(t *testing.T, o *outcome, key, value string) {
	t.Helper()
	if o.res.Status != wire.StatusSuccess || o.res.ErrorCode != "" {
		t.Fatalf("status %q, error %q (%s); want success", o.res.Status, o.res.ErrorCode, o.res.ErrorMessage)
	}
	if key != "" && o.out[key] != value {
		t.Fatalf("result %v, want %s = %q", o.out, key, value)
	}
}

// wantRefused checks a run that failed with code and ran nothing.
func wantRefused(t *testing.T, o *outcome, code string) {
	t.Helper()
	if o.res.Status != wire.StatusInternalError || o.res.ErrorCode != code {
		t.Fatalf("status %q, error %q (%s); want %q refusal", o.res.Status, o.res.ErrorCode, o.res.ErrorMessage, code)
	}
	if o.out != nil || len(o.res.Envelope) != 0 || len(o.res.Logs) != 0 {
		t.Fatalf("a refused step returned sealed output (result %v)", o.out)
	}
}

// proc returns the namespace's runtime process, or nil.
func (e *env) proc(namespace string) *runtimeProc {
	e.iv.mu.Lock()
	defer e.iv.mu.Unlock()
	return e.iv.runtimes[namespace]
}

func (e *env) pid(namespace string) int {
	e.t.Helper()
	p := e.proc(namespace)
	if p == nil {
		e.t.Fatalf("no runtime for namespace %q", namespace)
	}
	return p.cmd.Process.Pid
}

// loadedIn reports whether f has been loaded successfully into p.
func loadedIn(p *runtimeProc, f *fn) bool {
	p.mu.Lock()
	st := p.loaded[hex.EncodeToString(f.rec.FunctionID)]
	p.mu.Unlock()
	if st == nil {
		return false
	}
	select {
	case <-st.done:
		return st.err == nil
	default:
		return false
	}
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exited reports whether pid has exited completely: reaped, or a zombie
// whose other threads are gone too (a Go process's thread group leader
// turns zombie while its other threads may still hold the pipes open).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b) // pid (comm) state ...
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X') {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err != nil || len(tasks) <= 1
}

// childEnclaves lists the clemmys-enclave processes that are children of
// this test process, zombies included.
func childEnclaves(t testing.TB) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Logf("cannot list processes: %v", err)
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || s[open+1:end] != "clemmys-enclave" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			out = append(out, pid)
		}
	}
	return out
}

// TestMisplaced: a step designating a runtime the invoker does not run
// (sealed for one it replaced, or for another invoker's) is answered
// misplaced at once: nothing reaches a runtime, nothing runs.
func TestMisplaced(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, nil)
	alice := e.deploy("alice", "hello", hello, true)
	wantSuccess(t, e.run(alice, `{}`), "greeting", "Hello world!")
	c := e.seal(alice, `{}`)
	c.req.Runtime = envelope.RuntimeID([]byte("another runtime's key"))
	before := e.iv.Executions()
	o, err := e.send(c)
	if err != nil {
		t.Fatal(err)
	}
	if o.res.ErrorCode != wire.CodeMisplaced || o.res.Executed || o.out != nil || e.iv.Executions() != before {
		t.Fatalf("misplaced step: %+v", o.res)
	}
}

func TestRun(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e := newEnv(t, nil)
	alice := e.deploy("alice", "hello", hello, true)

	// Cold, then warm: the second call finds the function loaded.
	tests := []struct {
		name, params, greeting string
		cold                   bool
	}{
		{"cold", `{"name":"Ada"}`, "Hello Ada!", true},
		{"warm", `{"name":"Grace"}`, "Hello Grace!", false},
		{"warm default", `{}`, "Hello world!", false},
	}
	var pid int
	for _, tt := range tests {
		before := e.releases.Load()
		o := e.run(alice, tt.params)
		wantSuccess(t, o, "greeting", tt.greeting)
		if want := "greeting " + strings.TrimSuffix(strings.TrimPrefix(tt.greeting, "Hello "), "!"); !strings.Contains(o.logs, want) {
			t.Errorf("%s: logs %q, want them to contain %q", tt.name, o.logs, want)
		}
		released := e.releases.Load() - before
		switch {
		case tt.cold && (released != 1 || o.res.InitMs <= 0):
			t.Errorf("%s: %d key releases, init %d ms; want a load", tt.name, released, o.res.InitMs)
		case !tt.cold && (released != 0 || o.res.InitMs != 0):
			t.Errorf("%s: %d key releases, init %d ms; want no reload", tt.name, released, o.res.InitMs)
		}
		if pid == 0 {
			pid = e.pid("alice")
		} else if p := e.pid("alice"); p != pid {
			t.Errorf("%s: runtime pid %d, want the same runtime %d", tt.name, p, pid)
		}
		t.Logf("%s RunRequest latency: %v (init %d ms, run %d ms)", tt.name, o.latency, o.res.InitMs, o.res.End-o.res.Start)
	}

	t.Run("refusals", func(t *testing.T) {
		// A namespace whose policy names another runtime measurement.
		locked := e.deploy("locked", "hello", hello, true)
		pol, err := e.kc.SetPolicy(testCtx(t, 10*time.Second), wire.SetPolicy{
			Namespace: "locked", Policy: wire.Policy{Measurements: [][]byte{otherMeas}},
		})
		if err != nil || len(pol.Measurements) != 1 || !bytes.Equal(pol.Measurements[0], otherMeas) {
			t.Fatalf("set policy: %v %+v", err, pol)
		}
		// A function whose code never reached the store.
		missing := e.deploy("alice", "missing", hello, false)
		replayed := e.seal(alice, `{"name":"again"}`)
		if o, err := e.send(replayed); err != nil {
			t.Fatal(err)
		} else {
			wantSuccess(t, o, "greeting", "Hello again!")
		}
		tampered := e.seal(alice, `{}`)
		te, err := envelope.Unmarshal(tampered.req.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		te.Body[len(te.Body)-1] ^= 1
		if tampered.req.Envelope, err = te.Marshal(); err != nil {
			t.Fatal(err)
		}
		// Routed to the loaded hello, sealed for another function.
		other := e.seal(missing, `{}`)
		other.req.FunctionID = alice.rec.FunctionID

		tests := []struct {
			name     string
			call     *call
			code     string
			contains string // in the error message
		}{
			{"policy excludes the runtime", e.seal(locked, `{"name":"Eve"}`), wire.CodePolicy, hex.EncodeToString(e.enclave)},
			{"policy, again", e.seal(locked, `{}`), wire.CodePolicy, "not in the policy"},
			{"code missing", e.seal(missing, `{}`), "code_missing", ""},
			{"replay", replayed, "replay", ""},
			{"tampered body", tampered, "body", ""},
			{"envelope for another function", other, "wrong_function", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				o, err := e.send(tt.call)
				if err != nil {
					t.Fatal(err)
				}
				wantRefused(t, o, tt.code)
				if !strings.Contains(o.res.ErrorMessage, tt.contains) {
					t.Errorf("message %q, want it to contain %q", o.res.ErrorMessage, tt.contains)
				}
			})
		}
		if p := e.proc("locked"); p != nil && loadedIn(p, locked) {
			t.Error("the locked function was loaded")
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		ok := e.seal(alice, `{}`).req
		tests := []struct {
			name string
			req  any
		}{
			{"no namespace", &wire.RunRequest{FunctionID: ok.FunctionID, Envelope: ok.Envelope}},
			{"no function", &wire.RunRequest{Namespace: "alice", Envelope: ok.Envelope}},
			{"no envelope", &wire.RunRequest{Namespace: "alice", FunctionID: ok.FunctionID}},
			{"not a run request", []string{"x"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := bus.Call(testCtx(t, 5*time.Second), e.nc, wire.SubjectInvokerRun(e.iv.cfg.ID), tt.req, &wire.RunResult{})
				var we *wire.Error
				if !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
					t.Fatalf("err %v, want %s", err, wire.CodeBadRequest)
				}
			})
		}
	})
}

func TestRuntimeCrash(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	sleep := wasmbuild.MustBuild(t, "internal/testfuncs/sleep")
	e := newEnv(t, nil)
	greet := e.deploy("alice", "hello", hello, true)
	nap := e.deploy("alice", "sleep", sleep, true)

	wantSuccess(t, e.run(greet, `{"name":"one"}`), "greeting", "Hello one!")
	pid := e.pid("alice")

	// Between activations: the next request gets a fresh runtime, even if
	// it arrives before the invoker has noticed the exit.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the runtime to die", 5*time.Second, func() bool { return exited(pid) })
	before := e.releases.Load()
	o := e.run(greet, `{"name":"two"}`)
	if o.res.ErrorCode == "misplaced" {
		// Placed before the invoker noticed the exit: the step designates
		// the dead runtime, is refused having run nothing, and is placed
		// again, as the gateway does.
		wantRefused(t, o, "misplaced")
		o = e.run(greet, `{"name":"two"}`)
	}
	wantSuccess(t, o, "greeting", "Hello two!")
	if o.res.InitMs <= 0 || e.releases.Load() != before+1 {
		t.Errorf("init %d ms, %d releases; want the function reloaded into the new runtime", o.res.InitMs, e.releases.Load()-before)
	}
	pid2 := e.pid("alice")
	if pid2 == pid {
		t.Fatal("runtime was not restarted")
	}

	// During an activation: the step fails as crashed (it may have had
	// effects, so it is not retried), and the next one works.
	done := make(chan *outcome, 1)
	go func() {
		o, err := e.send(e.seal(nap, `{"ms":20000}`))
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	p := e.proc("alice")
	waitFor(t, "the sleep function to load", 20*time.Second, func() bool { return loadedIn(p, nap) })
	time.Sleep(200 * time.Millisecond) // let the run request reach the runtime
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o != nil {
			wantRefused(t, o, "runtime_crashed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the activation did not fail when its runtime died")
	}
	wantSuccess(t, e.run(greet, `{"name":"three"}`), "greeting", "Hello three!")
	if p := e.pid("alice"); p == pid2 || p == pid {
		t.Fatal("runtime was not restarted")
	}
}

func TestCapacity(t *testing.T) {
	sleep := wasmbuild.MustBuild(t, "internal/testfuncs/sleep")
	e := newEnv(t, func(c *Config) { c.Capacity = 1 })

	var (
		mu         sync.Mutex
		beats      []wire.Heartbeat
		maxFlight  int
		sawRunning bool
	)
	sub, err := e.nc.Subscribe(wire.SubjectInvokerHeartbeat, func(m *nats.Msg) {
		var hb wire.Heartbeat
		if err := bus.Unmarshal(m.Data, &hb); err != nil {
			t.Errorf("heartbeat: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		beats = append(beats, hb)
		maxFlight = max(maxFlight, hb.InFlight)
		sawRunning = sawRunning || hb.InFlight > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	nap := e.deploy("alice", "sleep", sleep, true)
	wantSuccess(t, e.run(nap, `{"ms":0}`), "", "") // cold start out of the way

	// Three concurrent steps on a capacity of one run one after another.
	const n, napMs = 3, 400
	results := make([]*outcome, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := e.send(e.seal(nap, fmt.Sprintf(`{"ms":%d}`, napMs)))
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = o
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if el := time.Since(start); el < n*napMs*time.Millisecond {
		t.Errorf("%d steps of %d ms took %v on a capacity of 1", n, napMs, el)
	}
	sort.Slice(results, func(i, j int) bool { return results[i].res.Start < results[j].res.Start })
	for i, o := range results {
		wantSuccess(t, o, "", "")
		if i > 0 && o.res.Start < results[i-1].res.End {
			t.Errorf("step %d started at %d before step %d ended at %d", i, o.res.Start, i-1, results[i-1].res.End)
		}
	}

	// A step that cannot get a slot before its deadline is refused.
	busy := make(chan *outcome, 1)
	go func() {
		o, _ := e.send(e.seal(nap, `{"ms":1500}`))
		busy <- o
	}()
	waitFor(t, "the slot to be taken", 5*time.Second, func() bool { return len(e.iv.sem) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	res := e.iv.Run(ctx, e.seal(nap, `{"ms":0}`).req)
	cancel()
	if res.Status != wire.StatusInternalError || res.ErrorCode != "overloaded" || len(res.Envelope) != 0 {
		t.Errorf("step without a slot: status %q, code %q; want overloaded", res.Status, res.ErrorCode)
	}
	if o := <-busy; o == nil {
		t.Error("the running step failed")
	} else {
		wantSuccess(t, o, "", "")
	}

	time.Sleep(2 * e.iv.cfg.HeartbeatInterval)
	mu.Lock()
	defer mu.Unlock()
	if len(beats) < 3 {
		t.Fatalf("%d heartbeats", len(beats))
	}
	for _, hb := range beats {
		if hb.InvokerID != e.iv.cfg.ID || hb.Capacity != 1 || hb.Time <= 0 {
			t.Fatalf("heartbeat %+v, want invoker %s with capacity 1", hb, e.iv.cfg.ID)
		}
	}
	if maxFlight > 1 || !sawRunning {
		t.Errorf("heartbeats reported at most %d in flight (saw running: %v); want 1", maxFlight, sawRunning)
	}
	if last := beats[len(beats)-1]; last.InFlight != 0 {
		t.Errorf("idle invoker reports %d in flight", last.InFlight)
	}
}

func TestStop(t *testing.T) {
	sleep := wasmbuild.MustBuild(t, "internal/testfuncs/sleep")

	t.Run("waits for running steps", func(t *testing.T) {
		// No spares: the runtimes are alice's and bob's (TestPool stops
		// spares).
		e := newEnv(t, func(c *Config) { c.PoolSize = -1 })
		nap := e.deploy("alice", "sleep", sleep, true)
		wantSuccess(t, e.run(nap, `{"ms":0}`), "", "")
		// A second runtime, with nothing loaded.
		if _, err := e.iv.runtime("bob"); err != nil {
			t.Fatal(err)
		}
		pids := []int{e.pid("alice"), e.pid("bob")}
		if got := childEnclaves(t); len(got) != 2 {
			t.Fatalf("runtime processes %v, want %v", got, pids)
		}

		done := make(chan *outcome, 1)
		go func() {
			o, _ := e.send(e.seal(nap, `{"ms":600}`))
			done <- o
		}()
		waitFor(t, "the step to start", 5*time.Second, func() bool { return len(e.iv.sem) == 1 })
		later := e.seal(nap, `{}`) // sealed while the invoker can still place
		e.iv.Stop()
		select {
		case o := <-done:
			if o == nil {
				t.Fatal("the running step failed")
			}
			wantSuccess(t, o, "", "")
		case <-time.After(5 * time.Second):
			t.Fatal("no reply to the step that was running when Stop was called")
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("runtime %d still exists after Stop (kill 0: %v)", pid, err)
			}
		}
		if left := childEnclaves(t); len(left) != 0 {
			t.Errorf("enclave runtimes left after Stop: %v", left)
		}
		// Stopped: nobody takes work, and Stop is idempotent.
		_, err := e.send(later)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeUnavailable {
			t.Errorf("request after Stop: %v, want %s", err, wire.CodeUnavailable)
		}
		e.iv.Stop()
		if _, err := e.iv.runtime("carol"); err == nil {
			t.Error("a stopped invoker started a runtime")
		}
	})

	t.Run("abandons steps after the grace period", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.StopGrace = 200 * time.Millisecond })
		nap := e.deploy("alice", "sleep", sleep, true)
		done := make(chan *outcome, 1)
		go func() {
			o, _ := e.send(e.seal(nap, `{"ms":20000}`))
			done <- o
		}()
		p := func() *runtimeProc { return e.proc("alice") }
		waitFor(t, "the step to run", 20*time.Second, func() bool { return p() != nil && loadedIn(p(), nap) })
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		e.iv.Stop()
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Stop took %v with a grace of 200ms", el)
		}
		if o := <-done; o == nil || o.res.ErrorCode != "timeout" {
			t.Errorf("abandoned step: %+v, want a timeout result", o)
		}
		if left := childEnclaves(t); len(left) != 0 {
			t.Errorf("enclave runtimes left after Stop: %v", left)
		}
	})
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRuntimeProcMisbehaving(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name   string
		script string
		logs   []string // in the invoker's log
	}{
		// 'garb' as a length is far over ipc.MaxFrame: the pipe is
		// unusable, and the still-running process must not hang callers.
		{"garbage on stdout", `printf 'garbage!'; exec sleep 30`, []string{"enclave runtime exited", "frame too large"}},
		{"closes stdout and lingers", `exec >&-; exec sleep 30`, []string{"enclave runtime exited"}},
		// Lines over any scanner limit are truncated, and stderr is drained
		// so the runtime never blocks writing to it.
		{"long stderr lines", `head -c 300000 /dev/zero | tr '\0' x >&2; echo >&2; echo after >&2; exec sleep 30`,
			[]string{"truncated=true", "line=after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			p, err := startRuntime(sh, []string{"-c", tt.script}, "ns", log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.stop(time.Second)
			if tt.name == "long stderr lines" {
				waitFor(t, "the line after the long one", 10*time.Second, func() bool { return strings.Contains(buf.String(), "line=after") })
				if !p.alive() {
					t.Fatal("runtime died")
				}
				p.stop(time.Second)
			}
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the runtime was not stopped")
			}
			err = p.call(testCtx(t, time.Second), ipc.OpHello, struct{}{}, nil)
			if !errors.Is(err, errRuntimeGone) || !errors.Is(err, errNotSent) {
				t.Errorf("call to a dead runtime: %v", err)
			}
			for _, want := range tt.logs {
				if !strings.Contains(buf.String(), want) {
					t.Errorf("log lacks %q:\n%.2000s", want, buf.String())
				}
			}
		})
	}
}

// TestReloadUnloaded: a runtime that keeps one function loaded unloads it
// when the next one loads; the invoker then loads it again (a new key
// release) and resends the step, which runs once.
func TestReloadUnloaded(t *testing.T) {
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e := newEnv(t, func(c *Config) { c.EnclaveArgs = append(c.EnclaveArgs, "--max-functions", "1") })
	a := e.deploy("alice", "a", echo, true)
	b := e.deploy("alice", "b", echo, true)
	for i, f := range []*fn{a, b, a, b} {
		before, ran := e.releases.Load(), e.iv.Executions()
		o := e.run(f, fmt.Sprintf(`{"i":"%d"}`, i))
		wantSuccess(t, o, "i", fmt.Sprint(i))
		if n := e.releases.Load() - before; n != 1 {
			t.Errorf("run %d: %d key releases, want 1 (a reload)", i, n)
		}
		if n := e.iv.Executions() - ran; n != 1 {
			t.Errorf("run %d: %d executions", i, n)
		}
	}
}

// oldRuntimeEnv makes the test binary play a runtime of frame protocol
// version 1, which answers hello without a version.
const oldRuntimeEnv = "CLEMMYS_TEST_OLD_RUNTIME"

func oldRuntime() {
	for {
		f, err := ipc.ReadFrame(os.Stdin)
		if err != nil {
			os.Exit(0)
		}
		body, _ := ipc.Marshal(&ipc.Hello{Platform: sim.Platform, Measurement: meas("old"), EphemeralKey: make([]byte, 32)})
		if err := ipc.WriteFrame(os.Stdout, &ipc.Frame{ID: f.ID, Body: body}); err != nil {
			os.Exit(1)
		}
	}
}

// TestRuntimeVersion: an invoker refuses to start with a runtime binary of
// another frame protocol version (an old clemmys-enclave next to a new
// clemmys), saying so, instead of failing every activation.
func TestRuntimeVersion(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(oldRuntimeEnv, "1")
	srv, err := bus.Start(testCtx(t, 10*time.Second), bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("invoker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	iv, err := New(testCtx(t, 10*time.Second), Config{ID: "inv-version", Conn: nc, JS: js, EnclavePath: self, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = iv.Start(context.Background())
	if !errors.Is(err, ErrRuntimeVersion) || !strings.Contains(err.Error(), fmt.Sprintf("version 0, this invoker %d", ipc.Version)) {
		iv.Stop()
		t.Fatalf("start with an old runtime: %v", err)
	}
	iv.Stop()
}
