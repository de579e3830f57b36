package platform_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/cli"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// clemmys runs the clemmys command in-process.
func clemmys(args ...string) (code int, stdout, stderr string) {
	var out, errs bytes.Buffer
	code = cli.Run(args, &out, &errs)
	return code, out.String(), errs.String()
}

// TestCLI drives the wsk-style verbs of the clemmys command against a
// platform: a namespace made with the admin verbs, actions, sequences,
// invocations, activations, errors, and (once the gateway serves them)
// triggers, rules and packages.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	// Nothing from the environment of whoever runs the tests.
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(dir, "no-such-file"))
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, wasmbuild.MustBuild(t, "examples/hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	failWasm := filepath.Join(t.TempDir(), "fail.wasm")
	if err := os.WriteFile(failWasm, wasmbuild.MustBuild(t, "internal/testfuncs/fail"), 0o644); err != nil {
		t.Fatal(err)
	}

	// must runs a command that must succeed; expect one that must fail.
	must := func(args ...string) string {
		t.Helper()
		code, out, errs := clemmys(args...)
		if code != 0 {
			t.Fatalf("clemmys %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
		return out
	}
	expect := func(wantCode int, wantErr string, args ...string) string {
		t.Helper()
		code, out, errs := clemmys(args...)
		if code != wantCode || !strings.Contains(errs, wantErr) {
			t.Fatalf("clemmys %q: exit %d, stderr %q; want exit %d and %q (stdout %q)", args, code, errs, wantCode, wantErr, out)
		}
		return out
	}

	// Admin verbs find the platform through the data dir alone.
	auth := strings.TrimSpace(must("namespace", "create", "alice", "--data-dir", dir))
	if !credRE.MatchString(auth) {
		t.Fatalf("namespace create printed %q", auth)
	}
	expect(1, "resource already exists", "namespace", "create", "alice", "--data-dir", dir)
	if out := must("namespace", "list", "--admin", "--data-dir", dir); !regexp.MustCompile(`(?m)^alice\s+[0-9a-f-]{36}\s`).MatchString(out) ||
		!strings.Contains(out, "guest") {
		t.Fatalf("namespace list --admin:\n%s", out)
	}
	// A namespace credential does not open the admin API.
	expect(1, "authentication is invalid", "namespace", "create", "bob", "--data-dir", dir, "--auth", auth)

	// as runs a command as alice; flags go after the positional arguments,
	// as with wsk.
	flags := []string{"--apihost", e.p.APIHost(), "--auth", auth, "--data-dir", dir}
	as := func(args ...string) []string { return append(args, flags...) }

	if out := must(as("namespace", "list")...); out != "namespaces\nalice\n" {
		t.Fatalf("namespace list: %q", out)
	}

	// Actions.
	if out := must(as("action", "create", "hello", wasm)...); out != "ok: created action hello\n" {
		t.Fatalf("action create: %q", out)
	}
	expect(1, "Unable to create action 'hello': resource already exists (code ", as("action", "create", "hello", wasm)...)
	must(as("action", "update", "hello", wasm, "--timeout", "5000", "--memory", "128")...)
	if out := must(as("action", "invoke", "hello", "-p", "name", "CLI", "-r")...); !jsonEq(t, out, `{"greeting":"Hello CLI!"}`) {
		t.Fatalf("action invoke -r: %q", out)
	}
	out := must(as("action", "invoke", "hello", "-p", "name", "async")...)
	m := regexp.MustCompile(`^ok: invoked /_/hello with id ([0-9a-f]{32})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("non-blocking invoke: %q", out)
	}
	asyncID := m[1]
	if out := must(as("action", "invoke", "hello", "--blocking")...); !strings.HasPrefix(out, "ok: invoked /_/hello with id ") ||
		!strings.Contains(out, `"activationId"`) || !strings.Contains(out, "Hello world!") {
		t.Fatalf("blocking invoke: %q", out)
	}
	if out := must(as("action", "get", "hello")...); !strings.HasPrefix(out, "ok: got action hello\n") || !strings.Contains(out, `"timeout": 5000`) {
		t.Fatalf("action get: %q", out)
	}
	if out := must(as("action", "get", "hello", "--summary")...); !strings.HasPrefix(out, "action /alice/hello (version ") {
		t.Fatalf("action get --summary: %q", out)
	}
	var got map[string]any
	if out := must(as("action", "get", "hello", "--json")...); json.Unmarshal([]byte(out), &got) != nil || got["name"] != "hello" {
		t.Fatalf("action get --json: %q", out)
	}

	// Sequences: components are resolved in the caller's namespace.
	must(as("action", "create", "twice", "--sequence", "hello,hello")...)
	if out := must(as("action", "invoke", "twice", "-r", "-p", "name", "seq")...); !jsonEq(t, out, `{"greeting":"Hello world!"}`) {
		t.Fatalf("sequence invoke: %q", out)
	}
	if out := must(as("action", "list")...); !regexp.MustCompile(`^actions\n(/alice/\w+ +private +(wasm|sequence)\n){2}$`).MatchString(out) ||
		!strings.Contains(out, "/alice/twice") || !strings.Contains(out, "sequence") {
		t.Fatalf("action list: %q", out)
	}
	if out := must(as("action", "list", "--limit", "1")...); strings.Count(out, "/alice/") != 1 {
		t.Fatalf("action list --limit 1: %q", out)
	}

	// A failing action: its result is printed and the exit status is 1.
	must(as("action", "create", "fail", failWasm)...)
	if out := expect(1, "the action /_/fail failed: boom", as("action", "invoke", "fail", "-r", "-p", "message", "boom")...); !jsonEq(t, out, `{"error":"boom"}`) {
		t.Fatalf("failed invoke output: %q", out)
	}

	// Activations.
	waitFor(t, func() bool { c, _, _ := clemmys(as("activation", "get", asyncID)...); return c == 0 })
	if out := must(as("activation", "get", asyncID)...); !strings.HasPrefix(out, "ok: got activation "+asyncID+"\n") || !strings.Contains(out, `"name": "hello"`) {
		t.Fatalf("activation get: %q", out)
	}
	if out := must(as("activation", "logs", asyncID)...); !strings.HasSuffix(out, "stderr: hello: greeting async\n") {
		t.Fatalf("activation logs: %q", out)
	}
	if out := must(as("activation", "logs", asyncID, "--strip")...); out != "hello: greeting async\n" {
		t.Fatalf("activation logs --strip: %q", out)
	}
	if out := must(as("activation", "result", asyncID)...); !jsonEq(t, out, `{"greeting":"Hello async!"}`) {
		t.Fatalf("activation result: %q", out)
	}
	out = must(as("activation", "list")...)
	if !strings.HasPrefix(out, "Datetime ") || !strings.Contains(out, asyncID) || !strings.Contains(out, "alice/hello:") ||
		!strings.Contains(out, "application error") {
		t.Fatalf("activation list:\n%s", out)
	}
	if out := must(as("activation", "list", "fail", "--json")...); !strings.Contains(out, `"name": "fail"`) || strings.Contains(out, `"name": "hello"`) {
		t.Fatalf("activation list fail --json:\n%s", out)
	}
	if out := must(as("activation", "result", "--last")...); out == "" {
		t.Fatal("activation result --last printed nothing")
	}

	// poll prints the logs of activations that complete while it runs.
	done := make(chan [3]string)
	go func() {
		code, out, errs := clemmys(as("activation", "poll", "hello", "--exit", "4", "--interval", "200ms")...)
		done <- [3]string{string(rune('0' + code)), out, errs}
	}()
	time.Sleep(time.Second)
	must(as("action", "invoke", "hello", "-b", "-p", "name", "poll")...)
	if r := <-done; r[0] != "0" || !strings.Contains(r[1], "Activation: 'hello' (") || !strings.Contains(r[1], "hello: greeting poll") ||
		strings.Contains(r[1], "greeting async") {
		t.Fatalf("activation poll: exit %s\nstdout: %s\nstderr: %s", r[0], r[1], r[2])
	}

	// Errors.
	expect(1, "error: Unable to get action 'nope': The requested resource does not exist. (code ", as("action", "get", "nope")...)
	expect(1, "error: Unable to invoke action 'nope': The requested resource does not exist. (code ", as("action", "invoke", "nope")...)
	expect(1, "Unable to get activation '0123': The requested resource does not exist.", as("activation", "get", "0123")...)
	expect(1, "not authorized", as("action", "get", "/guest/hello")...)
	expect(2, "wrong number of arguments", as("action", "get")...)
	expect(2, "unknown verb", "action", "frob")
	expect(2, "needs FILE.wasm", as("action", "create", "x")...)
	expect(1, "The action code is not a WebAssembly module", as("action", "create", "notwasm", filepath.Join(dir, "wskprops"))...)
	expect(1, "The supplied authentication is invalid.", "action", "list", "--apihost", e.p.APIHost(), "--data-dir", dir,
		"--auth", strings.Split(auth, ":")[0]+":"+strings.Repeat("0", 64))

	// Triggers, rules and packages, once the gateway serves them.
	t.Run("entities", func(t *testing.T) {
		for _, coll := range []string{"triggers", "rules", "packages"} {
			if st, _ := e.call(auth, "GET", "/api/v1/namespaces/_/"+coll, nil, nil); st == http.StatusNotFound {
				t.Skipf("the gateway does not serve /%s yet", coll)
			}
		}
		must(as("trigger", "create", "tick", "-p", "name", "trigger")...)
		must(as("rule", "create", "onTick", "tick", "hello")...)
		if out := must(as("rule", "list")...); !regexp.MustCompile(`/alice/onTick +private +active`).MatchString(out) {
			t.Fatalf("rule list: %q", out)
		}
		out := must(as("trigger", "fire", "tick")...)
		if !strings.HasPrefix(out, "ok: triggered /_/tick with id ") {
			t.Fatalf("trigger fire: %q", out)
		}
		waitFor(t, func() bool {
			_, out, _ := clemmys(as("activation", "list", "hello", "--json")...)
			var list []map[string]any
			_ = json.Unmarshal([]byte(out), &list)
			for _, a := range list {
				if id, _ := a["activationId"].(string); id != "" {
					if _, logs, _ := clemmys(as("activation", "logs", id)...); strings.Contains(logs, "greeting trigger") {
						return true
					}
				}
			}
			return false
		})
		must(as("rule", "disable", "onTick")...)
		if out := must(as("rule", "get", "onTick")...); !strings.Contains(out, `"inactive"`) {
			t.Fatalf("rule get after disable: %q", out)
		}
		must(as("rule", "enable", "onTick")...)
		if out := must(as("trigger", "list")...); !strings.Contains(out, "/alice/tick") {
			t.Fatalf("trigger list: %q", out)
		}
		must(as("trigger", "get", "tick")...)
		must(as("rule", "delete", "onTick")...)
		must(as("trigger", "delete", "tick")...)
		expect(1, "does not exist", as("trigger", "get", "tick")...)

		must(as("package", "create", "tools", "--shared", "yes")...)
		if out := must(as("package", "list")...); !regexp.MustCompile(`/alice/tools +shared`).MatchString(out) {
			t.Fatalf("package list: %q", out)
		}
		must(as("package", "update", "tools", "--shared", "no")...)
		if out := must(as("package", "get", "tools")...); !strings.Contains(out, `"publish": false`) {
			t.Fatalf("package get: %q", out)
		}
		expect(2, "--shared takes yes or no", as("package", "update", "tools", "--shared", "maybe")...)
		must(as("package", "delete", "tools")...)
	})

	// Delete, rotate, then delete the namespace.
	if out := must(as("action", "delete", "hello")...); out != "ok: deleted action hello\n" {
		t.Fatalf("action delete: %q", out)
	}
	expect(1, "does not exist", as("action", "invoke", "hello")...)
	newAuth := strings.TrimSpace(must("namespace", "rotate", "alice", "--data-dir", dir))
	if !credRE.MatchString(newAuth) || newAuth == auth {
		t.Fatalf("namespace rotate printed %q", newAuth)
	}
	expect(1, "authentication is invalid", as("action", "list")...)
	flags[3] = newAuth
	must(as("action", "list")...)
	if out := must("namespace", "delete", "alice", "--data-dir", dir); !strings.Contains(out, "ok: deleted namespace alice") ||
		!strings.Contains(out, "unreachable") {
		t.Fatalf("namespace delete: %q", out)
	}
	expect(1, "authentication is invalid", as("action", "list")...)
	expect(1, "does not exist", "namespace", "delete", "alice", "--data-dir", dir)
}

// jsonEq reports whether s is the JSON value want.
func jsonEq(t *testing.T, s, want string) bool {
	t.Helper()
	var a, b any
	if json.Unmarshal([]byte(s), &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
