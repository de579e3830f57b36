package platform_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/client"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// recorder is an HTTP transport that keeps every byte sent to and from
// the gateway: what a logging gateway would see.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	data bytes.Buffer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.data.Write(b)
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.data.WriteString(req.URL.String())
	r.data.Write(b)
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestSealedInvocation: the owner seals the parameters end to end; the
// gateway, the bus and the stores only ever see ciphertext of the input,
// the output and the logs, and the owner opens and verifies the result.
func TestSealedInvocation(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	e.deploy(g, "spy", wasmbuild.MustBuild(t, "internal/testfuncs/spy"), nil)
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	e.deploySequence(g, "spyseq", "/_/spy", "/_/echo", "/_/spy")

	nc, _, s := e.busSpy(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nonce := client.NewNonce()
	att, tlsKey, err := client.FetchAttestation(ctx, e.client, e.p.APIHost(), g, nonce)
	if err != nil {
		t.Fatal(err)
	}
	pins := e.pins(t)
	rep := client.VerifyAttestation(att, nonce, tlsKey, pins)
	if !rep.OK() {
		t.Fatalf("attestation: %v", rep.Problems)
	}
	rec := &recorder{next: e.client.Transport}
	si := &client.SealedInvoker{HTTP: &http.Client{Transport: rec, Timeout: time.Minute}, APIHost: e.p.APIHost(), Auth: g,
		KMSKey: rep.KMSKey(), Pinned: pins.RuntimeMeasurements}
	params := []byte(`{"input":"` + inputSecret + `"}`)

	res, err := si.Invoke(ctx, "spy", params, true)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(res.Result, &out); err != nil {
		t.Fatal(err)
	}
	if out["echo"] != inputSecret || out["out"] != outputSecret || res.Status != "success" || !strings.Contains(res.Logs, logSecret) {
		t.Fatalf("sealed result %v, status %q, logs %q", out, res.Status, res.Logs)
	}
	// A sequence, and a non-blocking invocation opened later.
	sres, err := si.Invoke(ctx, "spyseq", params, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sres.Result), outputSecret) || len(sres.Report.Steps) != 3 {
		t.Fatalf("sealed sequence: %s %+v", sres.Result, sres.Report)
	}
	pending, err := si.Invoke(ctx, "spy", params, false)
	if err != nil || pending.Result != nil {
		t.Fatalf("non-blocking: %+v %v", pending, err)
	}
	later, err := si.Wait(ctx, pending)
	if err != nil || !strings.Contains(string(later.Result), inputSecret) {
		t.Fatalf("opened later: %+v %v", later, err)
	}
	// The gateway cannot open the records: GET shows the sealed parts.
	act := e.waitActivation(g, res.ActivationID)
	if _, ok := act["sealed"]; !ok || strings.Contains(mustJSON(t, act), inputSecret) {
		t.Fatalf("the gateway's record of a sealed activation: %v", act)
	}

	// Refusals.
	var eb errorBody
	e.call(g, "PUT", "/api/v1/namespaces/_/actions/withdefaults?overwrite=true", map[string]any{
		"exec":       map[string]any{"kind": "wasm", "code": mustB64(wasmbuild.MustBuild(t, "internal/testfuncs/echo"))},
		"parameters": []map[string]any{{"key": "d", "value": 1}},
	}, nil)
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/withdefaults?sealed=prepare", nil, &eb); st != 400 || !strings.Contains(eb.Error, "default parameters") {
		t.Errorf("prepare with defaults: %d %+v", st, eb)
	}
	var p struct {
		Ticket []byte `json:"ticket"`
	}
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/spy?sealed=prepare", nil, &p); st != 200 {
		t.Fatalf("prepare: %d", st)
	}
	bad := bytes.Clone(p.Ticket)
	bad[len(bad)-1] ^= 1
	for _, c := range []struct {
		name string
		auth string
		body map[string]any
		want string
	}{
		{"tampered ticket", g, map[string]any{"envelope": []byte("x"), "ticket": bad}, "ticket is not valid"},
		{"another header's envelope", g, map[string]any{"envelope": []byte("x"), "ticket": p.Ticket}, "not for the prepared header"},
		{"another namespace's ticket", e.newNamespace(t, "mallory"), map[string]any{"envelope": []byte("x"), "ticket": p.Ticket}, "ticket is not valid"},
	} {
		if st, _ := e.call(c.auth, "POST", "/api/v1/namespaces/_/actions/spy?sealed=invoke", c.body, &eb); st != 400 || !strings.Contains(eb.Error, c.want) {
			t.Errorf("%s: %d %+v", c.name, st, eb)
		}
	}

	// Nothing in plaintext: not through the gateway, not on the bus, not
	// in the stores, not in the platform's logs.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	secrets := []string{inputSecret, outputSecret, logSecret}
	check := func(where string, b []byte) {
		t.Helper()
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("%s contains %q in plaintext", where, sec)
			}
		}
	}
	rec.mu.Lock()
	if rec.data.Len() == 0 {
		t.Error("the recorder saw nothing")
	}
	check("the gateway's HTTP traffic", rec.data.Bytes())
	rec.mu.Unlock()
	s.mu.Lock()
	if s.msgs < 10 {
		t.Errorf("the spy saw only %d messages", s.msgs)
	}
	check("bus traffic", s.data.Bytes())
	s.mu.Unlock()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range js.KeyValueStoreNames(ctx).Name() {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			en, err := kv.Get(ctx, k)
			if err == nil {
				check("KV "+name+" "+k, en.Value())
			}
		}
	}
	check("platform logs", []byte(e.logs.String()))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// newNamespace makes a namespace and returns its credential.
func (e *env) newNamespace(t *testing.T, ns string) string {
	t.Helper()
	u, k, err := e.p.Gateway.CreateNamespace(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return u + ":" + k
}
