package platform_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// Distinctive secrets: in the function's code, in its input, in its output
// and in its log line. None may ever appear in plaintext on the bus, in the
// stores, on disk or in the platform's logs.
const (
	codeSecret   = "CODE-SECRET-b7e1c0de-5a1f-4e6d-9c2b-clemmys-spy" // internal/testfuncs/spy
	inputSecret  = "INPUT-SECRET-6c0ffee-42-clemmys-spy"
	outputSecret = "OUTPUT-SECRET-only-in-the-result"
	logSecret    = "LOG-SECRET"
)

// spy records every message published on the bus.
type spy struct {
	mu   sync.Mutex
	msgs int
	data bytes.Buffer
}

func (s *spy) add(m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs++
	s.data.WriteString(m.Subject)
	s.data.WriteByte(0)
	for k, vs := range m.Header {
		s.data.WriteString(k + ":" + strings.Join(vs, ","))
	}
	s.data.Write(m.Data)
	s.data.WriteByte(0)
}

// busSpy connects as the operator who reads the whole bus and records
// every message published on it; the connection closes with the test.
func (e *env) busSpy(t *testing.T) (*nats.Conn, *nats.Subscription, *spy) {
	t.Helper()
	nc, err := e.p.Bus.Connect("spy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s := &spy{}
	sub, err := nc.Subscribe(">", s.add)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	return nc, sub, s
}

func TestBusSpy(t *testing.T) {
	dataDir := t.TempDir()
	e := start(t, dataDir)
	wasm := wasmbuild.MustBuild(t, "internal/testfuncs/spy")
	if !bytes.Contains(wasm, []byte(codeSecret)) {
		t.Fatal("precondition: the spy module must carry the code secret in plaintext")
	}

	nc, _, s := e.busSpy(t)
	// Positive control: the spy does see what is published.
	if err := nc.Publish("clemmys.test.canary", []byte("SPY-CANARY")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	g := e.guest()
	e.deploy(g, "spy", wasm, nil)
	params := map[string]any{"input": inputSecret}
	var act map[string]any
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/spy?blocking=true", params, &act); st != 200 {
		t.Fatalf("invoke: %d %v", st, act)
	}
	// The owner sees everything in plaintext...
	res := act["response"].(map[string]any)["result"].(map[string]any)
	if res["code"] != codeSecret || res["echo"] != inputSecret || res["out"] != outputSecret {
		t.Fatalf("result: %v", res)
	}
	logs := act["logs"].([]any)
	if len(logs) != 1 || !strings.Contains(logs[0].(string), logSecret+" "+codeSecret+" "+inputSecret) {
		t.Fatalf("logs: %v", logs)
	}
	// ... also through a non-blocking invocation and the activation API.
	var accepted map[string]string
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/spy", params, &accepted); st != 202 {
		t.Fatalf("non-blocking invoke: %d", st)
	}
	rec := e.waitActivation(g, accepted["activationId"])
	if rec["response"].(map[string]any)["result"].(map[string]any)["echo"] != inputSecret {
		t.Fatalf("record: %v", rec)
	}
	var lr map[string][]string
	e.call(g, "GET", "/api/v1/namespaces/_/activations/"+accepted["activationId"]+"/logs", nil, &lr)
	if len(lr["logs"]) != 1 || !strings.Contains(lr["logs"][0], inputSecret) {
		t.Fatalf("logs: %v", lr)
	}
	// A sequence spy → echo → spy: secrets cross the controller between
	// steps, sealed.
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	e.deploySequence(g, "spyseq", "/_/spy", "/_/echo", "/_/spy")
	var sact map[string]any
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/spyseq?blocking=true", params, &sact); st != 200 {
		t.Fatalf("sequence: %d %v", st, sact)
	}
	sres := sact["response"].(map[string]any)["result"].(map[string]any)
	if sres["code"] != codeSecret || sres["out"] != outputSecret {
		t.Fatalf("sequence result: %v", sres)
	}
	if comps, _ := sact["logs"].([]any); len(comps) != 3 {
		t.Fatalf("sequence components: %v", sact["logs"])
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the subscription drain

	secrets := []string{codeSecret, inputSecret, outputSecret, logSecret}
	check := func(where string, b []byte) {
		t.Helper()
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("%s contains %q in plaintext", where, sec)
			}
		}
	}

	s.mu.Lock()
	t.Logf("bus: %d messages, %d bytes observed", s.msgs, s.data.Len())
	if s.msgs < 10 {
		t.Errorf("the spy saw only %d messages: it is not seeing the traffic", s.msgs)
	}
	if !bytes.Contains(s.data.Bytes(), []byte("SPY-CANARY")) {
		t.Error("the spy missed the canary message")
	}
	check("bus traffic", s.data.Bytes())
	s.mu.Unlock()

	// Every value of every KV bucket (with history) and every object.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var kvValues, objects int
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
			hist, err := kv.History(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range hist {
				kvValues++
				check("KV "+name+" "+k, en.Value())
			}
		}
	}
	for name := range js.ObjectStoreNames(ctx).Name() {
		obs, err := js.ObjectStore(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		infos, err := obs.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range infos {
			b, err := obs.GetBytes(ctx, info.Name)
			if err != nil {
				t.Fatal(err)
			}
			objects++
			check("object "+name+"/"+info.Name, b)
		}
	}
	t.Logf("stores: %d KV values, %d objects", kvValues, objects)
	if kvValues == 0 || objects == 0 {
		t.Errorf("nothing stored? %d KV values, %d objects", kvValues, objects)
	}

	// The platform's own logs.
	check("platform logs", []byte(e.logs.String()))

	// Everything on disk, after a clean stop has flushed the stores.
	e.p.Stop()
	var files int
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		check("file "+strings.TrimPrefix(path, dataDir), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk: %d files scanned", files)
}
