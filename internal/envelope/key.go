package envelope

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// KeySize is the size in bytes of a [Key].
const KeySize = 32

const redactedKey = "envelope.Key{redacted}"

// Key is an opaque 32-byte symmetric key (a gateway secret, request secret,
// step key or code key).
//
// Its bytes are unexported and held behind two pointers, so a Key is never
// printed by fmt, slog or encoders, not even as an unexported field of
// another struct, where fmt cannot call Format and falls back to reflection
// (it then shows only addresses; with one pointer, an unknown verb like %s
// would print the array). It is not comparable with ==; use [Key.Equal],
// which runs in constant time. The zero Key holds no key: functions of this
// package refuse it.
type Key struct {
	_ [0]func() // not comparable
	h *keyHandle
}

// keyHandle is the extra indirection described on Key.
type keyHandle struct{ p *[KeySize]byte }

// NewKey returns a fresh random key from crypto/rand.
func NewKey() Key {
	var b [KeySize]byte
	rand.Read(b[:]) // never returns an error (crypto/rand, Go ≥ 1.24)
	return keyFromArray(&b)
}

// KeyFromBytes returns a key holding a copy of b, which must be 32 bytes and
// not all zero.
func KeyFromBytes(b []byte) (Key, error) {
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("envelope: key must be %d bytes, got %d", KeySize, len(b))
	}
	var a [KeySize]byte
	copy(a[:], b)
	k := keyFromArray(&a)
	if k.IsZero() {
		return Key{}, errors.New("envelope: all-zero key")
	}
	return k, nil
}

// keyFromArray takes ownership of a.
func keyFromArray(a *[KeySize]byte) Key { return Key{h: &keyHandle{p: a}} }

// array returns the key's bytes, or nil for the zero Key.
func (k Key) array() *[KeySize]byte {
	if k.h == nil {
		return nil
	}
	return k.h.p
}

// Bytes returns a copy of the key's 32 bytes, for transport inside other
// sealed messages. The zero Key returns 32 zero bytes.
func (k Key) Bytes() []byte {
	b := make([]byte, KeySize)
	if a := k.array(); a != nil {
		copy(b, a[:])
	}
	return b
}

// Equal reports whether k and o hold the same bytes, in constant time.
func (k Key) Equal(o Key) bool {
	var zero [KeySize]byte
	a, b := &zero, &zero
	if p := k.array(); p != nil {
		a = p
	}
	if p := o.array(); p != nil {
		b = p
	}
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// IsZero reports whether k is the zero Key (or all zero bytes), in constant
// time.
func (k Key) IsZero() bool {
	a := k.array()
	if a == nil {
		return true
	}
	var acc byte
	for _, c := range a {
		acc |= c
	}
	return acc == 0
}

// clone returns a Key holding a copy of k's bytes (the zero Key for the
// zero Key). Wiping the clone leaves k intact.
func (k Key) clone() Key {
	a := k.array()
	if a == nil {
		return Key{}
	}
	c := *a
	return keyFromArray(&c)
}

// wipe overwrites k's bytes with zeros, for every copy of k (they share the
// array). Best effort: the Go runtime may have copied the bytes elsewhere
// (stack, AES key schedules), which no library code can reach.
func (k Key) wipe() {
	if a := k.array(); a != nil {
		clear(a[:])
	}
}

// raw returns the key bytes without copying; callers must not modify them.
func (k Key) raw() []byte {
	a := k.array()
	if a == nil {
		return make([]byte, KeySize)
	}
	return a[:]
}

// String implements fmt.Stringer; it never reveals the key.
func (Key) String() string { return redactedKey }

// GoString implements fmt.GoStringer; it never reveals the key.
func (Key) GoString() string { return redactedKey }

// Format implements fmt.Formatter for every verb; it never reveals the key.
func (Key) Format(f fmt.State, _ rune) { io.WriteString(f, redactedKey) }

// LogValue implements slog.LogValuer; it never reveals the key.
func (Key) LogValue() slog.Value { return slog.StringValue(redactedKey) }

var (
	_ fmt.Formatter  = Key{}
	_ fmt.Stringer   = Key{}
	_ fmt.GoStringer = Key{}
	_ slog.LogValuer = Key{}
)
