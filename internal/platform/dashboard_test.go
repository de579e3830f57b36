package platform_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestGrafanaDashboard loads deploy/grafana/clemmys-dashboard.json and
// checks that every metric its queries name is served by a real
// platform's /metrics (scraped after an invocation, a sequence and a
// listing, so that the labelled series exist).
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/clemmys-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	metricRE := regexp.MustCompile(`clemmys_[a-z_]+`)
	named := map[string]string{} // metric → panel
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				named[m] = p.Title
			}
		}
	}
	if len(named) < 10 {
		t.Fatalf("the dashboard names only %d metrics", len(named))
	}

	e := start(t, t.TempDir())
	g := e.guest()
	e.deploy(g, "hello", wasmbuild.MustBuild(t, "examples/hello"), nil)
	seq := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/hello", "/_/hello"}}}
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/actions/twice", seq, nil); st != 200 {
		t.Fatalf("deploy the sequence: %d", st)
	}
	for _, a := range []string{"hello", "twice"} {
		if st, _ := e.invokeResult(g, "/api/v1/namespaces/_/actions/"+a, map[string]any{}); st != 200 {
			t.Fatalf("invoke %s: %d", a, st)
		}
	}
	e.call(g, "GET", "/api/v1/namespaces/_/activations?limit=5", nil, nil)

	resp, err := e.client.Get(e.p.APIHost() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			served[strings.Fields(name)[0]] = true
		} else if line != "" && !strings.HasPrefix(line, "#") {
			served[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	var missing []string
	for m, panel := range named {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && served[b] {
				base = b
			}
		}
		if !served[base] && !served[m] {
			missing = append(missing, m+" (panel "+panel+")")
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("the dashboard names metrics /metrics does not serve:\n%s", strings.Join(missing, "\n"))
	}
}

// TestActivationLogLines: at debug level every service on an activation's
// path logs one line for it with its ids, and no service logs its data:
// gateway and invoker on the warm path (a blocking invocation), the
// controller too for one it runs (a non-blocking invocation).
func TestActivationLogLines(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	e.deploy(g, "hello", wasmbuild.MustBuild(t, "examples/hello"), nil)
	const secret = "PARAM-SECRET-5e1f"
	invoke := func(blocking bool) string {
		var res map[string]any
		st, hdr := e.call(g, "POST", fmt.Sprintf("/api/v1/namespaces/_/actions/hello?blocking=%v", blocking), map[string]any{"name": secret}, &res)
		if st != 200 && st != 202 {
			t.Fatalf("invoke: %d %v", st, res)
		}
		id := hdr.Get("X-Openwhisk-Activation-Id")
		e.waitActivation(g, id)
		return id
	}
	warm, background := invoke(true), invoke(false)
	logs := e.logs.String()
	for _, tc := range []struct {
		id, svc string
		want    int
	}{
		{warm, "gateway", 1}, {warm, "invoker", 1}, {warm, "controller", 0},
		{background, "gateway", 1}, {background, "invoker", 1}, {background, "controller", 1},
	} {
		n := 0
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, " msg=activation ") && strings.Contains(l, " service="+tc.svc+" ") && strings.Contains(l, " activation="+tc.id+" ") {
				n++
			}
		}
		if n != tc.want {
			t.Errorf("%s: %d activation lines for %s, want %d", tc.svc, n, tc.id, tc.want)
		}
	}
	if strings.Contains(logs, secret) {
		t.Fatal("a parameter is in the logs")
	}
}
