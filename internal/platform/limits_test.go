package platform_test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestNamespaceLimitsCLI sets a namespace's limits with `clemmys namespace
// limits` and sees the gateway enforce them on the next request: the
// OpenWhisk limits document, a 429 with OpenWhisk's message, a deploy over
// the timeout ceiling refused; then --reset.
func TestNamespaceLimitsCLI(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(dir, "no-such-file"))
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errs := clemmys(args...)
		if code != want {
			t.Fatalf("clemmys %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errs)
		}
		return out + errs
	}
	auth := strings.TrimSpace(run(0, "namespace", "create", "bob", "--data-dir", dir))
	as := func(args ...string) []string {
		return append(args, "--apihost", e.p.APIHost(), "--auth", auth, "--data-dir", dir)
	}
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e.deploy(auth, "hello", hello, nil)

	out := run(0, "namespace", "limits", "bob", "--invocations-per-minute", "2", "--timeout", "1000", "--retention-count", "50", "--retention-age", "2d", "--data-dir", dir)
	for _, want := range []string{"every gateway enforces them", "invocations per minute", "2", "(set for bob)", "2d", "50 newest"} {
		if !strings.Contains(out, want) {
			t.Fatalf("namespace limits: no %q in\n%s", want, out)
		}
	}
	var limits map[string]any
	if st, _ := e.call(auth, "GET", "/api/v1/namespaces/_/limits", nil, &limits); st != 200 || limits["invocationsPerMinute"] != 2.0 || limits["maxActionTimeout"] != 1000.0 {
		t.Fatalf("limits: %d %v", st, limits)
	}
	// Guest keeps the defaults.
	if st, _ := e.call(e.guest(), "GET", "/api/v1/namespaces/_/limits", nil, &limits); st != 200 || limits["invocationsPerMinute"] != 600.0 {
		t.Fatalf("guest limits: %d %v", st, limits)
	}
	// The window is the calendar minute (OpenWhisk's): of five invocations
	// in a row, which span at most one minute boundary, three fall in one
	// window, so one of them is refused — the third of its window.
	refused := false
	for i := 0; i < 5 && !refused; i++ {
		code, o, errs := clemmys(as("action", "invoke", "hello", "-r")...)
		switch {
		case code == 1 && strings.Contains(o+errs, "Too many requests in the last minute (count: 3, allowed: 2)."):
			refused = true
		case code != 0:
			t.Fatalf("invocation %d: exit %d\n%s%s", i+1, code, o, errs)
		}
	}
	if !refused {
		t.Fatal("five invocations in a row at 2 per minute were all accepted")
	}
	var eb errorBody
	body := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/hello"}}, "limits": map[string]any{"timeout": 5000}}
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/twice", body, &eb); st != http.StatusBadRequest ||
		!strings.Contains(eb.Error, "duration 5000 milliseconds exceeds allowed threshold of 1000 milliseconds") {
		t.Fatalf("deploy over the ceiling: %d %v", st, eb)
	}
	// The admin API refuses a namespace credential.
	run(1, "namespace", "limits", "bob", "--concurrent", "1", "--data-dir", dir, "--auth", auth)
	out = run(0, "namespace", "limits", "bob", "--reset", "--data-dir", dir)
	if !regexp.MustCompile(`invocations per minute\s+600\s+\(default\)`).MatchString(out) {
		t.Fatalf("after reset:\n%s", out)
	}
	run(0, as("action", "invoke", "hello", "-r")...)

	// namespace get / list: everything in the namespace.
	for _, cmd := range [][]string{{"namespace", "get"}, {"list"}} {
		out = run(0, as(cmd...)...)
		if !strings.Contains(out, "Entities in namespace: default") || !strings.Contains(out, "/bob/hello") {
			t.Fatalf("%v:\n%s", cmd, out)
		}
	}
}
