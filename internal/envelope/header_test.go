package envelope

import (
	"errors"
	"strings"
	"testing"
)

func TestHeaderValidate(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	base := newTestHeader(SuiteX25519, "validate", f)
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	long := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	for _, c := range []struct {
		name string
		f    func(h *Header)
		want error
	}{
		{"version", func(h *Header) { h.Version = 0 }, ErrVersion},
		{"suite", func(h *Header) { h.Suite = 0 }, ErrSuite},
		{"version before suite", func(h *Header) { h.Version, h.Suite = Version+1, 0 }, ErrVersion},
		{"request id long", func(h *Header) { h.RequestID = make([]byte, 17) }, ErrMalformed},
		{"namespace long", func(h *Header) { h.Namespace = strings.Repeat("n", MaxNamespaceSize+1) }, ErrMalformed},
		{"namespace invalid utf-8", func(h *Header) { h.Namespace = "\xff" }, ErrMalformed},
		{"chain too long", func(h *Header) {
			for len(h.Chain) <= MaxChain {
				h.Chain = append(h.Chain, h.Chain[0])
			}
		}, ErrMalformed},
		{"name empty", func(h *Header) { h.Chain[0].Name = "" }, ErrMalformed},
		{"name slash only", func(h *Header) { h.Chain[0].Name = "/" }, ErrMalformed},
		{"name long", func(h *Header) { h.Chain[0].Name = long(MaxNameSize + 1) }, ErrMalformed},
		{"name invalid utf-8", func(h *Header) { h.Chain[0].Name = "/\xff" }, ErrMalformed},
		{"function id", func(h *Header) { h.Chain[0].FunctionID = nil }, ErrMalformed},
		{"code digest", func(h *Header) { h.Chain[0].CodeDigest = h.Chain[0].CodeDigest[:31] }, ErrMalformed},
		{"expiry zero", func(h *Header) { h.Expiry = 0 }, ErrMalformed},
		{"expiry negative", func(h *Header) { h.Expiry = -1 }, ErrMalformed},
	} {
		h := base.Clone()
		c.f(&h)
		if err := h.Validate(); !errors.Is(err, c.want) {
			t.Errorf("%s: Validate = %v, want %v", c.name, err, c.want)
		}
		if _, err := h.Digest(); !errors.Is(err, c.want) {
			t.Errorf("%s: Digest = %v, want %v", c.name, err, c.want)
		}
		if _, err := DeriveStepKeys(NewKey(), &h); !errors.Is(err, c.want) {
			t.Errorf("%s: DeriveStepKeys = %v, want %v", c.name, err, c.want)
		}
	}
	h := base.Clone()
	h.Chain[0].Name = long(MaxNameSize)
	h.Namespace = strings.Repeat("n", MaxNamespaceSize)
	for len(h.Chain) < MaxChain {
		h.Chain = append(h.Chain, h.Chain[0])
	}
	if err := h.Validate(); err != nil {
		t.Errorf("limits must be inclusive: %v", err)
	}
	var nilHeader *Header
	if err := nilHeader.Validate(); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil header: %v", err)
	}
}

func TestDigestAndKeys(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	h := newTestHeader(SuiteX25519, "digest", f, f)
	d1, _ := h.Digest()
	h2 := h.Clone()
	d2, _ := h2.Digest()
	if d1 != d2 {
		t.Fatal("digest not deterministic")
	}
	h2.Limits.LogsKB++
	if d3, _ := h2.Digest(); d3 == d1 {
		t.Fatal("digest ignores limits")
	}
	rs := NewKey()
	keys, err := DeriveStepKeys(rs, &h)
	if err != nil || len(keys) != 3 {
		t.Fatalf("DeriveStepKeys: %d keys, %v", len(keys), err)
	}
	for i := range keys {
		for j := range keys {
			if i != j && keys[i].Equal(keys[j]) {
				t.Fatalf("k%d == k%d", i, j)
			}
		}
	}
	other, _ := DeriveStepKeys(rs, &h2)
	if other[0].Equal(keys[0]) {
		t.Fatal("step keys do not depend on the header")
	}
	if _, err := DeriveStepKeys(Key{}, &h); err == nil {
		t.Fatal("DeriveStepKeys accepted a zero request secret")
	}
	gw := NewKey()
	if RequestSecret(gw, h.RequestID).Equal(RequestSecret(gw, h2.RequestID)) != true {
		t.Fatal("RequestSecret not deterministic")
	}
	id2 := append([]byte(nil), h.RequestID...)
	id2[0] ^= 1
	if RequestSecret(gw, h.RequestID).Equal(RequestSecret(gw, id2)) {
		t.Fatal("RequestSecret ignores the request id")
	}
}

func TestZeroOpened(t *testing.T) {
	var o Opened
	if _, err := o.SealOutput(nil); err == nil {
		t.Error("SealOutput on a zero Opened")
	}
	if _, err := o.SealLogs(nil); err == nil {
		t.Error("SealLogs on a zero Opened")
	}
	var np *Opened
	if _, err := np.SealOutput(nil); err == nil {
		t.Error("SealOutput on nil")
	}
}
