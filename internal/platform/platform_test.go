package platform_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// enclavePath is the runtime binary built once by TestMain.
var enclavePath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clemmys-platform-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enclavePath = filepath.Join(dir, "clemmys-enclave")
	cmd := exec.Command("go", "build", "-trimpath", "-o", enclavePath, "./cmd/clemmys-enclave")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build enclave runtime: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a running platform and an HTTPS client for it.
type env struct {
	t       testing.TB
	p       *platform.Platform
	dataDir string
	logs    *syncBuffer
	client  *http.Client
}

func start(t testing.TB, dataDir string) *env { return startWith(t, dataDir, nil) }

// startWith starts a platform; opt (optional) adjusts its configuration.
func startWith(t testing.TB, dataDir string, opt func(*platform.Config)) *env {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := platform.Config{
		DataDir:     dataDir,
		Addr:        "127.0.0.1:0",
		EnclavePath: enclavePath,
		Log:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Tests opt in to the whisk.system catalog: installing it adds
		// about 1.5 s to a first start (building and deploying its
		// functions).
		SkipCatalog: true,
	}
	if opt != nil {
		opt(&cfg)
	}
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start platform: %v\n%s", err, logs.String())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.Gateway.CertPEM()) {
		t.Fatal("gateway certificate does not parse")
	}
	e := &env{t: t, p: p, dataDir: dataDir, logs: logs, client: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}}
	t.Cleanup(func() {
		t0 := time.Now()
		p.Stop()
		if d := time.Since(t0); d > 15*time.Second {
			// Stop waits for work in flight; a slow one is worth a look.
			l := logs.String()
			t.Logf("Stop took %v; the end of the platform's log:\n%s", d, l[max(0, len(l)-8000):])
		}
	})
	return e
}

// call performs an API request as auth ("uuid:key") and decodes the JSON
// answer into out (if non-nil). It returns the status and the response.
func (e *env) call(auth, method, path string, body any, out any) (int, http.Header) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.p.APIHost()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		u, k, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, k)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: status %d, body %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, resp.Header
}

func (e *env) guest() string { return e.p.GuestAuth }

// deploy puts an action with the given wasm module and limits.
func (e *env) deploy(auth, name string, wasm []byte, limits map[string]any) {
	e.t.Helper()
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(wasm)}}
	if limits != nil {
		body["limits"] = limits
	}
	var got map[string]any
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, &got); st != http.StatusOK {
		e.t.Fatalf("deploy %s: status %d: %v", name, st, got)
	}
}

// waitActivation polls an activation until it is recorded.
func (e *env) waitActivation(auth, id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var act map[string]any
		st, _ := e.call(auth, "GET", "/api/v1/namespaces/_/activations/"+id, nil, &act)
		if st == http.StatusOK {
			return act
		}
		if st != http.StatusNotFound {
			e.t.Fatalf("get activation: status %d: %v", st, act)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("activation %s never completed", id)
	return nil
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func TestEndToEnd(t *testing.T) {
	e := start(t, t.TempDir())
	hello := wasmbuild.MustBuild(t, "examples/hello")
	g := e.guest()

	// wskprops written with the guest credential.
	props, err := os.ReadFile(e.p.WskpropsPath())
	if err != nil || !strings.Contains(string(props), "AUTH="+g) || !strings.Contains(string(props), "APIHOST="+e.p.APIHost()) {
		t.Fatalf("wskprops: %q, %v", props, err)
	}
	var nss []string
	if st, _ := e.call(g, "GET", "/api/v1/namespaces", nil, &nss); st != 200 || len(nss) != 1 || nss[0] != "guest" {
		t.Fatalf("namespaces: %d %v", st, nss)
	}

	e.deploy(g, "hello", hello, nil)
	var a map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/guest/actions/hello", nil, &a); st != 200 || a["name"] != "hello" || a["version"] != "0.0.1" {
		t.Fatalf("get action: %d %v", st, a)
	}
	var list []map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/actions", nil, &list); st != 200 || len(list) != 1 {
		t.Fatalf("list actions: %d %v", st, list)
	}
	// Deploying again without overwrite is a conflict.
	var eb errorBody
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(hello)}}
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/hello", body, &eb); st != http.StatusConflict || eb.Error == "" || eb.Code == "" {
		t.Fatalf("re-deploy without overwrite: %d %+v", st, eb)
	}

	// Blocking, result only: cold then warm.
	for i, name := range []string{"clemmys", "again"} {
		var res map[string]any
		t0 := time.Now()
		st, hdr := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": name}, &res)
		t.Logf("invoke %d (%s): %v", i, map[bool]string{true: "cold", false: "warm"}[i == 0], time.Since(t0))
		if st != 200 || res["greeting"] != "Hello "+name+"!" {
			t.Fatalf("invoke: %d %v", st, res)
		}
		if len(hdr.Get("x-openwhisk-activation-id")) != 32 {
			t.Fatalf("missing activation id header: %v", hdr)
		}
	}

	// Blocking, full activation.
	var act map[string]any
	st, hdr := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", nil, &act)
	if st != 200 {
		t.Fatalf("blocking invoke: %d %v", st, act)
	}
	resp, _ := act["response"].(map[string]any)
	result, _ := resp["result"].(map[string]any)
	if resp["success"] != true || resp["status"] != "success" || result["greeting"] != "Hello world!" {
		t.Fatalf("activation response: %v", act)
	}
	if act["activationId"] != hdr.Get("x-openwhisk-activation-id") {
		t.Fatalf("activation id %v, header %q", act["activationId"], hdr.Get("x-openwhisk-activation-id"))
	}
	logs, _ := act["logs"].([]any)
	if len(logs) != 1 || !strings.HasSuffix(logs[0].(string), "stderr: hello: greeting world") {
		t.Fatalf("logs: %v", act["logs"])
	}

	// Non-blocking: 202 with the id, then the record.
	var accepted map[string]string
	st, hdr = e.call(g, "POST", "/api/v1/namespaces/_/actions/hello", map[string]any{"name": "async"}, &accepted)
	id := accepted["activationId"]
	if st != http.StatusAccepted || len(id) != 32 || hdr.Get("x-openwhisk-activation-id") != id {
		t.Fatalf("non-blocking invoke: %d %v %v", st, accepted, hdr)
	}
	rec := e.waitActivation(g, id)
	if rec["name"] != "hello" || rec["namespace"] != "guest" || rec["activationId"] != id {
		t.Fatalf("record: %v", rec)
	}
	var rr map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+id+"/result", nil, &rr); st != 200 || rr["success"] != true ||
		rr["result"].(map[string]any)["greeting"] != "Hello async!" {
		t.Fatalf("result: %d %v", st, rr)
	}
	var lr map[string][]string
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+id+"/logs", nil, &lr); st != 200 || len(lr["logs"]) != 1 ||
		!strings.Contains(lr["logs"][0], "hello: greeting async") {
		t.Fatalf("logs: %d %v", st, lr)
	}
	var acts []map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations?limit=2", nil, &acts); st != 200 || len(acts) != 2 || acts[0]["activationId"] != id {
		t.Fatalf("activation list (newest first): %d %v", st, acts)
	}
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations?name=hello&docs=true", nil, &acts); st != 200 || len(acts) != 4 {
		t.Fatalf("activation list by name with docs: %d, %d records", st, len(acts))
	}
	if acts[0]["response"] == nil {
		t.Fatalf("docs=true should return full records: %v", acts[0])
	}

	// Metrics of the gateway and the controller, for operators: the three
	// blocking activations went the warm path (gateway → invoker), which
	// the controller counts from the invoker's heartbeats; the
	// non-blocking one went through the controller.
	var metrics string
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp2, err := e.client.Get(e.p.APIHost() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp2.Body, 1<<20))
		resp2.Body.Close()
		if metrics = string(b); strings.Contains(metrics, `clemmys_controller_direct_activations_total{status="success"} 3`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range []string{"clemmys_gateway_requests_total", `clemmys_controller_direct_activations_total{status="success"} 3`,
		`clemmys_invoker_direct_total{outcome="recorded"} 3`, `clemmys_controller_activations_total{status="success"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// Delete.
	if st, _ := e.call(g, "DELETE", "/api/v1/namespaces/_/actions/hello", nil, nil); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", nil, &eb); st != 404 {
		t.Fatalf("invoke deleted action: %d %v", st, eb)
	}
}

// TestRestartKeepsState restarts the platform on the same data directory:
// actions, activations and the guest credential survive, and the action
// still runs (the KMS state and the sealed code came back).
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	e.deploy(e.guest(), "hello", wasmbuild.MustBuild(t, "examples/hello"), nil)
	var res map[string]any
	st, hdr := e.call(e.guest(), "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", nil, &res)
	if st != 200 {
		t.Fatalf("invoke: %d %v", st, res)
	}
	id := hdr.Get("x-openwhisk-activation-id")
	auth := e.guest()
	e.p.Stop()

	e2 := start(t, dir)
	if e2.guest() != auth {
		t.Fatalf("guest credential changed across restart")
	}
	if act := e2.waitActivation(auth, id); act["response"].(map[string]any)["success"] != true {
		t.Fatalf("activation after restart: %v", act)
	}
	st, _ = e2.call(auth, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": "restart"}, &res)
	if st != 200 || res["greeting"] != "Hello restart!" {
		t.Fatalf("invoke after restart: %d %v", st, res)
	}
}

// keyPair is a throwaway X25519 key, for forging requests.
func keyPair(t *testing.T) *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
