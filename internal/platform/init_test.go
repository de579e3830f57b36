package platform_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// offlineGo is the environment of a go command that must not reach the
// network nor the clemmys source tree: what a new user's project outside
// the tree, on a machine without a module proxy, gets.
func offlineGo() []string {
	return append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local", "GOSUMDB=off")
}

// run runs a command in dir and fails t if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q in %s: %v\n%s", name, args, dir, err, out)
	}
	return string(out)
}

// cliAs returns a function that runs a clemmys client command as auth
// against e and requires success.
func cliAs(t *testing.T, e *env, auth string) func(args ...string) string {
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(t.TempDir(), "no-such-file"))
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	return func(args ...string) string {
		t.Helper()
		args = append(args, "--apihost", e.p.APIHost(), "--auth", auth, "--data-dir", e.dataDir)
		code, out, errs := clemmys(args...)
		if code != 0 {
			t.Fatalf("clemmys %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
		return out
	}
}

// TestInit scaffolds a Go and a JavaScript function project outside the
// source tree with `clemmys init`, builds the Go one with the real
// toolchain offline, deploys both with the CLI and invokes them; then the
// CLI's JavaScript verbs: .js and .zip files, --kind, --main, --web,
// get --url (reached without credentials) and get --save.
func TestInit(t *testing.T) {
	e := startJS(t, nil)
	cli := cliAs(t, e, e.guest())

	t.Run("go", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "Greeter")
		if code, out, errs := clemmys("init", "go", dir); code != 0 || !strings.Contains(out, "clemmys action create greeter greeter.wasm") {
			t.Fatalf("init go: %d %q %q", code, out, errs)
		}
		if code, _, errs := clemmys("init", "go", dir); code != 1 || !strings.Contains(errs, "exists: choose an empty or new directory") {
			t.Fatalf("init go again: %d %q", code, errs)
		}
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil || !strings.Contains(string(gomod), "replace github.com/clemmys/clemmys => ./clemmys-sdk") {
			t.Fatalf("go.mod: %s %v", gomod, err)
		}
		run(t, dir, offlineGo(), "go", "test", "./...")
		run(t, dir, offlineGo(), "./build.sh")
		if _, err := os.Stat(filepath.Join(dir, "clemmys-sdk", "sdk", "source.go")); err == nil {
			t.Error("the SDK copy holds source.go")
		}
		cli("action", "create", "greeter", filepath.Join(dir, "greeter.wasm"))
		if out := cli("action", "invoke", "greeter", "-p", "name", "Init", "-r"); !jsonEq(t, out, `{"greeting":"Hello Init!"}`) {
			t.Fatalf("invoke: %q", out)
		}

		// --sdk: a replace to a source checkout, nothing copied.
		root, err := filepath.Abs("../..")
		if err != nil {
			t.Fatal(err)
		}
		dir2 := filepath.Join(t.TempDir(), "fromtree")
		if code, _, errs := clemmys("init", "go", dir2, "--sdk", root, "--name", "tree-fn"); code != 0 {
			t.Fatalf("init go --sdk: %d %q", code, errs)
		}
		gomod, _ = os.ReadFile(filepath.Join(dir2, "go.mod"))
		if !strings.Contains(string(gomod), "module tree-fn\n") || !strings.Contains(string(gomod), "=> "+root+"\n") {
			t.Fatalf("go.mod with --sdk: %s", gomod)
		}
		if _, err := os.Stat(filepath.Join(dir2, "clemmys-sdk")); err == nil {
			t.Error("--sdk copied the SDK")
		}
		run(t, dir2, offlineGo(), "./build.sh")
		if code, _, errs := clemmys("init", "go", t.TempDir(), "--sdk", t.TempDir()); code != 1 || !strings.Contains(errs, "not a clemmys source checkout") {
			t.Errorf("--sdk of a directory that is not a checkout: %d %q", code, errs)
		}
	})

	t.Run("js", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "hellojs")
		if code, out, errs := clemmys("init", "js", dir); code != 0 || !strings.Contains(out, "clemmys action create hellojs index.js") {
			t.Fatalf("init js: %d %q %q", code, out, errs)
		}
		if _, err := exec.LookPath("node"); err == nil {
			if out := run(t, dir, os.Environ(), "node", "test.js"); !strings.HasSuffix(out, "ok\n") {
				t.Errorf("node test.js: %q", out)
			}
		}
		cli("action", "create", "hellojs", filepath.Join(dir, "index.js"))
		if out := cli("action", "invoke", "hellojs", "-p", "name", "JS", "-r"); !jsonEq(t, out, `{"greeting":"Hello JS!"}`) {
			t.Fatalf("invoke: %q", out)
		}
		if out := cli("action", "get", "hellojs", "--summary"); !strings.Contains(out, "nodejs:") {
			t.Errorf("get --summary: %q", out)
		}

		// The project zipped (as its README says), deployed as a web
		// action, reached at the address get --url prints.
		zipped := zipDir(t, dir, "package.json", "index.js")
		zipPath := filepath.Join(t.TempDir(), "hellojs.zip")
		if err := os.WriteFile(zipPath, zipped, 0o600); err != nil {
			t.Fatal(err)
		}
		cli("action", "update", "hellojs", zipPath, "--web", "true")
		out := cli("action", "get", "hellojs", "--url")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		u := lines[len(lines)-1]
		if u != e.p.APIHost()+"/api/v1/web/guest/default/hellojs" {
			t.Fatalf("get --url: %q", out)
		}
		resp, err := e.client.Get(u + ".json?name=Web")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !jsonEq(t, string(body), `{"greeting":"Hello Web!"}`) {
			t.Fatalf("web action at %s: %d %s", u, resp.StatusCode, body)
		}

		// get --save writes the zip back; never over a file.
		t.Chdir(t.TempDir())
		if out := cli("action", "get", "hellojs", "--save"); out != "ok: saved action code to hellojs.zip\n" {
			t.Fatalf("get --save: %q", out)
		}
		if saved, err := os.ReadFile("hellojs.zip"); err != nil || !bytes.Equal(saved, zipped) {
			t.Fatalf("saved zip differs (%v)", err)
		}
		if code, _, errs := clemmys("action", "get", "hellojs", "--save", "--apihost", e.p.APIHost(), "--auth", e.guest(), "--data-dir", e.dataDir); code != 1 ||
			!strings.Contains(errs, "hellojs.zip exists") {
			t.Errorf("get --save over a file: %d %q", code, errs)
		}

		// --kind and --main for a file whose name does not tell.
		src := filepath.Join(t.TempDir(), "handler.txt")
		if err := os.WriteFile(src, []byte(`function handler(p) { return { twice: p.n * 2 } }`), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := clemmys("action", "create", "custom", src, "--apihost", e.p.APIHost(), "--auth", e.guest(), "--data-dir", e.dataDir); code != 1 ||
			!strings.Contains(errs, "not a WebAssembly module") || !strings.Contains(errs, "pass --kind for JavaScript") {
			t.Errorf("create from a .txt without --kind: %d %q", code, errs)
		}
		cli("action", "create", "custom", src, "--kind", "nodejs:20", "--main", "handler")
		if out := cli("action", "invoke", "custom", "-p", "n", "21", "-r"); !jsonEq(t, out, `{"twice":42}`) {
			t.Fatalf("invoke custom: %q", out)
		}
		cli("action", "get", "custom", "--save-as", "custom.js")
		if saved, _ := os.ReadFile("custom.js"); !strings.Contains(string(saved), "function handler") {
			t.Errorf("get --save-as: %q", saved)
		}
	})
}

// zipDir zips the named files of dir (slash-separated paths), or, with
// none named, every file under dir, as `cd dir && zip -r x.zip .` does.
func zipDir(t *testing.T, dir string, names ...string) []byte {
	t.Helper()
	if len(names) == 0 {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			t.Fatal(err)
		}
		files[n] = string(b)
	}
	return zipFiles(t, files)
}
