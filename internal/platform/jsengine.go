package platform

import (
	"crypto/sha256"
	"io"
	"os"
)

// digestFile is the SHA-256 of a file (a JavaScript engine module).
func digestFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 64<<20)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// EngineDigest is the digest a gateway binds nodejs actions to: the
// SHA-256 of the engine module at path.
func EngineDigest(path string) ([]byte, error) { return digestFile(path) }
