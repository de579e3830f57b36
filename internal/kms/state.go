package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// State at rest. Every value the KMS writes to its KV bucket is
//
//	0x01 || nonce(12) || AES-256-GCM(stateKey, nonce, CBOR(value),
//	                                  aad = "clemmys/v1 kms state\x00" || KV key)
//
// where stateKey = HKDF-SHA256(StorageKey, info = "clemmys/v1 kms state key\x00").
// Binding the KV key as associated data means the untrusted store cannot move
// a value to another key (e.g. one function's keys under another id, or one
// namespace's policy to another namespace). It can still delete values or
// roll a key back to an older value it saw: see docs/protocol.md.
//
// Keys (each part base64url-encoded by store.Key):
//
//	identity                  identityState
//	gateway-secret            secretState
//	policy.<ns>               wire.Policy (a namespace's policy)
//	fn.<hex function id>      functionState
//	nsfn.<ns>.<hex id>        indexState (lists a namespace's functions)

const (
	stateFormat     = 1
	stateContext    = "clemmys/v1 kms state\x00"
	stateKeyContext = "clemmys/v1 kms state key\x00"
	gcmNonceSize    = 12
	gcmTagSize      = 16
)

var (
	keyIdentity      = store.Key("identity")
	keyGatewaySecret = store.Key("gateway-secret")
)

func keyPolicy(namespace string) string { return store.Key("policy", namespace) }
func keyFunction(id []byte) string      { return store.Key("fn", hex.EncodeToString(id)) }
func keyIndex(namespace string, id []byte) string {
	return store.Key("nsfn", namespace, hex.EncodeToString(id))
}
func prefixIndex(namespace string) string { return store.Prefix("nsfn", namespace) }

type identityState struct {
	Seed []byte `cbor:"1,keyasint"` // ed25519 seed of the identity key
}

type secretState struct {
	Secret []byte `cbor:"1,keyasint"`
}

// functionState is everything the KMS holds about one function version.
type functionState struct {
	Record     wire.FunctionRecord `cbor:"1,keyasint"`
	PrivateKey []byte              `cbor:"2,keyasint"` // HPKE private key (the function key)
	CodeKey    []byte              `cbor:"3,keyasint"`
	Policy     wire.Policy         `cbor:"4,keyasint"`
}

type indexState struct {
	FunctionID []byte `cbor:"1,keyasint"`
}

// errNotFound is returned by get for a missing key.
var errNotFound = errors.New("kms: not found")

// sealer seals and opens KV values.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(storageKey [32]byte) (*sealer, error) {
	k, err := hkdf.Key(sha256.New, storageKey[:], nil, stateKeyContext, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func stateAAD(key string) []byte { return append([]byte(stateContext), key...) }

// seal encodes v and seals it for KV key key.
func (s *sealer) seal(key string, v any) ([]byte, error) {
	plain, err := bus.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("kms: encode state %s: %w", key, err)
	}
	defer clear(plain)
	var nonce [gcmNonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+gcmNonceSize+len(plain)+gcmTagSize)
	out = append(append(out, stateFormat), nonce[:]...)
	return s.aead.Seal(out, nonce[:], plain, stateAAD(key)), nil
}

// open authenticates a sealed value read under key and decodes it into v.
func (s *sealer) open(key string, sealed []byte, v any) error {
	if len(sealed) < 1+gcmNonceSize+gcmTagSize || sealed[0] != stateFormat {
		return fmt.Errorf("kms: state %s: malformed sealed value", key)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+gcmNonceSize], sealed[1+gcmNonceSize:], stateAAD(key))
	if err != nil {
		return fmt.Errorf("kms: state %s does not open under the storage key (wrong key, or tampered)", key)
	}
	defer clear(plain)
	if err := bus.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("kms: state %s: malformed value", key)
	}
	return nil
}

// state is the sealed KV bucket.
type state struct {
	kv jetstream.KeyValue
	s  *sealer
}

// get reads and opens key; it returns the entry's revision.
func (st *state) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := st.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("kms: read %s: %w", key, err)
	}
	return e.Revision(), st.s.open(key, e.Value(), v)
}

func (st *state) put(ctx context.Context, key string, v any) error {
	b, err := st.s.seal(key, v)
	if err != nil {
		return err
	}
	if _, err := st.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("kms: write %s: %w", key, err)
	}
	return nil
}

// create writes key only if it does not exist yet; it returns
// jetstream.ErrKeyExists (wrapped) otherwise.
func (st *state) create(ctx context.Context, key string, v any) error {
	b, err := st.s.seal(key, v)
	if err != nil {
		return err
	}
	if _, err := st.kv.Create(ctx, key, b); err != nil {
		return fmt.Errorf("kms: create %s: %w", key, err)
	}
	return nil
}

// update writes key if its revision is still rev; it returns
// jetstream.ErrKeyRevisionMismatch (wrapped) otherwise.
func (st *state) update(ctx context.Context, key string, v any, rev uint64) error {
	b, err := st.s.seal(key, v)
	if err != nil {
		return err
	}
	if _, err := st.kv.Update(ctx, key, b, rev); err != nil {
		return fmt.Errorf("kms: update %s: %w", key, err)
	}
	return nil
}

// loadOrCreate reads key into v; if the key does not exist it stores
// fresh() first. Concurrent first starts of several replicas agree on one
// value: the first Create wins and the others read it.
func loadOrCreate[T any](ctx context.Context, st *state, key string, fresh func() (*T, error)) (*T, bool, error) {
	for range 3 {
		v := new(T)
		_, err := st.get(ctx, key, v)
		if err == nil {
			return v, false, nil
		}
		if !errors.Is(err, errNotFound) {
			return nil, false, err
		}
		nv, err := fresh()
		if err != nil {
			return nil, false, err
		}
		err = st.create(ctx, key, nv)
		if err == nil {
			return nv, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("kms: %s: concurrent creation did not settle", key)
}
