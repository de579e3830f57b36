//go:build clemmys_unprotected

package envelope

import "crypto/hpke"

// Capsule sessions in the benchmark-only build (see unprotected.go): no
// public-key operation, a zero "enc" of the suite's size and a constant
// session key, so that capsules keep their sizes and the session caches
// behave as in the protected build.

func unprotectedSessionKey() Key {
	var b [KeySize]byte
	b[0] = 1 // sealAEAD and openAEAD refuse the zero key
	return keyFromArray(&b)
}

func sessionEncap(pk hpke.PublicKey, _ []byte) ([]byte, Key, error) {
	switch pk.KEM().ID() {
	case SuiteX25519.kemID():
		return make([]byte, SuiteX25519.encSize()), unprotectedSessionKey(), nil
	case SuiteMLKEM768X25519.kemID():
		return make([]byte, SuiteMLKEM768X25519.encSize()), unprotectedSessionKey(), nil
	}
	return nil, Key{}, ErrSuite
}

func sessionDecap(hpke.PrivateKey, []byte, []byte) (Key, error) {
	return unprotectedSessionKey(), nil
}
