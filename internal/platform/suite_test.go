package platform_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// deploySuite puts a wasm action whose keys are of the named suite.
func (e *env) deploySuite(auth, name string, wasm []byte, suite string) {
	e.t.Helper()
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(wasm)},
		"annotations": []map[string]any{{"key": "suite", "value": suite}}}
	var got map[string]any
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, &got); st != http.StatusOK {
		e.t.Fatalf("deploy %s (%s): status %d: %v", name, suite, st, got)
	}
}

// TestPostQuantumSuite: an owner picks X-Wing (ML-KEM-768 + X25519) per
// action; single actions and sequences run on it end to end, updates keep
// it, and a sequence cannot mix suites.
func TestPostQuantumSuite(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	echo := wasmbuild.MustBuild(t, "internal/testfuncs/echo")
	e.deploySuite(g, "pa", echo, "xwing")
	e.deploySuite(g, "pb", echo, "xwing")
	e.deploy(g, "classic", echo, nil)
	if s := e.functionRecord("pa").Suite; envelope.Suite(s) != envelope.SuiteMLKEM768X25519 {
		t.Fatalf("pa's function record: suite %d", s)
	}
	if s := e.functionRecord("classic").Suite; envelope.Suite(s) != envelope.SuiteX25519 {
		t.Fatalf("the default suite: %d", s)
	}
	// The CLI's --suite is the annotation.
	echoFile := filepath.Join(t.TempDir(), "echo.wasm")
	if err := os.WriteFile(echoFile, echo, 0o600); err != nil {
		t.Fatal(err)
	}
	cli := cliAs(t, e, g)
	cli("action", "create", "pcli", echoFile, "--suite", "xwing")
	if s := e.functionRecord("pcli").Suite; envelope.Suite(s) != envelope.SuiteMLKEM768X25519 {
		t.Fatalf("action create --suite xwing: suite %d", s)
	}
	if out := cli("action", "invoke", "pcli", "-p", "pq", "cli", "-r"); !strings.Contains(out, `"pq": "cli"`) {
		t.Fatalf("invoke the --suite xwing action: %q", out)
	}
	if code, _, errs := clemmys("action", "create", "pbad", echoFile, "--suite", "rot13", "--apihost", e.p.APIHost(), "--auth", g, "--data-dir", e.dataDir); code != 2 ||
		!strings.Contains(errs, "--suite takes x25519 or xwing") {
		t.Errorf("--suite rot13: %d %q", code, errs)
	}
	var res map[string]any
	if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/pa?blocking=true&result=true", map[string]any{"pq": "yes"}, &res); st != 200 || res["pq"] != "yes" {
		t.Fatalf("invoke an X-Wing action: %d %v", st, res)
	}
	e.deploySequence(g, "pab", "/_/pa", "/_/pb")
	if act := e.runSequence(g, "pab", map[string]any{"pq": "chain"}); !success(act) {
		t.Fatalf("X-Wing sequence: %v", act)
	}

	// An update without code keeps the suite; the annotation is shown.
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/pa?overwrite=true", map[string]any{"limits": map[string]any{"timeout": 5000}}, nil); st != 200 {
		t.Fatalf("update: %d", st)
	}
	if s := e.functionRecord("pa").Suite; envelope.Suite(s) != envelope.SuiteMLKEM768X25519 {
		t.Fatalf("suite after an update: %d", s)
	}
	var got struct {
		Annotations []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"annotations"`
	}
	e.call(g, "GET", "/api/v1/namespaces/_/actions/pa", nil, &got)
	found := false
	for _, a := range got.Annotations {
		found = found || (a.Key == "suite" && a.Value == "xwing")
	}
	if !found {
		t.Fatalf("annotations %v", got.Annotations)
	}

	for _, c := range []struct {
		name string
		body map[string]any
		path string
		want string
	}{
		{"unknown suite", map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(echo)},
			"annotations": []map[string]any{{"key": "suite", "value": "rot13"}}}, "pz", `"x25519" or "xwing"`},
		{"change the suite without the code", map[string]any{"annotations": []map[string]any{{"key": "suite", "value": "x25519"}}}, "pa", "send the code again"},
		{"mixed sequence", map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/pa", "/_/classic"}}}, "mixed", "suites"},
	} {
		var eb errorBody
		st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/"+c.path+"?overwrite=true", c.body, &eb)
		if c.path == "mixed" && st == 200 {
			// Refused at invoke if not at deploy.
			st, _ = e.call(g, "POST", "/api/v1/namespaces/_/actions/mixed?blocking=true", nil, &eb)
		}
		if st != http.StatusBadRequest || !strings.Contains(eb.Error, c.want) {
			t.Errorf("%s: %d %+v", c.name, st, eb)
		}
	}
}
