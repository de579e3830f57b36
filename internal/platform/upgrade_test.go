package platform_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/cli"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// variant writes a changed build of the enclave runtime: the genuine
// binary with bytes appended (it runs the same, and measures differently).
func variant(t *testing.T, dir, name, change string) string {
	t.Helper()
	b, err := os.ReadFile(enclavePath)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, append(b, change...), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// releaseKey makes a release signing key with `clemmys release keygen`.
func releaseKey(t *testing.T, dir string) (string, ed25519.PublicKey) {
	t.Helper()
	key := filepath.Join(dir, "release.key")
	var out, errs bytes.Buffer
	if code := cli.Run([]string{"release", "keygen", "--key", key}, &out, &errs); code != 0 {
		t.Fatalf("release keygen: %s", errs.String())
	}
	seed, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}

// signRelease signs a manifest of version v listing the given binaries'
// measurements, next to the first one, with `clemmys release sign`.
func signRelease(t *testing.T, key string, v int, binaries ...string) {
	t.Helper()
	args := []string{"release", "sign", "--key", key, "--version", string(rune('0' + v)), "--enclave", binaries[0]}
	for _, b := range binaries[1:] {
		m, err := sim.MeasureFile(b)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--measurement", "sim:"+hex.EncodeToString(m))
	}
	var out, errs bytes.Buffer
	if code := cli.Run(args, &out, &errs); code != 0 {
		t.Fatalf("release sign: %s", errs.String())
	}
}

func invokeHello(e *env, auth, action, name string) (int, map[string]any) {
	var res map[string]any
	st, _ := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+action+"?blocking=true&result=true", map[string]any{"name": name}, &res)
	return st, res
}

func newNamespace(t *testing.T, e *env, ns string) string {
	t.Helper()
	u, k, err := e.p.Gateway.CreateNamespace(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return u + ":" + k
}

// The trust-on-first-use hole, closed: with a release signer as the
// default policy, an operator who starts the platform with a modified
// runtime (not signed, in no policy) gets no key of any namespace: of one
// deployed before, of one created before and deployed after, and of one
// created afterwards.
func TestAttackModifiedRuntimeGetsNoKey(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	bin := t.TempDir()
	genuine := variant(t, bin, "clemmys-enclave", "")
	key, pub := releaseKey(t, bin)
	signRelease(t, key, 1, genuine)
	signer := &wire.ReleaseSigner{PublicKey: pub, MinVersion: 1}
	dataDir := t.TempDir()

	e := startWith(t, dataDir, func(c *platform.Config) { c.EnclavePath, c.ReleaseSigner = genuine, signer })
	g := e.guest()
	e.deploy(g, "hello", hello, nil)
	if st, res := invokeHello(e, g, "hello", "genuine"); st != 200 || res["greeting"] != "Hello genuine!" {
		t.Fatalf("genuine runtime: %d %v", st, res)
	}
	alice := newNamespace(t, e, "alice")
	e.p.Stop()

	modified := variant(t, t.TempDir(), "clemmys-enclave", "a changed string")
	m, _ := sim.MeasureFile(modified)
	e = startWith(t, dataDir, func(c *platform.Config) { c.EnclavePath, c.ReleaseSigner = modified, signer })
	e.deploy(alice, "hello", hello, nil)
	bob := newNamespace(t, e, "bob")
	e.deploy(bob, "hello", hello, nil)
	for name, auth := range map[string]string{"guest (deployed before)": g, "alice (created before)": alice, "bob (created after)": bob} {
		st, res := invokeHello(e, auth, "hello", "mallory")
		msg, _ := res["error"].(string)
		if st == 200 || !strings.Contains(msg, hex.EncodeToString(m)) {
			t.Errorf("%s: the modified runtime ran: %d %v", name, st, res)
		}
	}
	if strings.Contains(e.logs.String(), "keys released") {
		t.Errorf("the KMS released keys to the modified runtime:\n%s", e.logs.String())
	}
}

// An upgrade signed by the release key keeps every namespace's functions
// working without owner action; a namespace whose policy pins exact
// measurements (and not the signer) is refused, by a message naming the
// unallowed measurement, until its owner allows it.
func TestSignedUpgrade(t *testing.T) {
	hello := wasmbuild.MustBuild(t, "examples/hello")
	bin := t.TempDir()
	v1 := variant(t, bin, "clemmys-enclave", "")
	key, pub := releaseKey(t, bin)
	signRelease(t, key, 1, v1)
	signer := &wire.ReleaseSigner{PublicKey: pub, MinVersion: 1}
	dataDir := t.TempDir()

	e := startWith(t, dataDir, func(c *platform.Config) { c.EnclavePath, c.ReleaseSigner = v1, signer })
	g := e.guest()
	e.deploy(g, "hello", hello, nil)
	pinned := newNamespace(t, e, "pinned")
	v1m, _ := sim.MeasureFile(v1)
	var pol map[string]any
	if st, _ := e.call(pinned, "PUT", "/api/v1/namespaces/_/policy", map[string]any{"measurements": []string{hex.EncodeToString(v1m)}}, &pol); st != 200 {
		t.Fatalf("pin: %d %v", st, pol)
	}
	e.deploy(pinned, "hello", hello, nil)
	for _, auth := range []string{g, pinned} {
		if st, res := invokeHello(e, auth, "hello", "v1"); st != 200 {
			t.Fatalf("v1: %d %v", st, res)
		}
	}
	e.p.Stop()

	// Release 2: a changed build, its manifest listing v1 and v2.
	v2 := variant(t, t.TempDir(), "clemmys-enclave", "release 2")
	signRelease(t, key, 2, v2, v1)
	v2m, _ := sim.MeasureFile(v2)
	e = startWith(t, dataDir, func(c *platform.Config) { c.EnclavePath, c.ReleaseSigner = v2, signer })
	if st, res := invokeHello(e, g, "hello", "v2"); st != 200 || res["greeting"] != "Hello v2!" {
		t.Fatalf("guest after the signed upgrade: %d %v", st, res)
	}
	if !strings.Contains(e.logs.String(), "NOT ALLOWED BY A NAMESPACE'S POLICY") || !strings.Contains(e.logs.String(), "namespace=pinned") {
		t.Errorf("clemmys up did not warn that the runtime is not allowed in namespace pinned")
	}
	st, res := invokeHello(e, pinned, "hello", "v2")
	msg, _ := res["error"].(string)
	if st == 200 || !strings.Contains(msg, hex.EncodeToString(v2m)) || !strings.Contains(msg, "not in the policy") {
		t.Fatalf("pinned namespace after the upgrade: %d %v", st, res)
	}
	// Its owner allows the runtime the platform starts: `policy allow`
	// without arguments measures that binary and keeps the old entry.
	var out, errs bytes.Buffer
	if code := cli.Run([]string{"policy", "allow", "--data-dir", dataDir, "--apihost", e.p.APIHost(), "--auth", pinned}, &out, &errs); code != 0 {
		t.Fatalf("policy allow: %s", errs.String())
	}
	if !strings.Contains(out.String(), "measured "+v2) || !strings.Contains(out.String(), hex.EncodeToString(v1m)) || !strings.Contains(out.String(), hex.EncodeToString(v2m)) {
		t.Fatalf("policy allow printed:\n%s", out.String())
	}
	if st, res := invokeHello(e, pinned, "hello", "allowed"); st != 200 {
		t.Fatalf("pinned namespace after allowing: %d %v", st, res)
	}
}
