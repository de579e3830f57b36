package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestSealOpenCode(t *testing.T) {
	k := NewKey()
	fid := seeded("fid", FunctionIDSize)
	wasm := []byte("\x00asm\x01\x00\x00\x00 module bytes")
	sum := sha256Sum(wasm)
	sealed, err := SealCode(k, fid, sum, wasm)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("module bytes")) {
		t.Fatal("code not encrypted")
	}
	got, err := OpenCode(k, fid, sum, sealed)
	if err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("OpenCode: %v", err)
	}
	otherSum := sha256Sum([]byte("other"))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name          string
		k             Key
		fid, sum, sld []byte
		want          error
	}{
		{"wrong key", NewKey(), fid, sum, sealed, ErrCodeDigest},
		{"zero key", Key{}, fid, sum, sealed, errZeroKey},
		{"other function id", NewKey(), seeded("other", FunctionIDSize), sum, sealed, ErrCodeDigest},
		{"other digest (downgrade)", k, fid, otherSum, sealed, ErrCodeDigest},
		{"flipped", k, fid, sum, flipped, ErrCodeDigest},
		{"truncated", k, fid, sum, sealed[:len(sealed)-1], ErrCodeDigest},
		{"extended", k, fid, sum, append(bytes.Clone(sealed), 0), ErrCodeDigest},
		{"empty", k, fid, sum, nil, ErrCodeDigest},
		{"short function id", k, fid[:4], sum, sealed, ErrMalformed},
		{"short digest", k, fid, sum[:4], sealed, ErrMalformed},
	} {
		if _, err := OpenCode(c.k, c.fid, c.sum, c.sld); !errors.Is(err, c.want) {
			t.Errorf("%s: OpenCode = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := SealCode(k, fid, otherSum, wasm); !errors.Is(err, ErrCodeDigest) {
		t.Errorf("SealCode of a module that does not match its digest: %v", err)
	}
	if _, err := SealCode(Key{}, fid, sum, wasm); err == nil {
		t.Error("SealCode with a zero key")
	}
	// Defense in depth: a module sealed under the right AAD but whose bytes
	// do not match the digest (a buggy or malicious sealer) is refused.
	bad, err := sealAEAD(k, codeAAD(fid, otherSum), wasm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCode(k, fid, otherSum, bad); !errors.Is(err, ErrCodeDigest) {
		t.Errorf("OpenCode of a mismatching module: %v", err)
	}
}
