package platform_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// The attack suite plays a malicious controller. The platform's controller
// gets an interceptor between itself and the invokers; each attack rewrites,
// reroutes, replays or delays one step of a 3-step sequence a → b → c. For
// every attack the step must be refused by the enclave runtime with a typed
// error that ends up in the activation records, the attacked step must not
// run (the invoker's execution counter, fed by the runtimes, proves it),
// and nothing may be sealed for the next step.
//
//	go test -run Attack -v ./internal/platform/

// send is how an attack delivers a run request to an invoker.
type send = func(context.Context, *wire.RunRequest) (*wire.RunResult, error)

// attackFunc replaces the honest delivery of one step.
type attackFunc func(t *testing.T, ctx context.Context, d controller.Dispatch, send send) (*wire.RunResult, error)

// evil is the interceptor installed in the platform: honest unless an
// attack is armed for the current step, and it remembers what it saw.
type evil struct {
	mu     sync.Mutex
	t      *testing.T
	step   int
	attack attackFunc
	seen   map[string][]*wire.RunRequest // every honest run request, by "sequence/step"
	result *wire.RunResult               // what the attacked delivery got back
}

func (ev *evil) intercept(ctx context.Context, d controller.Dispatch, send send) (*wire.RunResult, error) {
	ev.mu.Lock()
	attack, t := ev.attack, ev.t
	armed := attack != nil && d.Step == ev.step && len(d.Request.Steps) > 0
	if armed {
		ev.attack = nil // one shot
	}
	ev.mu.Unlock()
	if !armed {
		ev.mu.Lock()
		k := seenKey(d.Request.Action, d.Step)
		ev.seen[k] = append(ev.seen[k], cloneRun(d.Run))
		ev.mu.Unlock()
		return send(ctx, d.Run)
	}
	res, err := attack(t, ctx, d, send)
	ev.mu.Lock()
	ev.result = res
	ev.mu.Unlock()
	return res, err
}

func (ev *evil) arm(t *testing.T, step int, a attackFunc) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.t, ev.step, ev.attack, ev.result = t, step, a, nil
}

func seenKey(action string, step int) string { return fmt.Sprintf("%s/%d", action, step) }

// lastSeen returns the last honest run request of a step of a sequence.
func (ev *evil) lastSeen(action string, step int) *wire.RunRequest {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	s := ev.seen[seenKey(action, step)]
	if len(s) == 0 {
		return nil
	}
	return cloneRun(s[len(s)-1])
}

func cloneRun(r *wire.RunRequest) *wire.RunRequest {
	c := *r
	c.Envelope = bytes.Clone(r.Envelope)
	c.FunctionID = bytes.Clone(r.FunctionID)
	return &c
}

// encMode encodes envelopes without validating them, as an attacker would.
var encMode, _ = cbor.CoreDetEncOptions().EncMode()

// rewrite decodes a run request's envelope, lets f change it, and encodes it
// back without any validation.
func rewrite(t *testing.T, r *wire.RunRequest, f func(e *envelope.Envelope)) *wire.RunRequest {
	t.Helper()
	e, err := envelope.Unmarshal(r.Envelope)
	if err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	f(e)
	b, err := encMode.Marshal(e)
	if err != nil {
		t.Fatalf("encode envelope: %v", err)
	}
	c := cloneRun(r)
	c.Envelope = b
	return c
}

// to reroutes a run request to another function.
func to(r *wire.RunRequest, action string, fid []byte) *wire.RunRequest {
	c := cloneRun(r)
	c.Action, c.FunctionID = action, bytes.Clone(fid)
	return c
}

// refused sends r and checks the runtime refused it: nothing ran, nothing
// sealed.
func refused(t *testing.T, ctx context.Context, send send, r *wire.RunRequest) (*wire.RunResult, error) {
	t.Helper()
	res, err := send(ctx, r)
	if err != nil {
		return res, err
	}
	if res.Executed || len(res.Envelope) != 0 || len(res.Logs) != 0 || res.ErrorCode == "" || res.Status == wire.StatusSuccess {
		t.Errorf("not refused: status %q code %q executed %v, %d bytes sealed for the next step",
			res.Status, res.ErrorCode, res.Executed, len(res.Envelope))
	}
	return res, nil
}

func TestAttack(t *testing.T) {
	ev := &evil{seen: map[string][]*wire.RunRequest{}}
	e := startWith(t, t.TempDir(), func(c *platform.Config) {
		c.ControllerInterceptor = ev.intercept
		c.ExpirySlack = 3 * time.Second
	})
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	for _, n := range []string{"a", "b", "c", "d"} {
		e.deploy(g, n, echo, nil)
	}
	// Short time limits for the expiry attack's own sequence.
	for _, n := range []string{"qa", "qb"} {
		e.deploy(g, n, echo, map[string]any{"timeout": 100})
	}
	e.deploySequence(g, "abc", "/_/a", "/_/b", "/_/c")
	e.deploySequence(g, "quick", "/_/qa", "/_/qb")

	// Honest runs: everything works, and warms every function up.
	for _, seq := range []string{"abc", "abc", "quick"} {
		act := e.runSequence(g, seq, map[string]any{"honest": true})
		if !success(act) {
			t.Fatalf("honest %s: %v", seq, act)
		}
	}
	for _, n := range []string{"d"} {
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+n+"?blocking=true", nil, nil); st != 200 {
			t.Fatalf("warm %s: %d", n, st)
		}
	}
	fid := func(name string) []byte { return e.functionID(name) }
	route := func(d controller.Dispatch, j int) (string, []byte) {
		return d.Request.Steps[j].Action, d.Request.Steps[j].FunctionID
	}

	type attack struct {
		name  string
		seq   string
		step  int      // the step attacked
		codes []string // acceptable refusal codes
		ran   int      // steps of this request that may have executed (the honest ones before the attack)
		f     attackFunc
	}
	header := func(f func(h *envelope.Header)) attackFunc {
		return func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			return refused(t, ctx, s, rewrite(t, d.Run, func(e *envelope.Envelope) { f(&e.Header) }))
		}
	}
	env := func(f func(e *envelope.Envelope)) attackFunc {
		return func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			return refused(t, ctx, s, rewrite(t, d.Run, f))
		}
	}
	flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 0x40; return c }

	attacks := []attack{
		{"skip step (route b's input to c)", "abc", 1, []string{"wrong_function"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				name, id := route(d, 2)
				return refused(t, ctx, s, to(d.Run, name, id))
			}},
		{"skip step (renumber b's input as step 2 for c)", "abc", 1, []string{"body"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				name, id := route(d, 2)
				return refused(t, ctx, s, rewrite(t, to(d.Run, name, id), func(e *envelope.Envelope) { e.Step = 2 }))
			}},
		{"swap steps (a's input to b)", "abc", 0, []string{"wrong_function"}, 0,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				name, id := route(d, 1)
				return refused(t, ctx, s, to(d.Run, name, id))
			}},
		{"swap steps (a's input renumbered for b)", "abc", 0, []string{"body", "capsule"}, 0,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				name, id := route(d, 1)
				return refused(t, ctx, s, rewrite(t, to(d.Run, name, id), func(e *envelope.Envelope) { e.Step = 1 }))
			}},
		{"deliver a's output to another function", "abc", 1, []string{"wrong_function"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				return refused(t, ctx, s, to(d.Run, "d", fid("d")))
			}},
		{"splice body from another request", "abc", 1, []string{"body"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				old := ev.lastSeen("abc", 1)
				oe, err := envelope.Unmarshal(old.Envelope)
				if err != nil {
					t.Fatal(err)
				}
				return refused(t, ctx, s, rewrite(t, d.Run, func(e *envelope.Envelope) { e.Body = oe.Body }))
			}},
		{"splice capsule from another request", "abc", 1, []string{"auth"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				old := ev.lastSeen("abc", 1)
				oe, err := envelope.Unmarshal(old.Envelope)
				if err != nil {
					t.Fatal(err)
				}
				return refused(t, ctx, s, rewrite(t, d.Run, func(e *envelope.Envelope) { e.Capsules[1] = oe.Capsules[1] }))
			}},
		{"splice header from another request", "abc", 1, []string{"auth"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				old := ev.lastSeen("abc", 1)
				oe, err := envelope.Unmarshal(old.Envelope)
				if err != nil {
					t.Fatal(err)
				}
				return refused(t, ctx, s, rewrite(t, d.Run, func(e *envelope.Envelope) { e.Header = oe.Header }))
			}},
		{"replay a step to the same runtime", "abc", 1, []string{"replay"}, 2,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				first, err := s(ctx, d.Run)
				if err != nil || !first.Executed || first.Status != wire.StatusSuccess {
					t.Fatalf("the honest delivery failed: %+v %v", first, err)
				}
				return refused(t, ctx, s, d.Run)
			}},
		{"replay an old request's step", "abc", 1, []string{"replay"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				return refused(t, ctx, s, ev.lastSeen("abc", 1))
			}},
		{"tamper header: version", "abc", 1, []string{"version"}, 1, header(func(h *envelope.Header) { h.Version = envelope.Version + 1 })},
		{"tamper header: downgrade to version 1", "abc", 1, []string{"version"}, 1, header(func(h *envelope.Header) { h.Version = 1 })},
		{"tamper header: suite", "abc", 1, []string{"suite"}, 1, header(func(h *envelope.Header) { h.Suite = envelope.SuiteMLKEM768X25519 })},
		{"tamper header: request id", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.RequestID = flip(h.RequestID) })},
		{"tamper header: namespace", "abc", 1, []string{"auth", "namespace"}, 1, header(func(h *envelope.Header) { h.Namespace = "alice" })},
		{"tamper header: step name", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Chain[1].Name = "/guest/d" })},
		{"tamper header: function id of this step", "abc", 1, []string{"wrong_function"}, 1, header(func(h *envelope.Header) { h.Chain[1].FunctionID = flip(h.Chain[1].FunctionID) })},
		{"tamper header: function id of the next step", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Chain[2].FunctionID = fid("d") })},
		{"tamper header: code digest", "abc", 1, []string{"wrong_code"}, 1, header(func(h *envelope.Header) { h.Chain[1].CodeDigest = flip(h.Chain[1].CodeDigest) })},
		{"tamper header: key version", "abc", 1, []string{"key_version"}, 1, header(func(h *envelope.Header) { h.Chain[1].KeyVersion++ })},
		{"tamper header: expiry", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Expiry += 3600_000 })},
		{"tamper header: time limit", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Limits.TimeoutMs *= 10 })},
		{"tamper header: memory limit", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Limits.MemoryMB = 512 })},
		{"tamper header: logs limit", "abc", 1, []string{"auth"}, 1, header(func(h *envelope.Header) { h.Limits.LogsKB = 1 })},
		{"tamper header: chain truncated", "abc", 1, []string{"malformed"}, 1, header(func(h *envelope.Header) { h.Chain = h.Chain[:2] })},
		{"tamper header: chain extended", "abc", 1, []string{"malformed"}, 1, header(func(h *envelope.Header) { h.Chain = append(h.Chain, h.Chain[2]) })},
		{"change step index backwards", "abc", 1, []string{"wrong_function"}, 1, env(func(e *envelope.Envelope) { e.Step = 0 })},
		{"change step index forwards", "abc", 1, []string{"wrong_function"}, 1, env(func(e *envelope.Envelope) { e.Step = 2 })},
		{"change step index out of range", "abc", 1, []string{"step"}, 1, env(func(e *envelope.Envelope) { e.Step = 7 })},
		{"strip a capsule", "abc", 1, []string{"malformed"}, 1, env(func(e *envelope.Envelope) { e.Capsules = e.Capsules[:2] })},
		{"reorder capsules", "abc", 1, []string{"auth"}, 1, env(func(e *envelope.Envelope) { e.Capsules[1], e.Capsules[2] = e.Capsules[2], e.Capsules[1] })},
		{"truncate body", "abc", 1, []string{"body"}, 1, env(func(e *envelope.Envelope) { e.Body = e.Body[:len(e.Body)-1] })},
		{"extend body", "abc", 1, []string{"body"}, 1, env(func(e *envelope.Envelope) { e.Body = append(e.Body, 0) })},
		{"flip a body bit", "abc", 1, []string{"body"}, 1, env(func(e *envelope.Envelope) { e.Body = flip(e.Body) })},
		{"truncate capsule", "abc", 1, []string{"auth", "malformed"}, 1, env(func(e *envelope.Envelope) { e.Capsules[1] = e.Capsules[1][:len(e.Capsules[1])-1] })},
		{"extend capsule", "abc", 1, []string{"auth", "malformed"}, 1, env(func(e *envelope.Envelope) { e.Capsules[1] = append(e.Capsules[1], 0) })},
		{"swap capsule's session (a's session id and enc in b's capsule)", "abc", 1, []string{"auth"}, 1, env(func(e *envelope.Envelope) {
			// session id || enc precede nonce(12) || ciphertext(64) || tag(16)
			n := len(e.Capsules[1]) - (12 + 64 + 16)
			copy(e.Capsules[1][:n], e.Capsules[0][:n])
		})},
		{"forge a fresh envelope to b's public key (start the chain mid-way)", "abc", 1, []string{"auth"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				// The controller knows b's public key (it stores the
				// record) and seals its own input with its own secret.
				rec := e.functionRecord("b")
				kem, _ := envelope.Suite(rec.Suite).KEM()
				pub, err := kem.NewPublicKey(rec.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				h := mustHeader(t, d.Run).Clone()
				h.RequestID = bytes.Repeat([]byte{0xee}, envelope.RequestIDSize)
				h.Chain = h.Chain[1:2]
				own := envelope.NewKey()
				forged, err := envelope.Seal(h, own, envelope.NewKey(), []hpke.PublicKey{pub}, []byte(`{"injected":true}`))
				if err != nil {
					t.Fatal(err)
				}
				b, err := forged.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				r := cloneRun(d.Run)
				r.Envelope = b
				return refused(t, ctx, s, r)
			}},
		{"reuse the genuine header and tag with the controller's own capsule and body", "abc", 1, []string{"auth"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				// Seal step keys of the controller's choosing to b's
				// public key for the genuine header: if this ran, the
				// controller could read b's output on its chosen input.
				rec := e.functionRecord("b")
				kem, _ := envelope.Suite(rec.Suite).KEM()
				pub, err := kem.NewPublicKey(rec.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				h := mustHeader(t, d.Run)
				pubs := make([]hpke.PublicKey, len(h.Chain))
				for i := range pubs {
					pubs[i] = pub // only capsule 1 matters
				}
				ownSecret := envelope.NewKey()
				own, err := envelope.Seal(*h, ownSecret, envelope.NewKey(), pubs, []byte(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				// A well-formed step-1 body under the controller's own k_1.
				keys, err := envelope.DeriveStepKeys(ownSecret, h)
				if err != nil {
					t.Fatal(err)
				}
				body := sealStepBody(t, keys[1], h, 1, []byte(`{"chosen":true}`))
				return refused(t, ctx, s, rewrite(t, d.Run, func(e *envelope.Envelope) {
					e.Capsules[1] = own.Capsules[1] // k_1 || k_2 of the controller's choosing, sealed to b
					e.Body = body
				}))
			}},
		{"let the request expire", "quick", 1, []string{"expired"}, 1,
			func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				h := mustHeader(t, d.Run)
				select {
				case <-time.After(time.Until(h.ExpiryTime()) + 100*time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return refused(t, ctx, s, d.Run)
			}},
	}

	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := e.p.Invoker.Executions()
			ev.arm(t, a.step, a.f)
			act := e.runSequence(g, a.seq, map[string]any{"attack": a.name})
			e.checkRefused(t, act, a.step, a.codes)
			if ran := e.p.Invoker.Executions() - before; ran != uint64(a.ran) {
				t.Errorf("%d steps executed, want %d: the attacked step ran", ran, a.ran)
			}
			ev.mu.Lock()
			armed := ev.attack != nil
			ev.mu.Unlock()
			if armed {
				t.Fatal("the attack was never triggered")
			}
		})
	}

	// Downgrade: after an update of b, the controller routes step 1 to b's
	// previous version (still loaded in its runtime), or rewrites the
	// header to pin it.
	t.Run("downgrade to the previous version", func(t *testing.T) {
		oldFID := fid("b")
		oldRun := ev.lastSeen("abc", 1)
		e.deploy(g, "b", echo, nil) // update: a new function version with new keys
		if bytes.Equal(fid("b"), oldFID) {
			t.Fatal("the update did not create a new function version")
		}
		oe, err := envelope.Unmarshal(oldRun.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name  string
			codes []string
			f     attackFunc
		}{
			{"route to the old version", []string{"wrong_function"}, func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				return refused(t, ctx, s, to(d.Run, "b", oldFID))
			}},
			{"pin the old version in the header", []string{"auth"}, func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
				return refused(t, ctx, s, rewrite(t, to(d.Run, "b", oldFID), func(e *envelope.Envelope) { e.Header.Chain[1] = oe.Header.Chain[1] }))
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := e.p.Invoker.Executions()
				ev.arm(t, 1, c.f)
				act := e.runSequence(g, "abc", map[string]any{"attack": c.name})
				e.checkRefused(t, act, 1, c.codes)
				if ran := e.p.Invoker.Executions() - before; ran != 1 {
					t.Errorf("%d steps executed, want 1", ran)
				}
			})
		}
		// Honest again: the new version runs.
		if act := e.runSequence(g, "abc", map[string]any{"after": "downgrade"}); !success(act) {
			t.Fatalf("honest run after the update: %v", act)
		}
	})

	// The controller lies in what it stores or reports; the gateway, which
	// authenticates everything it relies on, refuses.
	t.Run("rewrite the stored sequence", func(t *testing.T) {
		restore := e.tamperEntity(t, "abc", func(a *wire.Action) {
			a.Components = []string{a.Components[0], a.Components[2]} // skip b
		})
		defer restore()
		before := e.p.Invoker.Executions()
		var eb errorBody
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/abc?blocking=true", nil, &eb); st != 502 || !strings.Contains(eb.Error, "definition could not be authenticated") {
			t.Fatalf("%d %+v", st, eb)
		}
		if n := e.p.Invoker.Executions() - before; n != 0 {
			t.Fatalf("%d steps ran", n)
		}
	})
	t.Run("serve the previous version of an action", func(t *testing.T) {
		old := e.entityBytes(t, "c")
		e.deploy(g, "c", echo, nil) // update through the gateway
		restore := e.tamperEntity(t, "c", func(a *wire.Action) {
			if err := bus.Unmarshal(old, a); err != nil {
				t.Fatal(err)
			}
		})
		defer restore()
		var eb errorBody
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/abc?blocking=true", nil, &eb); st != 502 || !strings.Contains(eb.Error, "outdated") {
			t.Fatalf("%d %+v", st, eb)
		}
	})
	t.Run("relabel a failure as success", func(t *testing.T) {
		e.deploy(g, "boom", wasmbuild.MustBuild(t, "internal/testfuncs/fail"), nil)
		e.deploySequence(g, "aboom", "/_/a", "/_/boom")
		ev.arm(t, 1, func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			res, err := s(ctx, d.Run)
			if err != nil || res.Status == wire.StatusSuccess {
				t.Fatalf("boom did not fail: %+v %v", res, err)
			}
			res.Status = wire.StatusSuccess
			return res, nil
		})
		act := e.runSequence(g, "aboom", map[string]any{})
		if success(act) {
			t.Fatalf("relabelled failure shown as success: %v", act)
		}
	})
	t.Run("report an intermediate output as the result", func(t *testing.T) {
		// At the last step the controller returns b's output (the input
		// of c) as if c had produced it.
		ev.arm(t, 2, func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			return &wire.RunResult{Status: wire.StatusSuccess, Envelope: d.Run.Envelope, Executed: true}, nil
		})
		before := e.p.Invoker.Executions()
		act := e.runSequence(g, "abc", map[string]any{"truncate": true})
		resp := act["response"].(map[string]any)
		if success(act) || !strings.Contains(fmt.Sprint(resp["result"]), "did not run to its end") {
			t.Fatalf("truncated chain: %v", act)
		}
		if n := e.p.Invoker.Executions() - before; n != 2 {
			t.Fatalf("%d steps ran, want 2", n)
		}
		// As a failure, b's (successful) output is refused too.
		ev.arm(t, 2, func(t *testing.T, ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			return &wire.RunResult{Status: wire.StatusApplicationError, Envelope: d.Run.Envelope, Executed: true}, nil
		})
		act = e.runSequence(g, "abc", map[string]any{"truncate": "as failure"})
		resp = act["response"].(map[string]any)
		if success(act) || !strings.Contains(fmt.Sprint(resp["result"]), "does not match its result") {
			t.Fatalf("truncated chain reported as failure: %v", act)
		}
	})

	t.Run("publish a private package in the store", func(t *testing.T) {
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/packages/priv", map[string]any{"publish": false}, nil); st != 200 {
			t.Fatalf("create package: %d", st)
		}
		e.deploy(g, "priv/secret", echo, nil)
		u, k, err := e.p.Gateway.CreateNamespace(context.Background(), "mallory")
		if err != nil {
			t.Fatal(err)
		}
		mallory := u + ":" + k
		if st, _ := e.call(mallory, "POST", "/api/v1/namespaces/guest/actions/priv/secret?blocking=true", nil, nil); st != 403 {
			t.Fatalf("private package from another namespace: %d", st)
		}
		kv := e.bucket(t, "clemmys_packages")
		key := store.Key("guest", "priv")
		en, err := kv.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		var pkg wire.Package
		if err := bus.Unmarshal(en.Value(), &pkg); err != nil {
			t.Fatal(err)
		}
		pkg.Publish = true // the operator shares it with everyone
		b, _ := bus.Marshal(&pkg)
		if _, err := kv.Put(context.Background(), key, b); err != nil {
			t.Fatal(err)
		}
		before := e.p.Invoker.Executions()
		var eb errorBody
		if st, _ := e.call(mallory, "POST", "/api/v1/namespaces/guest/actions/priv/secret?blocking=true", nil, &eb); st != 502 || !strings.Contains(eb.Error, "could not be authenticated") {
			t.Fatalf("published by the store: %d %+v", st, eb)
		}
		if st, _ := e.call(mallory, "GET", "/api/v1/namespaces/guest/packages/priv", nil, &eb); st != 502 {
			t.Fatalf("read of a package published by the store: %d %+v", st, eb)
		}
		if n := e.p.Invoker.Executions() - before; n != 0 {
			t.Fatalf("%d steps ran", n)
		}
	})

	t.Run("roll back a package to when it was public", func(t *testing.T) {
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/packages/once?overwrite=true", map[string]any{"publish": true}, nil); st != 200 {
			t.Fatalf("create package: %d", st)
		}
		e.deploy(g, "once/secret", echo, nil)
		u, k, err := e.p.Gateway.CreateNamespace(context.Background(), "eve")
		if err != nil {
			t.Fatal(err)
		}
		eve := u + ":" + k
		if st, _ := e.call(eve, "GET", "/api/v1/namespaces/guest/packages/once", nil, nil); st != 200 {
			t.Fatalf("public package: %d", st)
		}
		kv := e.bucket(t, "clemmys_packages")
		key := store.Key("guest", "once")
		en, err := kv.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		public := bytes.Clone(en.Value()) // genuinely tagged, public
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/packages/once?overwrite=true", map[string]any{"publish": false}, nil); st != 200 {
			t.Fatalf("make private: %d", st)
		}
		if _, err := kv.Put(context.Background(), key, public); err != nil {
			t.Fatal(err)
		}
		before := e.p.Invoker.Executions()
		var eb errorBody
		if st, _ := e.call(eve, "POST", "/api/v1/namespaces/guest/actions/once/secret?blocking=true", nil, &eb); st != 502 || !strings.Contains(eb.Error, "outdated") {
			t.Fatalf("rolled-back package: %d %+v", st, eb)
		}
		if n := e.p.Invoker.Executions() - before; n != 0 {
			t.Fatalf("%d steps ran", n)
		}
	})

	t.Run("point a rule at another action in the store", func(t *testing.T) {
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/triggers/tick", map[string]any{}, nil); st != 200 {
			t.Fatalf("trigger: %d", st)
		}
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/rules/onTick", map[string]any{"trigger": "tick", "action": "a"}, nil); st != 200 {
			t.Fatalf("rule: %d", st)
		}
		kv := e.bucket(t, "clemmys_rules")
		key := store.Key("guest", "onTick")
		en, err := kv.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		var rl wire.Rule
		if err := bus.Unmarshal(en.Value(), &rl); err != nil {
			t.Fatal(err)
		}
		rl.Action = "/guest/d" // the trigger's payload would go to d
		b, _ := bus.Marshal(&rl)
		if _, err := kv.Put(context.Background(), key, b); err != nil {
			t.Fatal(err)
		}
		before := e.p.Invoker.Executions()
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/triggers/tick", map[string]any{"payload": "for a only"}, nil); st != http.StatusNoContent {
			t.Fatalf("fire with a rewritten rule: %d", st)
		}
		time.Sleep(200 * time.Millisecond)
		if n := e.p.Invoker.Executions() - before; n != 0 {
			t.Fatalf("%d steps ran", n)
		}
	})

	// Rules, annotations and sequence definitions carry the gateway's MAC
	// over a generation the KMS's version registry orders: the controller
	// can neither forge, (de)activate, roll back nor resurrect a rule, nor
	// drop or add "final", nor serve an older sequence definition.
	rules := e.bucket(t, "clemmys_rules")
	ruleBytes := func(t *testing.T, name string) []byte {
		t.Helper()
		en, err := rules.Get(context.Background(), store.Key("guest", name))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(en.Value())
	}
	putRuleBytes := func(t *testing.T, name string, b []byte) {
		t.Helper()
		if _, err := rules.Put(context.Background(), store.Key("guest", name), b); err != nil {
			t.Fatal(err)
		}
	}
	// fired fires tock and returns the rules named in its record's logs
	// (made by the gateway: the rules it fired); nil when none fired.
	fired := func(t *testing.T) []string {
		t.Helper()
		st, hdr := e.call(g, "POST", "/api/v1/namespaces/_/triggers/tock", map[string]any{"x": 1}, nil)
		if st == http.StatusNoContent {
			return nil
		}
		if st != http.StatusAccepted {
			t.Fatalf("fire: %d", st)
		}
		var rec struct {
			Logs []string `json:"logs"`
		}
		if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+hdr.Get("x-openwhisk-activation-id"), nil, &rec); st != 200 {
			t.Fatalf("trigger record: %d", st)
		}
		var out []string
		for _, l := range rec.Logs {
			var line struct {
				Rule         string `json:"rule"`
				Success      bool   `json:"success"`
				ActivationID string `json:"activationId"`
			}
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			out = append(out, line.Rule)
			if line.Success && line.ActivationID != "" {
				// The rule's activation runs after the fire's answer: let
				// it end, so that later counts of executions see none.
				e.waitActivation(g, line.ActivationID)
			}
		}
		return out
	}
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/triggers/tock", map[string]any{}, nil); st != 200 {
		t.Fatalf("trigger: %d", st)
	}
	for _, name := range []string{"r1", "r2"} {
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/rules/"+name, map[string]any{"trigger": "tock", "action": "a"}, nil); st != 200 {
			t.Fatalf("rule %s: %d", name, st)
		}
	}
	if got := fired(t); len(got) != 2 {
		t.Fatalf("honest fire: %v", got)
	}
	t.Run("forge a rule in the store", func(t *testing.T) {
		var rl wire.Rule
		if err := bus.Unmarshal(ruleBytes(t, "r1"), &rl); err != nil {
			t.Fatal(err)
		}
		rl.Name, rl.Action = "forged", "/guest/d"
		b, _ := bus.Marshal(&rl)
		putRuleBytes(t, "forged", b)
		defer rules.Delete(context.Background(), store.Key("guest", "forged"))
		if got := fired(t); len(got) != 2 || slices.Contains(got, "guest/forged") {
			t.Fatalf("fired %v", got)
		}
	})
	t.Run("activate an inactive rule in the store", func(t *testing.T) {
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/rules/r2", map[string]any{"status": "inactive"}, nil); st != 200 {
			t.Fatalf("deactivate: %d", st)
		}
		if got := fired(t); !slices.Equal(got, []string{"guest/r1"}) {
			t.Fatalf("after deactivating r2: %v", got)
		}
		var rl wire.Rule
		if err := bus.Unmarshal(ruleBytes(t, "r2"), &rl); err != nil {
			t.Fatal(err)
		}
		rl.Status = wire.RuleActive
		b, _ := bus.Marshal(&rl)
		putRuleBytes(t, "r2", b)
		if got := fired(t); !slices.Equal(got, []string{"guest/r1"}) {
			t.Fatalf("fired %v", got)
		}
	})
	t.Run("roll back a rule", func(t *testing.T) {
		old := ruleBytes(t, "r1") // r1 → a
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/rules/r1?overwrite=true", map[string]any{"action": "c"}, nil); st != 200 {
			t.Fatalf("update: %d", st)
		}
		putRuleBytes(t, "r1", old) // a genuine, older r1
		if got := fired(t); got != nil {
			t.Fatalf("fired %v", got)
		}
	})
	t.Run("resurrect a deleted rule", func(t *testing.T) {
		old := ruleBytes(t, "r2")
		if st, _ := e.call(g, "DELETE", "/api/v1/namespaces/_/rules/r2", nil, nil); st != 200 {
			t.Fatalf("delete: %d", st)
		}
		putRuleBytes(t, "r2", old)
		if got := fired(t); got != nil {
			t.Fatalf("fired %v", got)
		}
	})

	// d: its default k is final.
	finalBody := map[string]any{
		"annotations": []map[string]any{{"key": "final", "value": true}},
		"parameters":  []map[string]any{{"key": "k", "value": "owner's"}},
	}
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/d?overwrite=true", finalBody, nil); st != 200 {
		t.Fatalf("update d: %d", st)
	}
	var eb errorBody
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/d?blocking=true", map[string]any{"k": "caller's"}, &eb); st != 400 {
		t.Fatalf("final parameter redefined: %d %+v", st, eb)
	}
	for _, c := range []struct {
		name, action string
		f            func(a *wire.Action)
	}{
		{"drop final in the store", "d", func(a *wire.Action) { a.Annotations = nil }},
		{"add final in the store", "c", func(a *wire.Action) {
			a.Annotations = append(a.Annotations, wire.KeyValue{Key: "final", Value: true})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			restore := e.tamperEntity(t, c.action, c.f)
			defer restore()
			before := e.p.Invoker.Executions()
			var eb errorBody
			st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+c.action+"?blocking=true", map[string]any{"k": "caller's"}, &eb)
			if st != 502 || !strings.Contains(eb.Error, "annotations could not be authenticated") {
				t.Fatalf("%d %+v", st, eb)
			}
			if n := e.p.Invoker.Executions() - before; n != 0 {
				t.Fatalf("%d steps ran", n)
			}
		})
	}
	t.Run("roll back the sequence definition", func(t *testing.T) {
		old := e.entityBytes(t, "abc") // a → b → c, genuinely tagged
		e.deploySequence(g, "abc", "/_/a", "/_/c")
		restore := e.tamperEntity(t, "abc", func(a *wire.Action) {
			if err := bus.Unmarshal(old, a); err != nil {
				t.Fatal(err)
			}
		})
		defer restore()
		before := e.p.Invoker.Executions()
		var eb errorBody
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/abc?blocking=true", nil, &eb); st != 502 || !strings.Contains(eb.Error, "outdated or deleted version") {
			t.Fatalf("%d %+v", st, eb)
		}
		if n := e.p.Invoker.Executions() - before; n != 0 {
			t.Fatalf("%d steps ran", n)
		}
	})

	if t.Failed() {
		t.Logf("platform logs:\n%s", e.logs.String())
	}
}

// entityBytes returns the stored (CBOR) action entity of name.
func (e *env) entityBytes(t *testing.T, name string) []byte {
	t.Helper()
	kv := e.actionsKV(t)
	en, err := kv.Get(context.Background(), store.Key("guest", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(en.Value())
}

// tamperEntity rewrites the stored action entity of name, as the operator
// who controls the store can; the returned function restores it.
func (e *env) tamperEntity(t *testing.T, name string, f func(a *wire.Action)) func() {
	t.Helper()
	orig := e.entityBytes(t, name)
	var a wire.Action
	if err := bus.Unmarshal(orig, &a); err != nil {
		t.Fatal(err)
	}
	f(&a)
	b, err := bus.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	kv := e.actionsKV(t)
	rev, err := kv.Put(context.Background(), store.Key("guest", name), b)
	if err != nil {
		t.Fatal(err)
	}
	e.controllerSees(t, name, rev)
	return func() {
		rev, err := kv.Put(context.Background(), store.Key("guest", name), orig)
		if err != nil {
			t.Error(err)
			return
		}
		e.controllerSees(t, name, rev)
	}
}

// controllerSees waits until the controller has seen the guest's action
// entity name change to revision rev (0: deleted) in the store, as it
// would a moment later anyway: a change behind its back reaches it by a
// watch (controller/revisions.go).
func (e *env) controllerSees(t *testing.T, name string, rev uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// The gateway too: it takes the warm path only with entities it knows
	// to be current.
	for e.p.Controller.ActionRevision("guest", name) != rev || e.p.Gateway.ActionRevision("guest", name) != rev {
		if time.Now().After(deadline) {
			t.Fatalf("the controller or the gateway did not see %s at revision %d", name, rev)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *env) actionsKV(t *testing.T) jetstream.KeyValue { return e.bucket(t, store.BucketActions) }

// bucket opens a KV bucket directly, as the operator who controls the
// store can.
func (e *env) bucket(t *testing.T, name string) jetstream.KeyValue {
	t.Helper()
	nc, err := e.p.Bus.Connect("operator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func mustHeader(t *testing.T, r *wire.RunRequest) *envelope.Header {
	t.Helper()
	e, err := envelope.Unmarshal(r.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	return &e.Header
}

// deploySequence puts a sequence of components.
func (e *env) deploySequence(auth, name string, components ...string) {
	e.t.Helper()
	body := map[string]any{"exec": map[string]any{"kind": "sequence", "components": components}}
	var got map[string]any
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, &got); st != 200 {
		e.t.Fatalf("deploy sequence %s: status %d: %v", name, st, got)
	}
}

// runSequence invokes an action without blocking and returns its record
// once it is complete.
func (e *env) runSequence(auth, name string, params map[string]any) map[string]any {
	e.t.Helper()
	var accepted map[string]string
	if st, _ := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+name, params, &accepted); st != 202 {
		e.t.Fatalf("invoke %s: %d %v", name, st, accepted)
	}
	return e.waitActivation(auth, accepted["activationId"])
}

// functionID returns the function id of an action's current version.
func (e *env) functionID(name string) []byte { return e.functionRecord(name).FunctionID }

// functionRecord returns the function record of an action's current
// version.
func (e *env) functionRecord(name string) *wire.FunctionRecord {
	e.t.Helper()
	nc, err := e.p.Bus.Connect("inspect")
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var a wire.Action
	if err := bus.Call(ctx, nc, wire.SubjectActionGet, &wire.ActionRef{Namespace: "guest", Name: name}, &a); err != nil {
		e.t.Fatal(err)
	}
	var fr wire.FunctionRecord
	if err := bus.Unmarshal(a.Function.Record, &fr); err != nil {
		e.t.Fatal(err)
	}
	return &fr
}

func success(act map[string]any) bool {
	resp, _ := act["response"].(map[string]any)
	return resp != nil && resp["success"] == true
}

// checkRefused checks the records of an attacked sequence: the sequence
// failed with one of the codes, its component records stop at the
// attacked step, which carries the code.
func (e *env) checkRefused(t *testing.T, act map[string]any, step int, codes []string) {
	t.Helper()
	resp, _ := act["response"].(map[string]any)
	result, _ := resp["result"].(map[string]any)
	code, _ := result["errorCode"].(string)
	if success(act) || !slices.Contains(codes, code) {
		t.Fatalf("sequence record: success %v, error code %q, want one of %v: %v", success(act), code, codes, result)
	}
	logs, _ := act["logs"].([]any)
	if len(logs) != step+1 {
		t.Fatalf("sequence record lists %d component activations, want %d: %v", len(logs), step+1, logs)
	}
	var comp map[string]any
	id, _ := logs[step].(string)
	if st, _ := e.call(e.guest(), "GET", "/api/v1/namespaces/_/activations/"+id, nil, &comp); st != 200 {
		t.Fatalf("component record %s: %d", id, st)
	}
	cresult, _ := comp["response"].(map[string]any)["result"].(map[string]any)
	if ccode, _ := cresult["errorCode"].(string); ccode != code || success(comp) || comp["cause"] != act["activationId"] {
		t.Fatalf("component record: %v", comp)
	}
}

// sealStepBody seals a body for step j under k exactly as the envelope
// format does (docs/protocol.md): AES-256-GCM, random nonce, associated data
// "clemmys/envelope/v1/body\x00" || header digest || u32(j).
func sealStepBody(t *testing.T, k envelope.Key, h *envelope.Header, j uint32, pt []byte) []byte {
	t.Helper()
	d, err := h.Digest()
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	aad := append([]byte("clemmys/envelope/v1/body\x00"), d[:]...)
	aad = binary.BigEndian.AppendUint32(aad, j)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return gcm.Seal(nonce, nonce, pt, aad)
}

// TestAttackReplayAcrossRuntimes: with two invokers, each running a
// runtime of the namespace that holds the function, a controller that
// delivers a captured step to the other runtime (routing metadata rewritten
// so that the other invoker hands it over) gets it refused by that runtime
// (wrong_runtime): nothing runs there, before or after the designated
// runtime ran it, and the designated runtime refuses it again (replay).
func TestAttackReplayAcrossRuntimes(t *testing.T) {
	type capture struct {
		d   controller.Dispatch
		res *wire.RunResult
	}
	var armed atomic.Bool
	captured := make(chan capture, 1)
	e := startWith(t, t.TempDir(), func(c *platform.Config) {
		c.Invokers = 2
		c.ControllerInterceptor = func(ctx context.Context, d controller.Dispatch, s send) (*wire.RunResult, error) {
			res, err := s(ctx, d.Run)
			if err == nil && armed.CompareAndSwap(true, false) {
				captured <- capture{d, res}
			}
			return res, err
		}
	})
	g := e.guest()
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	nc, err := e.p.Connect("operator")
	if err != nil {
		t.Fatal(err)
	}
	// Both invokers get the function loaded: an honest invocation on each.
	others := map[string]string{"invoker0": "invoker1", "invoker1": "invoker0"}
	var c capture
	for range 2 {
		armed.Store(true)
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/echo?blocking=true", map[string]any{"x": 1}, nil); st != 200 {
			t.Fatalf("honest invocation: %d", st)
		}
		c = <-captured
		if !c.res.Executed {
			t.Fatalf("the honest step did not run: %+v", c.res)
		}
		// The other invoker prewarms the function: a runtime of the
		// namespace holding it, as if the action had moved.
		other := others[c.d.Invoker]
		var pw wire.PrewarmReply
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := bus.Call(ctx, nc, wire.SubjectInvokerPrewarm(other), &wire.Prewarm{Namespace: "guest", Action: "echo", FunctionID: c.d.Run.FunctionID}, &pw)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	other := others[c.d.Invoker]
	var placed wire.InvokerPlaced
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.Call(ctx, nc, wire.SubjectInvokerPlace(other), &wire.InvokerPlace{Namespace: "guest"}, &placed); err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{"invoker0": 0, "invoker1": 1}
	otherIV := e.p.Invokers[idx[other]]
	waitFor(t, func() bool { return otherIV.Prewarmed() > 0 })
	before := otherIV.Executions()
	replay := cloneRun(c.d.Run)
	replay.Runtime = placed.Runtime // what the other invoker checks: it hands the step over
	res, err := c.d.SendTo(ctx, other, replay)
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorCode != "wrong_runtime" || res.Executed || len(res.Envelope) != 0 || otherIV.Executions() != before {
		t.Fatalf("replay to the other runtime: %+v", res)
	}
	// And again in the designated runtime: a replay.
	res, err = c.d.SendTo(ctx, c.d.Invoker, cloneRun(c.d.Run))
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorCode != "replay" || res.Executed {
		t.Fatalf("replay to the designated runtime: %+v", res)
	}
}

// TestAttackReplayedInvokeRequest: the operator copies a blocking
// invocation's request off the bus and sends it again, as sent and as a
// background one. The step does not run again (the runtime refuses the
// request id), and the activation's record is not replaced: the copy of
// the deferred-record path stores nothing, the background copy is refused
// by the id's reservation.
func TestAttackReplayedInvokeRequest(t *testing.T) {
	// Through the controller (the warm path's copy: TestAttackReplayedDirectRequest).
	e := startWith(t, t.TempDir(), func(c *platform.Config) { c.NoDirect = true })
	g := e.guest()
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	nc, err := e.p.Connect("operator")
	if err != nil {
		t.Fatal(err)
	}
	copies := make(chan []byte, 4)
	sub, err := nc.Subscribe(wire.SubjectInvoke, func(m *nats.Msg) {
		select {
		case copies <- m.Data:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	st, h := e.call(g, "POST", "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", map[string]any{"secret": "s1"}, &res)
	if st != 200 || res["secret"] != "s1" {
		t.Fatalf("honest invocation: %d %v", st, res)
	}
	sub.Unsubscribe()
	id := h.Get("X-Openwhisk-Activation-Id")
	var data []byte
	select {
	case data = <-copies:
	case <-time.After(10 * time.Second):
		t.Fatal("no invocation request seen on the bus")
	}
	req, err := bus.Decode[wire.InvokeRequest](data)
	if err != nil {
		t.Fatal(err)
	}
	if req.ActivationID != id || !req.Blocking || req.WaitMs < wire.MinDeferredWaitMs {
		t.Fatalf("captured request %s blocking %v wait %d, want %s blocking with a deferring wait", req.ActivationID, req.Blocking, req.WaitMs, id)
	}
	original := e.waitActivation(g, id)
	before := e.executions()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var act wire.Activation
	if err := bus.Call(ctx, nc, wire.SubjectInvoke, req, &act); err != nil {
		t.Fatalf("the copy as sent: %v", err)
	}
	if act.ErrorCode != "replay" {
		t.Fatalf("the copy as sent ran: %+v", act)
	}
	background := *req
	background.Blocking = false
	err = bus.Call(ctx, nc, wire.SubjectInvoke, &background, &act)
	if we, ok := errors.AsType[*wire.Error](err); !ok || we.Code != wire.CodeConflict {
		t.Fatalf("the background copy: %v %+v, want a conflict", err, act)
	}
	if n := e.executions(); n != before {
		t.Fatalf("the copies ran %d steps", n-before)
	}
	after := e.waitActivation(g, id)
	if fmt.Sprint(after["response"]) != fmt.Sprint(original["response"]) || fmt.Sprint(after["end"]) != fmt.Sprint(original["end"]) {
		t.Fatalf("the record changed:\nbefore %v\nafter  %v", original, after)
	}
}

// TestAttackReplayedDirectRequest: the operator copies a blocking
// invocation's step off the bus on the warm path (gateway → invoker,
// wire.DirectRequest) and sends it again: as sent, with a record of its
// own making, and with its envelope altered. Nothing runs again and the
// activation's record stays the original's; the gateway, which opens
// records for the namespace their id was made for, still shows the honest
// result.
func TestAttackReplayedDirectRequest(t *testing.T) {
	e := startWith(t, t.TempDir(), nil)
	g := e.guest()
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	nc, err := e.p.Connect("operator")
	if err != nil {
		t.Fatal(err)
	}
	type copied struct {
		subject string
		data    []byte
	}
	copies := make(chan copied, 8)
	sub, err := nc.Subscribe(wire.SubjectInvokerDirect("*"), func(m *nats.Msg) {
		select {
		case copies <- copied{m.Subject, m.Data}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The first invocation places the action; the second is warm.
	var res map[string]any
	var id string
	for i, secret := range []string{"s0", "s1"} {
		st, h := e.call(g, "POST", "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", map[string]any{"secret": secret}, &res)
		if st != 200 || res["secret"] != secret {
			t.Fatalf("honest invocation %d: %d %v", i, st, res)
		}
		id = h.Get("X-Openwhisk-Activation-Id")
	}
	sub.Unsubscribe()
	var c copied
	var req *wire.DirectRequest
	for req == nil || req.Run.ActivationID != id {
		select {
		case c = <-copies:
			if req, err = bus.Decode[wire.DirectRequest](c.data); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the warm invocation's step was not seen on the bus: it did not go the warm path")
		}
	}
	if bytes.Contains(c.data, []byte("s1")) {
		t.Fatal("the warm path carries the parameters in the clear")
	}
	original := e.waitActivation(g, id)
	before := e.executions()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(what string, r *wire.DirectRequest) {
		t.Helper()
		var act wire.Activation
		err := bus.Call(ctx, nc, c.subject, r, &act)
		if we, ok := errors.AsType[*wire.Error](err); !ok || we.Code != wire.CodeConflict {
			t.Fatalf("%s: %v %+v, want a conflict", what, err, act)
		}
	}
	send("the copy as sent", req)
	forged := *req
	forged.Record.Name, forged.Record.Subject = "something-else", "mallory"
	send("the copy with a record of the operator's", &forged)
	tampered := *req
	tampered.Run.Envelope = bytes.Clone(req.Run.Envelope)
	tampered.Run.Envelope[len(tampered.Run.Envelope)-1] ^= 1
	send("the copy with its envelope altered", &tampered)
	if n := e.executions(); n != before {
		t.Fatalf("the copies ran %d steps", n-before)
	}
	after := e.waitActivation(g, id)
	if fmt.Sprint(after["response"]) != fmt.Sprint(original["response"]) || fmt.Sprint(after["end"]) != fmt.Sprint(original["end"]) ||
		after["name"] != "echo" {
		t.Fatalf("the record changed:\nbefore %v\nafter  %v", original, after)
	}
}

// executions is how many steps the platform's runtimes executed (every
// envelope check passed): the attack tests' "nothing ran" side channel.
func (e *env) executions() uint64 {
	var n uint64
	for _, iv := range e.p.Invokers {
		n += iv.Executions()
	}
	return n
}
