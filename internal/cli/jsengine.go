package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clemmys/clemmys/internal/srctree"
)

// jsEngineFile is the JavaScript engine's file name next to clemmys.
const jsEngineFile = "clemmys-jsengine.wasm"

// jsEngineDir is where `up` keeps the engines it built, by digest, under
// DATA_DIR/bin: actions deployed on an earlier build keep running on it.
const jsEngineDir = "jsengine"

// findJSEngine locates the JavaScript engine of the nodejs kinds (the
// wasip1 build of internal/jsengine), in this order: the flag,
// $CLEMMYS_JS_ENGINE, next to the running clemmys executable, built from
// source into DATA_DIR/bin/jsengine/<sha256>.wasm (reproducibly: -trimpath,
// so the same source gives the same digest and deployed actions keep
// their engine). It returns the engine new actions are deployed on first,
// then the earlier builds kept in DATA_DIR/bin/jsengine; none (and no
// error) when there is no engine to be had: the nodejs kinds are then off.
func findJSEngine(ctx context.Context, flagPath, dataDir string, log *slog.Logger) ([]string, string, error) {
	dir := filepath.Join(dataDir, "bin", jsEngineDir)
	withKept := func(current, how string) ([]string, string, error) {
		kept, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
		out := []string{current}
		for _, k := range kept {
			if k != current {
				out = append(out, k)
			}
		}
		return out, how, nil
	}
	if flagPath != "" {
		return withKept(flagPath, "--js-engine")
	}
	if env := os.Getenv("CLEMMYS_JS_ENGINE"); env != "" {
		return withKept(env, "$CLEMMYS_JS_ENGINE")
	}
	if self, err := os.Executable(); err == nil {
		sibling := filepath.Join(filepath.Dir(self), jsEngineFile)
		if _, err := os.Stat(sibling); err == nil && !strings.Contains(self, "go-build") {
			return withKept(sibling, "next to clemmys")
		}
	}
	root := srctree.Root(ctx)
	if root == "" {
		return nil, "", nil
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "jsengine")); err != nil {
		return nil, "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("JavaScript engine build dir: %w", err)
	}
	log.Info("building the JavaScript engine from source", "module", root)
	tmp, err := os.CreateTemp(dir, "build-*.tmp")
	if err != nil {
		return nil, "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-o", tmp.Name(), "./internal/jsengine")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, "", fmt.Errorf("building the JavaScript engine: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return nil, "", err
	}
	d := sha256.Sum256(b)
	out := filepath.Join(dir, hex.EncodeToString(d[:])+".wasm")
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, "", fmt.Errorf("installing the JavaScript engine: %w", err)
	}
	engines, how, err := withKept(out, "built from source")
	// Newest first among the kept ones does not matter: an action names
	// its engine by digest.
	slices.Sort(engines[1:])
	return engines, how, err
}

// jsEngines finds the JavaScript engines (findJSEngine) and logs what it
// found; none turns the nodejs kinds off.
func jsEngines(ctx context.Context, flagPath, dataDir string, log *slog.Logger) ([]string, error) {
	engines, how, err := findJSEngine(ctx, flagPath, dataDir, log)
	if err != nil {
		return nil, err
	}
	if len(engines) == 0 {
		log.Warn("no JavaScript engine: the nodejs kinds are off (pass --js-engine or run from the source tree)")
	} else {
		log.Info("JavaScript engine", "path", engines[0], "found", how, "kept", len(engines)-1)
	}
	return engines, nil
}
