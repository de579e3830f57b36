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

// goBuild runs `go build -trimpath [-tags TAGS] -o out pkg` in root; tags
// "buildmode=c-shared" builds a WASI reactor instead.
func goBuild(ctx context.Context, root, out, pkg, tags string, env ...string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false"}
	switch tags {
	case "":
	case reactorBuild:
		args = append(args, "-buildmode=c-shared")
	default:
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

// reactorBuild as goBuild's tags builds a WASI reactor.
const reactorBuild = "buildmode=c-shared"

// buildWasm compiles a function of the source tree (e.g. ./examples/hello)
// to WebAssembly: examples/hello as a reactor (sdk.Handle, the fastest
// calling convention, as its package comment recommends), the others as
// commands.
func buildWasm(ctx context.Context, root, dir, pkg string) ([]byte, error) {
	out := filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_")+".wasm")
	mode := ""
	if pkg == "./examples/hello" {
		mode = reactorBuild
	}
	if err := goBuild(ctx, root, out, pkg, mode, "GOOS=wasip1", "GOARCH=wasm"); err != nil {
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
