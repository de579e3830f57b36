package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
)

// Credentials are OpenWhisk's "uuid:key" pairs. The store (untrusted) holds
// for each credential only its namespace, its uuid and a tag
// HMAC-SHA256(authKey, credentialContext || lp(namespace) || lp(uuid) ||
// lp(SHA-256(key))), where authKey is derived from the gateway secret that
// only attested gateways hold. So the key is stored hashed, and whoever
// controls the store can neither recover a key nor plant a credential of
// its own or move one to another namespace; it can only delete credentials
// (or restore a deleted one: see docs/threat-model.md).
const (
	authKeyInfo       = "clemmys/v1 gateway credential key"
	credentialContext = "clemmys/v1 credential\x00"
	// KeyLen is the length of generated keys (hex characters), as
	// OpenWhisk's: 64.
	KeyLen = 64
	// maxKeyLen bounds a presented key.
	maxKeyLen = 256
	// credTTL is how long a verified credential is cached in memory.
	credTTL = 10 * time.Second
	// maxCachedCreds bounds the cache; it is emptied when full.
	maxCachedCreds = 10_000
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ErrNamespaceExists is returned by CreateNamespace for a namespace that has
// a credential.
var ErrNamespaceExists = errors.New("gateway: namespace already exists")

// ErrNoNamespace is returned for a namespace that has no credential.
var ErrNoNamespace = errors.New("gateway: namespace does not exist")

// credential is a stored credential.
type credential struct {
	Namespace string `cbor:"1,keyasint"`
	UUID      string `cbor:"2,keyasint"`
	Tag       []byte `cbor:"3,keyasint"`
	Created   int64  `cbor:"4,keyasint"`
}

func credKey(uuid string) string { return store.Key("cred", uuid) }
func nsKey(ns string) string     { return store.Key("ns", ns) }

// tag computes a credential's tag.
func (g *Gateway) tag(ns, uuid, key string) []byte {
	return g.credMAC(credentialContext, ns, uuid, key)
}

// credMAC is HMAC-SHA256(authKey, context || lp(ns) || lp(uuid) ||
// lp(SHA-256(key))).
func (g *Gateway) credMAC(context, ns, uuid, key string) []byte {
	kd := sha256.Sum256([]byte(key))
	m := g.authMAC.get()
	m.Write([]byte(context))
	for _, p := range [][]byte{[]byte(ns), []byte(uuid), kd[:]} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(p)))
		m.Write(l[:])
		m.Write(p)
	}
	return g.authMAC.sum(m)
}

// newCredential generates a uuid and a key (64 hex characters, 256 bits).
func newCredential() (uuid, key string) {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(u[:])
	uuid = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	var k [KeyLen / 2]byte
	_, _ = rand.Read(k[:])
	return uuid, hex.EncodeToString(k[:])
}

// CreateNamespace creates a namespace and returns its credential. It fails
// with ErrNamespaceExists if the namespace has one.
func (g *Gateway) CreateNamespace(ctx context.Context, ns string) (uuid, key string, err error) {
	if !creatableNamespace(ns) {
		return "", "", fmt.Errorf("gateway: invalid namespace name %q", ns)
	}
	uuid, key = newCredential()
	c := credential{Namespace: ns, UUID: uuid, Tag: g.tag(ns, uuid, key), Created: g.now().UnixMilli()}
	v, err := bus.Marshal(&c)
	if err != nil {
		return "", "", fmt.Errorf("gateway: encode credential: %w", err)
	}
	if _, err := g.auth.Create(ctx, nsKey(ns), v); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", "", ErrNamespaceExists
		}
		return "", "", fmt.Errorf("gateway: store namespace: %w", err)
	}
	if _, err := g.auth.Put(ctx, credKey(uuid), v); err != nil {
		return "", "", fmt.Errorf("gateway: store credential: %w", err)
	}
	g.log.Info("namespace created", "namespace", ns, "uuid", uuid)
	return uuid, key, nil
}

// RotateKey replaces a namespace's credential; the old one stops working.
func (g *Gateway) RotateKey(ctx context.Context, ns string) (uuid, key string, err error) {
	e, err := g.auth.Get(ctx, nsKey(ns))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", "", ErrNoNamespace
	}
	if err != nil {
		return "", "", fmt.Errorf("gateway: load namespace: %w", err)
	}
	var old credential
	if err := bus.Unmarshal(e.Value(), &old); err != nil {
		return "", "", fmt.Errorf("gateway: decode namespace: %w", err)
	}
	uuid, key = newCredential()
	c := credential{Namespace: ns, UUID: uuid, Tag: g.tag(ns, uuid, key), Created: g.now().UnixMilli()}
	v, err := bus.Marshal(&c)
	if err != nil {
		return "", "", fmt.Errorf("gateway: encode credential: %w", err)
	}
	if _, err := g.auth.Update(ctx, nsKey(ns), v, e.Revision()); err != nil {
		return "", "", fmt.Errorf("gateway: store namespace: %w", err)
	}
	if _, err := g.auth.Put(ctx, credKey(uuid), v); err != nil {
		return "", "", fmt.Errorf("gateway: store credential: %w", err)
	}
	if err := g.auth.Delete(ctx, credKey(old.UUID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		g.log.Warn("delete old credential", "namespace", ns, "err", err)
	}
	g.creds.clear()
	g.log.Info("namespace key rotated", "namespace", ns, "uuid", uuid)
	return uuid, key, nil
}

// DeleteNamespace removes a namespace's credential: its key stops working at
// once on this gateway (other replicas' caches forget it within credTTL).
// The namespace's entities, activations and policy are left in the store,
// unreachable; creating the namespace again makes them reachable to the new
// credential.
func (g *Gateway) DeleteNamespace(ctx context.Context, ns string) error {
	e, err := g.auth.Get(ctx, nsKey(ns))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNoNamespace
	}
	if err != nil {
		return fmt.Errorf("gateway: load namespace: %w", err)
	}
	var c credential
	if err := bus.Unmarshal(e.Value(), &c); err != nil {
		return fmt.Errorf("gateway: decode namespace: %w", err)
	}
	if err := g.auth.Delete(ctx, credKey(c.UUID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("gateway: delete credential: %w", err)
	}
	if err := g.auth.Delete(ctx, nsKey(ns), jetstream.LastRevision(e.Revision())); err != nil {
		return fmt.Errorf("gateway: delete namespace: %w", err)
	}
	g.creds.clear()
	if err := g.deleteNamespaceLimits(ctx, ns); err != nil {
		g.log.Warn("delete namespace limits", "namespace", ns, "err", err)
	}
	g.log.Info("namespace deleted", "namespace", ns, "uuid", c.UUID)
	return nil
}

// CheckCredential returns the namespace of a valid credential.
func (g *Gateway) CheckCredential(ctx context.Context, uuid, key string) (string, bool) {
	if !uuidRE.MatchString(uuid) || key == "" || len(key) > maxKeyLen {
		return "", false
	}
	ck := cacheKey(uuid, key)
	if ns, ok := g.creds.get(ck); ok {
		return ns, true
	}
	e, err := g.auth.Get(ctx, credKey(uuid))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			g.log.Warn("load credential", "err", err)
		}
		return "", false
	}
	var c credential
	if err := bus.Unmarshal(e.Value(), &c); err != nil || c.UUID != uuid {
		return "", false
	}
	if !hmac.Equal(c.Tag, g.tag(c.Namespace, uuid, key)) {
		return "", false
	}
	g.creds.put(ck, c.Namespace)
	return c.Namespace, true
}

func cacheKey(uuid, key string) [32]byte {
	return sha256.Sum256([]byte(uuid + "\x00" + key))
}

// credCache remembers verified credentials for credTTL.
type credCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]cachedCred
}

type cachedCred struct {
	ns      string
	expires time.Time
}

func newCredCache(now func() time.Time) *credCache {
	return &credCache{now: now, m: map[[32]byte]cachedCred{}}
}

func (c *credCache) get(k [32]byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || c.now().After(e.expires) {
		return "", false
	}
	return e.ns, true
}

func (c *credCache) put(k [32]byte, ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedCreds {
		clear(c.m)
	}
	c.m[k] = cachedCred{ns: ns, expires: c.now().Add(credTTL)}
}

func (c *credCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
