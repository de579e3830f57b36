package kms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

func testSealer(t testing.TB) *sealer {
	s, err := newSealer([32]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealerBindsKey(t *testing.T) {
	s := testSealer(t)
	in := functionState{Record: wire.FunctionRecord{Namespace: "alice"}, PrivateKey: []byte("private"), CodeKey: []byte("code")}
	sealed, err := s.seal("fn.a", &in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private")) {
		t.Fatal("plaintext in sealed value")
	}
	var out functionState
	if err := s.open("fn.a", sealed, &out); err != nil {
		t.Fatal(err)
	}
	if string(out.PrivateKey) != "private" || out.Record.Namespace != "alice" {
		t.Fatalf("round trip: %+v", out)
	}
	if err := s.open("fn.b", sealed, &out); err == nil {
		t.Fatal("value opened under another key name")
	}
	other, _ := newSealer([32]byte{9})
	if err := other.open("fn.a", sealed, &out); err == nil {
		t.Fatal("value opened under another storage key")
	}
	sealed[len(sealed)-1] ^= 1
	if err := s.open("fn.a", sealed, &out); err == nil {
		t.Fatal("tampered value opened")
	}
}

func FuzzOpenState(f *testing.F) {
	s := testSealer(f)
	good, err := s.seal("k", &functionState{PrivateKey: []byte("p")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{stateFormat})
	f.Add(append([]byte{2}, good[1:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fs functionState
		if err := s.open("k", data, &fs); err == nil && !bytes.Equal(data, good) {
			t.Fatal("forged state opened")
		}
		var p wire.Policy
		_ = s.open("k", data, &p)
	})
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestNonces(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	n, err := newNonces([32]byte{1}, c.now, 2)
	if err != nil {
		t.Fatal(err)
	}
	code := func(err error) string {
		var we *wire.Error
		if errors.As(err, &we) {
			return we.Code
		}
		return ""
	}
	a, b, x := n.issue(), n.issue(), n.issue()
	if len(a) != nonceSize || bytes.Equal(a, b) {
		t.Fatal("nonces must be 40 bytes and distinct")
	}
	if err := n.consume(a); err != nil {
		t.Fatal(err)
	}
	if code(n.consume(a)) != wire.CodeInvalidNonce {
		t.Fatal("nonce used twice")
	}
	if err := n.consume(b); err != nil {
		t.Fatal(err)
	}
	if code(n.consume(x)) != wire.CodeUnavailable {
		t.Fatal("bound not enforced")
	}
	// Another KMS (other storage key) did not issue these.
	m, _ := newNonces([32]byte{2}, c.now, 2)
	if code(m.consume(m.issue())) != "" || code(m.consume(n.issue())) != wire.CodeInvalidNonce {
		t.Fatal("nonce of another KMS accepted")
	}
	c.t = c.t.Add(NonceLifetime)
	if code(n.consume(x)) != wire.CodeInvalidNonce {
		t.Fatal("expired nonce accepted")
	}
	// Expired entries are swept: room again.
	if err := n.consume(n.issue()); err != nil {
		t.Fatal(err)
	}
	// A replica started later refuses nonces issued before its start.
	early := n.issue()
	c.t = c.t.Add(time.Second)
	late, _ := newNonces([32]byte{1}, c.now, 10)
	if code(late.consume(early)) != wire.CodeInvalidNonce {
		t.Fatal("nonce issued before the replica started was accepted")
	}
	// A nonce is valid at its own replica only: replaying a request to
	// another replica (same storage key) is refused, even while fresh.
	if err := late.consume(late.issue()); err != nil {
		t.Fatal(err)
	}
	if code(late.consume(n.issue())) != wire.CodeInvalidNonce {
		t.Fatal("a nonce of another replica was accepted")
	}
	if late.hexID == n.hexID || len(late.hexID) != 16 || !wire.ValidReplica(late.hexID) {
		t.Fatalf("replica ids %q, %q", late.hexID, n.hexID)
	}
}

func FuzzConsumeNonce(f *testing.F) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	n, err := newNonces([32]byte{1}, c.now, 1000)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(n.issue())
	f.Add(make([]byte, nonceSize))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := n.consume(data)
		var we *wire.Error
		if err != nil && !errors.As(err, &we) {
			t.Fatalf("non-wire error %v", err)
		}
		if err == nil && (len(data) != nonceSize || !bytes.Equal(data[noncePrefix:], n.mac(data[:noncePrefix])) || !bytes.Equal(data[8:16], n.replica[:])) {
			t.Fatal("forged nonce accepted")
		}
	})
}

// fuzzKMS starts a bus and a KMS (not serving: handlers are called directly).
func fuzzKMS(f *testing.F) (*KMS, *sim.Machine) {
	ctx := context.Background()
	srv, err := bus.Start(ctx, bus.Options{StoreDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		f.Fatal(err)
	}
	plat, err := sim.LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	reg := tee.NewRegistry()
	reg.Add(sim.Platform, sim.NewVerifier(plat.PublicKey()))
	m := sha256.Sum256([]byte("x"))
	k, err := New(ctx, Config{
		Conn: nc, JS: js, Verifiers: reg, Attester: plat.Attester(m[:], 1, false),
		StorageKey: plat.SealingKey("kms"), DefaultPolicy: wire.Policy{Measurements: [][]byte{m[:]}},
		GatewayMeasurements: [][]byte{m[:]}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	return k, plat
}

func checkHandlerErr(t *testing.T, err error) {
	var we *wire.Error
	if err != nil && !errors.As(err, &we) {
		t.Fatalf("handler returned a non-wire error for bad input: %v", err)
	}
}

func FuzzHandleRelease(f *testing.F) {
	k, _ := fuzzKMS(f)
	seed, _ := bus.Marshal(&wire.ReleaseRequest{Nonce: k.nonces.issue(), EphemeralKey: make([]byte, 32), FunctionID: make([]byte, 16), Evidence: []byte{0xa0}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := k.handleRelease(context.Background(), data)
		checkHandlerErr(t, err)
		if err == nil {
			t.Fatalf("release granted to fuzz input: %v", out)
		}
	})
}

func FuzzHandleGateway(f *testing.F) {
	k, _ := fuzzKMS(f)
	seed, _ := bus.Marshal(&wire.GatewayCall{Nonce: k.nonces.issue(), ReplyKey: make([]byte, 32), Op: wire.OpGetPolicy, Evidence: []byte{0xa0}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := k.handleGateway(context.Background(), data)
		checkHandlerErr(t, err)
		if err == nil {
			t.Fatalf("gateway call answered for fuzz input: %v", out)
		}
	})
}

func FuzzVouched(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(nil)
	m := sha256.Sum256([]byte("runtime"))
	rm, _ := bus.Marshal(&wire.ReleaseManifest{Version: 3, Runtimes: []wire.ManifestEntry{{Platform: "sim", Measurement: m[:]}}})
	good, _ := bus.Marshal(&wire.SignedManifest{Manifest: rm, Sig: ed25519.Sign(key, wire.ManifestMessage(rm))})
	f.Add(good)
	f.Add([]byte{0xa2, 0x01, 0x40, 0x02, 0x40})
	f.Add([]byte{})
	signers := []wire.ReleaseSigner{{PublicKey: pub, MinVersion: 2}}
	if ok, why := vouched(signers, good, "sim", m[:]); !ok {
		f.Fatalf("the good manifest does not vouch: %s", why)
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		ok, why := vouched(signers, manifest, "sim", m[:])
		if ok && !bytes.Equal(manifest, good) {
			// Only a manifest the key signed can vouch; the fuzzer cannot
			// sign, so any other accepted input must decode to the same
			// signed content.
			var sm wire.SignedManifest
			if bus.Unmarshal(manifest, &sm) != nil || !ed25519.Verify(pub, wire.ManifestMessage(sm.Manifest), sm.Sig) {
				t.Fatalf("an unsigned manifest vouched")
			}
		}
		if !ok && why == "" {
			t.Fatal("a refusal without a reason")
		}
	})
}
