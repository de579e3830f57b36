package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Domain-separation labels. Each is followed only by fixed-length fields.
const (
	labelRequestSecret = "clemmys/envelope/v1/request-secret\x00"
	labelStepKey       = "clemmys/envelope/v1/step-key\x00"
	labelCapsule       = "clemmys/envelope/v2/capsule\x00"     // capsule AEAD AAD (v1: HPKE info)
	labelSession       = "clemmys/envelope/v2/session\x00"     // HPKE info of a session
	labelSessionKey    = "clemmys/envelope/v2/session-key\x00" // HPKE exporter context of a session
	labelBody          = "clemmys/envelope/v1/body\x00"
	labelLogsKey       = "clemmys/envelope/v1/logs-key\x00"
	labelLogs          = "clemmys/envelope/v1/logs\x00"
	labelReceiptKey    = "clemmys/envelope/v1/receipt-key\x00"
	labelReceipt       = "clemmys/envelope/v1/receipt\x00"
	labelCode          = "clemmys/envelope/v1/code\x00"
	labelAuthKey       = "clemmys/envelope/v1/auth-key\x00"
	labelAuth          = "clemmys/envelope/v1/auth\x00"
)

var errZeroKey = errors.New("envelope: zero key")

// RequestSecret derives the per-request secret from the gateway secret and
// the request id with HKDF-SHA256. Any gateway replica holding the same
// gateway secret derives the same request secret, so gateways stay
// stateless. It returns the zero Key, which every other function refuses,
// if gatewaySecret is zero or requestID is not 16 bytes.
func RequestSecret(gatewaySecret Key, requestID []byte) Key {
	if gatewaySecret.IsZero() || len(requestID) != RequestIDSize {
		return Key{}
	}
	return hkdfKey(gatewaySecret.raw(), nil, labelRequestSecret+string(requestID))
}

// DeriveStepKeys returns the len(h.Chain)+1 step keys k_0..k_n of the
// request: HKDF-Extract with the header digest as salt, then HKDF-Expand with
// the step index in the info. Step j holds (k_j, k_{j+1}); k_n opens the
// final result.
func DeriveStepKeys(requestSecret Key, h *Header) ([]Key, error) {
	d, err := h.Digest()
	if err != nil {
		return nil, err
	}
	return deriveStepKeys(requestSecret, d, len(h.Chain))
}

func deriveStepKeys(requestSecret Key, d [32]byte, n int) ([]Key, error) {
	if requestSecret.IsZero() {
		return nil, errZeroKey
	}
	prk, err := hkdf.Extract(sha256.New, requestSecret.raw(), d[:])
	if err != nil {
		return nil, err
	}
	keys := make([]Key, n+1)
	for j := range keys {
		b, err := hkdf.Expand(sha256.New, prk, labelStepKey+string(u32(uint32(j))), KeySize)
		if err != nil {
			return nil, err
		}
		keys[j] = keyFromArray((*[KeySize]byte)(b))
	}
	return keys, nil
}

// receiptKey derives the key that seals step j's receipt from k_{j+1}.
func receiptKey(next Key, step uint32) Key {
	return hkdfKey(next.raw(), nil, labelReceiptKey+string(u32(step)))
}

// logsKey derives the key that seals step j's logs from k_{j+1}.
func logsKey(next Key, step uint32) Key {
	return hkdfKey(next.raw(), nil, labelLogsKey+string(u32(step)))
}

func hkdfKey(secret, salt []byte, info string) Key {
	b, err := hkdf.Key(sha256.New, secret, salt, info, KeySize)
	if err != nil {
		// Only possible for invalid output lengths; KeySize is valid.
		panic("envelope: hkdf: " + err.Error())
	}
	return keyFromArray((*[KeySize]byte)(b))
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// bound returns label || digest || u32(n): the capsule info, body AAD and
// logs AAD.
func bound(label string, d [32]byte, n uint32) []byte {
	b := make([]byte, 0, len(label)+len(d)+4)
	b = append(b, label...)
	b = append(b, d[:]...)
	return binary.BigEndian.AppendUint32(b, n)
}

func newAEAD(k Key) (cipher.AEAD, error) {
	if k.IsZero() {
		return nil, errZeroKey
	}
	block, err := aes.NewCipher(k.raw())
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// gcmSeal returns nonce || AES-256-GCM(k, plaintext, aad). The envelope
// calls it through sealAEAD (protection.go).
func gcmSeal(k Key, aad, plaintext []byte) ([]byte, error) {
	a, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	return a.Seal(make([]byte, 0, len(plaintext)+gcmOverhead), nil, plaintext, aad), nil
}

// gcmOpen is the inverse of gcmSeal. Its error carries no detail.
func gcmOpen(k Key, aad, sealed []byte) ([]byte, error) {
	a, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcmOverhead {
		return nil, errors.New("too short")
	}
	return a.Open(nil, nil, sealed, aad)
}

// AuthKey derives a namespace's envelope authentication key from the
// gateway secret. Gateways tag every envelope they seal with it, and the KMS
// releases it to the runtimes of the namespace with each function's keys,
// so a runtime runs only envelopes that an attested gateway created for its
// namespace: whoever merely knows a function's public key (the untrusted
// controller does) cannot make the function run on inputs of its choosing,
// or start a chain in its middle.
func AuthKey(gatewaySecret Key, namespace string) Key {
	return hkdfKey(gatewaySecret.raw(), nil, labelAuthKey+namespace)
}

// hmacAuthTag (called through authTag, protection.go) is
// HMAC-SHA256(authKey, labelAuth || D || u32(n) || C), where C is SHA-256
// over the capsules, each length-prefixed (u32). It binds the
// capsules the gateway made, not only the header: with a tag over D alone,
// whoever sees a genuine envelope could keep its header and tag, seal a
// capsule of their own to the step's public key (HPKE base mode does not
// authenticate the sender) and a body of their choosing, and read the
// output under the next-step key they picked. Capsules never change along a
// chain, so the tag is the same at every step.
func hmacAuthTag(authKey Key, d [32]byte, capsules [][]byte) []byte {
	c := sha256.New()
	for _, cp := range capsules {
		c.Write(u32(uint32(len(cp))))
		c.Write(cp)
	}
	m := hmac.New(sha256.New, authKey.raw())
	m.Write([]byte(labelAuth))
	m.Write(d[:])
	m.Write(u32(uint32(len(capsules))))
	m.Write(c.Sum(nil))
	return m.Sum(nil)
}
