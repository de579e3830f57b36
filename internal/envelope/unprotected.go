//go:build clemmys_unprotected

package envelope

import (
	"errors"
	"fmt"
	"os"
)

// This file exists only in the benchmark-only build made with
// `go build -tags clemmys_unprotected` (by `clemmys bench --scenarios
// unprotected`): it replaces protection.go and turns the envelope's
// cryptography into identity functions of the same sizes, so that the same
// gateway → controller → invoker → runtime path, with the same messages of
// the same lengths, runs without protection: capsules, bodies, logs and
// code travel in the clear between a zero nonce and a zero tag, the auth
// tag is constant, and capsule sessions need no public-key operation
// (session_unprotected.go). Such a binary protects nothing: it refuses to
// start unless UnprotectedEnv is set to UnprotectedEnvValue, which only
// `clemmys bench` does, and says so on stderr.

// Protected reports whether this build protects envelopes: not this one.
const Protected = false

// UnprotectedBanner is printed on stderr by every process of the
// unprotected build; internal/deptest looks for it in binaries.
const UnprotectedBanner = "clemmys UNPROTECTED BENCHMARK BUILD (-tags clemmys_unprotected): envelopes are not encrypted or authenticated; for `clemmys bench` only"

// UnprotectedEnv must be UnprotectedEnvValue for an unprotected binary to
// run at all.
const (
	UnprotectedEnv      = "CLEMMYS_UNPROTECTED_BENCHMARK"
	UnprotectedEnvValue = "I understand this binary protects nothing"
)

func init() {
	if os.Getenv(UnprotectedEnv) != UnprotectedEnvValue {
		fmt.Fprintf(os.Stderr, "%s\nrefusing to run: set %s=%q (clemmys bench does)\n", UnprotectedBanner, UnprotectedEnv, UnprotectedEnvValue)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, UnprotectedBanner)
}

var errUnprotectedSize = errors.New("envelope (unprotected): wrong size")

// sealAEAD: zero nonce || plaintext || zero tag.
func sealAEAD(k Key, _, plaintext []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, errZeroKey
	}
	out := make([]byte, gcmOverhead+len(plaintext))
	copy(out[gcmNonceSize:], plaintext)
	return out, nil
}

func openAEAD(k Key, _, sealed []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, errZeroKey
	}
	if len(sealed) < gcmOverhead {
		return nil, errUnprotectedSize
	}
	return append([]byte(nil), sealed[gcmNonceSize:len(sealed)-gcmTagSize]...), nil
}

// authTag: a constant of the tag's size.
func authTag(Key, [32]byte, [][]byte) []byte { return make([]byte, authTagSize) }
