package envelope

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	raw := seeded("key test", KeySize)
	k, err := KeyFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Bytes(), raw) {
		t.Fatal("Bytes differs from input")
	}
	raw[0] ^= 1
	if bytes.Equal(k.Bytes(), raw) {
		t.Fatal("KeyFromBytes did not copy its input")
	}
	b := k.Bytes()
	b[1] ^= 1
	if !bytes.Equal(k.Bytes()[1:], raw[1:]) {
		t.Fatal("Bytes did not return a copy")
	}
	k2, _ := KeyFromBytes(k.Bytes())
	if !k.Equal(k2) || !k2.Equal(k) || k.Equal(NewKey()) || k.IsZero() {
		t.Fatal("Equal/IsZero")
	}
	var zero Key
	if !zero.IsZero() || !zero.Equal(Key{}) || zero.Equal(k) || !bytes.Equal(zero.Bytes(), make([]byte, KeySize)) {
		t.Fatal("zero Key")
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := KeyFromBytes(make([]byte, n)); err == nil {
			t.Errorf("KeyFromBytes accepted %d bytes", n)
		}
	}
	if _, err := KeyFromBytes(make([]byte, KeySize)); err == nil {
		t.Error("KeyFromBytes accepted an all-zero key")
	}
	if NewKey().Equal(NewKey()) || NewKey().IsZero() {
		t.Error("NewKey is not random")
	}
}

// leaks reports whether s shows the key's bytes in any common rendering.
func leaks(s string, raw []byte) bool {
	dec := strings.Trim(fmt.Sprint(raw), "[]")
	return strings.Contains(strings.ToLower(s), hex.EncodeToString(raw)) ||
		strings.Contains(strings.ToLower(s), hex.EncodeToString(raw[:4])) ||
		strings.Contains(s, dec[:12]) ||
		strings.Contains(s, fmt.Sprintf("%#v", raw[:4])[len("[]byte{"):]) ||
		bytes.Contains([]byte(s), raw[:8])
}

func TestKeyRedacted(t *testing.T) {
	raw := []byte{0xde, 0xad, 0xbe, 0xef, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212,
		213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228}
	k, err := KeyFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	type exported struct {
		Name string
		K    Key
	}
	type unexported struct {
		name string
		k    Key
	}
	type nested struct {
		Inner unexported
		Ks    []Key
		M     map[string]Key
	}
	values := map[string]any{
		"value":              k,
		"pointer":            &k,
		"exported field":     exported{"x", k},
		"exported field ptr": &exported{"x", k},
		"unexported field":   unexported{"x", k},
		"unexported ptr":     &unexported{"x", k},
		"nested":             nested{unexported{"x", k}, []Key{k}, map[string]Key{"k": k}},
		"slice":              []Key{k, k},
		"any slice":          []any{k},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
			s := fmt.Sprintf(verb, v)
			if leaks(s, raw) {
				t.Errorf("%s with %s leaks the key: %s", name, verb, s)
			}
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, k); got != "envelope.Key{redacted}" {
			t.Errorf("%s = %q", verb, got)
		}
	}
	if got := fmt.Sprintf("%+v", exported{"x", k}); !strings.Contains(got, "envelope.Key{redacted}") {
		t.Errorf("struct field: %q", got)
	}
	if k.String() != "envelope.Key{redacted}" || k.GoString() != "envelope.Key{redacted}" {
		t.Error("String/GoString")
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "key", k, "s", exported{"x", k})
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "key", k, "s", exported{"x", k})
	if leaks(buf.String(), raw) {
		t.Errorf("slog leaks the key: %s", buf.String())
	}
	j, _ := json.Marshal(exported{"x", k})
	if leaks(string(j), raw) {
		t.Errorf("json leaks the key: %s", j)
	}
}

func TestOpenedRedacted(t *testing.T) {
	fx := newFixture(t, SuiteX25519)
	o, err := Open(fx.e0, fx.id(0), testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{o, *o, struct{ O *Opened }{o}} {
			s := fmt.Sprintf(verb, v)
			if strings.Contains(s, "input 0") || leaks(s, o.kIn.raw()) || leaks(s, o.kOut.raw()) {
				t.Errorf("%s leaks: %s", verb, s)
			}
		}
	}
}
