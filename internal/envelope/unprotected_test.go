//go:build clemmys_unprotected

package envelope

import (
	"bytes"
	"testing"
)

// In the benchmark-only build (internal/deptest runs this with -tags
// clemmys_unprotected) a sequence still round-trips, through envelopes of
// the protected sizes, but the input and output travel in the clear:
// protection is really off, so the comparison of `clemmys bench --scenarios
// unprotected` measures what it says.
func TestUnprotectedIdentityCrypto(t *testing.T) {
	if Protected {
		t.Fatal("Protected in the unprotected build")
	}
	a, b := newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b")
	h := newTestHeader(SuiteX25519, "unprotected", a, b)
	rs := testKey(t, "request secret")
	input := []byte(`{"name":"in the clear"}`)
	e, err := Seal(h, rs, testAuthKey, pubsOf(a, b), input)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(e.Body, input) {
		t.Fatal("the step-0 body is not the plaintext input")
	}
	if len(e.Capsules[0]) != SuiteX25519.capsuleSize() {
		t.Fatalf("capsule is %d bytes, want %d", len(e.Capsules[0]), SuiteX25519.capsuleSize())
	}
	e = wireTrip(t, e)
	for _, fn := range []*testFn{a, b} {
		o, err := Open(e, &fn.id, testNow)
		if err != nil {
			t.Fatalf("open step %d: %v", e.Step, err)
		}
		if !bytes.Equal(o.Input, input) {
			t.Fatalf("step %d input %q", e.Step, o.Input)
		}
		if e, err = o.SealOutput(input); err != nil {
			t.Fatal(err)
		}
		e = wireTrip(t, e)
	}
	out, err := OpenResult(e, rs, [32]byte{})
	if err != nil || !bytes.Equal(out, input) || !bytes.Contains(e.Body, input) {
		t.Fatalf("result %q, %v", out, err)
	}
}
