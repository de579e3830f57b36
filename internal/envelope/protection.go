//go:build !clemmys_unprotected

package envelope

// The symmetric primitives of the envelope, as every build of clemmys uses
// them (session_protected.go holds the public-key half). The
// benchmark-only build (`go build -tags clemmys_unprotected`, made by
// `clemmys bench --scenarios unprotected`, see docs/performance.md)
// replaces this file with unprotected.go, where they are identity
// functions; this build does not contain that code at all, and
// internal/deptest checks that its binaries do not.

// Protected reports whether this build protects envelopes. It is a
// constant: true in every build but the benchmark-only one.
const Protected = true

// sealAEAD returns nonce || AES-256-GCM(k, plaintext, aad): capsules,
// bodies, logs and code.
func sealAEAD(k Key, aad, plaintext []byte) ([]byte, error) { return gcmSeal(k, aad, plaintext) }

// openAEAD is the inverse of sealAEAD. Its error carries no detail.
func openAEAD(k Key, aad, sealed []byte) ([]byte, error) { return gcmOpen(k, aad, sealed) }

// authTag is the gateway's tag over the header digest and the capsules
// (see hmacAuthTag).
func authTag(authKey Key, d [32]byte, capsules [][]byte) []byte {
	return hmacAuthTag(authKey, d, capsules)
}
