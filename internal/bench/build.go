package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goBuild runs `go build -trimpath [-tags TAGS] -o out pkg` in root.
func goBuild(ctx context.Context, root, out, pkg, tags string, env ...string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// buildWasm compiles a function of the source tree (e.g. ./examples/hello)
// to WebAssembly.
func buildWasm(ctx context.Context, root, dir, pkg string) ([]byte, error) {
	out := filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_")+".wasm")
	if err := goBuild(ctx, root, out, pkg, "", "GOOS=wasip1", "GOARCH=wasm"); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// withCustomSection appends a custom section named name to a wasm module:
// a module that runs the same but has another digest, so nothing a
// runtime compiled or cached before applies to it.
func withCustomSection(wasm []byte, name string) []byte {
	payload := append(append([]byte{byte(len(name))}, name...), 0) // wazero refuses an empty custom payload
	out := append([]byte(nil), wasm...)
	out = append(out, 0, byte(len(payload)))
	return append(out, payload...)
}
