package gateway

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// sealedRun plays gateway and runtime for one request to a one-step chain
// and returns the gateway (holding the gateway secret) and the record the
// controller would store.
func sealedRun(t testing.TB, output string, logs string) (*Gateway, *wire.Activation, [32]byte) {
	t.Helper()
	kem, err := envelope.SuiteX25519.KEM()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{secret: envelope.NewKey()}
	fid := bytes.Repeat([]byte{7}, envelope.FunctionIDSize)
	cd := sha256.Sum256([]byte("module"))
	now := time.Now()
	reqID := g.newRequestID(now, "guest")
	h := envelope.Header{
		Version: envelope.Version, Suite: envelope.SuiteX25519, RequestID: reqID, Namespace: "guest",
		Chain:  []envelope.Step{{Name: "/guest/hello", FunctionID: fid, CodeDigest: cd[:], KeyVersion: 1, Runtime: testRuntime}},
		Expiry: now.Add(time.Minute).UnixMilli(),
		Limits: envelope.Limits{TimeoutMs: 1000, MemoryMB: 128, LogsKB: 10},
	}
	digest, err := h.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ak := envelope.AuthKey(g.secret, "guest")
	env, err := envelope.Seal(h, envelope.RequestSecret(g.secret, reqID), ak, []hpke.PublicKey{priv.PublicKey()}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	opened, err := envelope.Open(env, &envelope.FunctionIdentity{FunctionID: fid, CodeDigest: cd[:], KeyVersion: 1, PrivateKey: priv, AuthKey: ak, Runtime: testRuntime}, now)
	if err != nil {
		t.Fatal(err)
	}
	out, err := opened.SealOutput([]byte(output))
	if err != nil {
		t.Fatal(err)
	}
	ob, err := out.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sl, err := opened.SealLogs([]byte(logs))
	if err != nil {
		t.Fatal(err)
	}
	status := wire.StatusSuccess
	if hasErrorField([]byte(output)) {
		status = wire.StatusApplicationError
	}
	receipt := testReceipt(t, opened, wire.Receipt{Version: wire.ReceiptVersion, FunctionID: fid, CodeDigest: cd[:], KeyVersion: 1,
		Namespace: "guest", Action: "hello", RequestID: reqID, Step: 0, Steps: 1, HeaderDigest: digest[:],
		OutputDigest: wire.ReceiptOutputDigest([]byte(output)), LogsDigest: wire.ReceiptLogsDigest([]byte(logs)),
		Status: status, RuntimeID: testRuntime})
	return g, &wire.Activation{
		ActivationID: hex.EncodeToString(reqID), Namespace: "guest", Name: "hello",
		Start: now.UnixMilli(), End: now.UnixMilli() + 5, Status: status,
		Result: ob, Logs: sl, Receipts: [][]byte{receipt},
	}, digest
}

// testReceipt seals a receipt as the runtime does (the gateway does not
// check the signature; the owner does).
func testReceipt(t testing.TB, o *envelope.Opened, rc wire.Receipt) []byte {
	t.Helper()
	body, err := bus.Marshal(&rc)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := bus.Marshal(&wire.SignedReceipt{Receipt: body, Sig: make([]byte, 64)})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := o.SealReceipt(signed)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func TestOpenActivation(t *testing.T) {
	g, rec, digest := sealedRun(t, `{"greeting":"Hello world!"}`, "line one\nline two\n")
	v := g.openActivation(rec, digest, "guest")
	if v.status != wire.StatusSuccess || string(v.result) != `{"greeting":"Hello world!"}` {
		t.Fatalf("status %q result %s", v.status, v.result)
	}
	if len(v.logs) != 2 || !strings.HasSuffix(v.logs[0], " stderr: line one") || !strings.HasSuffix(v.logs[1], " stderr: line two") {
		t.Fatalf("logs %q", v.logs)
	}
	if v := g.openActivation(rec, [32]byte{}, "guest"); v.status != wire.StatusSuccess {
		t.Fatalf("stored record (no digest at hand): %q", v.status)
	}
}

// Whatever the controller changes in a record, the owner never sees data
// the gateway cannot authenticate: the activation turns into a whisk
// internal error.
func TestOpenActivationRefusesTampering(t *testing.T) {
	g, rec, digest := sealedRun(t, `{"ok":true}`, "log\n")
	_, otherRec, _ := sealedRun(t, `{"ok":"other"}`, "other log\n")
	cases := []struct {
		name   string
		mutate func(r *wire.Activation)
		want   [32]byte
		logs   bool // logs still authentic
	}{
		{"result body bit flipped", func(r *wire.Activation) {
			e, err := envelope.Unmarshal(r.Result)
			if err != nil {
				t.Fatal(err)
			}
			e.Body[len(e.Body)-1] ^= 1
			if r.Result, err = e.Marshal(); err != nil {
				t.Fatal(err)
			}
		}, digest, true},
		{"result truncated", func(r *wire.Activation) { r.Result = r.Result[:len(r.Result)-3] }, digest, true},
		{"another request's result", func(r *wire.Activation) { r.Result = otherRec.Result }, [32]byte{}, true},
		{"another activation id", func(r *wire.Activation) {
			id := []byte(r.ActivationID)
			if id[31] == '0' {
				id[31] = '1'
			} else {
				id[31] = '0'
			}
			r.ActivationID = string(id)
		}, [32]byte{}, false},
		{"another namespace", func(r *wire.Activation) { r.Namespace = "alice" }, [32]byte{}, false},
		{"not a result", func(r *wire.Activation) { r.Result = []byte("plaintext") }, [32]byte{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := *rec
			r.Result = bytes.Clone(rec.Result)
			c.mutate(&r)
			v := g.openActivation(&r, c.want, r.Namespace)
			if v.status != wire.StatusInternalError ||
				!(bytes.Contains(v.result, []byte(msgUnauthenticatedResult)) || bytes.Contains(v.result, []byte(msgOtherSubject))) {
				t.Fatalf("status %q result %s", v.status, v.result)
			}
			if bytes.Contains(v.result, []byte("other")) {
				t.Fatal("another request's data was shown")
			}
		})
	}
	t.Run("logs tampered", func(t *testing.T) {
		r := *rec
		r.Logs = bytes.Clone(rec.Logs)
		r.Logs[len(r.Logs)-1] ^= 1
		v := g.openActivation(&r, digest, "guest")
		if len(v.logs) != 1 || v.logs[0] != msgUnauthenticatedLogs {
			t.Fatalf("logs %q", v.logs)
		}
	})
	t.Run("another request's logs", func(t *testing.T) {
		r := *rec
		r.Logs = otherRec.Logs
		v := g.openActivation(&r, digest, "guest")
		if len(v.logs) != 1 || v.logs[0] != msgUnauthenticatedLogs {
			t.Fatalf("logs %q", v.logs)
		}
	})
}

func TestRequestIDsAreTimeOrdered(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey()}
	t0 := time.UnixMilli(1_700_000_000_000)
	a := hex.EncodeToString(g.newRequestID(t0, "guest"))
	b := hex.EncodeToString(g.newRequestID(t0.Add(time.Millisecond), "guest"))
	c := hex.EncodeToString(g.newRequestID(t0.Add(time.Millisecond), "guest"))
	if !(a < b) || !(a < c) || b == c {
		t.Fatalf("ids %s %s %s", a, b, c)
	}
}

// A request id is bound to the namespace it was made for.
func TestRequestIDBinding(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey()}
	id := g.newRequestID(time.Now(), "guest")
	if len(id) != envelope.RequestIDSize || !g.requestFor(id, "guest") {
		t.Fatalf("id %x not bound to guest", id)
	}
	if g.requestFor(id, "alice") || (&Gateway{secret: envelope.NewKey()}).requestFor(id, "guest") || g.requestFor(id[:15], "guest") {
		t.Fatal("id bound to another namespace or gateway secret")
	}
	for i := range id {
		flipped := bytes.Clone(id)
		flipped[i] ^= 1
		if g.requestFor(flipped, "guest") {
			t.Fatalf("flipped byte %d still bound", i)
		}
	}
}

func TestDecodeModule(t *testing.T) {
	wasm := append(bytes.Clone(wasmHeader), 1, 2, 3)
	b64 := base64.StdEncoding.EncodeToString(wasm)
	str := func(s string) *string { return &s }
	cases := []struct {
		name string
		exec *execBody
		msg  string
	}{
		{"ok", &execBody{Kind: "wasm", Code: str(b64)}, ""},
		{"ok unpadded", &execBody{Kind: "wasm", Code: str(base64.RawStdEncoding.EncodeToString(wasm))}, ""},
		{"nil", nil, "must have an exec"},
		{"no kind", &execBody{Code: str(b64)}, "kind is required"},
		{"sequence (handled by putSequence)", &execBody{Kind: "sequence"}, "Unsupported action kind"},
		{"node", &execBody{Kind: "nodejs:20", Code: str(b64)}, "Unsupported action kind"},
		{"no code", &execBody{Kind: "wasm"}, "code is required"},
		{"bad base64", &execBody{Kind: "wasm", Code: str("!!!")}, "not valid base64"},
		{"text", &execBody{Kind: "wasm", Code: str(base64.StdEncoding.EncodeToString([]byte("function main(){}")))}, "not a WebAssembly module"},
		{"wasm version 2", &execBody{Kind: "wasm", Code: str(base64.StdEncoding.EncodeToString([]byte{0, 'a', 's', 'm', 2, 0, 0, 0}))}, "not a WebAssembly module"},
		{"too large", &execBody{Kind: "wasm", Code: str(strings.Repeat("A", MaxCodeBytes/3*4+8))}, msgCodeTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, msg := decodeModule(c.exec)
			if c.msg == "" {
				if msg != "" || !bytes.Equal(code, wasm) {
					t.Fatalf("msg %q code %x", msg, code)
				}
				return
			}
			if !strings.Contains(msg, c.msg) || code != nil {
				t.Fatalf("msg %q, want %q", msg, c.msg)
			}
		})
	}
}

func TestCheckLimits(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	cases := []struct {
		l    *limitsBody
		want wire.Limits
		bad  bool
	}{
		{nil, wire.Limits{}, false},
		{&limitsBody{Timeout: i(100), Memory: i(128), Logs: i(0), Concurrency: i(1)}, wire.Limits{TimeoutMs: 100, MemoryMB: 128, Concurrency: 1}, false},
		{&limitsBody{Timeout: i(300000), Memory: i(512), Logs: i(10)}, wire.Limits{TimeoutMs: 300000, MemoryMB: 512, LogsMB: 10}, false},
		{&limitsBody{Timeout: i(99)}, wire.Limits{}, true},
		{&limitsBody{Timeout: i(300001)}, wire.Limits{}, true},
		{&limitsBody{Memory: i(127)}, wire.Limits{}, true},
		{&limitsBody{Memory: i(513)}, wire.Limits{}, true},
		{&limitsBody{Logs: i(-1)}, wire.Limits{}, true},
		{&limitsBody{Logs: i(11)}, wire.Limits{}, true},
		{&limitsBody{Concurrency: i(0)}, wire.Limits{}, true},
	}
	for i, c := range cases {
		got, msg := checkLimits(c.l)
		if (msg != "") != c.bad || (!c.bad && got != c.want) {
			t.Errorf("case %d: %+v %q", i, got, msg)
		}
	}
}

// FuzzActionBody feeds arbitrary PUT bodies through the parsing path.
func FuzzActionBody(f *testing.F) {
	f.Add([]byte(`{"exec":{"kind":"wasm","code":"AGFzbQEAAAA="},"limits":{"timeout":1000}}`))
	f.Add([]byte(`{"exec":{"kind":"sequence","components":["/a/b"]}}`))
	f.Add([]byte(`{"exec":null,"annotations":[{"key":"k","value":{"a":[1,2]}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var body actionBody
		if json.Unmarshal(raw, &body) != nil {
			return
		}
		code, msg := decodeModule(body.Exec)
		if msg == "" && (len(code) > MaxCodeBytes || !bytes.HasPrefix(code, wasmHeader)) {
			t.Fatalf("accepted code that is not a bounded wasm module: %d bytes", len(code))
		}
		if l, msg := checkLimits(body.Limits); msg == "" && (l.TimeoutMs > maxTimeoutMs || l.MemoryMB > maxMemoryMB || l.LogsMB > maxLogsMB) {
			t.Fatalf("accepted limits out of range: %+v", l)
		}
		if body.Annotations != nil {
			_ = renderKVs(*body.Annotations)
		}
		_ = checkMeta(&body)
	})
}

// FuzzOpenActivation: arbitrary stored records never panic the gateway and
// never produce a "success" it cannot authenticate.
func FuzzOpenActivation(f *testing.F) {
	g, rec, _ := sealedRun(f, `{"a":1}`, "x\n")
	f.Add(rec.ActivationID, rec.Result, rec.Logs, []byte(nil))
	f.Add(rec.ActivationID, []byte(nil), rec.Logs, rec.Result)
	f.Fuzz(func(t *testing.T, id string, result, logs, env []byte) {
		r := &wire.Activation{ActivationID: id, Namespace: "guest", Status: wire.StatusSuccess, End: 1, Result: result, Logs: logs, Envelope: env}
		v := g.openActivation(r, [32]byte{}, "guest")
		if v.status == wire.StatusSuccess && !(id == rec.ActivationID && bytes.Equal(result, rec.Result)) {
			t.Fatalf("unauthenticated success: %s", v.result)
		}
		if !json.Valid(v.result) {
			t.Fatalf("invalid JSON result %q", v.result)
		}
	})
}

// testRuntime is the runtime the tests' envelopes designate.
var testRuntime = envelope.RuntimeID([]byte("test runtime key"))
