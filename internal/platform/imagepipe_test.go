package platform_test

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// TestImagePipe deploys the example chain scale → detect → report as a
// sequence and runs it on the sample image.
func TestImagePipe(t *testing.T) {
	e := start(t, t.TempDir())
	g := e.guest()
	for _, f := range []string{"scale", "detect", "report"} {
		e.deploy(g, f, wasmbuild.MustBuild(t, "examples/imagepipe/"+f), nil)
	}
	e.deploySequence(g, "imagepipe", "/_/scale", "/_/detect", "/_/report")
	img, err := os.ReadFile("../../examples/imagepipe/testdata/sample.png")
	if err != nil {
		t.Fatal(err)
	}
	var act map[string]any
	st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/imagepipe?blocking=true",
		map[string]any{"image": base64.StdEncoding.EncodeToString(img)}, &act)
	if st != 200 {
		t.Fatalf("invoke: %d %v", st, act)
	}
	res := act["response"].(map[string]any)["result"].(map[string]any)
	summary, _ := res["summary"].(map[string]any)
	if summary["verdict"] != "textured" || summary["corners"] != float64(25) || !strings.Contains(res["report"].(string), "textured") {
		t.Fatalf("report: %v", res)
	}
	// The sequence record: kind sequence, its components' ids as logs.
	anns := map[string]any{}
	for _, kv := range act["annotations"].([]any) {
		m := kv.(map[string]any)
		anns[m["key"].(string)] = m["value"]
	}
	if anns["kind"] != "sequence" || anns["topmost"] != true || anns["path"] != "guest/imagepipe" {
		t.Fatalf("sequence annotations: %v", anns)
	}
	if _, ok := anns["duration"]; !ok || act["duration"] != anns["duration"] {
		t.Fatalf("sequence duration %v, annotation %v", act["duration"], anns["duration"])
	}
	comps, _ := act["logs"].([]any)
	if len(comps) != 3 {
		t.Fatalf("components: %v", act["logs"])
	}
	// Each component record: caused by the sequence, its own logs.
	var sum float64
	for i, want := range []string{"scale: ", "detect: ", "report: "} {
		var c map[string]any
		if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+comps[i].(string), nil, &c); st != 200 {
			t.Fatalf("component %d: %d", i, st)
		}
		logs, _ := c["logs"].([]any)
		if c["cause"] != act["activationId"] || !success(c) || len(logs) != 1 || !strings.Contains(logs[0].(string), want) {
			t.Fatalf("component %d: %v", i, c)
		}
		sum += c["duration"].(float64)
	}
	if act["duration"] != sum {
		t.Fatalf("sequence duration %v, sum of the components' %v", act["duration"], sum)
	}
	// A failing first step stops the chain with its error.
	var failed map[string]any
	st, _ = e.call(g, "POST", "/api/v1/namespaces/_/actions/imagepipe?blocking=true", map[string]any{"image": "not an image"}, &failed)
	if st != 502 || success(failed) || len(failed["logs"].([]any)) != 1 {
		t.Fatalf("bad image: %d %v", st, failed)
	}
}
