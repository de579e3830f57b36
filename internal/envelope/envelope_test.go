package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			fns := []*testFn{newTestFn(t, suite, "resize"), newTestFn(t, suite, "blur"), newTestFn(t, suite, "store")}
			h := newTestHeader(suite, "round trip", fns...)
			want, err := h.Digest()
			if err != nil {
				t.Fatal(err)
			}
			rs := RequestSecret(testKey(t, "gateway"), h.RequestID)
			e, err := Seal(h, rs, testAuthKey, pubsOf(fns...), []byte(`{"in":0}`))
			if err != nil {
				t.Fatal(err)
			}
			if e.Step != 0 || len(e.Capsules) != 3 {
				t.Fatalf("Seal: step %d, %d capsules", e.Step, len(e.Capsules))
			}
			for j, c := range e.Capsules {
				if len(c) != suite.capsuleSize() {
					t.Fatalf("capsule %d is %d bytes, want %d", j, len(c), suite.capsuleSize())
				}
			}
			input := []byte(`{"in":0}`)
			var sealedLogs [][]byte
			for j, f := range fns {
				e = wireTrip(t, e)
				o, err := Open(e, &f.id, testNow)
				if err != nil {
					t.Fatalf("Open step %d: %v", j, err)
				}
				if !bytes.Equal(o.Input, input) || o.Step != uint32(j) ||
					!bytes.Equal(o.RequestID, h.RequestID) || !o.Expiry.Equal(testExpiry) || o.Digest() != want {
					t.Fatalf("Open step %d: unexpected %q step %d", j, o.Input, o.Step)
				}
				if got := o.Header(); !reflect.DeepEqual(&got, &h) {
					t.Fatalf("Opened.Header differs")
				}
				output := []byte(fmt.Sprintf(`{"in":%d}`, j+1))
				if e, err = o.SealOutput(output); err != nil {
					t.Fatal(err)
				}
				if e.Step != uint32(j+1) {
					t.Fatalf("SealOutput: step %d", e.Step)
				}
				l, err := o.SealLogs([]byte(fmt.Sprintf("log of step %d\n", j)))
				if err != nil {
					t.Fatal(err)
				}
				sealedLogs = append(sealedLogs, l)
				input = output
			}
			e = wireTrip(t, e)
			got, err := OpenResult(e, rs, want)
			if err != nil {
				t.Fatalf("OpenResult: %v", err)
			}
			if !bytes.Equal(got, input) {
				t.Fatalf("OpenResult = %q, want %q", got, input)
			}
			if got, err := OpenResult(e, rs, [32]byte{}); err != nil || !bytes.Equal(got, input) {
				t.Fatalf("OpenResult(zero want) = %q, %v", got, err)
			}
			for j, l := range sealedLogs {
				got, err := OpenLogs(&h, rs, uint32(j), l)
				if err != nil {
					t.Fatalf("OpenLogs %d: %v", j, err)
				}
				if want := fmt.Sprintf("log of step %d\n", j); string(got) != want {
					t.Fatalf("OpenLogs %d = %q", j, got)
				}
			}
		})
	}
}

func TestEmptyPayloads(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	h := newTestHeader(SuiteX25519, "empty", f)
	rs := RequestSecret(testKey(t, "gateway"), h.RequestID)
	e, err := Seal(h, rs, testAuthKey, pubsOf(f), nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(wireTrip(t, e), &f.id, testNow)
	if err != nil || len(o.Input) != 0 {
		t.Fatalf("Open: %q, %v", o.Input, err)
	}
	out, err := o.SealOutput(nil)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := o.SealLogs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := OpenResult(wireTrip(t, out), rs, [32]byte{}); err != nil || len(b) != 0 {
		t.Fatalf("OpenResult: %q, %v", b, err)
	}
	if b, err := OpenLogs(&h, rs, 0, logs); err != nil || len(b) != 0 {
		t.Fatalf("OpenLogs: %q, %v", b, err)
	}
}

// fixture is a 3-step request (and a second request over the same chain)
// with every intermediate envelope, for the attack table.
type fixture struct {
	suite       Suite
	fns         []*testFn
	h           Header
	rs          Key
	e0, e1, e2  *Envelope // inputs of steps 0, 1, 2
	final       *Envelope // result
	logs0       []byte
	other0      *Envelope // step 0 of another request, same chain
	otherFinal  *Envelope
	otherRS     Key
	otherDigest [32]byte
	digest      [32]byte
}

func newFixture(t testing.TB, suite Suite) *fixture {
	t.Helper()
	fx := &fixture{suite: suite}
	fx.fns = []*testFn{newTestFn(t, suite, "a"), newTestFn(t, suite, "b"), newTestFn(t, suite, "c")}
	gw := testKey(t, "gateway")
	run := func(label string) (Header, Key, []*Envelope, []byte) {
		h := newTestHeader(suite, label, fx.fns...)
		rs := RequestSecret(gw, h.RequestID)
		e, err := Seal(h, rs, testAuthKey, pubsOf(fx.fns...), []byte("input 0"))
		if err != nil {
			t.Fatal(err)
		}
		envs := []*Envelope{e}
		var logs0 []byte
		for j, f := range fx.fns {
			o, err := Open(e, &f.id, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if e, err = o.SealOutput([]byte(fmt.Sprintf("output %d", j))); err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				logs0, _ = o.SealLogs([]byte("logs 0"))
			}
			envs = append(envs, e)
		}
		return h, rs, envs, logs0
	}
	var envs []*Envelope
	fx.h, fx.rs, envs, fx.logs0 = run("A")
	fx.e0, fx.e1, fx.e2, fx.final = envs[0], envs[1], envs[2], envs[3]
	var oh Header
	oh, fx.otherRS, envs, _ = run("B")
	fx.other0, fx.otherFinal = envs[0], envs[3]
	fx.digest, _ = fx.h.Digest()
	fx.otherDigest, _ = oh.Digest()
	return fx
}

func (fx *fixture) id(j int) *FunctionIdentity {
	id := fx.fns[j].id
	return &id
}

// headerMutators tamper with every authenticated header field. cur is the
// index of the step that will open the envelope.
type headerMutator struct {
	field  string // leaf field path, for the completeness check
	name   string
	mutate func(h *Header, cur int)
	want   error
}

// lastStepWant overrides headerMutator.want when the last step opens: with
// a step dropped, its index is out of range.
var lastStepWant = map[string]error{"chain drop a step": ErrStep}

func headerMutators(other Suite) []headerMutator {
	flip := func(b []byte) { b[0] ^= 0x80 }
	nxt := func(cur int) int { return (cur + 1) % 3 }
	return []headerMutator{
		{"Version", "version+1", func(h *Header, _ int) { h.Version++ }, ErrVersion},
		{"Version", "version 0", func(h *Header, _ int) { h.Version = 0 }, ErrVersion},
		{"Suite", "other suite", func(h *Header, _ int) { h.Suite = other }, ErrSuite},
		{"Suite", "unknown suite", func(h *Header, _ int) { h.Suite = 99 }, ErrSuite},
		{"RequestID", "request id", func(h *Header, _ int) { flip(h.RequestID) }, ErrCapsule},
		{"RequestID", "request id short", func(h *Header, _ int) { h.RequestID = h.RequestID[:15] }, ErrMalformed},
		{"Namespace", "namespace", func(h *Header, _ int) { h.Namespace = "mallory" }, ErrCapsule},
		{"Namespace", "namespace empty", func(h *Header, _ int) { h.Namespace = "" }, ErrMalformed},
		{"Chain", "chain append", func(h *Header, _ int) { h.Chain = append(h.Chain, h.Chain[0]) }, ErrMalformed},
		{"Chain", "chain drop a step", func(h *Header, cur int) {
			h.Chain = append(h.Chain[:nxt(cur):nxt(cur)], h.Chain[nxt(cur)+1:]...)
		}, ErrMalformed},
		{"Chain", "chain empty", func(h *Header, _ int) { h.Chain = nil }, ErrMalformed},
		{"Chain", "chain rotate others", func(h *Header, cur int) {
			a, b := nxt(cur), nxt(nxt(cur))
			h.Chain[a], h.Chain[b] = h.Chain[b], h.Chain[a]
		}, ErrCapsule},
		{"Chain.Name", "current name", func(h *Header, cur int) { h.Chain[cur].Name += "x" }, ErrCapsule},
		{"Chain.Name", "other name", func(h *Header, cur int) { h.Chain[nxt(cur)].Name = "/mallory/x" }, ErrCapsule},
		{"Chain.Name", "name not qualified", func(h *Header, cur int) { h.Chain[cur].Name = "x" }, ErrMalformed},
		{"Chain.FunctionID", "current function id", func(h *Header, cur int) { flip(h.Chain[cur].FunctionID) }, ErrWrongFunction},
		{"Chain.FunctionID", "other function id", func(h *Header, cur int) { flip(h.Chain[nxt(cur)].FunctionID) }, ErrCapsule},
		{"Chain.CodeDigest", "current code digest", func(h *Header, cur int) { flip(h.Chain[cur].CodeDigest) }, ErrWrongCode},
		{"Chain.CodeDigest", "other code digest", func(h *Header, cur int) { flip(h.Chain[nxt(cur)].CodeDigest) }, ErrCapsule},
		{"Chain.KeyVersion", "current key version", func(h *Header, cur int) { h.Chain[cur].KeyVersion++ }, ErrKeyVersion},
		{"Chain.KeyVersion", "other key version", func(h *Header, cur int) { h.Chain[nxt(cur)].KeyVersion++ }, ErrCapsule},
		{"Chain.Runtime", "current runtime", func(h *Header, cur int) { flip(h.Chain[cur].Runtime) }, ErrWrongRuntime},
		{"Chain.Runtime", "other runtime", func(h *Header, cur int) { flip(h.Chain[nxt(cur)].Runtime) }, ErrCapsule},
		{"Chain.Runtime", "runtime id short", func(h *Header, cur int) { h.Chain[cur].Runtime = h.Chain[cur].Runtime[:31] }, ErrMalformed},
		{"Expiry", "expiry later", func(h *Header, _ int) { h.Expiry++ }, ErrCapsule},
		{"Expiry", "expiry earlier", func(h *Header, _ int) { h.Expiry-- }, ErrCapsule},
		{"Expiry", "expiry past", func(h *Header, _ int) { h.Expiry = testNow.UnixMilli() }, ErrExpired},
		{"Limits.TimeoutMs", "timeout", func(h *Header, _ int) { h.Limits.TimeoutMs++ }, ErrCapsule},
		{"Limits.MemoryMB", "memory", func(h *Header, _ int) { h.Limits.MemoryMB *= 2 }, ErrCapsule},
		{"Limits.LogsKB", "logs", func(h *Header, _ int) { h.Limits.LogsKB = 0 }, ErrCapsule},
	}
}

// leafFields lists the leaf field paths of a struct type ("Chain.Name").
func leafFields(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			out = append(out, prefix+f.Name)
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, leafFields(ft, prefix+f.Name+".")...)
			continue
		}
		out = append(out, prefix+f.Name)
	}
	return out
}

func TestHeaderMutatorsCoverEveryField(t *testing.T) {
	covered := map[string]bool{}
	for _, m := range headerMutators(SuiteX25519) {
		covered[m.field] = true
	}
	for _, f := range leafFields(reflect.TypeFor[Header](), "") {
		if !covered[f] {
			t.Errorf("no tampering test for header field %s", f)
		}
	}
}

func TestHeaderTampering(t *testing.T) {
	for _, suite := range suites {
		other := SuiteMLKEM768X25519
		if suite == other {
			other = SuiteX25519
		}
		fx := newFixture(t, suite)
		for _, m := range headerMutators(other) {
			for cur, in := range []*Envelope{fx.e0, fx.e1, fx.e2} {
				t.Run(fmt.Sprintf("%s/%s/step%d", suite, m.name, cur), func(t *testing.T) {
					e := cloneEnv(in)
					m.mutate(&e.Header, cur)
					if len(e.Header.Chain) != len(e.Capsules) && m.want != ErrMalformed && m.want != ErrStep {
						t.Fatalf("mutator changed the chain length but expects %v", m.want)
					}
					want := m.want
					if w, ok := lastStepWant[m.name]; ok && cur == 2 {
						want = w
					}
					// The gateway's tag no longer matches: ErrAuth where
					// the mutation would reach the capsule.
					wantUntagged := want
					if want == ErrCapsule {
						wantUntagged = ErrAuth
					}
					_, err := Open(e, fx.id(cur), testNow)
					if !errors.Is(err, wantUntagged) {
						t.Fatalf("Open = %v, want %v", err, wantUntagged)
					}
					if err != nil && strings.Contains(err.Error(), "input") {
						t.Fatalf("error mentions plaintext: %v", err)
					}
					// An attacker holding the namespace's auth key (a
					// compromised runtime of the namespace) re-tags the
					// header: the capsule binding still refuses it.
					if want == ErrCapsule {
						if d, err := e.Header.Digest(); err == nil {
							e.Auth = authTag(testAuthKey, d, e.Capsules)
						}
						if _, err := Open(e, fx.id(cur), testNow); !errors.Is(err, want) {
							t.Fatalf("re-tagged: Open = %v, want %v", err, want)
						}
					}
				})
			}
			// Keep capsules in step with the chain so that the tampered
			// header is structurally valid where possible, then check that
			// the gateway refuses a result carrying it.
			t.Run(fmt.Sprintf("%s/%s/result", suite, m.name), func(t *testing.T) {
				e := cloneEnv(fx.final)
				m.mutate(&e.Header, 2)
				for len(e.Capsules) < len(e.Header.Chain) {
					e.Capsules = append(e.Capsules, e.Capsules[0])
				}
				e.Capsules = e.Capsules[:len(e.Header.Chain)]
				e.Step = uint32(len(e.Header.Chain))
				if _, err := OpenResult(e, fx.rs, fx.digest); err == nil {
					t.Fatal("OpenResult accepted a tampered header")
				}
				if _, err := OpenResult(e, fx.rs, [32]byte{}); err == nil {
					t.Fatal("OpenResult (zero want) accepted a tampered header")
				}
			})
		}
	}
}

func TestAttacks(t *testing.T) {
	for _, suite := range suites {
		fx := newFixture(t, suite)
		otherSuite := SuiteMLKEM768X25519
		if suite == otherSuite {
			otherSuite = SuiteX25519
		}
		// A chain that runs the same function three times.
		same := newTestFn(t, suite, "a")
		sh := newTestHeader(suite, "same", same, same, same)
		srs := RequestSecret(testKey(t, "gateway"), sh.RequestID)
		se0, err := Seal(sh, srs, testAuthKey, pubsOf(same, same, same), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}

		type tc struct {
			name string
			env  func() *Envelope
			fn   func() *FunctionIdentity
			now  time.Time
			want error
		}
		fn := func(j int) func() *FunctionIdentity { return func() *FunctionIdentity { return fx.id(j) } }
		with := func(base *Envelope, f func(e *Envelope)) func() *Envelope {
			return func() *Envelope { e := cloneEnv(base); f(e); return e }
		}
		cases := []tc{
			{"control", with(fx.e0, func(*Envelope) {}), fn(0), testNow, nil},
			{"control step 2", with(fx.e2, func(*Envelope) {}), fn(2), testNow, nil},
			{"nil envelope", func() *Envelope { return nil }, fn(0), testNow, ErrMalformed},
			{"wrong version", with(fx.e0, func(e *Envelope) { e.Header.Version = Version + 1 }), fn(0), testNow, ErrVersion},
			{"version 1 (single-shot capsules)", with(fx.e0, func(e *Envelope) { e.Header.Version = 1 }), fn(0), testNow, ErrVersion},
			{"unknown suite", with(fx.e0, func(e *Envelope) { e.Header.Suite = 7 }), fn(0), testNow, ErrSuite},
			{"suite downgrade/upgrade", with(fx.e0, func(e *Envelope) { e.Header.Suite = otherSuite }), fn(0), testNow, ErrSuite},
			{"key of another suite", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.PrivateKey = newTestFn(t, otherSuite, "a").id.PrivateKey
				return id
			}, testNow, ErrSuite},
			{"no private key", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.PrivateKey = nil
				return id
			}, testNow, ErrSuite},
			{"expired at expiry", with(fx.e0, func(*Envelope) {}), fn(0), testExpiry, ErrExpired},
			{"expired after", with(fx.e0, func(*Envelope) {}), fn(0), testExpiry.Add(time.Hour), ErrExpired},
			{"step == len(chain)", with(fx.e0, func(e *Envelope) { e.Step = 3 }), fn(0), testNow, ErrStep},
			{"step huge", with(fx.e0, func(e *Envelope) { e.Step = 1 << 31 }), fn(0), testNow, ErrStep},
			{"result delivered to a runtime", with(fx.final, func(*Envelope) {}), fn(2), testNow, ErrStep},
			{"capsule count", with(fx.e0, func(e *Envelope) { e.Capsules = e.Capsules[:2] }), fn(0), testNow, ErrMalformed},
			{"wrong function", with(fx.e0, func(*Envelope) {}), fn(1), testNow, ErrWrongFunction},
			{"wrong code digest", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.CodeDigest = fx.fns[1].id.CodeDigest
				return id
			}, testNow, ErrWrongCode},
			{"older key version", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.KeyVersion = 0
				return id
			}, testNow, ErrKeyVersion},
			{"newer key version", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.KeyVersion = 2
				return id
			}, testNow, ErrKeyVersion},
			{"another runtime (a replay to another runtime, or after a restart)", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.Runtime = RuntimeID([]byte("another runtime's key"))
				return id
			}, testNow, ErrWrongRuntime},
			{"runtime without an id", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.Runtime = nil
				return id
			}, testNow, ErrWrongRuntime},
			{"right identity, wrong private key", with(fx.e0, func(*Envelope) {}), func() *FunctionIdentity {
				id := fx.id(0)
				id.PrivateKey = fx.fns[1].id.PrivateKey
				return id
			}, testNow, ErrCapsule},
			{"capsule from another request", with(fx.e0, func(e *Envelope) { e.Capsules[0] = fx.other0.Capsules[0] }), fn(0), testNow, ErrAuth},
			{"body from another request (splice)", with(fx.e0, func(e *Envelope) { e.Body = fx.other0.Body }), fn(0), testNow, ErrBody},
			{"body of another request's step 1", with(fx.e1, func(e *Envelope) { e.Body = fx.other0.Body }), fn(1), testNow, ErrBody},
			{"swapped capsules", with(fx.e0, func(e *Envelope) { e.Capsules[0], e.Capsules[1] = e.Capsules[1], e.Capsules[0] }), fn(0), testNow, ErrAuth},
			{"swapped capsules, same function", with(se0, func(e *Envelope) { e.Capsules[0], e.Capsules[1] = e.Capsules[1], e.Capsules[0] }), func() *FunctionIdentity {
				id := same.id
				return &id
			}, testNow, ErrAuth},
			{"step index raised (input of 0 run as 1)", with(fx.e0, func(e *Envelope) { e.Step = 1 }), fn(1), testNow, ErrBody},
			{"step index lowered (repeat step 0)", with(fx.e1, func(e *Envelope) { e.Step = 0 }), fn(0), testNow, ErrBody},
			{"step index raised, same function", with(se0, func(e *Envelope) { e.Step = 1 }), func() *FunctionIdentity {
				id := same.id
				return &id
			}, testNow, ErrBody},
			{"skip: step 0 output to step 2", with(fx.e1, func(e *Envelope) { e.Step = 2 }), fn(2), testNow, ErrBody},
			{"skip: step 0 output to step 2 runtime", with(fx.e1, func(*Envelope) {}), fn(2), testNow, ErrWrongFunction},
			{"reorder: step 1 output to step 1", with(fx.e2, func(e *Envelope) { e.Step = 1 }), fn(1), testNow, ErrBody},
			{"body truncated by 1", with(fx.e0, func(e *Envelope) { e.Body = e.Body[:len(e.Body)-1] }), fn(0), testNow, ErrBody},
			{"body truncated to nonce", with(fx.e0, func(e *Envelope) { e.Body = e.Body[:12] }), fn(0), testNow, ErrBody},
			{"body empty", with(fx.e0, func(e *Envelope) { e.Body = nil }), fn(0), testNow, ErrBody},
			{"body extended", with(fx.e0, func(e *Envelope) { e.Body = append(e.Body, 0) }), fn(0), testNow, ErrBody},
			{"body bit flip", with(fx.e0, func(e *Envelope) { e.Body[len(e.Body)/2] ^= 1 }), fn(0), testNow, ErrBody},
			{"body nonce flip", with(fx.e0, func(e *Envelope) { e.Body[0] ^= 1 }), fn(0), testNow, ErrBody},
			{"capsule truncated", with(fx.e0, func(e *Envelope) { e.Capsules[0] = e.Capsules[0][:len(e.Capsules[0])-1] }), fn(0), testNow, ErrAuth},
			{"capsule extended", with(fx.e0, func(e *Envelope) { e.Capsules[0] = append(e.Capsules[0], 0) }), fn(0), testNow, ErrAuth},
			{"capsule empty", with(fx.e0, func(e *Envelope) { e.Capsules[0] = nil }), fn(0), testNow, ErrAuth},
			{"capsule session id flip", with(fx.e0, func(e *Envelope) { e.Capsules[0][0] ^= 1 }), fn(0), testNow, ErrAuth},
			{"capsule ciphertext flip", with(fx.e0, func(e *Envelope) { e.Capsules[0][len(e.Capsules[0])-1] ^= 1 }), fn(0), testNow, ErrAuth},
			// With the namespace's auth key (a compromised runtime of the
			// namespace re-tags), a changed capsule still does not open.
			{"capsule flip, re-tagged", with(fx.e0, func(e *Envelope) {
				e.Capsules[0][len(e.Capsules[0])-1] ^= 1
				d, _ := e.Header.Digest()
				e.Auth = authTag(testAuthKey, d, e.Capsules)
			}), fn(0), testNow, ErrCapsule},
		}
		for _, c := range cases {
			t.Run(suite.String()+"/"+c.name, func(t *testing.T) {
				o, err := Open(c.env(), c.fn(), c.now)
				if c.want == nil {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					return
				}
				if !errors.Is(err, c.want) {
					t.Fatalf("Open = %v, want %v", err, c.want)
				}
				if o != nil {
					t.Fatal("Open returned a step with an error")
				}
				if Code(err) != Code(c.want) {
					t.Fatalf("Code = %q, want %q", Code(err), Code(c.want))
				}
			})
		}

		t.Run(suite.String()+"/results", func(t *testing.T) {
			if _, err := OpenResult(fx.final, fx.rs, fx.digest); err != nil {
				t.Fatalf("control: %v", err)
			}
			for _, c := range []struct {
				name string
				e    *Envelope
				rs   Key
				want [32]byte
				err  error
			}{
				{"not final", fx.e2, fx.rs, fx.digest, ErrStep},
				{"step 0", fx.e0, fx.rs, fx.digest, ErrStep},
				{"result of another request", fx.otherFinal, fx.rs, fx.digest, ErrHeaderMismatch},
				{"result of another request, zero want", fx.otherFinal, fx.rs, [32]byte{}, ErrBody},
				{"wrong request secret", fx.final, fx.otherRS, fx.digest, ErrBody},
				{"body of another request", with(fx.final, func(e *Envelope) { e.Body = fx.otherFinal.Body })(), fx.rs, fx.digest, ErrBody},
				{"intermediate relabelled as final", with(fx.e2, func(e *Envelope) { e.Step = 3 })(), fx.rs, fx.digest, ErrBody},
				{"truncated", with(fx.final, func(e *Envelope) { e.Body = e.Body[:len(e.Body)-1] })(), fx.rs, fx.digest, ErrBody},
				{"nil", nil, fx.rs, fx.digest, ErrMalformed},
			} {
				if _, err := OpenResult(c.e, c.rs, c.want); !errors.Is(err, c.err) {
					t.Errorf("%s: OpenResult = %v, want %v", c.name, err, c.err)
				}
			}
			if _, err := OpenResult(fx.final, Key{}, fx.digest); err == nil {
				t.Error("OpenResult accepted a zero request secret")
			}
		})

		t.Run(suite.String()+"/logs", func(t *testing.T) {
			if got, err := OpenLogs(&fx.h, fx.rs, 0, fx.logs0); err != nil || string(got) != "logs 0" {
				t.Fatalf("control: %q, %v", got, err)
			}
			oh := fx.otherFinal.Header
			trunc := fx.logs0[:len(fx.logs0)-1]
			for _, c := range []struct {
				name   string
				h      *Header
				rs     Key
				step   uint32
				sealed []byte
				err    error
			}{
				{"other step", &fx.h, fx.rs, 1, fx.logs0, ErrBody},
				{"step out of range", &fx.h, fx.rs, 3, fx.logs0, ErrStep},
				{"other request", &oh, fx.otherRS, 0, fx.logs0, ErrBody},
				{"other secret", &fx.h, fx.otherRS, 0, fx.logs0, ErrBody},
				{"truncated", &fx.h, fx.rs, 0, trunc, ErrBody},
				{"body is not logs", &fx.h, fx.rs, 0, fx.e1.Body, ErrBody},
			} {
				if _, err := OpenLogs(c.h, c.rs, c.step, c.sealed); !errors.Is(err, c.err) {
					t.Errorf("%s: OpenLogs = %v, want %v", c.name, err, c.err)
				}
			}
		})
	}
}

// TestBodyAADBindsHeader checks the body binding on its own, as if an
// attacker had a capsule that opened for a tampered header: the body must
// still refuse another digest or step under the right key.
func TestBodyAADBindsHeader(t *testing.T) {
	k := NewKey()
	var d, d2 [32]byte
	d2[31] = 1
	sealed, err := sealAEAD(k, bound(labelBody, d, 1), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openAEAD(k, bound(labelBody, d, 1), sealed); err != nil {
		t.Fatalf("control: %v", err)
	}
	for name, aad := range map[string][]byte{
		"other digest": bound(labelBody, d2, 1),
		"other step":   bound(labelBody, d, 2),
		"logs label":   bound(labelLogs, d, 1),
	} {
		if _, err := openAEAD(k, aad, sealed); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestSealRefuses(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	pq := newTestFn(t, SuiteMLKEM768X25519, "f")
	h := newTestHeader(SuiteX25519, "refuse", f)
	rs := RequestSecret(testKey(t, "gateway"), h.RequestID)
	bad := h.Clone()
	bad.RequestID = nil
	for _, c := range []struct {
		name string
		h    Header
		rs   Key
		pubs []*testFn
		want error
	}{
		{"invalid header", bad, rs, []*testFn{f}, ErrMalformed},
		{"too few keys", h, rs, nil, ErrMalformed},
		{"key of another suite", h, rs, []*testFn{pq}, ErrSuite},
		{"zero request secret", h, Key{}, []*testFn{f}, errZeroKey},
	} {
		if _, err := Seal(c.h, c.rs, testAuthKey, pubsOf(c.pubs...), nil); !errors.Is(err, c.want) {
			t.Errorf("%s: Seal = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Seal(h, rs, testAuthKey, pubsOf(f), make([]byte, MaxEnvelopeSize)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized input: %v", err)
	}
	if !RequestSecret(Key{}, h.RequestID).IsZero() || !RequestSecret(rs, h.RequestID[:8]).IsZero() {
		t.Error("RequestSecret must return the zero key for bad inputs")
	}
}

func TestSealDoesNotAlias(t *testing.T) {
	f := newTestFn(t, SuiteX25519, "f")
	h := newTestHeader(SuiteX25519, "alias", f)
	h = h.Clone() // do not share slices with f.id
	rs := RequestSecret(testKey(t, "gateway"), h.RequestID)
	e, err := Seal(h, rs, testAuthKey, pubsOf(f), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	h.RequestID[0] ^= 1
	h.Chain[0].FunctionID[0] ^= 1
	if _, err := Open(e, &f.id, testNow); err != nil {
		t.Fatalf("caller's header change leaked into the envelope: %v", err)
	}
}

func TestUnmarshalStrict(t *testing.T) {
	fx := newFixture(t, SuiteX25519)
	valid, err := fx.e0.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if valid[0] != 0xa5 {
		t.Fatalf("envelope does not start with a 5-pair map: %x", valid[0])
	}
	rest := valid[1:]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	v2 := cloneEnv(fx.e0)
	v2.Header.Version = Version + 1
	v2b, _ := encMode.Marshal(v2)
	v1 := cloneEnv(fx.e0)
	v1.Header.Version = 1
	v1b, _ := encMode.Marshal(v1)
	// A future version with a field this version does not know.
	type futureHeader struct {
		Version uint16 `cbor:"1,keyasint"`
		New     string `cbor:"99,keyasint"`
	}
	future, _ := encMode.Marshal(map[int]any{1: futureHeader{Version: Version + 1, New: "x"}})
	badSuite := cloneEnv(fx.e0)
	badSuite.Header.Suite = 9
	badSuiteB, _ := encMode.Marshal(badSuite)
	stepBeyond := cloneEnv(fx.e0)
	stepBeyond.Step = 4
	stepBeyondB, _ := encMode.Marshal(stepBeyond)
	nilBody := cloneEnv(fx.e0)
	nilBody.Body = nil
	nilBodyB, _ := encMode.Marshal(nilBody)
	capsCount := cloneEnv(fx.e0)
	capsCount.Capsules = capsCount.Capsules[:1]
	capsCountB, _ := encMode.Marshal(capsCount)

	for _, c := range []struct {
		name string
		b    []byte
		code string
	}{
		{"empty", nil, "malformed"},
		{"garbage", []byte("not an envelope"), "malformed"},
		{"truncated", valid[:len(valid)-1], "malformed"},
		{"trailing byte", cat(valid, []byte{0}), "malformed"},
		{"duplicate key", cat([]byte{0xa5}, rest, []byte{0x02, 0x00}), "malformed"},
		{"unknown key", cat([]byte{0xa5}, rest, []byte{0x05, 0x00}), "malformed"},
		{"text key", cat([]byte{0xa5}, rest, []byte{0x61, 'x', 0x00}), "malformed"},
		{"non-minimal length", cat([]byte{0xb8, 0x04}, rest), "malformed"},
		{"indefinite map", cat([]byte{0xbf}, rest, []byte{0xff}), "malformed"},
		{"tagged", cat([]byte{0xd8, 0x18}, valid), "malformed"},
		{"array instead of map", cat([]byte{0x84}, rest), "malformed"},
		{"too large", make([]byte, MaxEnvelopeSize+1), "malformed"},
		{"next version", v2b, "version"},
		{"version 1", v1b, "version"},
		{"future version with new fields", future, "version"},
		{"unknown suite", badSuiteB, "suite"},
		{"step beyond chain", stepBeyondB, "step"},
		{"null body", nilBodyB, "malformed"},
		{"capsule count", capsCountB, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := Unmarshal(c.b)
			if err == nil || e != nil {
				t.Fatalf("Unmarshal accepted it")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if got := Code(err); got != c.code {
				t.Fatalf("Code = %q, want %q (%v)", got, c.code, err)
			}
		})
	}
	if _, err := Unmarshal(valid); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	fx := newFixture(t, SuiteX25519)
	for name, f := range map[string]func(e *Envelope){
		"bad header":     func(e *Envelope) { e.Header.Namespace = "" },
		"step beyond":    func(e *Envelope) { e.Step = 9 },
		"capsule count":  func(e *Envelope) { e.Capsules = nil },
		"short body":     func(e *Envelope) { e.Body = e.Body[:5] },
		"huge capsule":   func(e *Envelope) { e.Capsules[0] = make([]byte, 4096) },
		"nil capsule":    func(e *Envelope) { e.Capsules[1] = nil },
		"oversized body": func(e *Envelope) { e.Body = make([]byte, MaxEnvelopeSize) },
	} {
		e := cloneEnv(fx.e0)
		f(e)
		if _, err := e.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted an invalid envelope", name)
		}
	}
}

func TestCode(t *testing.T) {
	all := map[error]string{
		ErrMalformed: "malformed", ErrVersion: "version", ErrSuite: "suite", ErrExpired: "expired",
		ErrStep: "step", ErrWrongFunction: "wrong_function", ErrWrongCode: "wrong_code",
		ErrKeyVersion: "key_version", ErrWrongRuntime: "wrong_runtime", ErrCapsule: "capsule", ErrBody: "body",
		ErrCodeDigest: "code_digest", ErrReplay: "replay", ErrHeaderMismatch: "header_mismatch",
	}
	for err, code := range all {
		if Code(err) != code {
			t.Errorf("Code(%v) = %q, want %q", err, Code(err), code)
		}
		if Code(fmt.Errorf("outer: %w", wrap(err, "detail %d", 1))) != code {
			t.Errorf("Code of wrapped %v", err)
		}
		if !strings.HasPrefix(err.Error(), "envelope: ") {
			t.Errorf("message %q", err)
		}
	}
	if Code(nil) != "" || Code(errors.New("x")) != "" {
		t.Error("Code of a foreign error must be empty")
	}
}

func TestSuite(t *testing.T) {
	for _, s := range suites {
		kem, err := s.KEM()
		if err != nil || kem.ID() != s.kemID() || !s.Valid() {
			t.Fatalf("%v: %v", s, err)
		}
		p, err := ParseSuite(s.String())
		if err != nil || p != s {
			t.Fatalf("ParseSuite(%q) = %v, %v", s, p, err)
		}
		// encSize must match the real HPKE encapsulation.
		priv, _ := kem.GenerateKey()
		enc, _, err := sessionEncap(priv.PublicKey(), nil)
		if err != nil || len(enc) != s.encSize() {
			t.Fatalf("%v: enc of %d bytes, encSize %d (%v)", s, len(enc), s.encSize(), err)
		}
		if want := SessionIDSize + len(enc) + 12 + 64 + 16; s.capsuleSize() != want {
			t.Fatalf("%v: capsuleSize %d, want %d", s, s.capsuleSize(), want)
		}
	}
	for _, s := range []Suite{0, 3, 0xffff} {
		if s.Valid() {
			t.Errorf("%v valid", s)
		}
		if _, err := s.KEM(); !errors.Is(err, ErrSuite) {
			t.Errorf("%v: KEM err %v", s, err)
		}
	}
	if _, err := ParseSuite("rsa"); !errors.Is(err, ErrSuite) {
		t.Error("ParseSuite accepted rsa")
	}
}
