package envelope

import (
	"container/list"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Capsule sessions (DESIGN §3.4, format version 2).
//
// A session is one HPKE encapsulation to a function key. Its sender (a
// gateway) and its recipient (an enclave runtime) both export the same
// 32-byte session key from the HPKE context; every capsule of the session
// is then AES-256-GCM under that key, so the public-key operations happen
// once per (gateway, function version, epoch) instead of once per step of
// every request. Each capsule carries its session id and enc, so a runtime
// that has never seen the session (a fresh or restarted runtime, an evicted
// entry) decapsulates it on the spot: the caches are an optimization, never
// needed for correctness.

// Session parameters.
const (
	// SessionIDSize is the size of a session id: random, chosen by the
	// sender.
	SessionIDSize = 16

	// DefaultSessionMaxAge and DefaultSessionMaxUses are the sender's
	// rotation bounds: a session is replaced after 10 minutes or 2^20
	// capsules, whichever comes first.
	DefaultSessionMaxAge         = 10 * time.Minute
	DefaultSessionMaxUses uint64 = 1 << 20
	// DefaultMaxSessions bounds a Sessions (one entry per function version
	// in use).
	DefaultMaxSessions = 4096

	// DefaultOpenCacheSize and DefaultOpenCacheMaxAge bound a runtime's
	// OpenCache. The age bound only limits how long a session key stays in
	// the runtime's memory; it must exceed the sender's rotation period for
	// the cache to be effective.
	DefaultOpenCacheSize   = 1024
	DefaultOpenCacheMaxAge = 30 * time.Minute
)

// sessionInfo is the HPKE info of a session: label || function id(16) ||
// u32(key version) || session id(16). It binds the session key to the
// function version and to the session id, so an enc moved under another id
// or to another function yields another key.
func sessionInfo(fid []byte, keyVersion uint32, sid []byte) []byte {
	b := make([]byte, 0, len(labelSession)+FunctionIDSize+4+SessionIDSize)
	b = append(b, labelSession...)
	b = append(b, fid...)
	b = binary.BigEndian.AppendUint32(b, keyVersion)
	return append(b, sid...)
}

// sessionKeySize is the size of the exported session key (AES-256).
const sessionKeySize = KeySize

// exportKey turns an HPKE export into a Key.
func exportKey(export func(string, int) ([]byte, error)) (Key, error) {
	b, err := export(labelSessionKey, sessionKeySize)
	if err != nil {
		return Key{}, err
	}
	return keyFromArray((*[KeySize]byte)(b)), nil
}

// splitCapsule splits a capsule of the suite's exact size into session id,
// session enc and the AEAD part (nonce || ciphertext || tag).
func splitCapsule(c []byte, s Suite) (sid, enc, sealed []byte, ok bool) {
	if len(c) != s.capsuleSize() {
		return nil, nil, nil, false
	}
	n := s.encSize()
	return c[:SessionIDSize], c[SessionIDSize : SessionIDSize+n], c[SessionIDSize+n:], true
}

// SessionConfig configures a Sessions. Zero fields take the defaults.
type SessionConfig struct {
	MaxAge      time.Duration    // rotate a session this long after its encapsulation; default DefaultSessionMaxAge
	MaxUses     uint64           // rotate after this many capsules; default DefaultSessionMaxUses
	MaxSessions int              // sessions kept; default DefaultMaxSessions
	Now         func() time.Time // clock; default time.Now
}

// Sessions is the sender side of capsule sessions: a cache of HPKE sessions
// by function version (function id, key version and public key), rotated by
// time and count. A gateway holds one per process. It is safe for
// concurrent use; the zero value uses the defaults.
type Sessions struct {
	cfg SessionConfig

	mu        sync.Mutex
	m         map[senderKey]*senderSession
	nextSweep time.Time // stale sessions are dropped (and zeroized) at least once a minute
	encaps    atomic.Uint64
}

// senderKey identifies a function version: function id || u32(key version)
// || SHA-256(public key). The public key is part of it so that a caller who
// pairs a function id with another key never gets the other key's session.
type senderKey [FunctionIDSize + 4 + sha256.Size]byte

type senderSession struct {
	id       [SessionIDSize]byte
	enc      []byte
	key      Key
	created  time.Time
	lastUsed time.Time
	uses     uint64
}

// NewSessions returns a Sessions with the given configuration.
func NewSessions(cfg SessionConfig) *Sessions { return &Sessions{cfg: cfg} }

func (s *Sessions) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Sessions) maxAge() time.Duration {
	if s.cfg.MaxAge > 0 {
		return s.cfg.MaxAge
	}
	return DefaultSessionMaxAge
}

func (s *Sessions) maxUses() uint64 {
	if s.cfg.MaxUses > 0 {
		return s.cfg.MaxUses
	}
	return DefaultSessionMaxUses
}

func (s *Sessions) maxSessions() int {
	if s.cfg.MaxSessions > 0 {
		return s.cfg.MaxSessions
	}
	return DefaultMaxSessions
}

// Encapsulations returns the number of HPKE encapsulations (sessions
// created) so far.
func (s *Sessions) Encapsulations() uint64 {
	if s == nil {
		return 0
	}
	return s.encaps.Load()
}

// Len returns the number of sessions held.
func (s *Sessions) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Clear forgets every session and zeroizes its key.
func (s *Sessions) Clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ss := range s.m {
		ss.key.wipe()
		delete(s.m, k)
	}
}

func (s *Sessions) fresh(ss *senderSession, now time.Time) bool {
	return ss.uses < s.maxUses() && now.Sub(ss.created) < s.maxAge() && !now.Before(ss.created.Add(-time.Minute))
}

// acquire returns the session for one capsule to function version (fid,
// keyVersion, pub): its id, enc and a copy of its key, which the caller
// wipes. It counts the capsule against the session's budget.
func (s *Sessions) acquire(fid []byte, keyVersion uint32, pub []byte, hpub hpke.PublicKey) (sid [SessionIDSize]byte, enc []byte, key Key, err error) {
	var k senderKey
	copy(k[:], fid)
	binary.BigEndian.PutUint32(k[FunctionIDSize:], keyVersion)
	ph := sha256.Sum256(pub)
	copy(k[FunctionIDSize+4:], ph[:])

	if sid, enc, key, ok := s.use(k, nil); ok {
		return sid, enc, key, nil
	}
	// Encapsulate outside the lock: it is the expensive part.
	ns := &senderSession{}
	rand.Read(ns.id[:]) // never returns an error (crypto/rand, Go ≥ 1.24)
	if ns.enc, ns.key, err = sessionEncap(hpub, sessionInfo(fid, keyVersion, ns.id[:])); err != nil {
		return sid, nil, Key{}, err
	}
	s.encaps.Add(1)
	sid, enc, key, _ = s.use(k, ns)
	return sid, enc, key, nil
}

// use takes one capsule from the fresh session for k; if there is none and
// ns is not nil, ns (a new session) replaces it. A new session that lost a
// race to another fresh one is wiped.
func (s *Sessions) use(k senderKey, ns *senderSession) (sid [SessionIDSize]byte, enc []byte, key Key, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[senderKey]*senderSession{}
	}
	if !now.Before(s.nextSweep) || now.Before(s.nextSweep.Add(-2*sweepInterval)) {
		s.dropStaleLocked(now)
		s.nextSweep = now.Add(sweepInterval)
	}
	ss := s.m[k]
	if ss == nil || !s.fresh(ss, now) {
		if ns == nil {
			return sid, nil, Key{}, false
		}
		if ss != nil {
			ss.key.wipe()
			delete(s.m, k)
		}
		s.evictLocked(now)
		ns.created = now
		s.m[k] = ns
		ss = ns
	} else if ns != nil {
		ns.key.wipe()
	}
	ss.uses++
	ss.lastUsed = now
	return ss.id, ss.enc, ss.key.clone(), true
}

// sweepInterval is how often the caches drop expired sessions that nobody
// asks for any more, so that their keys do not outlive their epoch.
const sweepInterval = time.Minute

// dropStaleLocked drops and zeroizes every session that may not be used
// any more.
func (s *Sessions) dropStaleLocked(now time.Time) {
	for k, ss := range s.m {
		if !s.fresh(ss, now) {
			ss.key.wipe()
			delete(s.m, k)
		}
	}
}

// evictLocked makes room for one more session: it drops stale sessions,
// then the least recently used ones.
func (s *Sessions) evictLocked(now time.Time) {
	if len(s.m) < s.maxSessions() {
		return
	}
	s.dropStaleLocked(now)
	for len(s.m) >= s.maxSessions() {
		var oldest senderKey
		var at time.Time
		first := true
		for k, ss := range s.m {
			if first || ss.lastUsed.Before(at) {
				oldest, at, first = k, ss.lastUsed, false
			}
		}
		s.m[oldest].key.wipe()
		delete(s.m, oldest)
	}
}

// Seal is the package-level Seal with capsules under this cache's sessions:
// it reuses the fresh session of each function version, and encapsulates
// (one HPKE operation) only for a function version without one. A nil
// *Sessions seals like the package-level Seal.
func (s *Sessions) Seal(h Header, requestSecret, authKey Key, pubs []hpke.PublicKey, input []byte) (*Envelope, error) {
	e, k, err := s.SealOwned(h, requestSecret, authKey, pubs, input)
	k.wipe()
	return e, err
}

// SealOwned is Seal that also returns the owner keys of the request (as
// NewOwnerKeys would derive them for the envelope's header): the sender
// opens the answer with them (OpenOutputOwned) without decoding, digesting
// and deriving again what it has just sealed. The keys open the request's
// every step; keep them no longer than the request. A nil *Sessions
// seals like the package-level Seal.
func (s *Sessions) SealOwned(h Header, requestSecret, authKey Key, pubs []hpke.PublicKey, input []byte) (*Envelope, *OwnerKeys, error) {
	if authKey.IsZero() {
		return nil, nil, wrap(ErrAuth, "no authentication key")
	}
	if s == nil {
		s = new(Sessions)
		defer s.Clear()
	}
	e, k, err := s.sealKeys(h, requestSecret, pubs, input)
	if err != nil {
		return nil, nil, err
	}
	e.Auth = authTag(authKey, k.digest, e.Capsules)
	return e, k, nil
}

// seal is Seal without the tag.
func (s *Sessions) seal(h Header, requestSecret Key, pubs []hpke.PublicKey, input []byte) (*Envelope, error) {
	e, k, err := s.sealKeys(h, requestSecret, pubs, input)
	k.wipe()
	return e, err
}

// sealKeys is seal that returns the owner keys of the envelope's header.
func (s *Sessions) sealKeys(h Header, requestSecret Key, pubs []hpke.PublicKey, input []byte) (*Envelope, *OwnerKeys, error) {
	h = h.Clone()
	d, err := h.Digest()
	if err != nil {
		return nil, nil, err
	}
	if len(pubs) != len(h.Chain) {
		return nil, nil, malformed("%d public keys for %d steps", len(pubs), len(h.Chain))
	}
	for j, pk := range pubs {
		if pk == nil || pk.KEM().ID() != h.Suite.kemID() {
			return nil, nil, wrap(ErrSuite, "public key %d is not a %s key", j, h.Suite)
		}
	}
	if len(input) > maxBodyPlaintext {
		return nil, nil, malformed("input is %d bytes, limit %d", len(input), maxBodyPlaintext)
	}
	keys, err := deriveStepKeys(requestSecret, d, len(h.Chain))
	if err != nil {
		return nil, nil, err
	}
	k := &OwnerKeys{digest: d, keys: keys}
	ok := false
	defer func() {
		if !ok {
			k.wipe()
		}
	}()
	caps := make([][]byte, len(h.Chain))
	pt := make([]byte, 2*KeySize)
	defer clear(pt)
	for j, pk := range pubs {
		st := &h.Chain[j]
		sid, enc, sk, err := s.acquire(st.FunctionID, st.KeyVersion, pk.Bytes(), pk)
		if err != nil {
			return nil, nil, fmt.Errorf("envelope: session for capsule %d: %w", j, err)
		}
		copy(pt, keys[j].raw())
		copy(pt[KeySize:], keys[j+1].raw())
		sealed, err := sealAEAD(sk, bound(labelCapsule, d, uint32(j)), pt)
		sk.wipe()
		if err != nil {
			return nil, nil, fmt.Errorf("envelope: seal capsule %d: %w", j, err)
		}
		c := make([]byte, 0, h.Suite.capsuleSize())
		c = append(c, sid[:]...)
		c = append(c, enc...)
		caps[j] = append(c, sealed...)
	}
	body, err := sealAEAD(keys[0], bound(labelBody, d, 0), input)
	if err != nil {
		return nil, nil, err
	}
	e := &Envelope{Header: h, Step: 0, Capsules: caps, Body: body}
	k.header, ok = &e.Header, true
	return e, k, nil
}

// OpenCache is the runtime side of capsule sessions: the session keys a
// runtime has opened, so that it decapsulates each session once. Entries are
// keyed by (function id, key version, function public key, session id) and
// bound to the session's enc: a capsule naming a cached session id with another enc is
// refused (ErrCapsule), and a session id of another function never selects
// its entry. An entry is added only after a capsule opened under it (and
// after the envelope's auth tag verified), so forged capsules cannot fill
// or poison the cache. It is bounded (least recently used entries go) and
// entries expire; evicted keys are zeroized. Safe for concurrent use. A nil
// *OpenCache caches nothing.
type OpenCache struct {
	max    int
	maxAge time.Duration
	now    func() time.Time

	mu  sync.Mutex
	m   map[openKey]*list.Element
	lru list.List // of *openEntry, most recent first
	// pks memoizes SHA-256 of the public key of each private key seen
	// (deriving an X-Wing public key costs microseconds). It holds only
	// keys the runtime holds anyway, and is reset when it grows large.
	pks map[hpke.PrivateKey][sha256.Size]byte
	// nextSweep: expired entries are dropped (and zeroized) at least once
	// a minute, also those nobody asks for any more.
	nextSweep time.Time

	hits, misses atomic.Uint64
}

// openKey names a cached session: the function version it belongs to
// (function id, key version and a hash of the function's public key, so
// that an identity with another private key never finds it) and the
// session id.
type openKey struct {
	fid [FunctionIDSize]byte
	kv  uint32
	pk  [sha256.Size]byte
	sid [SessionIDSize]byte
}

type openEntry struct {
	k       openKey
	encHash [sha256.Size]byte
	key     Key
	created time.Time
}

// NewOpenCache returns a cache of at most maxEntries sessions, each kept at
// most maxAge. Zero or negative values take DefaultOpenCacheSize and
// DefaultOpenCacheMaxAge.
func NewOpenCache(maxEntries int, maxAge time.Duration) *OpenCache {
	if maxEntries <= 0 {
		maxEntries = DefaultOpenCacheSize
	}
	if maxAge <= 0 {
		maxAge = DefaultOpenCacheMaxAge
	}
	return &OpenCache{max: maxEntries, maxAge: maxAge, now: time.Now, m: map[openKey]*list.Element{}}
}

// Stats returns how many capsules opened with a cached session (hits) and
// how many opened after an HPKE decapsulation, adding their session
// (misses). Refused capsules count in neither.
func (c *OpenCache) Stats() (hits, misses uint64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}

// Len returns the number of cached sessions.
func (c *OpenCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Clear forgets every session and zeroizes its key.
func (c *OpenCache) Clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.m {
		el.Value.(*openEntry).key.wipe()
		delete(c.m, k)
	}
	c.lru.Init()
	c.pks = nil
}

// publicKeyHash returns SHA-256 of sk's public key, memoized for
// comparable key types (those of crypto/hpke are pointers).
func (c *OpenCache) publicKeyHash(sk hpke.PrivateKey) [sha256.Size]byte {
	if !reflect.TypeOf(sk).Comparable() {
		return sha256.Sum256(sk.PublicKey().Bytes())
	}
	c.mu.Lock()
	h, ok := c.pks[sk]
	c.mu.Unlock()
	if ok {
		return h
	}
	h = sha256.Sum256(sk.PublicKey().Bytes())
	c.mu.Lock()
	if c.pks == nil || len(c.pks) >= 4*DefaultOpenCacheSize {
		c.pks = map[hpke.PrivateKey][sha256.Size]byte{}
	}
	c.pks[sk] = h
	c.mu.Unlock()
	return h
}

func (c *OpenCache) removeLocked(el *list.Element) {
	e := el.Value.(*openEntry)
	e.key.wipe()
	delete(c.m, e.k)
	c.lru.Remove(el)
}

// sweepLocked drops the expired entries, at most once per sweepInterval.
// Entries are in LRU order, not by age, so it walks them all (≤ max).
func (c *OpenCache) sweepLocked(now time.Time) {
	if now.Before(c.nextSweep) && !now.Before(c.nextSweep.Add(-2*sweepInterval)) {
		return
	}
	c.nextSweep = now.Add(sweepInterval)
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if c.expired(el.Value.(*openEntry), now) {
			c.removeLocked(el)
		}
		el = next
	}
}

func (c *OpenCache) expired(e *openEntry, now time.Time) bool {
	return now.Sub(e.created) >= c.maxAge || now.Before(e.created.Add(-time.Minute))
}

// lookup returns a copy of the cached key of session k (the caller wipes
// it), or ok = false. A cached session with another enc is an error.
func (c *OpenCache) lookup(k openKey, encHash [sha256.Size]byte) (key Key, ok bool, err error) {
	if c == nil {
		return Key{}, false, nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	el := c.m[k]
	if el == nil {
		return Key{}, false, nil
	}
	e := el.Value.(*openEntry)
	if c.expired(e, now) {
		c.removeLocked(el)
		return Key{}, false, nil
	}
	if e.encHash != encHash {
		return Key{}, false, wrap(ErrCapsule, "session id already bound to another session key")
	}
	c.lru.MoveToFront(el)
	return e.key.clone(), true, nil
}

// insert caches a copy of key for session k with enc hash encHash. If the
// session id is already bound to another enc, it refuses (ErrCapsule).
func (c *OpenCache) insert(k openKey, encHash [sha256.Size]byte, key Key) error {
	if c == nil {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[openKey]*list.Element{}
	}
	if el := c.m[k]; el != nil {
		e := el.Value.(*openEntry)
		if !c.expired(e, now) {
			if e.encHash != encHash {
				return wrap(ErrCapsule, "session id already bound to another session key")
			}
			c.lru.MoveToFront(el)
			return nil
		}
		c.removeLocked(el)
	}
	c.m[k] = c.lru.PushFront(&openEntry{k: k, encHash: encHash, key: key.clone(), created: now})
	max := c.max
	if max <= 0 {
		max = DefaultOpenCacheSize
	}
	for len(c.m) > max {
		c.removeLocked(c.lru.Back())
	}
	return nil
}

// openCapsule opens capsule c of step j for fn: it finds the session key
// (cache or HPKE decapsulation), opens k_j || k_{j+1} with AAD (D, j) and,
// on success, caches the session. Every failure is ErrCapsule.
func openCapsule(fn *FunctionIdentity, st *Step, s Suite, d [32]byte, j uint32, c []byte) (kIn, kOut Key, err error) {
	sid, enc, sealed, ok := splitCapsule(c, s)
	if !ok {
		return Key{}, Key{}, wrap(ErrCapsule, "capsule is %d bytes, want %d", len(c), s.capsuleSize())
	}
	var k openKey
	copy(k.fid[:], st.FunctionID)
	k.kv = st.KeyVersion
	copy(k.sid[:], sid)
	if fn.Sessions != nil {
		k.pk = fn.Sessions.publicKeyHash(fn.PrivateKey)
	}
	encHash := sha256.Sum256(enc)

	cache := fn.Sessions
	sk, hit, err := cache.lookup(k, encHash)
	if err != nil {
		return Key{}, Key{}, err
	}
	if !hit {
		if sk, err = sessionDecap(fn.PrivateKey, enc, sessionInfo(st.FunctionID, st.KeyVersion, sid)); err != nil {
			return Key{}, Key{}, ErrCapsule
		}
	}
	defer sk.wipe()
	pt, err := openAEAD(sk, bound(labelCapsule, d, j), sealed)
	if err != nil || len(pt) != 2*KeySize {
		return Key{}, Key{}, ErrCapsule
	}
	kIn = keyFromArray((*[KeySize]byte)(pt[:KeySize:KeySize]))
	kOut = keyFromArray((*[KeySize]byte)(append([]byte(nil), pt[KeySize:]...)))
	if kIn.IsZero() || kOut.IsZero() {
		return Key{}, Key{}, ErrCapsule
	}
	if cache != nil {
		if hit {
			cache.hits.Add(1)
		} else {
			if err := cache.insert(k, encHash, sk); err != nil {
				return Key{}, Key{}, err
			}
			cache.misses.Add(1)
		}
	}
	return kIn, kOut, nil
}
