package kms_test

import (
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

func meas(s string) []byte {
	m := sha256.Sum256([]byte(s))
	return m[:]
}

var (
	kmsMeas     = meas("kms binary")
	gatewayMeas = meas("gateway binary")
	runtimeMeas = meas("enclave runtime v1")
	runtimeV2   = meas("enclave runtime v2")
)

// clock is a settable clock for nonce expiry.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is a bus, a simulated platform, a running KMS and a connected
// gateway client.
type env struct {
	t       testing.TB
	dir     string
	srv     *bus.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	plat    *sim.Machine
	clock   *clock
	kmsCfg  kms.Config
	kms     *kms.KMS
	gateway *kmsclient.Client
	replica string // the KMS replica of the last nonce
}

func simRegistry(p *sim.Machine) *tee.Registry {
	r := tee.NewRegistry()
	r.Add(sim.Platform, sim.NewVerifier(p.PublicKey()))
	return r
}

func newEnv(t testing.TB, mutate ...func(*kms.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := bus.Start(ctx, bus.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	e := &env{t: t, dir: dir, srv: srv, nc: connect(t, srv, "test"), clock: &clock{}}
	e.js, err = jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	e.plat, err = sim.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.kmsCfg = kms.Config{
		Verifiers:           simRegistry(e.plat),
		Attester:            e.plat.Attester(kmsMeas, 1, false),
		StorageKey:          e.plat.SealingKey("kms storage"),
		DefaultPolicy:       wire.Policy{Measurements: [][]byte{runtimeMeas}},
		GatewayMeasurements: [][]byte{gatewayMeas},
		Log:                 testLog(t),
		Now:                 e.clock.Now,
	}
	for _, m := range mutate {
		m(&e.kmsCfg)
	}
	e.startKMS()
	e.gateway = e.client(e.plat.Attester(gatewayMeas, 1, false), [][]byte{kmsMeas})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.gateway.Connect(ctx); err != nil {
		t.Fatal(err)
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

// startKMS starts a KMS with e.kmsCfg on its own bus connection.
func (e *env) startKMS() {
	e.t.Helper()
	cfg := e.kmsCfg
	cfg.Conn = connect(e.t, e.srv, "kms")
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.JS = js
	k, err := kms.New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := k.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(k.Stop)
	e.kms = k
}

func (e *env) client(att tee.Attester, kmsMeasurements [][]byte) *kmsclient.Client {
	return kmsclient.New(kmsclient.Config{
		Conn: e.nc, Attester: att, Verifiers: simRegistry(e.plat),
		KMSMeasurements: kmsMeasurements, Log: testLog(e.t),
	})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

type created struct {
	rec     *wire.FunctionRecord
	signed  wire.SignedRecord
	codeKey envelope.Key
}

func (e *env) create(ns, action string, suite envelope.Suite) created {
	e.t.Helper()
	digest := sha256.Sum256([]byte("wasm of " + action))
	rec, sr, key, err := e.gateway.CreateFunction(ctx(e.t), wire.CreateFunction{
		Namespace: ns, Action: action, CodeDigest: digest[:], Suite: uint16(suite),
	})
	if err != nil {
		e.t.Fatalf("create function: %v", err)
	}
	return created{rec, sr, key}
}

// runtime is a runtime-like caller of the release protocol.
type runtime struct {
	att tee.Attester
	eph hpke.PrivateKey
}

func newRuntime(t testing.TB, att tee.Attester) *runtime {
	t.Helper()
	eph, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &runtime{att: att, eph: eph}
}

func (e *env) nonce() []byte {
	e.t.Helper()
	var n wire.Nonce
	if err := bus.Call(ctx(e.t), e.nc, wire.SubjectKMSNonce, struct{}{}, &n); err != nil {
		e.t.Fatal(err)
	}
	e.replica = n.Replica
	return n.Nonce
}

// releaseReq builds a well-formed release request.
func (e *env) releaseReq(rt *runtime, fid []byte) *wire.ReleaseRequest {
	e.t.Helper()
	nonce := e.nonce()
	pub := rt.eph.PublicKey().Bytes()
	ev, err := rt.att.Attest(wire.ReleaseReportData(nonce, pub, nil))
	if err != nil {
		e.t.Fatal(err)
	}
	return &wire.ReleaseRequest{Nonce: nonce, EphemeralKey: pub, Evidence: ev, FunctionID: fid}
}

// send sends a release request and opens the bundle.
func (e *env) send(rt *runtime, req *wire.ReleaseRequest) (*wire.KeyBundle, error) {
	var rep wire.ReleaseReply
	if err := bus.Call(ctx(e.t), e.nc, wire.SubjectKMSReleaseAt(e.replica), req, &rep); err != nil {
		return nil, err
	}
	plain, err := hpke.Open(rt.eph, hpke.HKDFSHA256(), hpke.AES256GCM(), wire.ReleaseInfo(req.Nonce, req.FunctionID), rep.Sealed)
	if err != nil {
		return nil, err
	}
	var b wire.KeyBundle
	if err := bus.Unmarshal(plain, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

func (e *env) release(rt *runtime, fid []byte) (*wire.KeyBundle, error) {
	return e.send(rt, e.releaseReq(rt, fid))
}

// wantCode fails unless err is a *wire.Error with code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != code {
		t.Fatalf("err = %v, want wire error %q", err, code)
	}
}
