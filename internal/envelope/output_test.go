package envelope

import (
	"bytes"
	"errors"
	"testing"
)

// The owner can open every step's output of a chain, and only as the
// output of that step.
func TestOpenOutput(t *testing.T) {
	a, b, c := newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b"), newTestFn(t, SuiteX25519, "c")
	h := newTestHeader(SuiteX25519, "output", a, b, c)
	rs := testKey(t, "request secret")
	e, err := Seal(h, rs, testAuthKey, pubsOf(a, b, c), []byte(`{"step":0}`))
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

// Only the holder of the namespace's auth key (an attested gateway) can
// create an envelope a runtime accepts, even knowing the function's public
// key.
func TestAuthTag(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	h := newTestHeader(SuiteX25519, "auth", f)
	rs := testKey(t, "request secret")
	if _, err := Seal(h, rs, Key{}, pubsOf(f), []byte("x")); !errors.Is(err, ErrAuth) {
		t.Fatalf("sealed without an auth key: %v", err)
	}
	good, err := Seal(h, rs, testAuthKey, pubsOf(f), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(wireTrip(t, good), &f.id, testNow); err != nil {
		t.Fatalf("tagged envelope refused: %v", err)
	}
	cases := map[string]func(e *Envelope){
		"no tag":      func(e *Envelope) { e.Auth = nil },
		"tag flipped": func(e *Envelope) { e.Auth[0] ^= 1 },
		"another namespace's key": func(e *Envelope) {
			d, _ := e.Header.Digest()
			e.Auth = authTag(AuthKey(testKey(t, "gw"), "other"), d, e.Capsules)
		},
		"attacker's own key":         func(e *Envelope) { d, _ := e.Header.Digest(); e.Auth = authTag(testKey(t, "attacker"), d, e.Capsules) },
		"tag of another request":     func(e *Envelope) { e.Auth = authTag(testAuthKey, [32]byte{1}, e.Capsules) },
		"tag truncated (structural)": func(e *Envelope) { e.Auth = e.Auth[:16] },
		"genuine header and tag, attacker's capsule and body": func(e *Envelope) {
			// The attacker seals its own step keys to the function's
			// public key for the genuine header, and its own input.
			own, err := Seal(e.Header, testKey(t, "attacker secret"), testKey(t, "attacker auth"), pubsOf(f), []byte(`{"chosen":1}`))
			if err != nil {
				t.Fatal(err)
			}
			e.Capsules, e.Body = own.Capsules, own.Body
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := cloneEnv(good)
			mutate(e)
			if _, err := Open(e, &f.id, testNow); !errors.Is(err, ErrAuth) {
				t.Fatalf("Open = %v, want ErrAuth", err)
			}
		})
	}
	t.Run("runtime without the key", func(t *testing.T) {
		id := f.id
		id.AuthKey = Key{}
		if _, err := Open(cloneEnv(good), &id, testNow); !errors.Is(err, ErrAuth) {
			t.Fatalf("Open = %v, want ErrAuth", err)
		}
	})
	// The tag travels with the chain.
	o, err := Open(good, &f.id, testNow)
	if err != nil {
		t.Fatal(err)
	}
	out, err := o.SealOutput([]byte("y"))
	if err != nil || !bytes.Equal(out.Auth, good.Auth) {
		t.Fatalf("output envelope lost the tag: %v", err)
	}
}

// The sender's owner keys from SealOwned are NewOwnerKeys's for the
// header, and open each step's output under that header only: a result
// envelope whose plaintext header was changed still opens under the
// sealed header (its body is bound to it), and one sealed for another
// request, another step or with a changed body does not.
func TestSealOwned(t *testing.T) {
	a, b := newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b")
	h := newTestHeader(SuiteX25519, "owned", a, b)
	rs := testKey(t, "request secret")
	var s Sessions
	defer s.Clear()
	e, k, err := s.SealOwned(h, rs, testAuthKey, pubsOf(a, b), []byte(`{"step":0}`))
	if err != nil {
		t.Fatal(err)
	}
	want, err := NewOwnerKeys(&h, rs)
	if err != nil {
		t.Fatal(err)
	}
	if k.Digest() != want.Digest() || len(k.keys) != len(want.keys) {
		t.Fatalf("owner keys of another header: %x, want %x", k.Digest(), want.Digest())
	}
	for j := range k.keys {
		if !k.keys[j].Equal(want.keys[j]) {
			t.Fatalf("step key %d differs from NewOwnerKeys's", j)
		}
	}
	if k.Header().Namespace != h.Namespace || !bytes.Equal(k.Header().RequestID, h.RequestID) {
		t.Fatal("owner keys' header is not the sealed one")
	}
	if _, err := OpenOutputOwned(e, k); !errors.Is(err, ErrStep) {
		t.Fatalf("step 0 (an input) opened as an output: %v", err)
	}
	// The sealed envelope's tag is Seal's.
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Auth, authTag(testAuthKey, k.Digest(), e.Capsules)) {
		t.Fatal("SealOwned's tag is not over the header digest and capsules")
	}
	if _, _, err := s.SealOwned(h, rs, Key{}, pubsOf(a, b), nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("sealed without an auth key: %v", err)
	}

	o, err := Open(wireTrip(t, e), &a.id, testNow)
	if err != nil {
		t.Fatal(err)
	}
	out1, err := o.SealOutput([]byte(`{"step":1}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenOutputOwned(wireTrip(t, out1), k)
	if err != nil || string(got) != `{"step":1}` {
		t.Fatalf("output of step 0: %q %v", got, err)
	}
	relabeled := cloneEnv(out1)
	relabeled.Header.Namespace = "mallory"
	relabeled.Header.Chain = relabeled.Header.Chain[:1]
	if got, err := OpenOutputOwned(relabeled, k); err != nil || string(got) != `{"step":1}` || len(k.Header().Chain) != 2 {
		t.Fatalf("a changed plaintext header changed what opens: %q %v", got, err)
	}
	moved := cloneEnv(out1)
	moved.Step = 2
	if _, err := OpenOutputOwned(moved, k); !errors.Is(err, ErrBody) {
		t.Fatalf("step 0's output opened as step 1's: %v", err)
	}
	moved.Step = 3
	if _, err := OpenOutputOwned(moved, k); !errors.Is(err, ErrStep) {
		t.Fatalf("an output past the chain: %v", err)
	}
	flipped := cloneEnv(out1)
	flipped.Body[len(flipped.Body)-1] ^= 1
	if _, err := OpenOutputOwned(flipped, k); !errors.Is(err, ErrBody) {
		t.Fatalf("a changed body opened: %v", err)
	}
	other := newTestHeader(SuiteX25519, "another request", a, b)
	_, ko, err := s.SealOwned(other, rs, testAuthKey, pubsOf(a, b), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOutputOwned(out1, ko); !errors.Is(err, ErrBody) {
		t.Fatalf("another request's output opened: %v", err)
	}
	if _, err := OpenOutputOwned(out1, nil); err == nil {
		t.Fatal("opened without keys")
	}
}
