package platform_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/catalog"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// npmDir is the openwhisk npm client suite, relative to this package.
var npmDir = filepath.Join("..", "..", "tests", "npm")

// TestNPMClient runs the openwhisk npm client suite (tests/npm, node's
// built-in test runner) against a platform started with the whisk.system
// catalog. It needs node and npm: without node it is skipped, unless
// CLEMMYS_REQUIRE_NODE is set (as .ci/run does), which makes a missing node
// a failure. It runs `npm ci` when tests/npm/node_modules is missing.
func TestNPMClient(t *testing.T) {
	if testing.Short() {
		t.Skip("the npm client suite is not short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CLEMMYS_REQUIRE_NODE") != "" {
			t.Fatalf("node is not installed and CLEMMYS_REQUIRE_NODE is set: %v", err)
		}
		t.Skip("node is not installed (set CLEMMYS_REQUIRE_NODE=1 to fail instead)")
	}
	if _, err := os.Stat(filepath.Join(npmDir, "node_modules", "openwhisk", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("tests/npm/node_modules is missing and npm is not installed: %v", err)
		}
		t.Log("tests/npm/node_modules is missing: running npm ci")
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = npmDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	files, err := filepath.Glob(filepath.Join(npmDir, "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tests in %s: %v", npmDir, err)
	}
	sort.Strings(files)
	for i, f := range files {
		files[i] = filepath.Base(f)
	}

	// The functions the suite deploys, as files.
	wasmDir := t.TempDir()
	paths := map[string]string{}
	for _, fn := range []struct{ env, pkg string }{
		{"CLEMMYS_HELLO_WASM", "examples/hello"},
		{"CLEMMYS_ECHO_WASM", "internal/testfuncs/echo"},
	} {
		p := filepath.Join(wasmDir, filepath.Base(fn.pkg)+".wasm")
		if err := os.WriteFile(p, wasmbuild.MustBuild(t, fn.pkg), 0o600); err != nil {
			t.Fatal(err)
		}
		paths[fn.env] = p
	}

	dataDir := t.TempDir()
	t0 := time.Now()
	engine, err := jsEngineFile()
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, dataDir, func(c *platform.Config) {
		c.SkipCatalog = false
		c.JSEngines = []string{engine} // the nodejs actions' tests
	})
	installed := catalog.Installed(dataDir)
	t.Logf("platform up in %v, whisk.system catalog installed: %v", time.Since(t0), installed)
	if !installed {
		t.Logf("the catalog tests will fail; platform log:\n%s", grepLines(e.logs.String(), "catalog"))
	}
	const otherNS = "npm-other"
	u, k, err := e.p.Gateway.CreateNamespace(context.Background(), otherNS)
	if err != nil {
		t.Fatalf("create namespace %s: %v", otherNS, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	args := append([]string{"--test", "--test-reporter=spec"}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = npmDir
	cmd.Env = append(os.Environ(),
		"CLEMMYS_APIHOST="+e.p.APIHost(),
		"CLEMMYS_AUTH="+e.guest(),
		"CLEMMYS_NAMESPACE=guest",
		"CLEMMYS_OTHER_AUTH="+u+":"+k,
		"CLEMMYS_OTHER_NAMESPACE="+otherNS,
		"CLEMMYS_HELLO_WASM="+paths["CLEMMYS_HELLO_WASM"],
		"CLEMMYS_ECHO_WASM="+paths["CLEMMYS_ECHO_WASM"],
		"CLEMMYS_CATALOG="+map[bool]string{true: "installed", false: "missing"}[installed],
		"NO_COLOR=1", "FORCE_COLOR=0",
	)
	// Stream the runner's output into the test log, line by line.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err = cmd.Run()
	pw.Close()
	wg.Wait()
	if err != nil {
		t.Errorf("node --test: %v (the failing tests are listed above)", err)
		if ctx.Err() != nil {
			t.Errorf("the suite timed out")
		}
	}
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
