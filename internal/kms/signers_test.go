package kms_test

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

func signManifest(t testing.TB, key ed25519.PrivateKey, version uint32, platform string, ms ...[]byte) []byte {
	t.Helper()
	rm := wire.ReleaseManifest{Version: version, Note: "test release"}
	for _, m := range ms {
		rm.Runtimes = append(rm.Runtimes, wire.ManifestEntry{Platform: platform, Measurement: m})
	}
	b, err := bus.Marshal(&rm)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bus.Marshal(&wire.SignedManifest{Manifest: b, Sig: ed25519.Sign(key, wire.ManifestMessage(b))})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReleaseSigner(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	e := newEnv(t, func(c *kms.Config) {
		c.DefaultPolicy = wire.Policy{Signers: []wire.ReleaseSigner{{PublicKey: pub, MinVersion: 2}}}
	})
	fn := e.create("alice", "hello", envelope.SuiteX25519)
	v2 := e.plat.Attester(runtimeV2, 1, false)

	try := func(manifest []byte) error {
		rt := newRuntime(t, v2)
		req := e.releaseReq(rt, fn.rec.FunctionID)
		req.Manifest = manifest
		_, err := e.send(rt, req)
		return err
	}
	if err := try(signManifest(t, key, 2, sim.Platform, runtimeMeas, runtimeV2)); err != nil {
		t.Fatalf("a runtime the trusted signer released: %v", err)
	}
	for _, tc := range []struct {
		name     string
		manifest []byte
		why      string
	}{
		{"no manifest", nil, "no signed release manifest"},
		{"another signer", signManifest(t, otherKey, 2, sim.Platform, runtimeV2), "not signed by a release signer the policy trusts"},
		{"version below the minimum", signManifest(t, key, 1, sim.Platform, runtimeV2), "older than the minimum version 2"},
		{"measurement not listed", signManifest(t, key, 3, sim.Platform, runtimeMeas), "does not list this sim measurement"},
		{"listed for another platform", signManifest(t, key, 3, "sev-snp", runtimeV2), "does not list this sim measurement"},
		{"malformed", []byte{0xa1}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := try(tc.manifest)
			wantCode(t, err, wire.CodePolicy)
			if !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "runtime measurement") {
				t.Fatalf("refusal: %v", err)
			}
		})
	}
	// A tampered manifest does not verify.
	m := signManifest(t, key, 2, sim.Platform, runtimeV2)
	var sm wire.SignedManifest
	if err := bus.Unmarshal(m, &sm); err != nil {
		t.Fatal(err)
	}
	sm.Manifest[len(sm.Manifest)-1] ^= 1
	tampered, _ := bus.Marshal(&sm)
	wantCode(t, try(tampered), wire.CodePolicy)
	// The signer's minimum version is what the KMS compares with.
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Signers: []wire.ReleaseSigner{{PublicKey: pub, MinVersion: 5}}}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, try(signManifest(t, key, 2, sim.Platform, runtimeV2)), wire.CodePolicy)
	if err := try(signManifest(t, key, 5, sim.Platform, runtimeV2)); err != nil {
		t.Fatalf("version 5: %v", err)
	}
	// Bad signer keys are refused.
	_, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: wire.Policy{Signers: []wire.ReleaseSigner{{PublicKey: []byte{1, 2}}}}})
	wantCode(t, err, wire.CodeBadRequest)
}
