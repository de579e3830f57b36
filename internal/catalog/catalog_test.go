package catalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionCoversEverySource(t *testing.T) {
	if v := Version(); len(v) != 64 || v != Version() {
		t.Fatalf("version %q is not a stable sha256", v)
	}
	for _, a := range Utils {
		embedded, err := sources.ReadFile("utils/" + a.Name + "/main.go")
		if err != nil {
			t.Fatalf("action %s: source not embedded: %v", a.Name, err)
		}
		onDisk, err := os.ReadFile(filepath.Join("utils", a.Name, "main.go"))
		if err != nil || string(onDisk) != string(embedded) {
			t.Fatalf("action %s: embedded source differs from the tree: %v", a.Name, err)
		}
	}
	// Every function directory is an action of the catalog.
	dirs, _ := filepath.Glob("utils/*/main.go")
	if len(dirs) != len(Utils)+1 { // and the alarms' feeds' code
		t.Fatalf("%d function directories, %d catalog actions", len(dirs), len(Utils))
	}
}

func TestInstalledWithoutMarker(t *testing.T) {
	if Installed(t.TempDir()) {
		t.Fatal("an empty data directory has the catalog installed")
	}
}

// fakeAdmin is a one-namespace credential store.
type fakeAdmin struct {
	creates, rotations int
	key                string
}

func (f *fakeAdmin) CreateNamespace(ctx context.Context, ns string) (string, string, error) {
	if f.key != "" {
		return "", "", errors.New("exists")
	}
	f.creates++
	f.key = fmt.Sprintf("key%d", f.creates)
	return "uuid", f.key, nil
}

func (f *fakeAdmin) RotateKey(ctx context.Context, ns string) (string, string, error) {
	f.rotations++
	f.key = fmt.Sprintf("rotated%d", f.rotations)
	return "uuid", f.key, nil
}

func (f *fakeAdmin) CheckCredential(ctx context.Context, u, k string) (string, bool) {
	return Namespace, u == "uuid" && k == f.key && k != ""
}

// fakeGateway records the API calls of the installer.
type fakeGateway struct {
	admin    *fakeAdmin
	packages bool
	fail     string // path answered 500
	calls    []string
	bodies   map[string]map[string]any
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, k, _ := r.BasicAuth()
	if ns, ok := g.admin.CheckCredential(r.Context(), u, k); !ok || ns != Namespace {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	g.calls = append(g.calls, r.Method+" "+r.URL.Path)
	if r.URL.Path == g.fail {
		http.Error(w, `{"error":"Internal server error."}`, http.StatusInternalServerError)
		return
	}
	if strings.Contains(r.URL.Path, "/packages/") && !g.packages {
		http.Error(w, `{"error":"The requested resource does not exist."}`, http.StatusNotFound)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Query().Get("overwrite") != "true" {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	g.bodies[r.URL.Path] = body
	w.Write([]byte(`{}`))
}

func TestEnsure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the catalog functions")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	dir := t.TempDir()
	admin := &fakeAdmin{}
	gw := &fakeGateway{admin: admin, bodies: map[string]map[string]any{}}
	opts := Options{DataDir: dir, Handler: gw, Admin: admin, ModuleRoot: "../.."}
	ctx := context.Background()

	// Without package routes: the namespace and its credential exist, but
	// nothing is built and no marker is written.
	if err := Ensure(ctx, opts); !errors.Is(err, ErrNoPackages) {
		t.Fatalf("without packages: %v", err)
	}
	if Installed(dir) || admin.creates != 1 || len(gw.calls) != 1 {
		t.Fatalf("without packages: installed %v, creates %d, calls %v", Installed(dir), admin.creates, gw.calls)
	}
	st, err := os.Stat(filepath.Join(dir, CredentialFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", st, err)
	}
	if auth, _ := Credential(dir); auth != "uuid:key1" {
		t.Fatalf("credential %q", auth)
	}

	// With them, but an action fails: no marker, the build is kept.
	gw.packages, gw.fail = true, "/api/v1/namespaces/_/actions/utils/sort"
	if err := Ensure(ctx, opts); err == nil || Installed(dir) {
		t.Fatalf("failed install: %v, installed %v", err, Installed(dir))
	}
	if builds, _ := filepath.Glob(filepath.Join(dir, "catalog", "build-*", "*.wasm")); len(builds) != len(Utils)+1 {
		t.Fatalf("build after a failed install: %v", builds)
	}

	// Then: the package, then every action with its wasm module.
	gw.fail, gw.calls = "", nil
	if err := Ensure(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if !Installed(dir) || admin.creates != 1 || len(gw.calls) != 2+len(Utils)+len(Alarms) {
		t.Fatalf("install: installed %v, creates %d, calls %v", Installed(dir), admin.creates, gw.calls)
	}
	pkg := gw.bodies["/api/v1/namespaces/_/packages/utils"]
	if pkg["publish"] != true {
		t.Fatalf("package body %v", pkg)
	}
	for _, a := range Utils {
		body := gw.bodies["/api/v1/namespaces/_/actions/utils/"+a.Name]
		exec, _ := body["exec"].(map[string]any)
		code, _ := exec["code"].(string)
		wasm, err := base64.StdEncoding.DecodeString(code)
		if exec["kind"] != "wasm" || err != nil || !bytes.HasPrefix(wasm, []byte("\x00asm")) {
			t.Fatalf("action %s: exec %v…", a.Name, exec["kind"])
		}
		if anns, _ := body["annotations"].([]any); len(anns) == 0 {
			t.Fatalf("action %s: no annotations", a.Name)
		}
	}

	// Installed: a restart makes no call at all.
	gw.calls = nil
	if err := Ensure(ctx, opts); err != nil || len(gw.calls) != 0 {
		t.Fatalf("restart: %v, calls %v", err, gw.calls)
	}

	// A new version (here: a lost marker) reinstalls; a stale credential is
	// rotated. The build is removed once installed.
	os.Remove(filepath.Join(dir, "catalog", "installed.json"))
	admin.key = "changed"
	if err := Ensure(ctx, opts); err != nil || admin.rotations != 1 || len(gw.calls) != 2+len(Utils)+len(Alarms) {
		t.Fatalf("reinstall: %v, rotations %d, calls %v", err, admin.rotations, gw.calls)
	}
	if auth, _ := Credential(dir); auth != "uuid:rotated1" {
		t.Fatalf("credential after rotation %q", auth)
	}
	builds, _ := filepath.Glob(filepath.Join(dir, "catalog", "build-*"))
	if len(builds) != 0 {
		t.Fatalf("build directories: %v", builds)
	}
}
