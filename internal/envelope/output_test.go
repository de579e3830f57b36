package envelope

import (
	"errors"
	"testing"
)

// The owner can open every step's output of a chain, and only as the
// output of that step.
func TestOpenOutput(t *testing.T) {
	a, b, c := newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b"), newTestFn(t, SuiteX25519, "c")
	h := newTestHeader(SuiteX25519, "output", a, b, c)
	rs := testKey(t, "request secret")
	e, err := Seal(h, rs, pubsOf(a, b, c), []byte(`{"step":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOutput(wireTrip(t, e), rs, [32]byte{}); !errors.Is(err, ErrStep) {
		t.Fatalf("step 0 (an input) opened as an output: %v", err)
	}
	d, _ := h.Digest()
	for j, fn := range []*testFn{a, b, c} {
		o, err := Open(wireTrip(t, e), &fn.id, testNow)
		if err != nil {
			t.Fatalf("step %d: %v", j, err)
		}
		out := []byte(`{"step":` + string(rune('1'+j)) + `}`)
		e, err = o.SealOutput(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := OpenOutput(wireTrip(t, e), rs, d)
		if err != nil || string(got) != string(out) {
			t.Fatalf("output of step %d: %q %v", j, got, err)
		}
		if j < 2 {
			if _, err := OpenResult(e, rs, d); !errors.Is(err, ErrStep) {
				t.Fatalf("intermediate output %d accepted as the final result: %v", j, err)
			}
		}
		// Presented as another step's output, it does not open.
		moved := cloneEnv(e)
		moved.Step = uint32(j) + 2
		if moved.Step <= 3 {
			if _, err := OpenOutput(moved, rs, d); !errors.Is(err, ErrBody) {
				t.Fatalf("output of step %d opened as step %d: %v", j, moved.Step-1, err)
			}
		}
		if _, err := OpenOutput(e, testKey(t, "another secret"), d); !errors.Is(err, ErrBody) {
			t.Fatalf("opened with another request secret: %v", err)
		}
		other := d
		other[0] ^= 1
		if _, err := OpenOutput(e, rs, other); !errors.Is(err, ErrHeaderMismatch) {
			t.Fatalf("header mismatch not detected: %v", err)
		}
	}
	final, err := OpenResult(e, rs, d)
	if err != nil || string(final) != `{"step":3}` {
		t.Fatalf("final result %q %v", final, err)
	}
}
