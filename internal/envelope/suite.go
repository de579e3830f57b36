package envelope

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"
)

// Suite identifies the HPKE ciphersuite of the capsules. The KDF is always
// HKDF-SHA256 and the AEAD always AES-256-GCM; the suite picks the KEM.
type Suite uint16

const (
	// SuiteX25519 is DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + AES-256-GCM.
	SuiteX25519 Suite = 1
	// SuiteMLKEM768X25519 is the post-quantum hybrid ML-KEM-768+X25519
	// (X-Wing, hpke.MLKEM768X25519) + HKDF-SHA256 + AES-256-GCM.
	SuiteMLKEM768X25519 Suite = 2
)

// Valid reports whether s is a known suite.
func (s Suite) Valid() bool {
	return s == SuiteX25519 || s == SuiteMLKEM768X25519
}

// KEM returns the HPKE KEM of s, or an error wrapping ErrSuite.
func (s Suite) KEM() (hpke.KEM, error) {
	switch s {
	case SuiteX25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	case SuiteMLKEM768X25519:
		return hpke.MLKEM768X25519(), nil
	}
	return nil, wrap(ErrSuite, "unknown suite %d", uint16(s))
}

// String returns "x25519", "mlkem768x25519" or "suite(N)".
func (s Suite) String() string {
	switch s {
	case SuiteX25519:
		return "x25519"
	case SuiteMLKEM768X25519:
		return "mlkem768x25519"
	}
	return fmt.Sprintf("suite(%d)", uint16(s))
}

// ParseSuite is the inverse of Suite.String for valid suites, for
// configuration and policies.
func ParseSuite(name string) (Suite, error) {
	for _, s := range []Suite{SuiteX25519, SuiteMLKEM768X25519} {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, wrap(ErrSuite, "unknown suite name %q", name)
}

// kemID returns the HPKE KEM identifier of a valid suite.
func (s Suite) kemID() uint16 {
	switch s {
	case SuiteX25519:
		return 0x0020
	case SuiteMLKEM768X25519:
		return 0x647a
	}
	return 0
}

// encSize is the size of the HPKE encapsulated key of a valid suite.
func (s Suite) encSize() int {
	switch s {
	case SuiteX25519:
		return 32
	case SuiteMLKEM768X25519:
		return 1120 // ML-KEM-768 ciphertext (1088) + X25519 share (32)
	}
	return 0
}

// capsuleSize is the exact size of a capsule of a valid suite:
// session id || session enc || nonce || AES-256-GCM(k_j || k_{j+1}) || tag.
func (s Suite) capsuleSize() int {
	return SessionIDSize + s.encSize() + gcmNonceSize + 2*KeySize + gcmTagSize
}
