package platform_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clemmys/clemmys/client"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// record fetches an activation record as the owner's client decodes it.
func (e *env) record(t *testing.T, auth, id string) *client.Activation {
	t.Helper()
	act := e.waitActivation(auth, id)
	b, err := json.Marshal(act)
	if err != nil {
		t.Fatal(err)
	}
	var a client.Activation
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return &a
}

// rawRecord is record with the exact bytes of the gateway's answer (the
// result's digest is over them).
func (e *env) rawRecord(t *testing.T, auth, id string) *client.Activation {
	t.Helper()
	e.waitActivation(auth, id)
	var a client.Activation
	if st, _ := e.call(auth, "GET", "/api/v1/namespaces/_/activations/"+id, nil, &a); st != http.StatusOK {
		t.Fatalf("get activation %s: %d", id, st)
	}
	return &a
}

// invokeID invokes an action without blocking and returns the activation id.
func (e *env) invokeID(t *testing.T, auth, name string, params any) string {
	t.Helper()
	var accepted map[string]string
	if st, _ := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+name, params, &accepted); st != http.StatusAccepted {
		t.Fatalf("invoke %s: %d %v", name, st, accepted)
	}
	return accepted["activationId"]
}

// pins is what the owner of a test platform pins: its sim root and the
// runtime binary the tests built.
func (e *env) pins(t *testing.T) client.Expect {
	t.Helper()
	m, err := sim.Load(filepath.Join(e.dataDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	rm, err := sim.MeasureFile(enclavePath)
	if err != nil {
		t.Fatal(err)
	}
	return client.Expect{TEE: sim.Platform, SimRoot: hex.EncodeToString(m.PublicKey()), RuntimeMeasurements: []string{hex.EncodeToString(rm)}}
}

// TestVerifiableActivations: the owner verifies the platform's evidence
// and then each activation record against the runtimes' signed receipts;
// any change to a record's status, result, logs or receipts fails it.
func TestVerifiableActivations(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	e.deploy(g, "hello", wasmbuild.MustBuild(t, "examples/hello"), nil)
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e.deploy(g, "a", echo, nil)
	e.deploy(g, "b", echo, nil)
	e.deploy(g, "boom", wasmbuild.MustBuild(t, "internal/testfuncs/fail"), nil)
	e.deploySequence(g, "ab", "/_/a", "/_/b")
	e.deploySequence(g, "aboom", "/_/a", "/_/boom")
	pins := e.pins(t)

	helloID := e.invokeID(t, g, "hello", map[string]any{"name": "receipts"})
	hello := e.rawRecord(t, g, helloID)

	// The attestation, with a fresh nonce, over this TLS session.
	ctx := context.Background()
	nonce := client.NewNonce()
	att, tlsKey, err := client.FetchAttestation(ctx, e.client, e.p.APIHost(), g, nonce)
	if err != nil {
		t.Fatal(err)
	}
	rep := client.VerifyAttestation(att, nonce, tlsKey, pins)
	if !rep.OK() || !rep.Simulated || rep.KMS == nil || rep.Gateway == nil || len(rep.Runtimes) == 0 {
		t.Fatalf("attestation: %+v", rep)
	}
	if rt := rep.Runtimes[0]; rt.Measurement != pins.RuntimeMeasurements[0] || rt.Platform != sim.Platform || rt.Releases == 0 {
		t.Fatalf("runtime holding the keys: %+v", rt)
	}
	t.Run("attestation mismatches", func(t *testing.T) {
		other := pins
		other.RuntimeMeasurements = []string{strings.Repeat("00", 32)}
		wrongRoot := pins
		wrongRoot.SimRoot = strings.Repeat("11", 32)
		for _, c := range []struct {
			name   string
			nonce  []byte
			tlsKey []byte
			exp    client.Expect
			want   string
		}{
			{"another runtime pinned", nonce, tlsKey, other, "is not pinned"},
			{"another sim root", nonce, tlsKey, wrongRoot, "does not verify"},
			{"replayed answer (another nonce)", client.NewNonce(), tlsKey, pins, "does not bind this request's nonce"},
			{"another TLS key", nonce, make([]byte, 32), pins, "another TLS key"},
			{"another TEE pinned", nonce, tlsKey, client.Expect{TEE: "sev-snp"}, "pinned \"sev-snp\""},
		} {
			r := client.VerifyAttestation(att, c.nonce, c.tlsKey, c.exp)
			if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
				t.Errorf("%s: ok %v, problems %q, want %q", c.name, r.OK(), r.Problems, c.want)
			}
		}
	})

	verify := func(a *client.Activation) *client.ActivationReport {
		return client.VerifyActivation(a, rep.KMSKey(), pins.RuntimeMeasurements)
	}
	if r := verify(hello); !r.OK() || len(r.Steps) != 1 || r.Steps[0].Action != "hello" || r.Steps[0].Status != wire.StatusSuccess {
		t.Fatalf("hello: %+v", r)
	}

	// A failure verifies as the failure it is.
	boom := e.rawRecord(t, g, e.invokeID(t, g, "boom", nil))
	if r := verify(boom); !r.OK() || boom.Response.Status != wire.StatusApplicationError {
		t.Fatalf("boom (%s): %+v", boom.Response.Status, r)
	}

	// A sequence: one receipt per step, and each component's record.
	seqID := e.invokeID(t, g, "ab", map[string]any{"x": 1})
	seq := e.rawRecord(t, g, seqID)
	if r := verify(seq); !r.OK() || len(r.Steps) != 2 || r.Steps[0].Action != "a" || r.Steps[1].Action != "b" {
		t.Fatalf("sequence: %+v", r)
	}
	for _, id := range seq.Logs {
		if r := verify(e.rawRecord(t, g, id)); !r.OK() {
			t.Fatalf("component %s: %+v", id, r)
		}
	}
	failedSeq := e.rawRecord(t, g, e.invokeID(t, g, "aboom", nil))
	if r := verify(failedSeq); !r.OK() || len(r.Steps) != 2 {
		t.Fatalf("failed sequence: %+v", r)
	}

	// Whatever is changed in a record, it no longer verifies.
	clone := func(a *client.Activation) *client.Activation {
		b, _ := json.Marshal(a)
		var c client.Activation
		_ = json.Unmarshal(b, &c)
		return &c
	}
	for _, c := range []struct {
		name string
		rec  *client.Activation
		f    func(a *client.Activation)
		want string
	}{
		{"relabel success as failure", hello, func(a *client.Activation) { a.Response.Status = wire.StatusDeveloperError }, "status"},
		{"relabel failure as success", boom, func(a *client.Activation) { a.Response.Status = wire.StatusSuccess }, "status"},
		{"relabel between failures", boom, func(a *client.Activation) { a.Response.Status = wire.StatusDeveloperError }, "status"},
		{"alter the result", hello, func(a *client.Activation) { a.Response.Result = json.RawMessage(`{"greeting":"Hello mallory!"}`) }, "result"},
		{"drop the logs", hello, func(a *client.Activation) { a.Logs = nil }, "logs"},
		{"alter a log line", hello, func(a *client.Activation) { a.Logs[0] += "!" }, "logs"},
		{"drop the receipt", hello, func(a *client.Activation) { a.Receipts = nil }, "no receipt"},
		{"flip a receipt bit", hello, func(a *client.Activation) { a.Receipts[0][len(a.Receipts[0])/2] ^= 1 }, "receipt 0"},
		{"another activation's receipt", hello, func(a *client.Activation) { a.Receipts = boom.Receipts }, "another request"},
		{"stop the sequence early", seq, func(a *client.Activation) {
			a.Receipts, a.Logs = a.Receipts[:1], a.Logs[:1]
			a.Response.Result = json.RawMessage(`{"x":1}`)
		}, "stopped after step 1"},
		{"swap the steps", seq, func(a *client.Activation) { a.Receipts[0], a.Receipts[1] = a.Receipts[1], a.Receipts[0] }, "chain order"},
		{"continue past the failure", failedSeq, func(a *client.Activation) {
			a.Receipts = append(a.Receipts, a.Receipts[1])
		}, "chain order"},
		{"swap a component's output", seq, func(a *client.Activation) { a.Response.Result = json.RawMessage(`{"x":1,"swapped":true}`) }, "result"},
	} {
		a := clone(c.rec)
		c.f(a)
		if r := verify(a); r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
			t.Errorf("%s: ok %v, problems %q, want %q", c.name, r.OK(), r.Problems, c.want)
		}
	}

	// The same from the command line.
	dir := t.TempDir()
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(dir, "no-such-file"))
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	flags := []string{"--apihost", e.p.APIHost(), "--auth", g, "--data-dir", e.dataDir}
	pinFile := filepath.Join(dir, "expect.json")
	b, _ := json.Marshal(pins)
	if err := os.WriteFile(pinFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := clemmys(append([]string{"attest", "--expect", pinFile}, flags...)...)
	if code != 0 || !strings.Contains(out, "SIMULATED") || !strings.Contains(out, "verdict:   verified (simulated evidence)") {
		t.Fatalf("clemmys attest: exit %d\n%s\n%s", code, out, errs)
	}
	bad := pins
	bad.RuntimeMeasurements = []string{strings.Repeat("ab", 32)}
	b, _ = json.Marshal(bad)
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := clemmys(append([]string{"attest", "--expect", badFile}, flags...)...); code != 1 || !strings.Contains(out, "MISMATCH") {
		t.Fatalf("clemmys attest with a wrong pin: exit %d\n%s", code, out)
	}
	code, out, errs = clemmys(append([]string{"activation", "verify", seqID, "--expect", pinFile}, flags...)...)
	if code != 0 || strings.Count(out, "verdict: verified") != 3 {
		t.Fatalf("clemmys activation verify: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAttackRecords plays a controller that lies in the records it makes
// of steps that ran: relabelled statuses, withheld or altered logs and
// receipts, a component's output passed off as another's. The gateway
// opens every receipt and refuses (or marks) what does not match, so the
// owner never sees a lie as a genuine record.
func TestAttackRecords(t *testing.T) {
	var (
		mu sync.Mutex
		// attack, when set, changes the next result it applies to (it
		// returns false for a step it leaves alone) and is then disarmed.
		attack func(d controller.Dispatch, res *wire.RunResult) bool
		first  *wire.RunResult // the last honest result of step 0 of a 2-step sequence
	)
	e := startWith(t, t.TempDir(), func(c *platform.Config) {
		c.ControllerInterceptor = func(ctx context.Context, d controller.Dispatch, send func(context.Context, *wire.RunRequest) (*wire.RunResult, error)) (*wire.RunResult, error) {
			res, err := send(ctx, d.Run)
			if err != nil || res == nil {
				return res, err
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case attack != nil && attack(d, res):
				attack = nil
			case attack == nil && d.Step == 0 && len(d.Request.Steps) == 2:
				c := *res
				first = &c
			}
			return res, nil
		}
	})
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e.deploy(g, "a", echo, nil)
	e.deploy(g, "b", echo, nil)
	e.deploy(g, "talk", wasmbuild.MustBuild(t, "examples/hello"), nil)
	e.deploy(g, "boom", wasmbuild.MustBuild(t, "internal/testfuncs/fail"), nil)
	e.deploySequence(g, "ab", "/_/a", "/_/b")
	if act := e.runSequence(g, "ab", map[string]any{"honest": true}); !success(act) {
		t.Fatalf("honest: %v", act)
	}
	arm := func(f func(d controller.Dispatch, res *wire.RunResult) bool) {
		mu.Lock()
		defer mu.Unlock()
		attack = f
	}
	always := func(f func(res *wire.RunResult)) func(controller.Dispatch, *wire.RunResult) bool {
		return func(_ controller.Dispatch, res *wire.RunResult) bool { f(res); return true }
	}
	resultOf := func(act map[string]any) string {
		resp, _ := act["response"].(map[string]any)
		return fmt.Sprint(resp["status"]) + " " + string(must(json.Marshal(resp["result"])))
	}
	for _, c := range []struct {
		name, action string
		f            func(res *wire.RunResult)
		check        func(act map[string]any) bool
	}{
		{"relabel an application error as a developer error", "boom", func(res *wire.RunResult) { res.Status = wire.StatusDeveloperError },
			func(act map[string]any) bool {
				return !success(act) && strings.Contains(resultOf(act), "does not match its receipt")
			}},
		{"relabel a success as an application error", "talk", func(res *wire.RunResult) { res.Status = wire.StatusApplicationError },
			func(act map[string]any) bool {
				return !success(act) && strings.Contains(resultOf(act), "does not match its re")
			}},
		{"withhold the logs", "talk", func(res *wire.RunResult) { res.Logs = nil },
			func(act map[string]any) bool {
				logs, _ := act["logs"].([]any)
				return success(act) && len(logs) == 1 && logs[0] == "[clemmys: the activation logs were withheld]"
			}},
		{"withhold the receipt", "talk", func(res *wire.RunResult) { res.Receipt = nil },
			func(act map[string]any) bool { return !success(act) && strings.Contains(resultOf(act), "no receipt") }},
		{"alter the receipt", "talk", func(res *wire.RunResult) { res.Receipt[len(res.Receipt)/2] ^= 1 },
			func(act map[string]any) bool {
				return !success(act) && strings.Contains(resultOf(act), "receipt could not be authenticated")
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			arm(always(c.f))
			act := e.waitActivation(g, e.invokeID(t, g, c.action, map[string]any{"name": "x"}))
			if !c.check(act) {
				t.Fatalf("record shown: %v", act)
			}
			if _, ok := act["receipts"]; ok && !success(act) && act["response"].(map[string]any)["status"] == wire.StatusInternalError {
				t.Fatalf("a refused record still carries receipts: %v", act)
			}
		})
	}
	t.Run("pass step 0's receipt off as step 1's", func(t *testing.T) {
		mu.Lock()
		moved := first
		mu.Unlock()
		if moved == nil {
			t.Fatal("no honest step 0 seen")
		}
		arm(func(d controller.Dispatch, res *wire.RunResult) bool {
			if d.Step != 1 {
				return false
			}
			res.Receipt = slices.Clone(moved.Receipt)
			return true
		})
		act := e.waitActivation(g, e.invokeID(t, g, "ab", map[string]any{"x": 2}))
		if success(act) || !strings.Contains(resultOf(act), "receipt") {
			t.Fatalf("sequence with a moved receipt: %v", act)
		}
	})
	if t.Failed() {
		t.Logf("platform logs:\n%s", e.logs.String())
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
