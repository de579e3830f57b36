package platform_test

// Regression tests for defects found by attacking a running platform from
// outside (REST, and a client on the bus).

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestConcurrentOverwrite: many concurrent overwrites of one action leave
// it invokable. (The gateway recorded each new version as the newest
// before the controller stored it; when the newest lost the race with 409,
// every invocation answered 502 "outdated version" from then on.)
func TestConcurrentOverwrite(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e.deploy(g, "hello", hello, nil)
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(hello)}}
	for round := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for range 12 {
			wg.Go(func() {
				var out map[string]any
				st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/hello?overwrite=true", body, &out)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			})
		}
		wg.Wait()
		t.Logf("round %d: statuses %v", round, statuses)
		for st := range statuses {
			if st != http.StatusOK && st != http.StatusConflict {
				t.Fatalf("round %d: a concurrent overwrite answered %d", round, st)
			}
		}
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": "race"}, &res); st != 200 || res["greeting"] != "Hello race!" {
			t.Fatalf("round %d: invoke after concurrent overwrites: %d %v", round, st, res)
		}
	}
}

// secretImportModule is a WASI command that imports SECRETMOD.SECRETFN,
// which the sandbox does not provide: those names are the function's code.
var secretImportModule = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" +
	"\x02\x16\x01\x09SECRETMOD\x08SECRETFN\x00\x00" +
	"\x03\x02\x01\x00" +
	"\x05\x03\x01\x00\x01" +
	"\x07\x13\x02\x06_start\x00\x01\x06memory\x02\x00" +
	"\x0a\x04\x01\x02\x00\x0b")

// TestModuleValidatedAtDeploy: a module the runtime cannot run is refused
// at deploy, to its owner, with the reason.
func TestModuleValidatedAtDeploy(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	hello := wasmbuild.MustBuild(t, "examples/hello")
	noStart := bytes.Replace(bytes.Clone(secretImportModule), []byte("_start"), []byte("_other"), 1)
	for _, tc := range []struct {
		name string
		wasm []byte
		msg  string
	}{
		{"missing import", secretImportModule, `import "SECRETFN" from module "SECRETMOD"`},
		{"truncated", hello[:len(hello)/2], "not a valid WebAssembly function"},
		{"no entry point", noStart, `"_start"`},
	} {
		var eb errorBody
		body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(tc.wasm)}}
		if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/bad", body, &eb); st != 400 || !strings.Contains(eb.Error, tc.msg) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", tc.name, st, eb.Error, tc.msg)
		}
	}
	var eb errorBody
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/actions/bad", nil, &eb); st != 404 {
		t.Errorf("a refused module was stored: %d", st)
	}
}

// TestCompileErrorLeaksNothing: a module that reached the runtime although
// the runtime cannot compile it (deployed by a gateway that did not check)
// fails with a fixed category: nothing derived from its code crosses the
// bus or lands in the store in plaintext.
func TestCompileErrorLeaksNothing(t *testing.T) {
	e := startWith(t, t.TempDir(), func(c *platform.Config) { c.SkipDeployValidation = true })
	nc, sub, s := e.busSpy(t)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	g := e.guest()
	e.deploy(g, "secret", secretImportModule, nil)
	var act map[string]any
	st, hdr := e.call(g, "POST", "/api/v1/namespaces/_/actions/secret?blocking=true", map[string]any{}, &act)
	if st == 200 {
		t.Fatalf("a module with a missing import ran: %v", act)
	}
	rec := e.waitActivation(g, hdr.Get("x-openwhisk-activation-id"))
	res := rec["response"].(map[string]any)
	if res["status"] != "action developer error" {
		t.Errorf("status %v, want a developer error", res["status"])
	}
	if msg := fmt.Sprint(res["result"]); !strings.Contains(msg, "not a module this runtime can run") {
		t.Errorf("result %v, want the fixed category", msg)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = sub.Drain()
	s.mu.Lock()
	seen := s.data.Bytes()
	s.mu.Unlock()
	if !bytes.Contains(seen, []byte("not a module this runtime can run")) {
		t.Fatal("the spy did not see the refusal: it sees nothing")
	}
	for _, secret := range []string{"SECRETMOD", "SECRETFN"} {
		if bytes.Contains(seen, []byte(secret)) {
			t.Errorf("%s crossed the bus in plaintext", secret)
		}
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("%s is in the platform's logs", secret)
		}
	}
	checkSealedAtRest(t, e, "SECRETMOD", "SECRETFN")
}

// TestOddEntitiesDoNotBreakListings: annotations and parameters are
// bounded when written to what every reader accepts, so no entity makes a
// listing fail, for its owner or for other namespaces (an annotation 28
// levels deep used to be stored, and then every listing including it, and
// every other namespace's read of the public package holding it,
// answered 500).
func TestOddEntitiesDoNotBreakListings(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	hello := base64.StdEncoding.EncodeToString(wasmbuild.MustBuild(t, "examples/hello"))
	deep := func(n int) any {
		var v any = "bottom"
		for range n {
			v = map[string]any{"a": v}
		}
		return v
	}
	wide := map[string]any{}
	for i := range 200 {
		wide[fmt.Sprint("k", i)] = []any{i, nil, true, "x", 1.5}
	}
	odd := []struct {
		name   string
		kvs    []map[string]any
		status int
	}{
		{"deep", kvs("d", deep(28)), 400},
		{"deep array", kvs("d", []any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{}}}}}}}}}}}}}}}}}), 400},
		{"at the limit", kvs("d", deep(16)), 200},
		{"wide", kvs("w", wide), 200},
		{"unicode and odd keys", kvs("ключ 🔑", "значение", "a.b/c", nil, "$x", 1e300), 200},
		{"huge string", kvs("s", strings.Repeat("x", 70<<10)), 400},
	}
	paths := map[string]func(name string, kv []map[string]any, param bool) (string, any){
		"actions": func(name string, kv []map[string]any, param bool) (string, any) {
			b := map[string]any{"exec": map[string]any{"kind": "wasm", "code": hello}}
			b[field(param)] = kv
			return "/api/v1/namespaces/_/actions/" + name, b
		},
		"packages": func(name string, kv []map[string]any, param bool) (string, any) {
			return "/api/v1/namespaces/_/packages/" + name, map[string]any{field(param): kv, "publish": true}
		},
		"triggers": func(name string, kv []map[string]any, param bool) (string, any) {
			return "/api/v1/namespaces/_/triggers/" + name, map[string]any{field(param): kv}
		},
	}
	for kind, mk := range paths {
		for i, o := range odd {
			for _, param := range []bool{false, true} {
				if param && o.name == "huge string" {
					continue // parameters may be large (1 MiB in all)
				}
				name := fmt.Sprintf("odd%d%v", i, param)
				path, body := mk(name, o.kvs, param)
				var out map[string]any
				if st, _ := e.call(g, "PUT", path, body, &out); st != o.status {
					t.Errorf("%s %s (%s): %d %v, want %d", kind, o.name, field(param), st, out, o.status)
				}
			}
		}
	}
	// Every listing still answers, for the owner and for another
	// namespace reading the public packages.
	u, k, err := e.p.Gateway.CreateNamespace(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	other := u + ":" + k
	for _, c := range []struct{ auth, path string }{
		{g, "/api/v1/namespaces/_/actions"}, {g, "/api/v1/namespaces/_/packages"},
		{g, "/api/v1/namespaces/_/triggers"}, {g, "/api/v1/namespaces/_/rules"},
		{g, "/api/v1/namespaces/_"}, {g, "/api/v1/namespaces/_/actions?limit=0"},
		{g, "/api/v1/namespaces/_/packages/odd2false"},
		{other, "/api/v1/namespaces/guest/packages/odd2false"},
		{other, "/api/v1/namespaces/guest/packages/odd3false"},
	} {
		var out any
		if st, _ := e.call(c.auth, "GET", c.path, nil, &out); st != 200 {
			t.Errorf("GET %s: %d %v", c.path, st, out)
		}
	}
}

func field(param bool) string {
	if param {
		return "parameters"
	}
	return "annotations"
}

// TestPagingPastTheCap: skip has no upper bound (it used to be capped at
// the 200 meant for limit, so entry 401 could not be listed).
func TestPagingPastTheCap(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	for _, coll := range []string{"actions", "packages", "triggers", "rules", "activations"} {
		for _, skip := range []string{"201", "1000", "100000000"} {
			var out []any
			if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/"+coll+"?skip="+skip, nil, &out); st != 200 || len(out) != 0 {
				t.Errorf("%s?skip=%s: %d %v", coll, skip, st, out)
			}
		}
		var eb errorBody
		if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/"+coll+"?limit=201", nil, &eb); st != 400 {
			t.Errorf("%s?limit=201: %d, want 400", coll, st)
		}
	}
}

// TestRuntimeReplaced: when the runtime an action's envelopes designate is
// gone (killed, and replaced by its invoker), the next invocation is
// refused as misplaced before anything runs, and the gateway places it
// again and seals anew: the caller sees a normal answer.
func TestRuntimeReplaced(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	e.deploy(g, "hello", wasmbuild.MustBuild(t, "examples/hello"), nil)
	invoke := func(name string) {
		t.Helper()
		var res map[string]any
		if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", map[string]any{"name": name}, &res); st != 200 || res["greeting"] != "Hello "+name+"!" {
			t.Fatalf("invoke: %d %v", st, res)
		}
	}
	invoke("before")
	var killed []int
	for _, pid := range childProcesses(t, "clemmys-enclave") {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	if len(killed) == 0 {
		t.Fatal("no runtime process to kill")
	}
	// Once the invoker has reaped them it knows they are gone (a step sent
	// to a runtime as it dies may have run, and fails instead).
	waitFor(t, func() bool {
		for _, pid := range killed {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				return false
			}
		}
		return true
	})
	invoke("after")
	if !strings.Contains(e.logs.String(), "invocation misplaced; placing it again") {
		t.Fatal("the invocation was not placed again")
	}
}

// childProcesses returns the pids of this process's children named name.
func childProcesses(t testing.TB, name string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("cannot list processes: %v", err)
	}
	self := strconv.Itoa(os.Getpid())
	var out []int
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != name {
			continue
		}
		if fields := strings.Fields(s[end+1:]); len(fields) >= 2 && fields[1] == self {
			out = append(out, pid)
		}
	}
	return out
}

// TestRollbackAcrossRestart: the newest version of an action, and its
// deletion, are remembered by the KMS's version registry, not only by the
// gateway process: after a restart the gateway still refuses an older
// entity the operator puts back in the store, and a deleted action served
// again.
func TestRollbackAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	g := e.guest()
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e.deploy(g, "hello", hello, nil)
	v1 := e.entityBytes(t, "hello")
	e.deploy(g, "hello", hello, nil) // v2: a new function version
	e.deploy(g, "gone", hello, nil)
	gone := e.entityBytes(t, "gone")
	if st, _ := e.call(g, "DELETE", "/api/v1/namespaces/_/actions/gone", nil, nil); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	e.p.Stop()

	e = start(t, dir)
	g = e.guest()
	kv := e.actionsKV(t)
	for name, b := range map[string][]byte{"hello": v1, "gone": gone} {
		rev, err := kv.Put(context.Background(), store.Key("guest", name), b)
		if err != nil {
			t.Fatal(err)
		}
		e.controllerSees(t, name, rev)
	}
	for _, name := range []string{"hello", "gone"} {
		var eb errorBody
		st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true", nil, &eb)
		// Refused by the entity's generation (entityversions.go), checked
		// before its function version.
		if st != http.StatusBadGateway || !strings.Contains(eb.Error, "outdated") {
			t.Errorf("%s rolled back after a restart: %d %q, want 502 outdated", name, st, eb.Error)
		}
	}
}
