package client

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

// A synthetic deployment: a KMS key, a runtime's receipt key certified by
// it, and receipts as a runtime makes them (the platform tests cover the
// real ones; these cover what a forger could change in the signature
// chain, which the platform never produces).
type fakeDeployment struct {
	kmsPub      ed25519.PublicKey
	kmsPriv     ed25519.PrivateKey
	rtPub       ed25519.PublicKey
	rtPriv      ed25519.PrivateKey
	runtimeID   []byte
	measurement []byte
}

func newDeployment(t testing.TB) *fakeDeployment {
	d := &fakeDeployment{runtimeID: make([]byte, 16), measurement: make([]byte, 32)}
	d.kmsPub, d.kmsPriv, _ = ed25519.GenerateKey(nil)
	d.rtPub, d.rtPriv, _ = ed25519.GenerateKey(nil)
	d.runtimeID[0], d.measurement[0] = 1, 2
	return d
}

func (d *fakeDeployment) cert(t testing.TB, ns string, signer ed25519.PrivateKey) []byte {
	body, err := bus.Marshal(&wire.RuntimeCert{RuntimeID: d.runtimeID, ReceiptKey: d.rtPub, Namespace: ns,
		Platform: sim.Platform, Measurement: d.measurement, Issued: 1})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := bus.Marshal(&wire.SignedCert{Cert: body, Sig: ed25519.Sign(signer, wire.CertMessage(body))})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func (d *fakeDeployment) receipt(t testing.TB, rc wire.Receipt, cert []byte, signer ed25519.PrivateKey) []byte {
	body, err := bus.Marshal(&rc)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := bus.Marshal(&wire.SignedReceipt{Receipt: body, Sig: ed25519.Sign(signer, wire.ReceiptMessage(body)), Cert: cert})
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

const (
	testID  = "0123456789abcdef0123456789abcdef"
	testEnd = int64(1_700_000_000_123)
)

// honest returns a record of a single action and its genuine receipt.
func (d *fakeDeployment) honest(t testing.TB) (*Activation, wire.Receipt) {
	id, _ := hex.DecodeString(testID)
	result := []byte(`{"greeting":"Hello <you>!"}`)
	logs := "line one\nline two\n"
	in := sha256.Sum256([]byte(`{}`))
	rc := wire.Receipt{Version: wire.ReceiptVersion, FunctionID: make([]byte, 16), CodeDigest: make([]byte, 32), KeyVersion: 1,
		Namespace: "alice", Action: "hello", RequestID: id, Step: 0, Steps: 1, HeaderDigest: make([]byte, 32),
		InputDigest: in[:], OutputDigest: wire.ReceiptOutputDigest(result), LogsDigest: wire.ReceiptLogsDigest([]byte(logs)),
		Status: wire.StatusSuccess, Start: testEnd - 5, End: testEnd, RuntimeID: d.runtimeID}
	ts := time.UnixMilli(testEnd).UTC().Format(logTimeFormat)
	body := map[string]any{
		"activationId": testID, "end": testEnd,
		"response": map[string]any{"status": "success", "result": json.RawMessage(result)},
		"logs":     []string{ts + " stderr: line one", ts + " stderr: line two"},
		"receipts": [][]byte{d.receipt(t, rc, d.cert(t, "alice", d.kmsPriv), d.rtPriv)},
	}
	// As the owner gets it: through encoding/json, as the gateway writes.
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var a Activation
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	return &a, rc
}

func TestVerifyActivationSignatureChain(t *testing.T) {
	d := newDeployment(t)
	act, rc := d.honest(t)
	if r := VerifyActivation(act, d.kmsPub, nil); !r.OK() {
		t.Fatalf("honest record: %v", r.Problems)
	}
	if r := VerifyActivation(act, d.kmsPub, []string{hex.EncodeToString(d.measurement)}); !r.OK() {
		t.Fatalf("honest record, pinned runtime: %v", r.Problems)
	}
	_, rogue, _ := ed25519.GenerateKey(nil)
	other := rc
	other.RuntimeID = []byte("another runtime!")
	for _, c := range []struct {
		name     string
		receipts [][]byte
		pinned   []string
		want     string
	}{
		{"certificate of another KMS", [][]byte{d.receipt(t, rc, d.cert(t, "alice", rogue), d.rtPriv)}, nil, "not signed by the attested KMS"},
		{"receipt signed by an uncertified key", [][]byte{d.receipt(t, rc, d.cert(t, "alice", d.kmsPriv), rogue)}, nil, "not signed by the certified runtime"},
		{"runtime certified for another namespace", [][]byte{d.receipt(t, rc, d.cert(t, "bob", d.kmsPriv), d.rtPriv)}, nil, "not certified for the function's namespace"},
		{"receipt of another runtime", [][]byte{d.receipt(t, other, d.cert(t, "alice", d.kmsPriv), d.rtPriv)}, nil, "another runtime"},
		{"no certificate", [][]byte{d.receipt(t, rc, nil, d.rtPriv)}, nil, "no certificate"},
		{"unpinned runtime", act.Receipts, []string{strings.Repeat("00", 32)}, "not pinned"},
		{"junk", [][]byte{[]byte("junk")}, nil, "malformed"},
	} {
		a := *act
		a.Receipts = c.receipts
		if r := VerifyActivation(&a, d.kmsPub, c.pinned); r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
			t.Errorf("%s: ok %v, problems %q, want %q", c.name, r.OK(), r.Problems, c.want)
		}
	}
}

// FuzzVerifyActivation: hostile records (receipts, results, logs) never
// panic and never verify without a genuine signature chain.
func FuzzVerifyActivation(f *testing.F) {
	d := newDeployment(f)
	act, _ := d.honest(f)
	f.Add(act.Receipts[0], []byte(act.Response.Result), "success")
	f.Add([]byte{0xa3, 0x01, 0x40}, []byte(`{}`), "")
	f.Fuzz(func(t *testing.T, receipt, result []byte, status string) {
		a := *act
		a.Receipts = [][]byte{receipt}
		a.Response.Result = result
		a.Response.Status = status
		_ = VerifyActivation(&a, d.kmsPub, nil) // must not panic
		_, rogue, _ := ed25519.GenerateKey(nil)
		if r2 := VerifyActivation(&a, rogue.Public().(ed25519.PublicKey), nil); r2.OK() {
			t.Fatal("verified under another KMS key")
		}
	})
}

// FuzzVerifyAttestation: hostile attestation answers never panic and
// never verify.
func FuzzVerifyAttestation(f *testing.F) {
	f.Add([]byte(`{"format":"clemmys-attestation/v1","tee":"sim","kms":{"signKey":"00","evidence":"AA=="},"runtimes":[{"cert":"AA=="}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var a Attestation
		if json.Unmarshal(body, &a) != nil {
			return
		}
		_, root, _ := ed25519.GenerateKey(nil)
		exp := Expect{SimRoot: hex.EncodeToString(root.Public().(ed25519.PublicKey))}
		if r := VerifyAttestation(&a, []byte("nonce"), nil, exp); r.OK() {
			t.Fatalf("a forged answer verified: %+v", r)
		}
	})
}
