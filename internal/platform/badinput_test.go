package platform_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/cli"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wasmbuild"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestBadInput: every kind of bad input gets a clear error, and the
// platform keeps serving afterwards.
func TestBadInput(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e.deploy(g, "hello", hello, nil)
	invokeHello := func(t *testing.T) {
		t.Helper()
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": "still"}, &res); st != 200 || res["greeting"] != "Hello still!" {
			t.Fatalf("the platform stopped serving: %d %v", st, res)
		}
	}
	put := func(code string, extra map[string]any) map[string]any {
		b := map[string]any{"exec": map[string]any{"kind": "wasm", "code": code}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}

	deployErrors := []struct {
		name, path string
		body       any
		status     int
		msg        string
	}{
		{"not wasm", "bad", put(base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho hi\n")), nil), 400, "not a WebAssembly module"},
		{"not base64", "bad", put("%%%not base64%%%", nil), 400, "not valid base64"},
		{"no exec", "bad", map[string]any{"name": "bad"}, 400, "must have an exec"},
		{"other kind", "bad", map[string]any{"exec": map[string]any{"kind": "python:3", "code": "x"}}, 400, "Unsupported action kind"},
		{"nodejs without an engine", "bad", map[string]any{"exec": map[string]any{"kind": "nodejs:20", "code": "x"}}, 400, "The nodejs kinds are not enabled"},
		{"not JSON", "bad", []byte("{not json"), 400, "invalid character 'n' looking for beginning of object key string at input index 1 (line 1, position 2)"},
		{"wrong JSON type", "bad", []byte(`{"exec": 3}`), 400, `field "exec" must be an object, not number`},
		{"truncated module", "bad", put(base64.StdEncoding.EncodeToString(hello[:len(hello)/2]), nil), 400, "not a valid WebAssembly function for clemmys"},
		{"no entry point", "bad", put(base64.StdEncoding.EncodeToString([]byte("\x00asm\x01\x00\x00\x00")), nil), 400, "_start"},
		{"timeout too small", "bad", put(base64.StdEncoding.EncodeToString(hello), map[string]any{"limits": map[string]any{"timeout": 5}}), 400, "timeout limit"},
		{"memory too large", "bad", put(base64.StdEncoding.EncodeToString(hello), map[string]any{"limits": map[string]any{"memory": 100000}}), 400, "memory limit"},
		{"invalid name", "bad%20name%20", put(base64.StdEncoding.EncodeToString(hello), nil), 400, "name is not valid"},
		{"oversize body", "big", bytes.Repeat([]byte{' '}, 24<<20), 413, "too large"},
	}
	for _, tc := range deployErrors {
		t.Run("deploy/"+tc.name, func(t *testing.T) {
			var eb errorBody
			st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/"+tc.path, tc.body, &eb)
			if st != tc.status || !strings.Contains(eb.Error, tc.msg) || eb.Code == "" {
				t.Fatalf("status %d, body %+v; want %d containing %q", st, eb, tc.status, tc.msg)
			}
		})
	}

	t.Run("oversize invoke payload", func(t *testing.T) {
		big := `{"x":"` + strings.Repeat("a", 1<<20) + `"}`
		var eb errorBody
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", []byte(big), &eb); st != 413 || !strings.Contains(eb.Error, "too large") {
			t.Fatalf("%d %+v", st, eb)
		}
	})
	t.Run("payload not an object", func(t *testing.T) {
		var eb errorBody
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", []byte(`[1,2]`), &eb); st != 400 || !strings.Contains(eb.Error, "expected an object, not array, at input index") {
			t.Fatalf("%d %+v", st, eb)
		}
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", []byte(`{"a": tru}`), &eb); st != 400 || !strings.Contains(eb.Error, "at input index 9 (line 1, position 10)") {
			t.Fatalf("%d %+v", st, eb)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		uuid, key, _ := strings.Cut(g, ":")
		for _, auth := range []string{"", uuid + ":" + strings.Repeat("0", 64), "11111111-2222-4333-8444-555555555555:" + key, "garbage:garbage"} {
			var eb errorBody
			st, hdr := e.call(auth, "GET", "/api/v1/namespaces/_/actions", nil, &eb)
			if st != 401 || eb.Error == "" || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("auth %q: %d %+v", auth, st, eb)
			}
			if strings.Contains(eb.Error, key) {
				t.Error("the error echoes the key")
			}
		}
	})

	t.Run("another namespace", func(t *testing.T) {
		u, k, err := e.p.Gateway.CreateNamespace(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		alice := u + ":" + k
		if len(k) != 64 {
			t.Fatalf("key length %d", len(k))
		}
		e.deploy(alice, "private", hello, nil)
		var accepted map[string]string
		if st, _ := e.call(alice, "POST", "/api/v1/namespaces/alice/actions/private", nil, &accepted); st != 202 {
			t.Fatalf("alice invokes: %d", st)
		}
		aliceAct := e.waitActivation(alice, accepted["activationId"])
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/v1/namespaces/alice/actions/private"},
			{"POST", "/api/v1/namespaces/alice/actions/private?blocking=true"},
			{"DELETE", "/api/v1/namespaces/alice/actions/private"},
			{"GET", "/api/v1/namespaces/alice/activations"},
			{"GET", "/api/v1/namespaces/alice/activations/" + accepted["activationId"]},
		} {
			var eb errorBody
			if st, _ := e.call(g, c.method, c.path, nil, &eb); st != 403 || !strings.Contains(eb.Error, "not authorized") {
				t.Errorf("guest %s %s: %d %+v", c.method, c.path, st, eb)
			}
		}
		// Through "_" the guest reaches only its own namespace.
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/private?blocking=true", nil, nil); st != 404 {
			t.Errorf("guest invokes _/private: %d", st)
		}
		if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+accepted["activationId"], nil, nil); st != 404 {
			t.Errorf("guest reads alice's activation through _: %d", st)
		}
		if aliceAct["response"].(map[string]any)["success"] != true {
			t.Errorf("alice's activation: %v", aliceAct)
		}
	})

	t.Run("malformed wasm", func(t *testing.T) {
		// Refused at deploy, with the reason, before anything is stored
		// (TestCompileErrorLeaksNothing plays one that got past).
		junk := append(bytes.Clone([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}), bytes.Repeat([]byte{0xff}, 64)...)
		var eb errorBody
		body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(junk)}}
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/junk", body, &eb); st != 400 || !strings.Contains(eb.Error, "not a valid WebAssembly function") {
			t.Fatalf("%d %+v", st, eb)
		}
		invokeHello(t)
	})

	t.Run("infinite loop times out", func(t *testing.T) {
		e.deploy(g, "loop", wasmbuild.MustBuild(t, "internal/testfuncs/loop"), map[string]any{"timeout": 1000})
		t0 := time.Now()
		var res map[string]any
		st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/loop?blocking=true&result=true", nil, &res)
		msg, _ := res["error"].(string)
		if st != 502 || !strings.Contains(msg, "time limit") {
			t.Fatalf("%d %v", st, res)
		}
		t.Logf("loop stopped after %v", time.Since(t0))
		invokeHello(t)
	})

	t.Run("memory bomb", func(t *testing.T) {
		e.deploy(g, "memhog", wasmbuild.MustBuild(t, "internal/testfuncs/memhog"), map[string]any{"memory": 128})
		var res map[string]any
		st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/memhog?blocking=true&result=true", nil, &res)
		msg, _ := res["error"].(string)
		if st != 502 || !strings.Contains(msg, "memory") {
			t.Fatalf("%d %v", st, res)
		}
		invokeHello(t)
	})

	t.Run("tampered envelope", func(t *testing.T) {
		nc, err := e.p.Bus.Connect("tamper")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		captured := make(chan []byte, 1)
		// A warm blocking step goes from the gateway to the invoker.
		sub, err := nc.Subscribe(wire.SubjectInvokerDirect("*"), func(m *nats.Msg) {
			select {
			case captured <- bytes.Clone(m.Data):
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		invokeHello(t)
		sub.Unsubscribe()
		var dr wire.DirectRequest
		select {
		case data := <-captured:
			if err := bus.Unmarshal(data, &dr); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the warm invocation's step was not seen on the bus")
		}
		req := dr.Run
		run := func(env []byte) *wire.RunResult {
			var res wire.RunResult
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := bus.Call(ctx, nc, wire.SubjectInvokerRun("invoker0"), &wire.RunRequest{
				ActivationID: req.ActivationID, Namespace: req.Namespace, Action: req.Action,
				FunctionID: req.FunctionID, Envelope: env, TimeoutMs: 5000, Runtime: req.Runtime,
			}, &res)
			if err != nil {
				t.Fatal(err)
			}
			return &res
		}
		mutate := func(f func(e *envelope.Envelope)) []byte {
			c, err := envelope.Unmarshal(req.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			f(c)
			b, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		cases := []struct {
			name string
			env  []byte
			code string
		}{
			{"body bit flipped", mutate(func(e *envelope.Envelope) { e.Body[len(e.Body)-1] ^= 1 }), "body"},
			{"capsule bit flipped", mutate(func(e *envelope.Envelope) { e.Capsules[0][40] ^= 1 }), "auth"},
			{"expiry extended", mutate(func(e *envelope.Envelope) { e.Header.Expiry += 3600_000 }), "auth"},
			{"memory limit raised", mutate(func(e *envelope.Envelope) { e.Header.Limits.MemoryMB = 4096 }), "auth"},
			{"truncated", req.Envelope[:len(req.Envelope)-7], "malformed"},
			{"replayed as is", req.Envelope, "replay"},
		}
		for _, c := range cases {
			res := run(c.env)
			if res.Status != wire.StatusInternalError || len(res.Envelope) != 0 || len(res.Logs) != 0 || !strings.Contains(res.ErrorCode, c.code) {
				t.Errorf("%s: status %q code %q msg %q sealed %d bytes; want refusal %q with nothing sealed",
					c.name, res.Status, res.ErrorCode, res.ErrorMessage, len(res.Envelope), c.code)
			}
		}
		invokeHello(t)
	})

	t.Run("forged and unaccepted evidence", func(t *testing.T) {
		nc, err := e.p.Bus.Connect("rogue")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		var a wire.Action
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := bus.Call(ctx, nc, wire.SubjectActionGet, &wire.ActionRef{Namespace: "guest", Name: "hello"}, &a); err != nil {
			t.Fatal(err)
		}
		var fr wire.FunctionRecord
		if err := bus.Unmarshal(a.Function.Record, &fr); err != nil {
			t.Fatal(err)
		}
		forged, err := sim.LoadOrCreate(t.TempDir()) // another root key
		if err != nil {
			t.Fatal(err)
		}
		genuine, err := sim.LoadOrCreate(filepath.Join(e.dataDir, "sim"))
		if err != nil {
			t.Fatal(err)
		}
		other := sha256.Sum256([]byte("a runtime nobody accepted"))
		for _, c := range []struct {
			name string
			m    *sim.Machine
			meas []byte
			code string
		}{
			{"forged sim evidence", forged, e.p.EnclaveMeasurement, wire.CodeAttestation},
			{"measurement not in policy", genuine, other[:], wire.CodePolicy},
		} {
			var nonce wire.Nonce
			if err := bus.Call(ctx, nc, wire.SubjectKMSNonce, struct{}{}, &nonce); err != nil {
				t.Fatal(err)
			}
			eph, err := ecdh.X25519().GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := c.m.Attester(c.meas, 1, false).Attest(wire.ReleaseReportData(nonce.Nonce, eph.PublicKey().Bytes(), nil))
			if err != nil {
				t.Fatal(err)
			}
			var rep wire.ReleaseReply
			err = bus.Call(ctx, nc, wire.SubjectKMSReleaseAt(nonce.Replica), &wire.ReleaseRequest{
				Nonce: nonce.Nonce, EphemeralKey: eph.PublicKey().Bytes(), Evidence: ev, FunctionID: fr.FunctionID,
			}, &rep)
			we, ok := errors.AsType[*wire.Error](err)
			if !ok || we.Code != c.code || len(rep.Sealed) != 0 {
				t.Errorf("%s: err %v, sealed %d bytes; want refusal %q", c.name, err, len(rep.Sealed), c.code)
			}
		}
	})

	t.Run("policy excludes the runtime", func(t *testing.T) {
		other := sha256.Sum256([]byte("some other runtime"))
		var pol map[string]any
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/policy", map[string]any{"measurements": []string{hex.EncodeToString(other[:])}}, &pol); st != 200 {
			t.Fatalf("set policy: %d %v", st, pol)
		}
		e.deploy(g, "hello2", hello, nil)
		var res map[string]any
		st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello2?blocking=true&result=true", nil, &res)
		msg, _ := res["error"].(string)
		if st != 500 || !strings.Contains(msg, "measurement") {
			t.Fatalf("invoke with a policy that excludes the runtime: %d %v", st, res)
		}
		// The upgrade path: the owner adds the runtime's measurement with
		// `clemmys policy allow`.
		var out, errs bytes.Buffer
		if code := cli.Run([]string{"policy", "allow", "--data-dir", e.dataDir, "--apihost", e.p.APIHost(), "--auth", g,
			hex.EncodeToString(e.p.EnclaveMeasurement)}, &out, &errs); code != 0 {
			t.Fatalf("clemmys policy allow: exit %d: %s", code, errs.String())
		}
		if !strings.Contains(out.String(), hex.EncodeToString(e.p.EnclaveMeasurement)) || !strings.Contains(out.String(), hex.EncodeToString(other[:])) {
			t.Fatalf("clemmys policy allow printed %q", out.String())
		}
		st, _ = e.call(g, "POST", "/api/v1/namespaces/_/actions/hello2?blocking=true&result=true", map[string]any{"name": "upgrade"}, &res)
		if st != 200 || res["greeting"] != "Hello upgrade!" {
			t.Fatalf("invoke after allowing the runtime: %d %v", st, res)
		}
	})

	t.Run("typed rules through the CLI and the REST API", func(t *testing.T) {
		m := strings.Repeat("5a", 48)
		var out, errs bytes.Buffer
		if code := cli.Run([]string{"policy", "allow", "--data-dir", e.dataDir, "--apihost", e.p.APIHost(), "--auth", g,
			"snp:measurement=" + m, "min-tcb=3.0.8.115", "tdx:mrtd=" + m, "tcb-status=SWHardeningNeeded"}, &out, &errs); code != 0 {
			t.Fatalf("clemmys policy allow: exit %d: %s", code, errs.String())
		}
		for _, want := range []string{"measurement      " + m, "min-tcb          3.0.8.115", "mrtd             " + m, "UpToDate, SWHardeningNeeded"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("policy allow printed no %q:\n%s", want, out.String())
			}
		}
		var pol map[string]any
		if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/policy", nil, &pol); st != 200 || pol["snp"] == nil || pol["tdx"] == nil {
			t.Fatalf("get policy: %d %v", st, pol)
		}
		// The sim runtime still runs: its measurement is still allowed.
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello2?blocking=true&result=true", map[string]any{"name": "typed"}, &res); st != 200 {
			t.Fatalf("invoke: %d %v", st, res)
		}
		// A malformed typed rule is a 400 naming it.
		st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/policy", map[string]any{"measurements": []string{hex.EncodeToString(e.p.EnclaveMeasurement)},
			"snp": map[string]any{"measurements": []string{"abcd"}}}, &res)
		if msg, _ := res["error"].(string); st != 400 || !strings.Contains(msg, "sev-snp") {
			t.Fatalf("bad snp rule: %d %v", st, res)
		}
	})

	if t.Failed() {
		t.Logf("platform logs:\n%s", e.logs.String())
	}
}
