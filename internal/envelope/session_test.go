package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// retag recomputes the auth tag with the namespace's key, as a holder of ak
// (a compromised runtime of the namespace) could: what is left to refuse a
// change is the capsule's own cryptography and the session binding.
func retag(e *Envelope) {
	d, _ := e.Header.Digest()
	e.Auth = authTag(testAuthKey, d, e.Capsules)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// capsuleSID returns the session id of a capsule.
func capsuleSID(tb testing.TB, c []byte, s Suite) string {
	tb.Helper()
	sid, _, _, ok := splitCapsule(c, s)
	if !ok {
		tb.Fatalf("capsule of %d bytes", len(c))
	}
	return fmt.Sprintf("%x", sid)
}

// Sessions reuses one HPKE session per function version across requests;
// a runtime with an OpenCache decapsulates each session once.
func TestSessionsReuse(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			fns := []*testFn{newTestFn(t, suite, "a"), newTestFn(t, suite, "b"), newTestFn(t, suite, "c")}
			var s Sessions
			cache := NewOpenCache(0, 0)
			gw := testKey(t, "gateway")
			var sids []string
			for r := range 4 {
				h := newTestHeader(suite, fmt.Sprintf("reuse %d", r), fns...)
				rs := RequestSecret(gw, h.RequestID)
				e, err := s.Seal(h, rs, testAuthKey, pubsOf(fns...), []byte("in"))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for j, c := range e.Capsules {
					if len(c) != suite.capsuleSize() {
						t.Fatalf("capsule %d: %d bytes", j, len(c))
					}
					got = append(got, capsuleSID(t, c, suite))
				}
				if r == 0 {
					sids = got
					if sids[0] == sids[1] || sids[1] == sids[2] || sids[0] == sids[2] {
						t.Fatal("functions share a session")
					}
				} else if fmt.Sprint(got) != fmt.Sprint(sids) {
					t.Fatalf("request %d: sessions %v, want %v", r, got, sids)
				}
				for j, f := range fns {
					id := f.id
					id.Sessions = cache
					o, err := Open(wireTrip(t, e), &id, testNow)
					if err != nil {
						t.Fatalf("request %d step %d: %v", r, j, err)
					}
					if e, err = o.SealOutput([]byte("out")); err != nil {
						t.Fatal(err)
					}
				}
				if out, err := OpenResult(e, rs, [32]byte{}); err != nil || string(out) != "out" {
					t.Fatalf("result: %q, %v", out, err)
				}
			}
			if n := s.Encapsulations(); n != 3 {
				t.Fatalf("%d encapsulations for 3 function versions", n)
			}
			if hits, misses := cache.Stats(); misses != 3 || hits != 9 {
				t.Fatalf("runtime cache: %d hits, %d misses, want 9, 3", hits, misses)
			}
			if s.Len() != 3 || cache.Len() != 3 {
				t.Fatalf("sessions held: sender %d, runtime %d", s.Len(), cache.Len())
			}
			s.Clear()
			cache.Clear()
			if s.Len() != 0 || cache.Len() != 0 {
				t.Fatal("Clear left sessions")
			}
		})
	}
}

// A chain that runs one function several times uses one session.
func TestSessionsSameFunction(t *testing.T) {
	a := newTestFn(t, SuiteX25519, "a")
	var s Sessions
	h := newTestHeader(SuiteX25519, "same", a, a, a)
	e, err := s.Seal(h, testKey(t, "rs"), testAuthKey, pubsOf(a, a, a), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Encapsulations() != 1 {
		t.Fatalf("%d encapsulations", s.Encapsulations())
	}
	for j := 1; j < 3; j++ {
		if !bytes.Equal(e.Capsules[j][:SessionIDSize+32], e.Capsules[0][:SessionIDSize+32]) {
			t.Fatalf("capsule %d in another session", j)
		}
		if bytes.Equal(e.Capsules[j], e.Capsules[0]) {
			t.Fatalf("capsule %d equals capsule 0", j)
		}
	}
	cache := NewOpenCache(0, 0)
	id := a.id
	id.Sessions = cache
	for j := range 3 {
		o, err := Open(e, &id, testNow)
		if err != nil {
			t.Fatalf("step %d: %v", j, err)
		}
		if e, err = o.SealOutput(nil); err != nil {
			t.Fatal(err)
		}
	}
	if hits, misses := cache.Stats(); hits != 2 || misses != 1 {
		t.Fatalf("%d hits, %d misses", hits, misses)
	}
}

// Sessions rotate by count, by time and per function version; envelopes of
// a rotated session still open (their capsules carry the session's enc).
func TestSessionsRotation(t *testing.T) {
	a := newTestFn(t, SuiteX25519, "a")
	clock := &fakeClock{t: testNow}
	s := NewSessions(SessionConfig{MaxAge: time.Minute, MaxUses: 3, Now: clock.Now})
	seal := func(f *testFn) *Envelope {
		t.Helper()
		h := newTestHeader(SuiteX25519, "rotation", f)
		e, err := s.Seal(h, testKey(t, "rs"), testAuthKey, pubsOf(f), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	sid := func(e *Envelope) string { return capsuleSID(t, e.Capsules[0], SuiteX25519) }

	var envs []*Envelope
	for range 3 {
		envs = append(envs, seal(a))
	}
	if sid(envs[0]) != sid(envs[2]) || s.Encapsulations() != 1 {
		t.Fatal("session not reused within its budget")
	}
	envs = append(envs, seal(a))
	if sid(envs[3]) == sid(envs[2]) || s.Encapsulations() != 2 {
		t.Fatal("session not rotated after MaxUses capsules")
	}
	clock.Add(59 * time.Second)
	envs = append(envs, seal(a))
	if sid(envs[4]) != sid(envs[3]) {
		t.Fatal("session rotated before MaxAge")
	}
	clock.Add(time.Second)
	envs = append(envs, seal(a))
	if sid(envs[5]) == sid(envs[4]) || s.Encapsulations() != 3 {
		t.Fatal("session not rotated after MaxAge")
	}
	clock.Add(-2 * time.Minute) // the clock jumps back
	envs = append(envs, seal(a))
	if sid(envs[6]) == sid(envs[5]) {
		t.Fatal("session kept across a clock jump backwards")
	}
	if s.Len() != 1 {
		t.Fatalf("%d sessions held for one function version", s.Len())
	}

	// Another function version (new function id), or the same id with
	// another key, gets its own session.
	b := newTestFn(t, SuiteX25519, "b")
	eb := seal(b)
	a2 := newTestFn(t, SuiteX25519, "a2")
	a2.id.FunctionID = a.id.FunctionID
	ea2 := seal(a2)
	if sid(eb) == sid(envs[6]) || sid(ea2) == sid(envs[6]) || s.Len() != 3 {
		t.Fatal("function versions share a session")
	}
	if _, err := Open(ea2, &a2.id, testNow); err != nil {
		t.Fatalf("same id, another key: %v", err)
	}

	// Every envelope still opens, with one cache, whatever the rotation.
	cache := NewOpenCache(0, 0)
	id := a.id
	id.Sessions = cache
	for i, e := range envs {
		if _, err := Open(e, &id, testNow); err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
	}
	if _, misses := cache.Stats(); misses != 4 {
		t.Fatalf("%d decapsulations for 4 sessions", misses)
	}
}

// The sender keeps at most MaxSessions sessions and zeroizes those it drops.
func TestSessionsEviction(t *testing.T) {
	s := NewSessions(SessionConfig{MaxSessions: 2})
	var fns []*testFn
	for i := range 3 {
		fns = append(fns, newTestFn(t, SuiteX25519, fmt.Sprintf("evict%d", i)))
	}
	seal := func(f *testFn) {
		t.Helper()
		if _, err := s.Seal(newTestHeader(SuiteX25519, "evict", f), testKey(t, "rs"), testAuthKey, pubsOf(f), nil); err != nil {
			t.Fatal(err)
		}
	}
	seal(fns[0])
	var first Key
	for _, ss := range s.m {
		first = ss.key
	}
	seal(fns[1])
	seal(fns[2])
	if s.Len() != 2 {
		t.Fatalf("%d sessions, max 2", s.Len())
	}
	if !first.IsZero() {
		t.Fatal("evicted session key not zeroized")
	}
	seal(fns[2])
	if s.Encapsulations() != 3 {
		t.Fatalf("%d encapsulations", s.Encapsulations())
	}
	s.Clear()
	if s.Len() != 0 {
		t.Fatal("Clear")
	}
}

func TestSessionsConcurrent(t *testing.T) {
	fns := []*testFn{newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b")}
	var s Sessions
	cache := NewOpenCache(0, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 8 {
				h := newTestHeader(SuiteX25519, fmt.Sprintf("concurrent %d %d", g, r), fns...)
				e, err := s.Seal(h, RequestSecret(testKey(t, "gw"), h.RequestID), testAuthKey, pubsOf(fns...), []byte("x"))
				if err != nil {
					errs <- err
					return
				}
				id := fns[0].id
				id.Sessions = cache
				if _, err := Open(e, &id, testNow); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := s.Encapsulations(); n < 2 || n > 16 {
		t.Fatalf("%d encapsulations for 2 functions and 8 senders", n)
	}
	if s.Len() != 2 {
		t.Fatalf("%d sessions", s.Len())
	}
}

// capsuleMutator changes one part of the capsule of step cur. other is
// the same step's capsule of another request sealed in another session,
// same is the same step's capsule of another request in the same session,
// next is the capsule of another step (another function's session).
type capsuleMutator struct {
	name   string
	mutate func(c, other, same, next []byte, s Suite) []byte
}

func capsuleMutators() []capsuleMutator {
	n := func(s Suite) int { return SessionIDSize + s.encSize() }
	flipAt := func(i func(s Suite) int) func(c, _, _, _ []byte, s Suite) []byte {
		return func(c, _, _, _ []byte, s Suite) []byte { c[i(s)] ^= 0x01; return c }
	}
	splice := func(from, to func(s Suite) int, src func(other, same, next []byte) []byte) func(c, other, same, next []byte, s Suite) []byte {
		return func(c, other, same, next []byte, s Suite) []byte {
			copy(c[from(s):to(s)], src(other, same, next)[from(s):to(s)])
			return c
		}
	}
	zero := func(Suite) int { return 0 }
	sidEnd := func(Suite) int { return SessionIDSize }
	other := func(o, _, _ []byte) []byte { return o }
	next := func(_, _, x []byte) []byte { return x }
	return []capsuleMutator{
		{"session id flipped", flipAt(zero)},
		{"session id of another session", splice(zero, sidEnd, other)},
		{"session id of another function's session", splice(zero, sidEnd, next)},
		{"session enc flipped", flipAt(func(s Suite) int { return SessionIDSize + s.encSize() - 1 })},
		{"session enc of another session (swapped)", splice(sidEnd, n, other)},
		{"session id and enc of another session", splice(zero, n, other)},
		{"session of another function", splice(zero, n, next)},
		{"nonce flipped", flipAt(n)},
		{"ciphertext flipped", flipAt(func(s Suite) int { return n(s) + 12 + 5 })},
		{"tag flipped", flipAt(func(s Suite) int { return s.capsuleSize() - 1 })},
		{"capsule of another session", func(_, o, _, _ []byte, _ Suite) []byte { return bytes.Clone(o) }},
		{"capsule of the same session, another request", func(_, _, same, _ []byte, _ Suite) []byte { return bytes.Clone(same) }},
		{"capsule of another step", func(_, _, _, x []byte, _ Suite) []byte { return bytes.Clone(x) }},
	}
}

// TestCapsuleTampering changes every part of the capsule (session id,
// enc, nonce, ciphertext, tag) at every step: refused by the auth tag
// (ErrAuth) and, re-tagged by a holder of ak, by the capsule (ErrCapsule),
// with and without a warm session cache. No refused capsule enters the
// cache, and the genuine envelope still opens from it afterwards.
func TestCapsuleTampering(t *testing.T) {
	for _, suite := range suites {
		fns := []*testFn{newTestFn(t, suite, "a"), newTestFn(t, suite, "b"), newTestFn(t, suite, "c")}
		gw := testKey(t, "gateway")
		var sess Sessions
		run := func(label string, s *Sessions) []*Envelope {
			h := newTestHeader(suite, label, fns...)
			var e *Envelope
			var err error
			if s == nil {
				e, err = Seal(h, RequestSecret(gw, h.RequestID), testAuthKey, pubsOf(fns...), []byte("in"))
			} else {
				e, err = s.Seal(h, RequestSecret(gw, h.RequestID), testAuthKey, pubsOf(fns...), []byte("in"))
			}
			if err != nil {
				t.Fatal(err)
			}
			envs := []*Envelope{e}
			for j, f := range fns {
				o, err := Open(e, &f.id, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if e, err = o.SealOutput([]byte(fmt.Sprint(j))); err != nil {
					t.Fatal(err)
				}
				envs = append(envs, e)
			}
			return envs
		}
		genuine := run("A", &sess)
		same := run("B", &sess)
		other := run("C", nil)
		for cur := range 3 {
			in := genuine[cur]
			if capsuleSID(t, same[cur].Capsules[cur], suite) != capsuleSID(t, in.Capsules[cur], suite) ||
				capsuleSID(t, other[cur].Capsules[cur], suite) == capsuleSID(t, in.Capsules[cur], suite) {
				t.Fatal("fixture sessions are not as intended")
			}
			nxt := (cur + 1) % 3
			for _, m := range capsuleMutators() {
				for _, warm := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/step%d/%s/warm=%v", suite, cur, m.name, warm), func(t *testing.T) {
						id := fns[cur].id
						if warm {
							id.Sessions = NewOpenCache(0, 0)
							if _, err := Open(in, &id, testNow); err != nil {
								t.Fatal(err)
							}
						}
						e := cloneEnv(in)
						e.Capsules[cur] = m.mutate(e.Capsules[cur], other[cur].Capsules[cur], same[cur].Capsules[cur], in.Capsules[nxt], suite)
						if bytes.Equal(e.Capsules[cur], in.Capsules[cur]) {
							t.Fatal("mutator changed nothing")
						}
						if _, err := Open(e, &id, testNow); !errors.Is(err, ErrAuth) {
							t.Fatalf("Open = %v, want ErrAuth", err)
						}
						retag(e)
						if _, err := Open(e, &id, testNow); !errors.Is(err, ErrCapsule) {
							t.Fatalf("re-tagged: Open = %v, want ErrCapsule", err)
						}
						if warm {
							if n := id.Sessions.Len(); n != 1 {
								t.Fatalf("a refused capsule entered the cache (%d entries)", n)
							}
							if _, err := Open(in, &id, testNow); err != nil {
								t.Fatalf("genuine envelope after the attack: %v", err)
							}
							if hits, misses := id.Sessions.Stats(); misses != 1 || hits != 1 {
								t.Fatalf("cache: %d hits, %d misses", hits, misses)
							}
						}
					})
				}
			}
		}
	}
}

// forgeSession plays a holder of ak who encapsulates a session of its own
// to f's public key under session id sid and builds a complete envelope
// for h with it: its own step keys, capsule, body and tag.
func forgeSession(t *testing.T, f *testFn, h Header, sid []byte, input []byte) *Envelope {
	t.Helper()
	d, err := h.Digest()
	if err != nil {
		t.Fatal(err)
	}
	st := &h.Chain[0]
	enc, sk, err := sessionEncap(f.pub, sessionInfo(st.FunctionID, st.KeyVersion, sid))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := deriveStepKeys(testKey(t, "attacker request secret"), d, len(h.Chain))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := sealAEAD(sk, bound(labelCapsule, d, 0), append(keys[0].Bytes(), keys[1].Bytes()...))
	if err != nil {
		t.Fatal(err)
	}
	c := append(append(append([]byte(nil), sid...), enc...), sealed...)
	body, err := sealAEAD(keys[0], bound(labelBody, d, 0), input)
	if err != nil {
		t.Fatal(err)
	}
	e := &Envelope{Header: h, Capsules: [][]byte{c}, Body: body}
	retag(e)
	return e
}

// A session id is bound, in a runtime's cache, to the enc it was first
// opened with: the same id with another enc is refused, in either order,
// even when the other session is cryptographically valid (made by a
// holder of ak). Only availability is at stake: a holder of ak can create
// requests anyway.
func TestSessionIDReuseWithAnotherEnc(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			a := newTestFn(t, suite, "a")
			var s Sessions
			h := newTestHeader(suite, "reuse sid", a)
			genuine, err := s.Seal(h, RequestSecret(testKey(t, "gw"), h.RequestID), testAuthKey, pubsOf(a), []byte("genuine"))
			if err != nil {
				t.Fatal(err)
			}
			sid, _, _, _ := splitCapsule(genuine.Capsules[0], suite)
			h2 := newTestHeader(suite, "reuse sid 2", a)
			forged := forgeSession(t, a, h2, sid, []byte("forged"))
			if bytes.Equal(forged.Capsules[0][:SessionIDSize+suite.encSize()], genuine.Capsules[0][:SessionIDSize+suite.encSize()]) {
				t.Fatal("forged session has the genuine enc")
			}
			// Without a cache, each opens on its own.
			if o, err := Open(forged, &a.id, testNow); err != nil || string(o.Input) != "forged" {
				t.Fatalf("control: forged session without a cache: %v", err)
			}

			id := a.id
			id.Sessions = NewOpenCache(0, 0)
			if _, err := Open(genuine, &id, testNow); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(forged, &id, testNow); !errors.Is(err, ErrCapsule) {
				t.Fatalf("same session id, another enc, after the genuine: %v", err)
			}
			if _, err := Open(genuine, &id, testNow); err != nil {
				t.Fatalf("genuine after the refusal: %v", err)
			}

			id.Sessions = NewOpenCache(0, 0)
			if _, err := Open(forged, &id, testNow); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(genuine, &id, testNow); !errors.Is(err, ErrCapsule) {
				t.Fatalf("same session id, another enc, after the forged: %v", err)
			}
		})
	}
}

// A runtime's cache is bound to the function: a session id of another
// function's cached session never selects it, even with a capsule sealed
// under that session's key (which a lookup by session id alone would
// accept), and an identity with another private key never uses the
// entries of the genuine one.
func TestOpenCacheBindsFunction(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			a, b := newTestFn(t, suite, "a"), newTestFn(t, suite, "b")
			cache := NewOpenCache(0, 0)
			ida, idb := a.id, b.id
			ida.Sessions, idb.Sessions = cache, cache

			var s Sessions
			ha := newTestHeader(suite, "poison a", a)
			ea, err := s.Seal(ha, testKey(t, "rs a"), testAuthKey, pubsOf(a), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ea, &ida, testNow); err != nil {
				t.Fatal(err)
			}
			sidA, encA, _, _ := splitCapsule(ea.Capsules[0], suite)
			stA := &ha.Chain[0]
			keyA, err := sessionDecap(a.id.PrivateKey, encA, sessionInfo(stA.FunctionID, stA.KeyVersion, sidA))
			if err != nil {
				t.Fatal(err)
			}

			// b's envelope whose capsule names a's session and is sealed
			// under a's session key, for b's header and step.
			hb := newTestHeader(suite, "poison b", b)
			eb, err := s.Seal(hb, testKey(t, "rs b"), testAuthKey, pubsOf(b), nil)
			if err != nil {
				t.Fatal(err)
			}
			db, _ := hb.Digest()
			keys, _ := deriveStepKeys(testKey(t, "rs b"), db, 1)
			sealed, err := sealAEAD(keyA, bound(labelCapsule, db, 0), append(keys[0].Bytes(), keys[1].Bytes()...))
			if err != nil {
				t.Fatal(err)
			}
			eb.Capsules[0] = append(append(append([]byte(nil), sidA...), encA...), sealed...)
			retag(eb)
			hits0, _ := cache.Stats()
			if _, err := Open(eb, &idb, testNow); !errors.Is(err, ErrCapsule) {
				t.Fatalf("b opened a capsule in a's cached session: %v", err)
			}
			if hits, _ := cache.Stats(); hits != hits0 {
				t.Fatal("b's lookup hit a's session")
			}

			// a's function id with another private key: no cache hit.
			imp := ida
			imp.PrivateKey = b.id.PrivateKey
			if _, err := Open(ea, &imp, testNow); !errors.Is(err, ErrCapsule) {
				t.Fatalf("another private key used a's cached session: %v", err)
			}
			if cache.Len() != 1 {
				t.Fatalf("%d cache entries", cache.Len())
			}
		})
	}
}

// The runtime's cache is bounded (least recently used entries go), entries
// expire, and evicted keys are zeroized.
func TestOpenCacheBounds(t *testing.T) {
	fns := []*testFn{newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b"), newTestFn(t, SuiteX25519, "c")}
	clock := &fakeClock{t: testNow}
	cache := NewOpenCache(2, time.Hour)
	cache.now = clock.Now
	var s Sessions
	envs := make([]*Envelope, 3)
	for i, f := range fns {
		var err error
		if envs[i], err = s.Seal(newTestHeader(SuiteX25519, "bounds", f), testKey(t, "rs"), testAuthKey, pubsOf(f), nil); err != nil {
			t.Fatal(err)
		}
	}
	open := func(i int) {
		t.Helper()
		id := fns[i].id
		id.Sessions = cache
		if _, err := Open(envs[i], &id, testNow); err != nil {
			t.Fatal(err)
		}
	}
	entryKey := func(i int) Key {
		sid, _, _, _ := splitCapsule(envs[i].Capsules[0], SuiteX25519)
		for _, el := range cache.m {
			if e := el.Value.(*openEntry); bytes.Equal(e.k.sid[:], sid) {
				return e.key
			}
		}
		t.Fatalf("session %d not cached", i)
		return Key{}
	}
	open(0)
	open(1)
	k0 := entryKey(0)
	open(1) // 1 is now more recent than 0
	open(2) // evicts 0
	if cache.Len() != 2 || !k0.IsZero() {
		t.Fatalf("LRU eviction: %d entries, evicted key zeroized %v", cache.Len(), k0.IsZero())
	}
	k1 := entryKey(1)
	clock.Add(time.Hour)
	open(1)
	if !k1.IsZero() {
		t.Fatal("expired key not zeroized")
	}
	if hits, misses := cache.Stats(); hits != 1 || misses != 4 {
		t.Fatalf("%d hits, %d misses, want 1, 4", hits, misses)
	}
	k1 = entryKey(1)
	cache.Clear()
	if cache.Len() != 0 || !k1.IsZero() {
		t.Fatal("Clear")
	}
	var nilSessions *Sessions
	if _, err := nilSessions.Seal(newTestHeader(SuiteX25519, "nil", fns[0]), testKey(t, "rs"), testAuthKey, pubsOf(fns[0]), nil); err != nil {
		t.Fatalf("nil Sessions: %v", err)
	}
	if nilSessions.Len() != 0 || nilSessions.Encapsulations() != 0 {
		t.Fatal("nil Sessions")
	}
	nilSessions.Clear()
	var nilCache *OpenCache
	if nilCache.Len() != 0 {
		t.Fatal("nil cache")
	}
	nilCache.Clear()
	if h, m := nilCache.Stats(); h != 0 || m != 0 {
		t.Fatal("nil cache stats")
	}
}

// Package-level Seal and a Sessions produce envelopes of the same shape,
// and a zero Key is refused by the cache paths too.
func TestSealUsesFreshSessions(t *testing.T) {
	a := newTestFn(t, SuiteX25519, "a")
	h := newTestHeader(SuiteX25519, "fresh", a)
	e1, err := Seal(h, testKey(t, "rs"), testAuthKey, pubsOf(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Seal(h, testKey(t, "rs"), testAuthKey, pubsOf(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	if capsuleSID(t, e1.Capsules[0], SuiteX25519) == capsuleSID(t, e2.Capsules[0], SuiteX25519) {
		t.Fatal("package-level Seal reused a session")
	}
	k := NewKey()
	c := k.clone()
	c.wipe()
	if k.IsZero() || !c.IsZero() {
		t.Fatal("clone shares bytes with the original")
	}
}

// Sessions nobody uses any more are dropped and zeroized once their epoch
// is over, on both sides, not only under memory pressure.
func TestIdleSessionsAreSwept(t *testing.T) {
	a, b := newTestFn(t, SuiteX25519, "a"), newTestFn(t, SuiteX25519, "b")
	clock := &fakeClock{t: testNow}
	s := NewSessions(SessionConfig{MaxAge: 10 * time.Minute, Now: clock.Now})
	cache := NewOpenCache(0, 30*time.Minute)
	cache.now = clock.Now
	seal := func(f *testFn) *Envelope {
		t.Helper()
		e, err := s.Seal(newTestHeader(SuiteX25519, "sweep", f), testKey(t, "rs"), testAuthKey, pubsOf(f), nil)
		if err != nil {
			t.Fatal(err)
		}
		id := f.id
		id.Sessions = cache
		if _, err := Open(e, &id, testNow); err != nil {
			t.Fatal(err)
		}
		return e
	}
	seal(a)
	var sent, opened Key
	for _, ss := range s.m {
		sent = ss.key
	}
	for _, el := range cache.m {
		opened = el.Value.(*openEntry).key
	}
	clock.Add(11 * time.Minute)
	seal(b)
	if s.Len() != 1 || !sent.IsZero() {
		t.Fatalf("sender kept an idle expired session (%d held, zeroized %v)", s.Len(), sent.IsZero())
	}
	if cache.Len() != 2 || opened.IsZero() {
		t.Fatal("runtime dropped a session before its expiry")
	}
	clock.Add(20 * time.Minute)
	seal(b) // b's sender session rotated too: the cache holds b's old and new ones
	if cache.Len() != 2 || !opened.IsZero() {
		t.Fatalf("runtime kept an idle expired session (%d held, zeroized %v)", cache.Len(), opened.IsZero())
	}
}
