package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestMergeParams(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey(), seqMAC: newKeyedMAC(nil)}
	seal := func(name string, kvs ...wire.KeyValue) wire.SealedParams {
		s, err := g.sealParams(paramsAction, "guest", name, kvs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pkg := []wire.KeyValue{{Key: "a", Value: "pkg"}, {Key: "b", Value: "pkg"}, {Key: "c", Value: "pkg"}}
	act := &wire.Action{Namespace: "guest", Name: "p/x", Parameters: seal("p/x",
		wire.KeyValue{Key: "b", Value: "action"}, wire.KeyValue{Key: "n", Value: float64(7)},
		wire.KeyValue{Key: "obj", Value: map[string]any{"k": []any{"v"}}})}
	g.tagWeb(act)
	out, cerr := g.mergeParams(&target{action: act, inherited: pkg}, []byte(`{"c":"request","big":12345678901234567890}`))
	if cerr != nil {
		t.Fatal(cerr.msg)
	}
	// request > action > package; numbers of the payload are kept as sent.
	want := `{"a":"pkg","b":"action","big":12345678901234567890,"c":"request","n":7,"obj":{"k":["v"]}}`
	if string(out) != want {
		t.Fatalf("merged %s\nwant   %s", out, want)
	}
	// Without defaults the payload goes through untouched.
	plain := &wire.Action{Namespace: "guest", Name: "plain"}
	g.tagWeb(plain)
	if out, cerr := g.mergeParams(&target{action: plain}, []byte(`{"z": 1}`)); cerr != nil || string(out) != `{"z": 1}` {
		t.Fatalf("%s %v", out, cerr)
	}
	// Parameters sealed for another action do not open: 502.
	moved := &wire.Action{Namespace: "guest", Name: "other", Parameters: act.Parameters}
	g.tagWeb(moved)
	if _, cerr := g.mergeParams(&target{action: moved}, []byte(`{}`)); cerr == nil || cerr.status != http.StatusBadGateway {
		t.Fatalf("moved parameters: %+v", cerr)
	}

	// final: true makes every default final (inherited ones too); a list
	// names them.
	for _, c := range []struct {
		final   any
		payload string
		refused bool
	}{
		{true, `{"b":1}`, true},
		{true, `{"a":1}`, true},
		{true, `{"zz":1}`, false},
		{false, `{"b":1}`, false},
		{[]any{"n"}, `{"n":1}`, true},
		{[]any{"n"}, `{"b":1}`, false},
	} {
		a := *act
		a.Annotations = []wire.KeyValue{{Key: "final", Value: c.final}}
		g.tagWeb(&a)
		_, cerr := g.mergeParams(&target{action: &a, inherited: pkg}, []byte(c.payload))
		if refused := cerr != nil; refused != c.refused || (refused && (cerr.status != http.StatusBadRequest || cerr.msg != msgFinalParams)) {
			t.Errorf("final %v, payload %s: %+v", c.final, c.payload, cerr)
		}
	}
}

// TestMergeParamsAnnotationTag: "final" is honoured only with the
// annotations the gateway tagged: a controller that drops or adds it, or
// an action without a tag, is refused (502) before anything is merged.
func TestMergeParamsAnnotationTag(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey(), seqMAC: newKeyedMAC([]byte("k"))}
	final := []wire.KeyValue{{Key: "final", Value: true}}
	tagged := func(anns []wire.KeyValue) *wire.Action {
		a := &wire.Action{Namespace: "guest", Name: "x", Annotations: anns, Generation: 5}
		g.tagWeb(a)
		return a
	}
	dropped := tagged(final)
	dropped.Annotations = nil
	added := tagged(nil)
	added.Annotations = final
	untagged := &wire.Action{Namespace: "guest", Name: "x"}
	regen := tagged(final)
	regen.Generation = 4
	for name, a := range map[string]*wire.Action{"dropped final": dropped, "added final": added, "untagged": untagged, "other generation": regen} {
		if _, cerr := g.mergeParams(&target{action: a}, []byte(`{}`)); cerr == nil || cerr.status != http.StatusBadGateway || cerr.msg != msgAnnotationsTampered {
			t.Errorf("%s: %+v", name, cerr)
		}
	}
	if _, cerr := g.mergeParams(&target{action: tagged(final)}, []byte(`{}`)); cerr != nil {
		t.Fatal(cerr.msg)
	}
}

func TestMergeKV(t *testing.T) {
	got := mergeKV([]wire.KeyValue{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, []wire.KeyValue{{Key: "b", Value: 3}, {Key: "c", Value: 4}})
	if len(got) != 3 || got[1].Value != 3 || got[2].Key != "c" {
		t.Fatalf("%v", got)
	}
}

func TestActionNames(t *testing.T) {
	for _, c := range []struct {
		in        string
		pkg, name string
		ok        bool
	}{
		{"a", "", "a", true}, {"p/a", "p", "a", true}, {"p/a/b", "", "", false}, {"/a", "", "", false}, {"", "", "", false}, {"p/", "", "", false},
	} {
		pkg, name, ok := splitAction(c.in)
		if ok != c.ok || (ok && (pkg != c.pkg || name != c.name)) {
			t.Errorf("splitAction(%q) = %q %q %v", c.in, pkg, name, ok)
		}
	}
	for _, c := range []struct {
		in       string
		ns, name string
		ok       bool
	}{
		{"/guest/a", "guest", "a", true}, {"/guest/p/a", "guest", "p/a", true}, {"guest/a", "", "", false}, {"/guest", "", "", false}, {"/g/p/a/b", "", "", false},
	} {
		ns, name, ok := ruleAction(c.in)
		if ok != c.ok || (ok && (ns != c.ns || name != c.name)) {
			t.Errorf("ruleAction(%q) = %q %q %v", c.in, ns, name, ok)
		}
	}
	req := func(ns, pkg, name string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), ctxNamespace, "guest"))
		r.SetPathValue("ns", ns)
		r.SetPathValue("pkg", pkg)
		r.SetPathValue("name", name)
		return r
	}
	for _, c := range []struct {
		r        *http.Request
		ns, name string
		ok       bool
	}{
		{req("_", "", "a"), "guest", "a", true},
		{req("alice", "p", "a"), "alice", "p/a", true},
		{req("_", "", "p/a"), "guest", "p/a", true}, // {name} = "p%2Fa"
		{req("_", "p", "a/b"), "", "", false},
		{req("_", "", "bad name "), "", "", false},
	} {
		ns, name, ok := actionPath(c.r)
		if ok != c.ok || (ok && (ns != c.ns || name != c.name)) {
			t.Errorf("actionPath(%v) = %q %q %v", c.r.PathValue("name"), ns, name, ok)
		}
	}
}

// An update merges with the stored action: absent fields keep their
// values, limits merge field by field.
func TestMergeMeta(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey(), seqMAC: newKeyedMAC(make([]byte, 32)), cfg: Config{Now: time.Now, KMS: &stubKMS{}}, fresh: newFreshness(), log: slog.New(slog.DiscardHandler)}
	sealed, _ := g.sealParams(paramsAction, "guest", "a", []wire.KeyValue{{Key: "k", Value: "v"}})
	prev := &wire.Action{
		Namespace: "guest", Name: "a", Publish: true, Parameters: sealed,
		Limits:      wire.Limits{TimeoutMs: 1000, MemoryMB: 256, LogsMB: 10, Concurrency: 1},
		Annotations: []wire.KeyValue{{Key: "description", Value: "old"}},
	}
	var body actionBody
	if err := json.Unmarshal([]byte(`{"limits":{"memory":128}}`), &body); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("PUT", "/", nil)
	a, ok := g.mergeMeta(httptest.NewRecorder(), r, "guest", "a", &body, prev)
	if !ok || !a.Publish || !bytes.Equal(a.Parameters, sealed) || len(a.Annotations) != 1 ||
		a.Limits != (wire.Limits{TimeoutMs: 1000, MemoryMB: 128, LogsMB: 10, Concurrency: 1}) {
		t.Fatalf("merged %+v", a)
	}
	body = actionBody{}
	if err := json.Unmarshal([]byte(`{"publish":false,"annotations":[],"parameters":[{"key":"x","value":1}]}`), &body); err != nil {
		t.Fatal(err)
	}
	a, ok = g.mergeMeta(httptest.NewRecorder(), r, "guest", "a", &body, prev)
	params, err := g.openParams(paramsAction, "guest", "a", a.Parameters)
	if !ok || a.Publish || len(a.Annotations) != 0 || err != nil || len(params) != 1 || params[0].Key != "x" {
		t.Fatalf("replaced %+v %v %v", a, params, err)
	}
	for _, raw := range []string{`{"parameters":[{"key":"","value":1}]}`, `{"annotations":[{"key":"","value":1}]}`, `{"limits":{"timeout":5}}`} {
		var b actionBody
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			t.Fatal(err)
		}
		if checkMeta(&b) == "" {
			t.Errorf("%s accepted", raw)
		}
	}
}

// A trigger activation is sealed like a function's: the gateway opens it
// with the request secret, shows its logs as raw lines, and nothing of it
// is readable without the gateway secret.
func TestTriggerRecord(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey()}
	now := time.Now()
	reqID := g.newRequestID(now, "guest")
	payload := []byte(`{"secret":"TRIGGER-PAYLOAD-SECRET"}`)
	logs := []string{`{"statusCode":0,"success":true,"activationId":"abc","rule":"guest/r","action":"guest/a"}`}
	res, sl, err := g.sealTriggerRecord("guest", "t", reqID, now, payload, logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{res, sl} {
		if bytes.Contains(b, []byte("TRIGGER-PAYLOAD-SECRET")) || bytes.Contains(b, []byte("guest/r")) {
			t.Fatal("trigger record data in plaintext")
		}
	}
	rec := &wire.Activation{ActivationID: hex.EncodeToString(reqID), Namespace: "guest", Name: "t", Subject: "guest",
		Start: now.UnixMilli(), End: now.UnixMilli(), Status: wire.StatusSuccess, Result: res, Logs: sl}
	v := g.openActivation(rec, [32]byte{}, "guest")
	if v.status != wire.StatusSuccess || string(v.result) != string(payload) || len(v.logs) != 1 || v.logs[0] != logs[0] {
		t.Fatalf("opened: %q %s %q", v.status, v.result, v.logs)
	}
	// Under another id, or by another gateway: not authenticated.
	other := *rec
	other.ActivationID = hex.EncodeToString(g.newRequestID(now, "guest"))
	if v := g.openActivation(&other, [32]byte{}, "guest"); v.status != wire.StatusInternalError {
		t.Fatalf("moved record: %q", v.status)
	}
	if v := (&Gateway{secret: envelope.NewKey()}).openActivation(rec, [32]byte{}, "guest"); v.status != wire.StatusInternalError {
		t.Fatalf("other gateway: %q", v.status)
	}
}

// A record is opened only for the namespace its request id was made for:
// not for the owner of the namespace it is filed under (an action of a
// public package invoked by another namespace), nor after the controller
// moved it.
func TestOpenActivationOnlyForInvoker(t *testing.T) {
	g, rec, _ := sealedRun(t, `{"mine":"INVOKER-DATA"}`, "log\n")
	for _, viewer := range []string{"bob", "alice"} {
		v := g.openActivation(rec, [32]byte{}, viewer)
		if strings.Contains(string(v.result), "INVOKER-DATA") || len(v.logs) != 0 || v.status != wire.StatusInternalError {
			t.Fatalf("%s saw %s %q", viewer, v.result, v.logs)
		}
	}
	if v := g.openActivation(rec, [32]byte{}, "guest"); v.status != wire.StatusSuccess || !strings.Contains(string(v.result), "INVOKER-DATA") {
		t.Fatalf("invoker: %q %s", v.status, v.result)
	}
}
