package platform_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestCLIParity: the wsk verbs a new user tries — property set/get,
// grouped short flags, package bind and bindings in package list, another
// namespace's shared packages, activation get --summary, activation list
// --since/--upto/--full, upload progress, version and completion.
func TestCLIParity(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	props := filepath.Join(t.TempDir(), "wskprops")
	t.Setenv("WSK_CONFIG_FILE", props)
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errs := clemmys(args...)
		if code != want {
			t.Fatalf("clemmys %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errs)
		}
		return out, errs
	}
	carol := strings.TrimSpace(must1(run(0, "namespace", "create", "carol", "--data-dir", dir)))

	// property set writes WSK_CONFIG_FILE (mode 0600), keeping other lines;
	// the verbs then need no --apihost/--auth.
	if err := os.WriteFile(props, []byte("# mine\nEXTRA=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(0, "property", "set", "--apihost", e.p.APIHost(), "--auth", e.guest(), "--namespace", "guest")
	raw, _ := os.ReadFile(props)
	if s := string(raw); !strings.Contains(s, "# mine\nEXTRA=1\n") || !strings.Contains(s, "APIHOST="+e.p.APIHost()+"\n") || !strings.Contains(s, "AUTH="+e.guest()+"\n") {
		t.Fatalf("wskprops:\n%s", s)
	}
	if fi, _ := os.Stat(props); fi.Mode().Perm() != 0o600 {
		t.Errorf("wskprops mode %v", fi.Mode().Perm())
	}
	if out, _ := run(0, "property", "get", "--apihost"); !strings.Contains(out, e.p.APIHost()) || strings.Contains(out, "auth") {
		t.Fatalf("property get --apihost: %q", out)
	}
	if out, _ := run(0, "property", "get"); !strings.Contains(out, "whisk auth") || !strings.Contains(out, "clemmys version") {
		t.Fatalf("property get: %q", out)
	}
	cert := []string{"--data-dir", dir} // trusts the local platform's certificate

	// A large module: the upload reports its progress.
	hello := filepath.Join(t.TempDir(), "hello.wasm")
	code := wasmbuild.MustBuild(t, "examples/hello")
	if err := os.WriteFile(hello, code, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs := run(0, append([]string{"action", "create", "hello", hello}, cert...)...)
	t.Logf("module %d bytes; stderr %q", len(code), errs)
	if len(code)*4/3 >= 2<<20 && !strings.Contains(errs, "uploading") {
		t.Errorf("no upload progress for a %d-byte module: %q", len(code), errs)
	}
	// -br is -b -r.
	if out, _ := run(0, append([]string{"action", "invoke", "hello", "-br", "-p", "name", "Ann"}, cert...)...); !strings.Contains(out, "Hello Ann!") || strings.Contains(out, "activationId") {
		t.Fatalf("invoke -br: %q", out)
	}
	before := time.Now().Add(-time.Second).UnixMilli()
	out, _ := run(0, append([]string{"action", "invoke", "hello", "-b", "-p", "name", "Bo"}, cert...)...)
	id := regexp.MustCompile(`[0-9a-f]{32}`).FindString(out)
	if id == "" {
		t.Fatalf("invoke -b printed no id: %q", out)
	}
	// activation get --summary.
	out, _ = run(0, append([]string{"activation", "get", id, "--summary"}, cert...)...)
	if !strings.Contains(out, "activation result for '/guest/hello' (success at ") || !strings.Contains(out, `"Hello Bo!"`) {
		t.Fatalf("get --summary: %q", out)
	}
	// activation list --since/--upto/--full.
	out, _ = run(0, append([]string{"activation", "list", "--since", fmt.Sprint(before)}, cert...)...)
	if !strings.Contains(out, id) {
		t.Fatalf("list --since: %q", out)
	}
	out, _ = run(0, append([]string{"activation", "list", "--upto", fmt.Sprint(before - 60_000)}, cert...)...)
	if strings.Contains(out, id) {
		t.Fatalf("list --upto before it: %q", out)
	}
	out, _ = run(0, append([]string{"activation", "list", "--since", "1h", "--full", "--limit", "1"}, cert...)...)
	var full []map[string]any
	if err := json.Unmarshal([]byte(out), &full); err != nil || len(full) != 1 || full[0]["response"] == nil {
		t.Fatalf("list --full: %v %q", err, out)
	}
	run(2, append([]string{"activation", "list", "--since", "yesterday"}, cert...)...)

	// carol shares a package; guest lists it and binds it.
	carolAs := []string{"--apihost", e.p.APIHost(), "--auth", carol, "--data-dir", dir}
	run(0, append([]string{"package", "create", "tools", "--shared", "yes"}, carolAs...)...)
	if out, _ := run(0, append([]string{"package", "list", "/carol"}, cert...)...); !regexp.MustCompile(`/carol/tools\s+shared`).MatchString(out) {
		t.Fatalf("package list /carol: %q", out)
	}
	run(0, append([]string{"package", "bind", "/carol/tools", "mytools", "-p", "color", "blue"}, cert...)...)
	if out, _ := run(0, append([]string{"package", "list"}, cert...)...); !regexp.MustCompile(`/guest/mytools\s+private\s+binding → /carol/tools`).MatchString(out) {
		t.Fatalf("package list with a binding: %q", out)
	}
	if out, _ := run(0, append([]string{"package", "get", "mytools"}, cert...)...); !strings.Contains(out, `"color"`) {
		t.Fatalf("package get binding: %q", out)
	}

	// version and completion.
	if out, _ := run(0, "version"); !strings.HasPrefix(out, "clemmys ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %q", out)
	}
	for _, sh := range []string{"bash", "zsh"} {
		if out, _ := run(0, "completion", sh); !strings.Contains(out, "complete -F _clemmys clemmys") || !strings.Contains(out, "bind") {
			t.Fatalf("completion %s: %q", sh, out)
		}
	}
	run(2, "completion", "fish")
	run(0, "property", "unset", "--auth")
	if raw, _ := os.ReadFile(props); strings.Contains(string(raw), "AUTH=") {
		t.Fatalf("unset: %s", raw)
	}
}

func must1(s, _ string) string { return s }
