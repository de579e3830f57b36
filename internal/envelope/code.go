package envelope

import (
	"crypto/sha256"
	"crypto/subtle"
)

func codeAAD(functionID, codeDigest []byte) []byte {
	b := make([]byte, 0, len(labelCode)+FunctionIDSize+CodeDigestSize)
	b = append(b, labelCode...)
	b = append(b, functionID...)
	return append(b, codeDigest...)
}

func checkCodeIDs(functionID, codeDigest []byte) error {
	if len(functionID) != FunctionIDSize || len(codeDigest) != CodeDigestSize {
		return malformed("function id must be %d bytes and code digest %d", FunctionIDSize, CodeDigestSize)
	}
	return nil
}

// SealCode encrypts a wasm module for storage: nonce || AES-256-GCM under
// the function version's code key, with AAD = code label || functionID ||
// codeDigest. It refuses (ErrCodeDigest) to seal a module whose SHA-256 is
// not codeDigest.
func SealCode(codeKey Key, functionID, codeDigest, wasm []byte) ([]byte, error) {
	if err := checkCodeIDs(functionID, codeDigest); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(wasm)
	if subtle.ConstantTimeCompare(sum[:], codeDigest) != 1 {
		return nil, ErrCodeDigest
	}
	return sealAEAD(codeKey, codeAAD(functionID, codeDigest), wasm)
}

// OpenCode decrypts a module sealed by SealCode and checks that its SHA-256
// is codeDigest. Ciphertext that does not open for (codeKey, functionID,
// codeDigest) and plaintext that does not match the digest both yield
// ErrCodeDigest.
func OpenCode(codeKey Key, functionID, codeDigest, sealed []byte) ([]byte, error) {
	if err := checkCodeIDs(functionID, codeDigest); err != nil {
		return nil, err
	}
	if codeKey.IsZero() {
		return nil, errZeroKey
	}
	wasm, err := openAEAD(codeKey, codeAAD(functionID, codeDigest), sealed)
	if err != nil {
		return nil, ErrCodeDigest
	}
	sum := sha256.Sum256(wasm)
	if subtle.ConstantTimeCompare(sum[:], codeDigest) != 1 {
		return nil, ErrCodeDigest
	}
	return wasm, nil
}
