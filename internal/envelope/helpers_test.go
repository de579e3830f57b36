package envelope

import (
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

var suites = []Suite{SuiteX25519, SuiteMLKEM768X25519}

// testFn is a function version with a deterministic key pair.
type testFn struct {
	name string
	id   FunctionIdentity
	pub  hpke.PublicKey
}

// seeded returns n deterministic bytes for a label.
func seeded(label string, n int) []byte {
	var out []byte
	for i := uint32(0); len(out) < n; i++ {
		h := sha256.New()
		h.Write([]byte(label))
		h.Write(binary.BigEndian.AppendUint32(nil, i))
		out = h.Sum(out)
	}
	return out[:n]
}

func newTestFn(tb testing.TB, suite Suite, name string) *testFn {
	tb.Helper()
	kem, err := suite.KEM()
	if err != nil {
		tb.Fatal(err)
	}
	priv, err := kem.DeriveKeyPair(seeded("clemmys test function key "+name, 32))
	if err != nil {
		tb.Fatal(err)
	}
	wasm := seeded("clemmys test wasm "+name, 100)
	digest := sha256.Sum256(wasm)
	return &testFn{
		name: name,
		id: FunctionIdentity{
			FunctionID: seeded("clemmys test function id "+name, FunctionIDSize),
			CodeDigest: digest[:],
			KeyVersion: 1,
			PrivateKey: priv,
			AuthKey:    testAuthKey,
			Runtime:    testRuntime,
		},
		pub: priv.PublicKey(),
	}
}

func testKey(tb testing.TB, label string) Key {
	tb.Helper()
	k, err := KeyFromBytes(seeded(label, KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// testRuntime is the id of the runtime every test function is loaded in.
var testRuntime = RuntimeID(seeded("clemmys test runtime key", 32))

// testAuthKey stands for AuthKey(gateway secret, "tenant").
var testAuthKey = AuthKey(mustKey(seeded("clemmys test gateway secret", KeySize)), "tenant")

func mustKey(b []byte) Key {
	k, err := KeyFromBytes(b)
	if err != nil {
		panic(err)
	}
	return k
}

var (
	testExpiry = time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

func newTestHeader(suite Suite, requestLabel string, fns ...*testFn) Header {
	h := Header{
		Version:   Version,
		Suite:     suite,
		RequestID: seeded("clemmys test request id "+requestLabel, RequestIDSize),
		Namespace: "tenant",
		Expiry:    testExpiry.UnixMilli(),
		Limits:    Limits{TimeoutMs: 60000, MemoryMB: 256, LogsKB: 64},
	}
	for _, f := range fns {
		h.Chain = append(h.Chain, Step{
			Name:       "/tenant/" + f.name,
			FunctionID: f.id.FunctionID,
			CodeDigest: f.id.CodeDigest,
			KeyVersion: f.id.KeyVersion,
			Runtime:    f.id.Runtime,
		})
	}
	return h
}

func pubsOf(fns ...*testFn) []hpke.PublicKey {
	var p []hpke.PublicKey
	for _, f := range fns {
		p = append(p, f.pub)
	}
	return p
}

// wireTrip marshals and unmarshals e, as every hop does.
func wireTrip(tb testing.TB, e *Envelope) *Envelope {
	tb.Helper()
	b, err := e.Marshal()
	if err != nil {
		tb.Fatalf("Marshal: %v", err)
	}
	out, err := Unmarshal(b)
	if err != nil {
		tb.Fatalf("Unmarshal: %v", err)
	}
	return out
}

// cloneEnv deep-copies an envelope so that cases can mutate it freely.
func cloneEnv(e *Envelope) *Envelope {
	c := &Envelope{Header: e.Header.Clone(), Step: e.Step, Body: cloneBytes(e.Body), Auth: cloneBytes(e.Auth)}
	for _, cp := range e.Capsules {
		c.Capsules = append(c.Capsules, cloneBytes(cp))
	}
	return c
}
