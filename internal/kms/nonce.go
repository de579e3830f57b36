package kms

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// Nonces.
//
// A nonce is 40 bytes:
//
//	issued (8, unix ms, big endian) || replica (8) || random (8) ||
//	HMAC-SHA256(nonceKey, "clemmys/v2 kms nonce\x00" || the first 24 bytes)[:16]
//
// with nonceKey = HKDF-SHA256(StorageKey, info = "clemmys/v1 kms nonce key\x00")
// and replica the random id a KMS replica draws when it starts. Issuing
// keeps no state, so a flood of nonce requests costs no memory. The nonce
// is valid for NonceLifetime from issue, and only at the replica that
// issued it: the request it is for goes to that replica's own subjects
// (wire.SubjectKMSReleaseAt, SubjectKMSGatewayAt, named in the reply), and
// another replica refuses it, so the replica's own set of consumed nonces
// makes it single-use across replicas: a captured request cannot be
// replayed to another replica, nor to the same one after a restart (a new
// replica id; nonces issued before it started are refused too). The set is
// kept until its nonces expire and bounded by maxConsumed: beyond it the
// KMS refuses with wire.CodeUnavailable instead of growing.

// NonceLifetime is how long a nonce stays valid.
const NonceLifetime = 60 * time.Second

const (
	nonceSize        = 40
	noncePrefix      = 24 // issued, replica, random
	nonceMACSize     = 16
	nonceContext     = "clemmys/v2 kms nonce\x00"
	nonceKeyContext  = "clemmys/v1 kms nonce key\x00"
	maxClockSkew     = 5 * time.Second
	defaultMaxNonces = 100_000
)

type nonces struct {
	key     []byte
	replica [8]byte // this replica's id
	hexID   string
	now     func() time.Time
	started int64 // unix ms
	max     int

	mu        sync.Mutex
	consumed  map[[nonceSize]byte]int64 // nonce → expiry (unix ms); guarded by mu
	lastSweep int64                     // guarded by mu
}

func newNonces(storageKey [32]byte, now func() time.Time, max int) (*nonces, error) {
	k, err := hkdf.Key(sha256.New, storageKey[:], nil, nonceKeyContext, 32)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = defaultMaxNonces
	}
	n := &nonces{key: k, now: now, started: now().UnixMilli(), max: max, consumed: map[[nonceSize]byte]int64{}}
	if _, err := rand.Read(n.replica[:]); err != nil {
		return nil, err
	}
	n.hexID = hex.EncodeToString(n.replica[:])
	return n, nil
}

func (n *nonces) mac(prefix []byte) []byte {
	h := hmac.New(sha256.New, n.key)
	h.Write([]byte(nonceContext))
	h.Write(prefix)
	return h.Sum(nil)[:nonceMACSize]
}

// issue returns a fresh nonce.
func (n *nonces) issue() []byte {
	out := make([]byte, noncePrefix, nonceSize)
	binary.BigEndian.PutUint64(out, uint64(n.now().UnixMilli()))
	copy(out[8:16], n.replica[:])
	rand.Read(out[16:noncePrefix])
	return append(out, n.mac(out)...)
}

// consume checks that b is a nonce this KMS issued, still valid and never
// used, and marks it used. Refusals are *wire.Error.
func (n *nonces) consume(b []byte) error {
	if len(b) != nonceSize || !hmac.Equal(b[noncePrefix:], n.mac(b[:noncePrefix])) {
		return wire.Errorf(wire.CodeInvalidNonce, "unknown nonce: it was not issued by this KMS; fetch a fresh one from %s", wire.SubjectKMSNonce)
	}
	if !bytes.Equal(b[8:16], n.replica[:]) {
		return wire.Errorf(wire.CodeInvalidNonce, "nonce of another KMS replica (or of this one before a restart): send the request to the replica the nonce names, or fetch a fresh one from %s", wire.SubjectKMSNonce)
	}
	issued := int64(binary.BigEndian.Uint64(b))
	now := n.now().UnixMilli()
	expiry := issued + NonceLifetime.Milliseconds()
	switch {
	case now >= expiry:
		return wire.Errorf(wire.CodeInvalidNonce, "nonce expired (valid for %v); fetch a fresh one from %s", NonceLifetime, wire.SubjectKMSNonce)
	case issued > now+maxClockSkew.Milliseconds():
		return wire.Errorf(wire.CodeInvalidNonce, "nonce issued in the future (clock skew between KMS replicas?); fetch a fresh one")
	case issued < n.started:
		return wire.Errorf(wire.CodeInvalidNonce, "nonce predates this KMS replica's start; fetch a fresh one from %s", wire.SubjectKMSNonce)
	}
	var key [nonceSize]byte
	copy(key[:], b)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, used := n.consumed[key]; used {
		return wire.Errorf(wire.CodeInvalidNonce, "nonce already used (replay?); every request needs a fresh nonce")
	}
	// Sweep once a lifetime, or when full (at most once a second, so a
	// flood at the bound does not make every request walk the whole set).
	if now-n.lastSweep > NonceLifetime.Milliseconds() || (len(n.consumed) >= n.max && now-n.lastSweep >= 1000) {
		n.sweepLocked(now)
	}
	if len(n.consumed) >= n.max {
		return wire.Errorf(wire.CodeUnavailable, "too many requests in flight at the KMS; retry shortly")
	}
	n.consumed[key] = expiry
	return nil
}

// sweepLocked forgets expired nonces: they are refused by their timestamp.
func (n *nonces) sweepLocked(now int64) {
	for k, exp := range n.consumed {
		if now >= exp {
			delete(n.consumed, k)
		}
	}
	n.lastSweep = now
}
