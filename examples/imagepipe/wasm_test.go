// Package imagepipe_test checks that the three imagepipe functions build
// for the platform (GOOS=wasip1 GOARCH=wasm) and work there as a chain.
package imagepipe_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/sandbox"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

var steps = []string{"scale", "detect", "report"}

// TestWasm builds the three functions to wasm and runs them as the
// sequence scale → detect → report on testdata/sample.png in the sandbox,
// under its default limits, passing each output on as the next input.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three wasm modules")
	}
	ctx := context.Background()
	engine := sandbox.NewEngine()
	t.Cleanup(func() { _ = engine.Close(ctx) })

	modules := make([]*sandbox.Module, len(steps))
	for i, step := range steps {
		wasm := wasmbuild.MustBuild(t, "examples/imagepipe/"+step)
		m, err := engine.Compile(ctx, wasm)
		if err != nil {
			t.Fatalf("Compile(%s): %v", step, err)
		}
		modules[i] = m
	}

	sample, err := os.ReadFile(filepath.Join("testdata", "sample.png"))
	if err != nil {
		t.Fatal(err)
	}
	input, _ := json.Marshal(map[string]any{"image": base64.StdEncoding.EncodeToString(sample)})
	for i, m := range modules {
		res, err := m.Run(ctx, input, sandbox.Limits{})
		if err != nil {
			t.Fatalf("%s: %v\nlogs: %s", steps[i], err, res.Logs)
		}
		if !strings.HasPrefix(string(res.Logs), steps[i]+": ") || strings.Count(string(res.Logs), "\n") != 1 {
			t.Errorf("%s logs: %q", steps[i], res.Logs)
		}
		t.Logf("%s: %s in %v, peak memory %d KiB", steps[i], strings.TrimSpace(string(res.Logs)), res.Duration, res.PeakMemoryBytes>>10)
		input = res.Output
	}

	var out struct {
		Report  string
		Summary struct {
			Width, Height int
			Verdict       string
		}
	}
	if err := json.Unmarshal(input, &out); err != nil {
		t.Fatalf("report output %q: %v", input, err)
	}
	if out.Summary.Width != 48 || out.Summary.Height != 48 || out.Summary.Verdict != "textured" || !strings.Contains(out.Report, "Verdict: textured") {
		t.Errorf("report output: %s", input)
	}

	// An application error comes back as {"error": ...} (with exit status 1
	// in one-shot mode; a warm instance answers it and stays up).
	res, _ := modules[0].Run(ctx, []byte(`{"image": "aGVsbG8="}`), sandbox.Limits{})
	if res == nil || !strings.Contains(string(res.Output), `"error":"image is neither PNG nor JPEG"`) {
		t.Errorf("scale of a non-image: result %+v", res)
	}
}
