package envelope

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"testing"
	"time"
)

// TestSealUntaggedThenTag: an owner seals end to end without the
// namespace's authentication key; the runtime refuses the envelope until
// the gateway tags it, then opens exactly what the owner sealed.
func TestSealUntaggedThenTag(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			f := newTestFn(t, suite, "e2e")
			h := newTestHeader(suite, "e2e", f)
			rs := NewKey()
			e, err := SealUntagged(h, rs, []hpke.PublicKey{f.pub}, []byte(`{"secret":1}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(e.Auth) != 0 {
				t.Fatal("an untagged envelope has a tag")
			}
			now := time.UnixMilli(h.Expiry - 1000)
			if _, err := Open(e, &f.id, now); !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("untagged envelope opened: %v", err)
			}
			if err := e.Tag(Key{}); !errors.Is(err, ErrAuth) {
				t.Fatalf("tag with no key: %v", err)
			}
			bad := *e
			bad.Capsules = bad.Capsules[:0]
			if err := bad.Tag(testAuthKey); !errors.Is(err, ErrMalformed) {
				t.Fatalf("tag a capsule-less envelope: %v", err)
			}
			if err := e.Tag(testAuthKey); err != nil {
				t.Fatal(err)
			}
			o, err := Open(e, &f.id, now)
			if err != nil {
				t.Fatalf("open the tagged envelope: %v", err)
			}
			if !bytes.Equal(o.Input, []byte(`{"secret":1}`)) {
				t.Fatalf("input %q", o.Input)
			}
			// The gateway, which derives its request secrets from its own
			// secret, cannot open the owner's result.
			out, err := o.SealOutput([]byte(`{"r":2}`))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := OpenResult(out, NewKey(), [32]byte{}); err == nil {
				t.Fatal("result opened without the owner's request secret")
			}
			if res, err := OpenResult(out, rs, [32]byte{}); err != nil || string(res) != `{"r":2}` {
				t.Fatalf("owner's result %q, %v", res, err)
			}
		})
	}
}
