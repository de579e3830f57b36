package fncode

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, js := range []JS{
		{Engine: sha256.Sum256([]byte("engine")), Kind: "nodejs:20", Main: "main", Code: []byte("function main() {}")},
		{Engine: sha256.Sum256(nil), Kind: "nodejs:22", Code: []byte("PK\x03\x04...")},
		{Kind: "k"},
	} {
		plain, err := js.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !IsJS(plain) || IsWasm(plain) {
			t.Fatalf("%q: IsJS %v, IsWasm %v", plain, IsJS(plain), IsWasm(plain))
		}
		got, err := ParseJS(plain)
		if err != nil {
			t.Fatal(err)
		}
		if got.Engine != js.Engine || got.Kind != js.Kind || got.Main != js.Main || !bytes.Equal(got.Code, js.Code) {
			t.Fatalf("got %+v, want %+v", got, js)
		}
	}
}

// The layout is a wire format: its golden file changes only on purpose.
func TestGolden(t *testing.T) {
	js := JS{Engine: sha256.Sum256([]byte("engine")), Kind: "nodejs:20", Main: "main", Code: []byte("function main() { return {} }\n")}
	plain, err := js.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "js.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(hex.Dump(plain)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if hex.Dump(plain) != string(want) {
		t.Fatalf("encoding changed:\n%s\nwant:\n%s", hex.Dump(plain), want)
	}
}

func TestRefuses(t *testing.T) {
	if _, err := (&JS{}).Encode(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty kind: %v", err)
	}
	long := string(make([]byte, 256))
	if _, err := (&JS{Kind: "k", Main: long}).Encode(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long main: %v", err)
	}
	for _, b := range [][]byte{nil, []byte("\x00asm\x01\x00\x00\x00"), []byte(Magic), []byte(Magic + "\x02"), append([]byte(Magic+"\x01"), make([]byte, 32)...),
		append(append([]byte(Magic+"\x01"), make([]byte, 32)...), 5, 'a')} {
		if _, err := ParseJS(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseJS(%q): %v", b, err)
		}
	}
}

func FuzzParseJS(f *testing.F) {
	plain, _ := (&JS{Kind: "nodejs:20", Main: "main", Code: []byte("x")}).Encode()
	f.Add(plain)
	f.Add([]byte(Magic + "\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		js, err := ParseJS(b)
		if err != nil {
			return
		}
		again, err := js.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %q gave %q, %v", b, again, err)
		}
	})
}
