package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// keyedMAC hands out HMAC-SHA256 states under one fixed key. A state is
// reset before it is handed out again, so a request pays for the MAC's
// blocks, not for building two SHA-256 states and the padded key (five
// allocations per MAC, several MACs per invocation).
type keyedMAC struct {
	key  []byte
	pool sync.Pool
}

func newKeyedMAC(key []byte) *keyedMAC { return &keyedMAC{key: key} }

// get returns a fresh MAC state under the key.
func (k *keyedMAC) get() hash.Hash {
	if m, ok := k.pool.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, k.key)
}

// sum returns the MAC of what was written to m, a state from get, and
// gives m back: m is not to be used after.
func (k *keyedMAC) sum(m hash.Hash) []byte {
	s := m.Sum(make([]byte, 0, sha256.Size))
	k.pool.Put(m)
	return s
}
