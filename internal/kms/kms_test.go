package kms_test

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

// checkBundle checks that a released bundle holds the keys of fn.
func checkBundle(t *testing.T, b *wire.KeyBundle, fn created) {
	t.Helper()
	if !bytes.Equal(b.Record.FunctionID, fn.rec.FunctionID) || !bytes.Equal(b.Record.PublicKey, fn.rec.PublicKey) ||
		b.Record.Namespace != fn.rec.Namespace || b.Record.KeyVersion != 1 {
		t.Fatalf("bundle record %+v does not match %+v", b.Record, fn.rec)
	}
	kem, err := envelope.Suite(fn.rec.Suite).KEM()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kem.NewPrivateKey(b.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), fn.rec.PublicKey) {
		t.Fatal("released private key does not match the record's public key")
	}
	// A capsule sealed to the published key opens with the released one.
	ct, err := hpke.Seal(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), []byte("capsule"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), ct); err != nil || string(pt) != "capsule" {
		t.Fatalf("capsule round trip: %q, %v", pt, err)
	}
	ck, err := envelope.KeyFromBytes(b.CodeKey)
	if err != nil || !ck.Equal(fn.codeKey) {
		t.Fatal("released code key differs from the one the gateway got")
	}
}

func TestCreateAndRelease(t *testing.T) {
	e := newEnv(t)
	for _, suite := range []envelope.Suite{envelope.SuiteX25519, envelope.SuiteMLKEM768X25519} {
		t.Run(suite.String(), func(t *testing.T) {
			fn := e.create("alice", "hello", suite)
			if fn.rec.Suite != uint16(suite) || fn.rec.KeyVersion != 1 || len(fn.rec.FunctionID) != 16 || fn.rec.Created == 0 {
				t.Fatalf("record %+v", fn.rec)
			}
			if _, err := kmsclient.VerifyRecord(e.kms.SignKey(), fn.signed); err != nil {
				t.Fatal(err)
			}
			b, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
			if err != nil {
				t.Fatal(err)
			}
			checkBundle(t, b, fn)
		})
	}
	t.Run("default suite", func(t *testing.T) {
		fn := e.create("alice", "hello", 0)
		if fn.rec.Suite != uint16(envelope.SuiteX25519) {
			t.Fatalf("suite %d", fn.rec.Suite)
		}
	})
	t.Run("two functions have distinct keys", func(t *testing.T) {
		a, b := e.create("alice", "a", 0), e.create("alice", "b", 0)
		if bytes.Equal(a.rec.FunctionID, b.rec.FunctionID) || bytes.Equal(a.rec.PublicKey, b.rec.PublicKey) || a.codeKey.Equal(b.codeKey) {
			t.Fatal("function versions share keys")
		}
	})
}

func TestCreateFunctionValidation(t *testing.T) {
	e := newEnv(t)
	digest := make([]byte, 32)
	for name, req := range map[string]wire.CreateFunction{
		"no namespace":  {Action: "a", CodeDigest: digest},
		"no action":     {Namespace: "ns", CodeDigest: digest},
		"short digest":  {Namespace: "ns", Action: "a", CodeDigest: digest[:31]},
		"unknown suite": {Namespace: "ns", Action: "a", CodeDigest: digest, Suite: 9},
		"huge action":   {Namespace: "ns", Action: strings.Repeat("a", 2000), CodeDigest: digest},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := e.gateway.CreateFunction(ctx(t), req)
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
}

func TestReleaseRefusals(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", envelope.SuiteX25519)
	fid := fn.rec.FunctionID
	good := e.plat.Attester(runtimeMeas, 1, false)
	other, err := sim.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		code string
		req  func(t *testing.T, rt *runtime) *wire.ReleaseRequest
		att  tee.Attester
	}{
		{name: "forged evidence (another sim root)", code: wire.CodeAttestation, att: other.Attester(runtimeMeas, 1, false)},
		{name: "measurement not in the policy", code: wire.CodePolicy, att: e.plat.Attester(meas("evil runtime"), 1, false)},
		{name: "debug evidence", code: wire.CodePolicy, att: e.plat.Attester(runtimeMeas, 1, true)},
		{name: "unknown function", code: wire.CodeNotFound, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			return e.releaseReq(rt, bytes.Repeat([]byte{7}, 16))
		}},
		{name: "evidence for another ephemeral key", code: wire.CodeAttestation, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.EphemeralKey = newRuntime(t, good).eph.PublicKey().Bytes()
			return req
		}},
		{name: "evidence for another nonce", code: wire.CodeAttestation, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.Nonce = e.nonce()
			return req
		}},
		{name: "unknown nonce", code: wire.CodeInvalidNonce, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.Nonce = bytes.Repeat([]byte{1}, 32)
			ev, _ := good.Attest(wire.ReleaseReportData(req.Nonce, req.EphemeralKey, nil))
			req.Evidence = ev
			return req
		}},
		{name: "tampered nonce", code: wire.CodeInvalidNonce, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.Nonce[0] ^= 1
			ev, _ := good.Attest(wire.ReleaseReportData(req.Nonce, req.EphemeralKey, nil))
			req.Evidence = ev
			return req
		}},
		{name: "no nonce", code: wire.CodeInvalidNonce, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.Nonce = nil
			return req
		}},
		{name: "garbage evidence", code: wire.CodeAttestation, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.Evidence = []byte("trust me")
			return req
		}},
		{name: "bad ephemeral key", code: wire.CodeBadRequest, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			req := e.releaseReq(rt, fid)
			req.EphemeralKey = req.EphemeralKey[:31]
			return req
		}},
		{name: "short function id", code: wire.CodeBadRequest, req: func(t *testing.T, rt *runtime) *wire.ReleaseRequest {
			return e.releaseReq(rt, fid[:8])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			att := tc.att
			if att == nil {
				att = good
			}
			rt := newRuntime(t, att)
			var req *wire.ReleaseRequest
			if tc.req != nil {
				req = tc.req(t, rt)
			} else {
				req = e.releaseReq(rt, fid)
			}
			b, err := e.send(rt, req)
			if b != nil {
				t.Fatal("keys released")
			}
			wantCode(t, err, tc.code)
		})
	}

	t.Run("reused nonce", func(t *testing.T) {
		rt := newRuntime(t, good)
		req := e.releaseReq(rt, fid)
		if _, err := e.send(rt, req); err != nil {
			t.Fatal(err)
		}
		_, err := e.send(rt, req)
		wantCode(t, err, wire.CodeInvalidNonce)
	})
	t.Run("expired nonce", func(t *testing.T) {
		rt := newRuntime(t, good)
		req := e.releaseReq(rt, fid)
		e.clock.Advance(kms.NonceLifetime + time.Second)
		_, err := e.send(rt, req)
		wantCode(t, err, wire.CodeInvalidNonce)
		// A fresh nonce works at the new time.
		if _, err := e.release(rt, fid); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("policy message helps the operator", func(t *testing.T) {
		bad := meas("evil runtime")
		_, err := e.release(newRuntime(t, e.plat.Attester(bad, 1, false)), fid)
		var we *wire.Error
		if !errors.As(err, &we) || !strings.Contains(we.Message, "clemmys policy allow") || !strings.Contains(we.Message, "not in the policy") {
			t.Fatalf("unhelpful refusal: %v", err)
		}
	})
}

func TestSecurityVersionAndDebugPolicy(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", 0)
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{
		Measurements: [][]byte{runtimeMeas}, MinSecurityVersion: 3,
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 2, false)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
	if _, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 3, false)), fn.rec.FunctionID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{
		Measurements: [][]byte{runtimeMeas}, AllowDebug: true,
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 0, true)), fn.rec.FunctionID); err != nil {
		t.Fatalf("debug runtime refused although the policy allows debug: %v", err)
	}
}

func TestSimRefusedWhenNotAccepted(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", 0)
	e.kms.Stop()
	// Same state, but a KMS whose registry does not hold "sim" (a
	// production KMS): sim evidence of runtimes and gateways is refused.
	e.kmsCfg.Verifiers = tee.NewRegistry()
	e.startKMS()
	_, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodeAttestation)
	var we *wire.Error
	if errors.As(err, &we) && !strings.Contains(we.Message, `"sim" not accepted`) {
		t.Fatalf("refusal does not say sim is not accepted: %v", we)
	}
	_, _, _, err = e.gateway.CreateFunction(ctx(t), wire.CreateFunction{Namespace: "alice", Action: "x", CodeDigest: make([]byte, 32)})
	wantCode(t, err, wire.CodeAttestation)
}

func TestGatewayRefusals(t *testing.T) {
	e := newEnv(t)
	for name, att := range map[string]tee.Attester{
		"unaccepted measurement": e.plat.Attester(meas("rogue gateway"), 1, false),
		"debug gateway":          e.plat.Attester(gatewayMeas, 1, true),
		"runtime measurement":    e.plat.Attester(runtimeMeas, 1, false),
	} {
		t.Run(name, func(t *testing.T) {
			c := e.client(att, [][]byte{kmsMeas})
			if err := c.Connect(ctx(t)); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := c.CreateFunction(ctx(t), wire.CreateFunction{Namespace: "alice", Action: "x", CodeDigest: make([]byte, 32)})
			wantCode(t, err, wire.CodePolicy)
			_, err = c.GatewaySecret(ctx(t))
			wantCode(t, err, wire.CodePolicy)
			_, err = c.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{meas("x")}}})
			wantCode(t, err, wire.CodePolicy)
		})
	}
	t.Run("forged gateway evidence", func(t *testing.T) {
		other, _ := sim.LoadOrCreate(t.TempDir())
		c := e.client(other.Attester(gatewayMeas, 1, false), [][]byte{kmsMeas})
		if err := c.Connect(ctx(t)); err != nil {
			t.Fatal(err)
		}
		_, err := c.GatewaySecret(ctx(t))
		wantCode(t, err, wire.CodeAttestation)
	})

	// Hand-made calls, for what the client never does.
	replyKey := newRuntime(t, nil).eph.PublicKey().Bytes()
	gw := e.plat.Attester(gatewayMeas, 1, false)
	mkcall := func(op string, body []byte) *wire.GatewayCall {
		nonce := e.nonce()
		ev, err := gw.Attest(wire.GatewayCallReportData(nonce, replyKey, op, body))
		if err != nil {
			t.Fatal(err)
		}
		return &wire.GatewayCall{Nonce: nonce, ReplyKey: replyKey, Evidence: ev, Op: op, Body: body}
	}
	body, _ := bus.Marshal(&wire.GetPolicy{Namespace: "alice"})
	t.Run("reused nonce", func(t *testing.T) {
		call := mkcall(wire.OpGetPolicy, body)
		if err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), call, &wire.GatewayReply{}); err != nil {
			t.Fatal(err)
		}
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), call, &wire.GatewayReply{})
		wantCode(t, err, wire.CodeInvalidNonce)
	})
	t.Run("body swapped after attesting", func(t *testing.T) {
		call := mkcall(wire.OpGetPolicy, body)
		call.Body, _ = bus.Marshal(&wire.GetPolicy{Namespace: "bob"})
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), call, &wire.GatewayReply{})
		wantCode(t, err, wire.CodeAttestation)
	})
	t.Run("op swapped after attesting", func(t *testing.T) {
		call := mkcall(wire.OpGetPolicy, body)
		call.Op = wire.OpGatewaySecret
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), call, &wire.GatewayReply{})
		wantCode(t, err, wire.CodeAttestation)
	})
	t.Run("reply key swapped after attesting", func(t *testing.T) {
		call := mkcall(wire.OpGatewaySecret, nil)
		call.ReplyKey = newRuntime(t, nil).eph.PublicKey().Bytes()
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), call, &wire.GatewayReply{})
		wantCode(t, err, wire.CodeAttestation)
	})
	t.Run("unknown op", func(t *testing.T) {
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), mkcall("delete_everything", nil), &wire.GatewayReply{})
		wantCode(t, err, wire.CodeBadRequest)
	})
	t.Run("malformed call", func(t *testing.T) {
		err := bus.Call(ctx(t), e.nc, wire.SubjectKMSGatewayAt(e.replica), "not a call", &wire.GatewayReply{})
		wantCode(t, err, wire.CodeBadRequest)
	})
}

func TestPolicyUpgradePath(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", 0)
	bobFn := e.create("bob", "hello", 0)
	v2 := newRuntime(t, e.plat.Attester(runtimeV2, 1, false))

	_, err := e.release(v2, fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)

	p, err := e.gateway.GetPolicy(ctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Measurements) != 1 || !bytes.Equal(p.Measurements[0], runtimeMeas) {
		t.Fatalf("default policy not reported: %+v", p)
	}
	// The owner adds the new runtime's measurement.
	p.Measurements = append(p.Measurements, runtimeV2)
	got, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: *p})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Measurements) != 2 {
		t.Fatalf("stored policy %+v", got)
	}
	b, err := e.release(v2, fn.rec.FunctionID)
	if err != nil {
		t.Fatalf("release to the upgraded runtime: %v", err)
	}
	checkBundle(t, b, fn)
	if _, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID); err != nil {
		t.Fatalf("old runtime refused although still in the policy: %v", err)
	}
	// New functions of the namespace get the namespace policy.
	fn2 := e.create("alice", "later", 0)
	if _, err := e.release(v2, fn2.rec.FunctionID); err != nil {
		t.Fatal(err)
	}
	// Another namespace is unaffected.
	_, err = e.release(v2, bobFn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
	if p, err := e.gateway.GetPolicy(ctx(t), "bob"); err != nil || len(p.Measurements) != 1 {
		t.Fatalf("bob's policy: %+v, %v", p, err)
	}
	// Removing a measurement revokes it.
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{runtimeV2}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
}

func TestSetPolicyValidation(t *testing.T) {
	e := newEnv(t)
	for name, req := range map[string]wire.SetPolicy{
		"empty":             {Namespace: "alice"},
		"short measurement": {Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{make([]byte, 31)}}},
		"long measurement":  {Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{make([]byte, 65)}}},
		"no namespace":      {Policy: wire.Policy{Measurements: [][]byte{runtimeMeas}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.gateway.SetPolicy(ctx(t), req)
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{make([]byte, 48)}}}); err != nil {
		t.Fatalf("48-byte (SNP/TDX) measurement refused: %v", err)
	}
}

func TestNoDefaultPolicy(t *testing.T) {
	e := newEnv(t, func(c *kms.Config) { c.DefaultPolicy = wire.Policy{} })
	_, _, _, err := e.gateway.CreateFunction(ctx(t), wire.CreateFunction{Namespace: "alice", Action: "x", CodeDigest: make([]byte, 32)})
	wantCode(t, err, wire.CodePolicy)
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{runtimeMeas}}}); err != nil {
		t.Fatal(err)
	}
	fn := e.create("alice", "x", 0)
	if _, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID); err != nil {
		t.Fatal(err)
	}
}

func TestRestartPersistence(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", envelope.SuiteMLKEM768X25519)
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{runtimeMeas, runtimeV2}}}); err != nil {
		t.Fatal(err)
	}
	secret1, err := e.gateway.GatewaySecret(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	signKey := e.kms.SignKey()
	e.kms.Stop()

	e.startKMS()
	if !bytes.Equal(e.kms.SignKey(), signKey) {
		t.Fatal("identity key changed across a restart")
	}
	// A fresh gateway connects to the restarted KMS and agrees on all of it.
	gw := e.client(e.plat.Attester(gatewayMeas, 1, false), [][]byte{kmsMeas})
	if err := gw.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.VerifyRecord(fn.signed); err != nil {
		t.Fatalf("record signed before the restart: %v", err)
	}
	secret2, err := gw.GatewaySecret(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !secret1.Equal(secret2) {
		t.Fatal("gateway secret changed across a restart")
	}
	b, err := e.release(newRuntime(t, e.plat.Attester(runtimeV2, 1, false)), fn.rec.FunctionID)
	if err != nil {
		t.Fatalf("release after restart: %v", err)
	}
	checkBundle(t, b, fn)
	// The old client keeps working too (same identity).
	if _, err := e.gateway.GetPolicy(ctx(t), "alice"); err != nil {
		t.Fatal(err)
	}
}

func TestStateNeedsTheStorageKey(t *testing.T) {
	e := newEnv(t)
	e.create("alice", "hello", 0)
	e.kms.Stop()
	cfg := e.kmsCfg
	cfg.StorageKey = e.plat.SealingKey("another label")
	cfg.Conn = e.nc
	cfg.JS = e.js
	if _, err := kms.New(ctx(t), cfg); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("KMS started on state sealed under another key: %v", err)
	}
	cfg.StorageKey = [32]byte{}
	if _, err := kms.New(ctx(t), cfg); err == nil {
		t.Fatal("KMS started without a storage key")
	}
}

// allValues returns every raw value in the KMS bucket.
func allValues(t *testing.T, e *env) map[string][]byte {
	t.Helper()
	kv, err := store.KV(ctx(t), e.js, store.BucketKMS, 1)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		entry, err := kv.Get(ctx(t), k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = entry.Value()
	}
	return out
}

func TestStateAtRestIsSealed(t *testing.T) {
	e := newEnv(t)
	fns := []created{e.create("alice", "hello", envelope.SuiteX25519), e.create("alice", "pq", envelope.SuiteMLKEM768X25519)}
	secret, err := e.gateway.GatewaySecret(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{"gateway secret": secret.Bytes()}
	for _, fn := range fns {
		b, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
		if err != nil {
			t.Fatal(err)
		}
		secrets[fn.rec.Action+" private key"] = b.PrivateKey
		secrets[fn.rec.Action+" code key"] = b.CodeKey
		if len(b.PrivateKey) < 32 || len(b.CodeKey) != 32 {
			t.Fatalf("bundle of %s: %d-byte private key, %d-byte code key", fn.rec.Action, len(b.PrivateKey), len(b.CodeKey))
		}
	}
	values := allValues(t, e)
	if len(values) < 5 {
		t.Fatalf("only %d values in the bucket", len(values))
	}
	for k, v := range values {
		for name, s := range secrets {
			if bytes.Contains(v, s) {
				t.Errorf("KV value %s holds the %s in plaintext", k, name)
			}
		}
	}
	// The same on the raw JetStream files on disk.
	err = filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("file %s holds the %s in plaintext", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSealedValuesCannotBeSwapped(t *testing.T) {
	e := newEnv(t)
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Measurements: [][]byte{runtimeV2}, AllowDebug: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "bob", Policy: wire.Policy{Measurements: [][]byte{runtimeMeas}}}); err != nil {
		t.Fatal(err)
	}
	a, b := e.create("alice", "a", 0), e.create("bob", "b", 0)
	kv, err := store.KV(ctx(t), e.js, store.BucketKMS, 1)
	if err != nil {
		t.Fatal(err)
	}
	swap := func(from, to string) {
		entry, err := kv.Get(ctx(t), from)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx(t), to, entry.Value()); err != nil {
			t.Fatal(err)
		}
	}
	// The operator copies alice's lax policy over bob's...
	swap(store.Key("policy", "alice"), store.Key("policy", "bob"))
	if _, err := e.gateway.GetPolicy(ctx(t), "bob"); err == nil {
		t.Fatal("a policy moved to another namespace was accepted")
	}
	// ... and alice's function state (policy allows v2) over bob's function.
	swap(store.Key("fn", hex.EncodeToString(a.rec.FunctionID)), store.Key("fn", hex.EncodeToString(b.rec.FunctionID)))
	bundle, err := e.release(newRuntime(t, e.plat.Attester(runtimeV2, 1, false)), b.rec.FunctionID)
	if bundle != nil || err == nil {
		t.Fatal("function state moved to another function id was accepted")
	}
	wantCode(t, err, wire.CodeInternal)
}

func TestNonceBound(t *testing.T) {
	e := newEnv(t, func(c *kms.Config) { c.MaxNonces = 3 })
	rt := newRuntime(t, e.plat.Attester(meas("evil"), 1, false))
	fid := make([]byte, 16)
	// Valid nonces are consumed even when the request fails later.
	for range 3 {
		_, err := e.release(rt, fid)
		wantCode(t, err, wire.CodeNotFound)
	}
	_, err := e.release(rt, fid)
	wantCode(t, err, wire.CodeUnavailable)
	// Once they expire, the KMS has room again.
	e.clock.Advance(kms.NonceLifetime + 2*time.Second)
	_, err = e.release(rt, fid)
	wantCode(t, err, wire.CodeNotFound)
}

func TestIdentityEvidence(t *testing.T) {
	e := newEnv(t)
	var id wire.KMSIdentity
	if err := bus.Call(ctx(t), e.nc, wire.SubjectKMSIdentity, struct{}{}, &id); err != nil {
		t.Fatal(err)
	}
	c, err := simRegistry(e.plat).Verify(id.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReportData != wire.KMSIdentityReportData(id.SignKey) || !bytes.Equal(c.Measurement, kmsMeas) {
		t.Fatalf("identity evidence claims %+v", c)
	}
	if !bytes.Equal(id.SignKey, e.kms.SignKey()) {
		t.Fatal("identity key")
	}
}

func TestConcurrentCreateAndSetPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e := newEnv(t)
	// A second replica on the same state.
	first := e.kms
	e.startKMS()
	if !bytes.Equal(first.SignKey(), e.kms.SignKey()) {
		t.Fatal("replicas disagree on the identity")
	}
	errs := make(chan error, 40)
	ids := make(chan []byte, 20)
	for i := range 20 {
		go func() {
			if i%2 == 0 {
				_, err := e.gateway.SetPolicy(context.Background(), wire.SetPolicy{Namespace: "alice",
					Policy: wire.Policy{Measurements: [][]byte{runtimeMeas, runtimeV2}}})
				errs <- err
				return
			}
			digest := make([]byte, 32)
			rec, _, _, err := e.gateway.CreateFunction(context.Background(), wire.CreateFunction{Namespace: "alice", Action: "f", CodeDigest: digest})
			if err == nil {
				ids <- rec.FunctionID
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(ids)
	v2 := newRuntime(t, e.plat.Attester(runtimeV2, 1, false))
	for id := range ids {
		if _, err := e.release(v2, id); err != nil {
			t.Fatalf("function %x created concurrently with SetPolicy missed the policy: %v", id, err)
		}
	}
}

// TestReplicas: two KMS replicas on one bus (the same storage key and
// state) serve one deployment: gateway calls and key releases work
// whichever replica issued the nonce, and a release request captured on
// the bus cannot be replayed at the other replica, nor again at its own.
func TestReplicas(t *testing.T) {
	e := newEnv(t)
	first := e.kms
	e.startKMS() // the second replica
	second := e.kms
	if first.Replica() == second.Replica() {
		t.Fatal("two replicas share an id")
	}
	// Gateway calls spread over both (the nonce subject is a queue group).
	for i := range 8 {
		fn := e.create("alice", "hello"+string(rune('a'+i)), 0)
		if _, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	fn := e.create("alice", "replayed", 0)
	rt := newRuntime(t, e.plat.Attester(runtimeMeas, 1, false))
	req := e.releaseReq(rt, fn.rec.FunctionID)
	issuer := e.replica
	other := first.Replica()
	if other == issuer {
		other = second.Replica()
	}
	var rep wire.ReleaseReply
	err := bus.Call(ctx(t), e.nc, wire.SubjectKMSReleaseAt(other), req, &rep)
	wantCode(t, err, wire.CodeInvalidNonce)
	if _, err := e.send(rt, req); err != nil {
		t.Fatalf("release at the issuing replica: %v", err)
	}
	err = bus.Call(ctx(t), e.nc, wire.SubjectKMSReleaseAt(issuer), req, &rep)
	wantCode(t, err, wire.CodeInvalidNonce)
	err = bus.Call(ctx(t), e.nc, wire.SubjectKMSReleaseAt(other), req, &rep)
	wantCode(t, err, wire.CodeInvalidNonce)
}

// TestVersionRegistry: the registry only moves forward, per action, and
// commits only versions the KMS created.
func TestVersionRegistry(t *testing.T) {
	e := newEnv(t)
	ctx := ctx(t)
	old := e.create("alice", "hello", 0)
	e.clock.Advance(time.Second)
	newer := e.create("alice", "hello", 0)
	lv, err := e.gateway.CommitVersion(ctx, newer.rec.FunctionID)
	if err != nil || lv.Created != newer.rec.Created || lv.Deleted != 0 {
		t.Fatalf("commit newer: %+v %v", lv, err)
	}
	// An older version committed late does not move it back.
	if lv, err = e.gateway.CommitVersion(ctx, old.rec.FunctionID); err != nil || lv.Created != newer.rec.Created {
		t.Fatalf("commit older: %+v %v", lv, err)
	}
	if _, err := e.gateway.CommitVersion(ctx, bytes.Repeat([]byte{9}, 16)); err == nil {
		t.Fatal("committed a version the KMS never created")
	}
	// A deletion covers every version created so far; a smaller one does
	// not move it back.
	if lv, err = e.gateway.RetireAction(ctx, "alice", "hello", 1); err != nil || lv.Deleted != newer.rec.Created {
		t.Fatalf("retire: %+v %v", lv, err)
	}
	if lv, err = e.gateway.LatestVersion(ctx, "alice", "hello"); err != nil || lv.Created != newer.rec.Created || lv.Deleted != newer.rec.Created {
		t.Fatalf("latest: %+v %v", lv, err)
	}
	// Other actions and namespaces have their own entries.
	for _, ref := range [][2]string{{"alice", "other"}, {"bob", "hello"}} {
		if lv, err := e.gateway.LatestVersion(ctx, ref[0], ref[1]); err != nil || lv.Created != 0 || lv.Deleted != 0 {
			t.Fatalf("%v: %+v %v", ref, lv, err)
		}
	}
}

// TestEntityRegistry: entity generations (rules, packages, action
// entities) move only forward, are kept apart from function versions, and
// only entity keys are accepted.
func TestEntityRegistry(t *testing.T) {
	e := newEnv(t)
	ctx := ctx(t)
	rule := wire.EntityKey(wire.EntityRule, "r")
	if lv, err := e.gateway.CommitEntity(ctx, "alice", rule, 7); err != nil || lv.Created != 7 {
		t.Fatalf("commit 7: %+v %v", lv, err)
	}
	if lv, err := e.gateway.CommitEntity(ctx, "alice", rule, 5); err != nil || lv.Created != 7 {
		t.Fatalf("commit 5 after 7: %+v %v", lv, err)
	}
	if lv, err := e.gateway.RetireAction(ctx, "alice", rule, 3); err != nil || lv.Deleted != 7 {
		t.Fatalf("retire: %+v %v", lv, err)
	}
	if lv, err := e.gateway.LatestVersion(ctx, "alice", rule); err != nil || lv.Created != 7 || lv.Deleted != 7 {
		t.Fatalf("latest: %+v %v", lv, err)
	}
	// The action "r" and the package "r" have their own entries.
	for _, name := range []string{"r", wire.EntityKey(wire.EntityPackage, "r")} {
		if lv, err := e.gateway.LatestVersion(ctx, "alice", name); err != nil || lv.Created != 0 || lv.Deleted != 0 {
			t.Fatalf("%s: %+v %v", name, lv, err)
		}
	}
	// A commit cannot move a function version's entry, nor take a
	// non-positive generation.
	for _, tc := range []struct {
		entity string
		gen    int64
	}{{"r", 9}, {"pkg/r", 9}, {"other:r", 9}, {"rule:", 9}, {rule, 0}, {rule, -1}} {
		_, err := e.gateway.CommitEntity(ctx, "alice", tc.entity, tc.gen)
		wantCode(t, err, wire.CodeBadRequest)
	}
}

// TestCodeKey: an attested gateway gets a function's code key for the
// function's own namespace only (GET of an action with its code).
func TestCodeKey(t *testing.T) {
	e := newEnv(t)
	fn := e.create("alice", "hello", 0)
	k, err := e.gateway.CodeKey(ctx(t), "alice", fn.rec.FunctionID)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(fn.codeKey) {
		t.Fatal("the code key differs from the one created")
	}
	for _, tc := range []struct {
		name string
		ns   string
		fid  []byte
		code string
	}{
		{"another namespace", "bob", fn.rec.FunctionID, wire.CodeNotFound},
		{"unknown function", "alice", make([]byte, 16), wire.CodeNotFound},
		{"short id", "alice", []byte{1, 2}, wire.CodeBadRequest},
		{"bad namespace", "", fn.rec.FunctionID, wire.CodeBadRequest},
	} {
		_, err := e.gateway.CodeKey(ctx(t), tc.ns, tc.fid)
		if err == nil {
			t.Errorf("%s: a code key was released", tc.name)
			continue
		}
		wantCode(t, err, tc.code)
	}
}
