package enclave

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// Mutual attestation: the runtime takes key bundles only from the KMS
// whose identity it pins. A rogue KMS can seal a bundle to the runtime's
// public ephemeral key, but cannot sign the release reply.
func TestRuntimeRefusesBundlesOfAnotherKMS(t *testing.T) {
	f := newFixture(t)
	wasm := wasmbuild.MustBuild(t, "./internal/testfuncs/echo")
	if _, err := f.load(t, "genuine", "alice", wasm); err != nil {
		t.Fatalf("bundle of the pinned KMS: %v", err)
	}
	_, rogue, _ := ed25519.GenerateKey(nil)
	f.kmsKey = rogue
	_, err := f.load(t, "rogue", "alice", wasm)
	var ie *ipc.Error
	if !errors.As(err, &ie) || ie.Code != CodeBundle || !strings.Contains(ie.Message, "pinned KMS") {
		t.Fatalf("bundle of a rogue KMS: %v", err)
	}
	if _, err := New(Config{Attester: f.rt.cfg.Attester}); err == nil || !strings.Contains(err.Error(), "no KMS identity key pinned") {
		t.Fatalf("a runtime without a pinned KMS: %v", err)
	}
}
