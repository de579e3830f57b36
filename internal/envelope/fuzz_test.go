package envelope

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// fuzzSeeds returns valid encodings: the golden files and fresh envelopes.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, name := range []string{
		"envelope-x25519.cbor", "result-x25519.cbor",
		"envelope-mlkem768x25519.cbor", "result-mlkem768x25519.cbor",
	} {
		if b, err := os.ReadFile(goldenPath(name)); err == nil {
			seeds = append(seeds, b)
		}
	}
	fx := newFixture(f, SuiteX25519)
	for _, e := range []*Envelope{fx.e0, fx.e1, fx.final} {
		b, err := e.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzUnmarshal: Unmarshal never panics, and whatever it accepts is valid
// and is exactly the deterministic encoding of what it decoded.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Unmarshal(b)
		if err != nil {
			if e != nil {
				t.Fatal("envelope with error")
			}
			if Code(err) == "" {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted an invalid envelope: %v", err)
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding\n in: %x\nout: %x", b, again)
		}
	})
}

// FuzzOpen: opening arbitrary bytes never panics; only the genuine golden
// envelope opens for the golden function.
func FuzzOpen(f *testing.F) {
	g := newGolden(f, SuiteX25519)
	genuine := readGolden(f, "envelope-x25519.cbor")
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	cache := NewOpenCache(0, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Unmarshal(b)
		if err != nil {
			return
		}
		for j, fn := range g.fns {
			cached := fn.id
			cached.Sessions = cache
			for _, id := range []*FunctionIdentity{&fn.id, &cached} {
				o, err := Open(e, id, testNow)
				if err == nil {
					if j != 0 || !bytes.Equal(b, genuine) || string(o.Input) != goldenInput {
						t.Fatalf("Open accepted a forged envelope for step %d", j)
					}
				} else if Code(err) == "" {
					t.Fatalf("untyped error: %v", err)
				}
			}
		}
		if out, err := OpenResult(e, g.rs, [32]byte{}); err == nil {
			if string(out) != goldenOutput {
				t.Fatal("OpenResult accepted a forged result")
			}
		}
	})
}

// FuzzOpenParts replaces the step index, capsule and body of the golden
// envelope: nothing but the original opens. (The base must be the same in
// every fuzz worker process, hence the golden file rather than a fresh,
// randomized Seal.)
func FuzzOpenParts(f *testing.F) {
	g := newGolden(f, SuiteX25519)
	base, err := Unmarshal(readGolden(f, "envelope-x25519.cbor"))
	if err != nil {
		f.Fatal(err)
	}
	fx := newFixture(f, SuiteX25519)
	f.Add(uint32(0), base.Capsules[0], base.Body)
	f.Add(uint32(1), base.Capsules[1], base.Body)
	f.Add(uint32(0), fx.other0.Capsules[0], fx.other0.Body)
	f.Add(uint32(0), base.Capsules[0][:40], base.Body[:20])
	f.Fuzz(func(t *testing.T, step uint32, capsule, body []byte) {
		e := cloneEnv(base)
		e.Step = step
		e.Capsules[0] = capsule
		e.Body = body
		o, err := Open(e, &g.fns[0].id, testNow)
		if err != nil {
			if Code(err) == "" {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if step != 0 || !bytes.Equal(capsule, base.Capsules[0]) || !bytes.Equal(body, base.Body) || string(o.Input) != goldenInput {
			t.Fatal("Open accepted a forged capsule or body")
		}
	})
}

// FuzzOpenCode: OpenCode on arbitrary bytes never panics and opens only the
// genuine module.
func FuzzOpenCode(f *testing.F) {
	g := newGolden(f, SuiteX25519)
	codeKey := testKey(f, "clemmys golden code key")
	fid := g.fns[0].id.FunctionID
	sum := sha256Sum(goldenWasm)
	f.Add(readGolden(f, "code.sealed"))
	f.Add([]byte{})
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, sealed []byte) {
		wasm, err := OpenCode(codeKey, fid, sum, sealed)
		if err == nil && !bytes.Equal(wasm, goldenWasm) {
			t.Fatal("OpenCode accepted a forged module")
		}
		if err != nil && Code(err) != "code_digest" {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzOpenLogs: OpenLogs on arbitrary bytes and steps never panics and opens
// only the genuine logs.
func FuzzOpenLogs(f *testing.F) {
	g := newGolden(f, SuiteX25519)
	f.Add(uint32(0), readGolden(f, "logs-x25519.bin"))
	f.Add(uint32(1), readGolden(f, "logs-x25519.bin"))
	f.Add(uint32(0xffffffff), []byte{})
	f.Fuzz(func(t *testing.T, step uint32, sealed []byte) {
		logs, err := OpenLogs(&g.h, g.rs, step, sealed)
		if err == nil && (step != 0 || string(logs) != goldenLogs) {
			t.Fatal("OpenLogs accepted forged logs")
		}
	})
}

// FuzzOpenSession replaces the parts of capsule 0 of the golden envelope
// (session id, enc, and nonce || ciphertext || tag) and re-tags it, as a
// holder of the namespace's ak could, against a runtime whose session
// cache already holds the genuine session: nothing but the genuine capsule
// opens, no other session enters the cache, and the genuine envelope still
// opens from the cache afterwards (no poisoning).
func FuzzOpenSession(f *testing.F) {
	g := newGolden(f, SuiteX25519)
	base, err := Unmarshal(readGolden(f, "envelope-x25519.cbor"))
	if err != nil {
		f.Fatal(err)
	}
	parts := func(c []byte) (sid, enc, sealed []byte) {
		sid, enc, sealed, ok := splitCapsule(c, SuiteX25519)
		if !ok {
			f.Fatalf("capsule of %d bytes", len(c))
		}
		return sid, enc, sealed
	}
	gsid, genc, gsealed := parts(base.Capsules[0])
	fx := newFixture(f, SuiteX25519)
	osid, oenc, osealed := parts(fx.other0.Capsules[0])
	_, nenc, _ := parts(base.Capsules[1])
	f.Add(gsid, genc, gsealed)
	f.Add(osid, oenc, osealed)
	f.Add(gsid, oenc, gsealed)
	f.Add(osid, genc, gsealed)
	f.Add(gsid, nenc, gsealed)
	f.Add(gsid, genc, osealed)
	f.Add(gsid[:8], genc, gsealed)
	f.Add(gsid, make([]byte, 32), gsealed)
	cache := NewOpenCache(0, 0)
	id := g.fns[0].id
	id.Sessions = cache
	if _, err := Open(base, &id, testNow); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sid, enc, sealed []byte) {
		e := cloneEnv(base)
		e.Capsules[0] = append(append(append([]byte(nil), sid...), enc...), sealed...)
		if len(e.Capsules[0]) == 0 || len(e.Capsules[0]) > maxCapsuleSize {
			return
		}
		retag(e)
		o, err := Open(e, &id, testNow)
		if err == nil {
			if !bytes.Equal(e.Capsules[0], base.Capsules[0]) || string(o.Input) != goldenInput {
				t.Fatal("Open accepted a forged capsule")
			}
		} else if !errors.Is(err, ErrCapsule) {
			t.Fatalf("Open = %v, want ErrCapsule", err)
		}
		if cache.Len() != 1 {
			t.Fatalf("the cache holds %d sessions", cache.Len())
		}
		if _, err := Open(base, &id, testNow); err != nil {
			t.Fatalf("genuine envelope after a forged capsule: %v", err)
		}
	})
}
