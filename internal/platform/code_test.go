package platform_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestActionCode: GET of an action returns exec.code to its owner
// (JavaScript source, a zip or a wasm module as base64), ?code=false omits
// it, another namespace reading it in a public package never gets it, and
// the action list shows the owner the parameters GET shows.
func TestActionCode(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	src := `function main() { return { secret: "` + jsSecret + `" } }`
	e.deployJS(g, "src", "nodejs:default", []byte(src), false, map[string]any{"main": "main", "parameters": kvs("p", 1)})
	zipped := zipFiles(t, map[string]string{"index.js": src})
	e.deployJS(g, "zipped", "nodejs:default", zipped, true, nil)
	hello := wasmbuild.MustBuild(t, "examples/hello")
	e.deploy(g, "mod", hello, nil)

	get := func(auth, path string) map[string]any {
		t.Helper()
		var a map[string]any
		if st, _ := e.call(auth, "GET", path, nil, &a); st != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, st, a)
		}
		exec, _ := a["exec"].(map[string]any)
		return exec
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/src"); ex["code"] != src || ex["binary"] != false || ex["kind"] != "nodejs:20" {
		t.Errorf("source: %v", ex)
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/src?code=true"); ex["code"] != src {
		t.Errorf("?code=true: %v", ex)
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/src?code=false"); ex["code"] != nil {
		t.Errorf("?code=false returned the code: %v", ex)
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/zipped"); ex["code"] != base64.StdEncoding.EncodeToString(zipped) || ex["binary"] != true {
		t.Errorf("zip: binary %v, code of %d chars", ex["binary"], len(ex["code"].(string)))
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/mod"); ex["code"] != base64.StdEncoding.EncodeToString(hello) || ex["binary"] != true {
		t.Errorf("wasm: binary %v", ex["binary"])
	}

	// The list shows the owner the parameters GET shows.
	var list []map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/actions", nil, &list); st != 200 {
		t.Fatalf("list: %d", st)
	}
	found := false
	for _, a := range list {
		if a["name"] == "src" {
			found = true
			if p := paramsOf(a); p["p"] != 1.0 {
				t.Errorf("listed parameters %v", a["parameters"])
			}
			if ex, _ := a["exec"].(map[string]any); ex["code"] != nil {
				t.Errorf("the list shows code")
			}
		}
	}
	if !found {
		t.Errorf("src not listed: %v", list)
	}

	// Another namespace reads a public package's action without its code.
	var pkg map[string]any
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/packages/shared", map[string]any{"publish": true}, &pkg); st != 200 {
		t.Fatalf("package: %d %v", st, pkg)
	}
	e.deployJS(g, "shared/fn", "nodejs:default", []byte(src), false, nil)
	u, k, err := e.p.Gateway.CreateNamespace(context.Background(), "codereader")
	if err != nil {
		t.Fatal(err)
	}
	other := u + ":" + k
	if ex := get(other, "/api/v1/namespaces/guest/actions/shared/fn?code=true"); ex["code"] != nil {
		t.Errorf("another namespace got the code: %v", ex)
	}
	if ex := get(g, "/api/v1/namespaces/_/actions/shared/fn"); ex["code"] != src {
		t.Errorf("the owner's package action: %v", ex)
	}
	// And lists the public packages of guest.
	var pkgs []map[string]any
	if st, _ := e.call(other, "GET", "/api/v1/namespaces/guest/packages", nil, &pkgs); st != 200 || len(pkgs) != 1 || pkgs[0]["name"] != "shared" {
		t.Errorf("public packages of guest: %d %v", st, pkgs)
	}

	// The code never reaches the platform's logs.
	if strings.Contains(e.logs.String(), jsSecret) {
		t.Error("the action's source is in the logs")
	}
}
