package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var update = flag.Bool("update", false, "regenerate the golden files in testdata/")

// The golden request: a two-step chain, fixed secrets, keys and ids.
const (
	goldenInput  = `{"name":"clemmys","n":1}`
	goldenOutput = `{"greeting":"hello clemmys"}`
	goldenLogs   = "step 0 says hello\n"
)

var goldenWasm = []byte("\x00asm\x01\x00\x00\x00 golden module")

type golden struct {
	suite   Suite
	fns     []*testFn
	h       Header
	gateway Key
	rs      Key
	digest  [32]byte
}

func newGolden(t testing.TB, suite Suite) *golden {
	t.Helper()
	g := &golden{suite: suite}
	g.fns = []*testFn{newTestFn(t, suite, "hello"), newTestFn(t, suite, "shout")}
	g.h = newTestHeader(suite, "golden", g.fns...)
	g.gateway = testKey(t, "clemmys golden gateway secret")
	g.rs = RequestSecret(g.gateway, g.h.RequestID)
	var err error
	if g.digest, err = g.h.Digest(); err != nil {
		t.Fatal(err)
	}
	return g
}

func goldenPath(name string) string { return filepath.Join("testdata", name) }

// checkGolden compares got with testdata/name, or writes it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := goldenPath(name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/envelope -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed: the wire format or key schedule is different.\n got:\n%s\nwant:\n%s\n"+
			"If the change is intended, bump Version, document it, and run with -update.", name, got, want)
	}
}

// TestGoldenDeterministic pins the deterministic parts of the format: the
// header's CBOR bytes and digest, and the key schedule.
func TestGoldenDeterministic(t *testing.T) {
	g := newGolden(t, SuiteX25519)
	enc, err := encMode.Marshal(&g.h)
	if err != nil {
		t.Fatal(err)
	}
	diag, err := cbor.Diagnose(enc)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# envelope v%d golden header (go test ./internal/envelope -update regenerates)\n", Version)
	fmt.Fprintf(&b, "header.diag %s\n", diag)
	fmt.Fprintf(&b, "header.cbor %x\n", enc)
	fmt.Fprintf(&b, "header.digest %x\n", g.digest)
	checkGolden(t, "header.golden", []byte(b.String()))

	keys, err := DeriveStepKeys(g.rs, &g.h)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	fmt.Fprintf(&b, "# envelope v%d golden key schedule for header.golden\n", Version)
	fmt.Fprintf(&b, "gateway-secret %x\n", g.gateway.Bytes())
	fmt.Fprintf(&b, "request-id %x\n", g.h.RequestID)
	fmt.Fprintf(&b, "request-secret %x\n", g.rs.Bytes())
	for j, k := range keys {
		fmt.Fprintf(&b, "k%d %x\n", j, k.Bytes())
	}
	for j := range g.h.Chain {
		fmt.Fprintf(&b, "logs-key%d %x\n", j, logsKey(keys[j+1], uint32(j)).Bytes())
	}
	fmt.Fprintf(&b, "session-info0 %x\n", sessionInfo(g.h.Chain[0].FunctionID, g.h.Chain[0].KeyVersion, seeded("clemmys golden session id", SessionIDSize)))
	fmt.Fprintf(&b, "capsule-aad0 %x\n", bound(labelCapsule, g.digest, 0))
	fmt.Fprintf(&b, "body-aad0 %x\n", bound(labelBody, g.digest, 0))
	fmt.Fprintf(&b, "logs-aad0 %x\n", bound(labelLogs, g.digest, 0))
	fmt.Fprintf(&b, "code-aad %x\n", codeAAD(g.fns[0].id.FunctionID, g.fns[0].id.CodeDigest))
	checkGolden(t, "keys.golden", []byte(b.String()))

	// The parsed golden file agrees with the code (guards against a golden
	// file edited by hand into something self-consistent but wrong).
	raw, err := os.ReadFile(goldenPath("header.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "header.cbor "); ok {
			hb, _ := hex.DecodeString(v)
			var h Header
			if err := decMode.Unmarshal(hb, &h); err != nil {
				t.Fatalf("golden header does not decode: %v", err)
			}
			if d, err := h.Digest(); err != nil || d != g.digest {
				t.Fatalf("golden header digest %x, %v", d, err)
			}
		}
	}
}

// TestGoldenSealed proves that envelopes, results, logs and code sealed by
// an earlier build stay readable.
func TestGoldenSealed(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			g := newGolden(t, suite)
			envName := "envelope-" + suite.String() + ".cbor"
			resName := "result-" + suite.String() + ".cbor"
			logsName := "logs-" + suite.String() + ".bin"
			if *update {
				writeGoldenSealed(t, g, envName, resName, logsName)
			}
			envBytes := readGolden(t, envName)
			e, err := Unmarshal(envBytes)
			if err != nil {
				t.Fatalf("golden envelope: %v", err)
			}
			if again, _ := e.Marshal(); !bytes.Equal(again, envBytes) {
				t.Fatal("golden envelope does not re-encode to the same bytes")
			}
			o, err := Open(e, &g.fns[0].id, testNow)
			if err != nil {
				t.Fatalf("Open golden envelope: %v", err)
			}
			if string(o.Input) != goldenInput || o.Digest() != g.digest {
				t.Fatalf("golden input %q", o.Input)
			}
			checkGoldenSessions(t, g, e, "session-"+suite.String()+".golden")
			// A fresh step 1 still works from the golden step 0.
			next, err := o.SealOutput([]byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if o1, err := Open(wireTrip(t, next), &g.fns[1].id, testNow); err != nil || string(o1.Input) != "x" {
				t.Fatalf("step 1 after golden step 0: %v", err)
			}

			r, err := Unmarshal(readGolden(t, resName))
			if err != nil {
				t.Fatalf("golden result: %v", err)
			}
			out, err := OpenResult(r, g.rs, g.digest)
			if err != nil || string(out) != goldenOutput {
				t.Fatalf("OpenResult golden: %q, %v", out, err)
			}
			logs, err := OpenLogs(&g.h, g.rs, 0, readGolden(t, logsName))
			if err != nil || string(logs) != goldenLogs {
				t.Fatalf("OpenLogs golden: %q, %v", logs, err)
			}
			// The golden envelope refuses the wrong step or an expired clock.
			if _, err := Open(e, &g.fns[1].id, testNow); !errors.Is(err, ErrWrongFunction) {
				t.Fatalf("golden envelope opened by step 1: %v", err)
			}
			if _, err := Open(e, &g.fns[0].id, testExpiry); !errors.Is(err, ErrExpired) {
				t.Fatalf("golden envelope at expiry: %v", err)
			}
		})
	}
	t.Run("code", func(t *testing.T) {
		g := newGolden(t, SuiteX25519)
		codeKey := testKey(t, "clemmys golden code key")
		fid := g.fns[0].id.FunctionID
		sum := sha256Sum(goldenWasm)
		if *update {
			sealed, err := SealCode(codeKey, fid, sum, goldenWasm)
			if err != nil {
				t.Fatal(err)
			}
			writeGolden(t, "code.sealed", sealed)
		}
		wasm, err := OpenCode(codeKey, fid, sum, readGolden(t, "code.sealed"))
		if err != nil || !bytes.Equal(wasm, goldenWasm) {
			t.Fatalf("OpenCode golden: %v", err)
		}
	})
}

func writeGoldenSealed(t *testing.T, g *golden, envName, resName, logsName string) {
	t.Helper()
	e, err := Seal(g.h, g.rs, testAuthKey, pubsOf(g.fns...), []byte(goldenInput))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeGolden(t, envName, b)
	o, err := Open(e, &g.fns[0].id, testNow)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := o.SealLogs([]byte(goldenLogs))
	if err != nil {
		t.Fatal(err)
	}
	writeGolden(t, logsName, logs)
	e1, err := o.SealOutput([]byte("intermediate"))
	if err != nil {
		t.Fatal(err)
	}
	o1, err := Open(e1, &g.fns[1].id, testNow)
	if err != nil {
		t.Fatal(err)
	}
	res, err := o1.SealOutput([]byte(goldenOutput))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = res.Marshal(); err != nil {
		t.Fatal(err)
	}
	writeGolden(t, resName, b)
}

func writeGolden(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(goldenPath(name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(goldenPath(name))
	if err != nil {
		tb.Fatalf("%v (run go test ./internal/envelope -update to create it)", err)
	}
	return b
}

// checkGoldenSessions pins the session key schedule: the recipient side is
// deterministic given the golden envelope's encs, so the session keys
// decapsulated from them, and the capsules' plaintexts, must not change.
// Both capsules also open through an OpenCache, the second step's from the
// cache entry the first Open made when the function repeats (it does not
// here: one miss per function).
func checkGoldenSessions(t *testing.T, g *golden, e *Envelope, name string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# envelope v%d golden capsule sessions of envelope-%s.cbor\n", Version, g.suite)
	keys, err := DeriveStepKeys(g.rs, &g.h)
	if err != nil {
		t.Fatal(err)
	}
	for j, c := range e.Capsules {
		sid, enc, sealed, ok := splitCapsule(c, g.suite)
		if !ok {
			t.Fatalf("capsule %d: %d bytes", j, len(c))
		}
		st := &g.h.Chain[j]
		sk, err := sessionDecap(g.fns[j].id.PrivateKey, enc, sessionInfo(st.FunctionID, st.KeyVersion, sid))
		if err != nil {
			t.Fatalf("capsule %d: decapsulate: %v", j, err)
		}
		pt, err := openAEAD(sk, bound(labelCapsule, g.digest, uint32(j)), sealed)
		if err != nil || !bytes.Equal(pt, append(keys[j].Bytes(), keys[j+1].Bytes()...)) {
			t.Fatalf("capsule %d does not hold k%d || k%d: %v", j, j, j+1, err)
		}
		fmt.Fprintf(&b, "session-id%d %x\n", j, sid)
		fmt.Fprintf(&b, "session-enc%d %x\n", j, enc)
		fmt.Fprintf(&b, "session-key%d %x\n", j, sk.Bytes())
	}
	checkGolden(t, name, []byte(b.String()))

	cache := NewOpenCache(0, 0)
	id := g.fns[0].id
	id.Sessions = cache
	if _, err := Open(e, &id, testNow); err != nil {
		t.Fatalf("Open golden envelope with a session cache: %v", err)
	}
	if _, err := Open(e, &id, testNow); err != nil {
		t.Fatalf("Open golden envelope from the session cache: %v", err)
	}
	if hits, misses := cache.Stats(); hits != 1 || misses != 1 {
		t.Fatalf("session cache: %d hits, %d misses, want 1, 1", hits, misses)
	}
}

// TestGoldenOldVersionsRefused: envelopes of format versions 1 (single-shot
// HPKE capsules) and 2 (no designated runtime), kept in testdata/v1 and
// testdata/v2, are refused with ErrVersion, by Unmarshal and by Open.
func TestGoldenOldVersionsRefused(t *testing.T) {
	for _, v := range []uint16{1, 2} {
		dir := fmt.Sprintf("v%d", v)
		b := readGolden(t, filepath.Join(dir, "envelope-x25519.cbor"))
		if _, err := Unmarshal(b); !errors.Is(err, ErrVersion) || Code(err) != "version" {
			t.Fatalf("Unmarshal %s = %v, want ErrVersion", dir, err)
		}
		var e Envelope
		if err := decMode.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		if e.Header.Version != v {
			t.Fatalf("testdata/%s holds version %d", dir, e.Header.Version)
		}
		g := newGolden(t, SuiteX25519)
		if _, err := Open(&e, &g.fns[0].id, testNow); !errors.Is(err, ErrVersion) {
			t.Fatalf("Open %s = %v, want ErrVersion", dir, err)
		}
	}
}
