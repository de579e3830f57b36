package enclave

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestReceipt: a step that ran yields a receipt, sealed for the owner,
// signed by the runtime's receipt key (the one its evidence binds and the
// KMS certified), naming what ran on what with which outcome.
func TestReceipt(t *testing.T) {
	f := newFixture(t)
	fn, err := f.load(t, "hello", "alice", wasmbuild.MustBuild(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	params := `{"name":"Clemmys"}`
	env, rs := f.seal(t, fn, params, time.Minute, defaultLimits)
	rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: fn.rec.FunctionID, Envelope: marshal(t, env)})
	if rep.Status != wire.StatusSuccess || len(rep.Receipt) == 0 {
		t.Fatalf("status %q, %d-byte receipt", rep.Status, len(rep.Receipt))
	}
	out, err := envelope.Unmarshal(rep.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	result, err := envelope.OpenResult(out, rs, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	logs, err := envelope.OpenLogs(&env.Header, rs, 0, rep.Logs)
	if err != nil {
		t.Fatal(err)
	}
	// Only the request's key holders open it, and only at its step.
	if _, err := envelope.OpenReceipt(&env.Header, envelope.NewKey(), 0, rep.Receipt); err == nil {
		t.Fatal("receipt opened under another request secret")
	}
	signed, err := envelope.OpenReceipt(&env.Header, rs, 0, rep.Receipt)
	if err != nil {
		t.Fatalf("open receipt: %v", err)
	}
	var sr wire.SignedReceipt
	if err := ipc.Unmarshal(signed, &sr); err != nil {
		t.Fatal(err)
	}
	att, err := f.rt.Attest(&ipc.AttestRequest{Nonce: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	if !wire.ReceiptSigned(att.ReceiptKey, &sr) {
		t.Fatal("receipt signature does not verify under the attested receipt key")
	}
	var sc wire.SignedCert
	if err := ipc.Unmarshal(sr.Cert, &sc); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(f.kmsKey.Public().(ed25519.PublicKey), wire.CertMessage(sc.Cert), sc.Sig) {
		t.Fatal("the receipt's certificate is not the KMS's")
	}
	var rc wire.Receipt
	if err := ipc.Unmarshal(sr.Receipt, &rc); err != nil {
		t.Fatal(err)
	}
	d, _ := env.Header.Digest()
	in := sha256.Sum256([]byte(params))
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"version", rc.Version == wire.ReceiptVersion},
		{"function", string(rc.FunctionID) == string(fn.rec.FunctionID) && string(rc.CodeDigest) == string(fn.rec.CodeDigest)},
		{"owner", rc.Namespace == "alice" && rc.Action == "hello"},
		{"request", string(rc.RequestID) == string(env.Header.RequestID) && rc.Step == 0 && rc.Steps == 1 && string(rc.HeaderDigest) == string(d[:])},
		{"input", string(rc.InputDigest) == string(in[:])},
		{"output", string(rc.OutputDigest) == string(wire.ReceiptOutputDigest(result))},
		{"logs", string(rc.LogsDigest) == string(wire.ReceiptLogsDigest(logs)) && len(logs) > 0},
		{"status", rc.Status == wire.StatusSuccess},
		{"times", rc.Start > 0 && rc.End >= rc.Start},
		{"runtime", string(rc.RuntimeID) == string(envelope.RuntimeID(att.EphemeralKey))},
	} {
		if !c.ok {
			t.Errorf("receipt %s: %+v", c.name, rc)
		}
	}
}

// TestLoadRefusesBadCertificates: the runtime takes a key bundle only
// with the KMS's certificate of its own receipt key for the bundle's
// namespace; without one its receipts would not verify.
func TestLoadRefusesBadCertificates(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	_, rogue, _ := ed25519.GenerateKey(nil)
	att, err := f.rt.Attest(&ipc.AttestRequest{Nonce: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	mine := wire.RuntimeCert{RuntimeID: envelope.RuntimeID(att.EphemeralKey), ReceiptKey: att.ReceiptKey, Namespace: "alice", Platform: sim.Platform, Issued: 1}
	for _, c := range []struct {
		name string
		cert func(ns string) []byte
		want string
	}{
		{"none", func(string) []byte { return nil }, "no certificate"},
		{"junk", func(string) []byte { return []byte("junk") }, "malformed"},
		{"oversize", func(string) []byte { return make([]byte, maxCert+1) }, "no certificate"},
		{"signed by another KMS", func(string) []byte { return signCert(t, rogue, mine) }, "pinned KMS"},
		{"another namespace", func(string) []byte {
			c := mine
			c.Namespace = "bob"
			return signCert(t, f.kmsKey, c)
		}, "another namespace"},
		{"another runtime's", func(ns string) []byte {
			oa, err := other.rt.Attest(&ipc.AttestRequest{Nonce: []byte("n")})
			if err != nil {
				t.Fatal(err)
			}
			c := mine
			c.RuntimeID, c.ReceiptKey = envelope.RuntimeID(oa.EphemeralKey), oa.ReceiptKey
			return signCert(t, f.kmsKey, c)
		}, "another runtime"},
		{"another receipt key", func(string) []byte {
			c := mine
			c.ReceiptKey = make([]byte, ed25519.PublicKeySize)
			return signCert(t, f.kmsKey, c)
		}, "another runtime"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.cert = c.cert
			_, err := f.load(t, "echo", "alice", wasm)
			var ie *ipc.Error
			if !errors.As(err, &ie) || ie.Code != CodeBundle || !strings.Contains(ie.Message, c.want) {
				t.Fatalf("got %v, want a bundle refusal naming %q", err, c.want)
			}
		})
	}
	f.cert = nil
	if _, err := f.load(t, "echo", "alice", wasm); err != nil {
		t.Fatalf("genuine certificate: %v", err)
	}
}

// TestRefusesStepAfterFailure: a controller that sends a failed step's
// output on to the next step of the sequence (OpenWhisk stops at the
// first failure) is refused, and nothing runs.
func TestRefusesStepAfterFailure(t *testing.T) {
	f := newFixture(t)
	boom, err := f.load(t, "boom", "alice", wasmbuild.MustBuild(t, "./internal/testfuncs/fail"))
	if err != nil {
		t.Fatal(err)
	}
	echo, err := f.load(t, "echo", "alice", wasmbuild.MustBuild(t, "./internal/testfuncs/echo"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := f.sealChain(t, []*loadedFn{boom, echo}, `{}`, time.Minute, defaultLimits)
	rep := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: boom.rec.FunctionID, Envelope: marshal(t, env)})
	if rep.Status == wire.StatusSuccess || len(rep.Envelope) == 0 {
		t.Fatalf("boom: status %q, %d bytes sealed", rep.Status, len(rep.Envelope))
	}
	next := f.rt.Run(context.Background(), &ipc.RunRequest{FunctionID: echo.rec.FunctionID, Envelope: rep.Envelope})
	if next.ErrorCode != CodeAfterFailure || next.Executed || len(next.Envelope) != 0 || len(next.Receipt) != 0 {
		t.Fatalf("step after a failure: %+v", next)
	}
}

// TestReceiptSignerBatches: receipts that wait while a signature is made
// are signed together, each verifiable alone with its place in the batch.
func TestReceiptSignerBatches(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	var s receiptSigner
	// A leader is signing: the receipts that come meanwhile queue.
	s.mu.Lock()
	s.signing = true
	s.mu.Unlock()
	const n = 5
	type result struct {
		body []byte
		sr   wire.SignedReceipt
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			body := []byte(strings.Repeat("r", i+1))
			sig, batch := s.sign(priv, body)
			results <- result{body, wire.SignedReceipt{Receipt: body, Sig: sig, Batch: batch}}
		}()
	}
	for {
		s.mu.Lock()
		queued := len(s.queue)
		s.mu.Unlock()
		if queued == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The leader ends: it hands the lead to the first that waited.
	s.mu.Lock()
	s.queue[0].lead = true
	close(s.queue[0].done)
	s.mu.Unlock()
	seen := map[uint32]bool{}
	for range n {
		r := <-results
		if r.sr.Batch == nil || r.sr.Batch.Size != n || seen[r.sr.Batch.Index] {
			t.Fatalf("receipt %q: batch %+v", r.body, r.sr.Batch)
		}
		seen[r.sr.Batch.Index] = true
		if !wire.ReceiptSigned(pub, &r.sr) {
			t.Fatalf("receipt %q does not verify", r.body)
		}
	}
	s.mu.Lock()
	idle := !s.signing && len(s.queue) == 0
	s.mu.Unlock()
	if !idle {
		t.Fatal("signer not idle after the batch")
	}
	// Alone, a receipt is signed alone.
	sig, batch := s.sign(priv, []byte("alone"))
	if batch != nil || !wire.ReceiptSigned(pub, &wire.SignedReceipt{Receipt: []byte("alone"), Sig: sig}) {
		t.Fatalf("a receipt signed alone: batch %+v", batch)
	}
}

// TestReceiptSignerConcurrent: under concurrent use, single receipts
// (sign) and chains' receipts (signAll) at once, every receipt gets a
// signature that verifies, and the signer ends idle.
func TestReceiptSignerConcurrent(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	var s receiptSigner
	errs := make(chan error, 32)
	for g := range 32 {
		go func() {
			for i := range 20 {
				bs := [][]byte{[]byte(strings.Repeat("x", g) + strings.Repeat("y", i))}
				var sigs [][]byte
				var batches []*wire.ReceiptBatch
				if (g+i)%2 == 0 {
					sig, batch := s.sign(priv, bs[0])
					sigs, batches = [][]byte{sig}, []*wire.ReceiptBatch{batch}
				} else {
					for k := range (g + i) % 5 {
						bs = append(bs, fmt.Appendf(nil, "g%d.%d.%d", g, i, k))
					}
					sigs, batches = s.signAll(priv, bs)
				}
				for k, b := range bs {
					if !wire.ReceiptSigned(pub, &wire.SignedReceipt{Receipt: b, Sig: sigs[k], Batch: batches[k]}) {
						errs <- fmt.Errorf("receipt %d of %d does not verify", k, len(bs))
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if s.signing || len(s.queue) != 0 {
		t.Fatalf("signer not idle: signing %v, %d queued", s.signing, len(s.queue))
	}
}

// TestReceiptSignerSignAll: a chain's receipts handed over together are
// signed together, in batches of at most wire.MaxReceiptBatch; every
// receipt verifies and the signer ends idle (concurrent use:
// TestReceiptSignerConcurrent).
func TestReceiptSignerSignAll(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	var s receiptSigner
	bodies := func(prefix string, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = []byte(prefix + strings.Repeat("z", i))
		}
		return out
	}
	check := func(bs, sigs [][]byte, batches []*wire.ReceiptBatch) error {
		for i, b := range bs {
			if !wire.ReceiptSigned(pub, &wire.SignedReceipt{Receipt: b, Sig: sigs[i], Batch: batches[i]}) {
				return fmt.Errorf("receipt %d of %d does not verify", i, len(bs))
			}
		}
		return nil
	}
	bs := bodies("chain", 3)
	sigs, batches := s.signAll(priv, bs)
	if err := check(bs, sigs, batches); err != nil {
		t.Fatal(err)
	}
	for i, b := range batches {
		if b == nil || b.Size != 3 || b.Index != uint32(i) || !bytes.Equal(sigs[i], sigs[0]) {
			t.Fatalf("receipt %d: batch %+v, not one signature for the three", i, b)
		}
	}
	// More than a batch holds: consecutive batches, led by this caller.
	bs = bodies("long", wire.MaxReceiptBatch+44)
	sigs, batches = s.signAll(priv, bs)
	if err := check(bs, sigs, batches); err != nil {
		t.Fatal(err)
	}
	if batches[0].Size != wire.MaxReceiptBatch || batches[len(bs)-1].Size != 44 {
		t.Fatalf("batch sizes %d and %d", batches[0].Size, batches[len(bs)-1].Size)
	}
	if s.signing || len(s.queue) != 0 {
		t.Fatalf("signer not idle: signing %v, %d queued", s.signing, len(s.queue))
	}
}
