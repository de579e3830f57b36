//go:build !clemmys_unprotected

package envelope

import "crypto/hpke"

// The public-key half of capsule sessions (session.go), as every build of
// clemmys uses it. The benchmark-only build (-tags clemmys_unprotected, see
// protection.go) replaces this file with session_unprotected.go.

// sessionEncap opens a capsule session to pk: one HPKE base-mode
// encapsulation (KDF HKDF-SHA256, export-only AEAD) with info, and the
// session key exported from the sender context.
func sessionEncap(pk hpke.PublicKey, info []byte) (enc []byte, key Key, err error) {
	enc, s, err := hpke.NewSender(pk, hpkeKDF(), hpke.ExportOnly(), info)
	if err != nil {
		return nil, Key{}, err
	}
	key, err = exportKey(s.Export)
	return enc, key, err
}

// sessionDecap is the recipient side of sessionEncap: it decapsulates enc
// with sk and exports the same session key.
func sessionDecap(sk hpke.PrivateKey, enc, info []byte) (Key, error) {
	r, err := hpke.NewRecipient(enc, sk, hpkeKDF(), hpke.ExportOnly(), info)
	if err != nil {
		return Key{}, err
	}
	return exportKey(r.Export)
}
