// Package srctree finds the clemmys source tree that the working directory
// is in, for what builds from source when run there: the enclave runtime
// (cli), the catalog's functions and the bench's functions and builds.
package srctree

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the Go module path of the clemmys source tree.
const ModulePath = "github.com/clemmys/clemmys"

// Root returns the root of the clemmys source tree containing the working
// directory, or "" when not inside it or without a Go toolchain.
func Root(ctx context.Context) string {
	if _, err := exec.LookPath("go"); err != nil {
		return ""
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return ""
	}
	b, err := os.ReadFile(gomod)
	if err != nil || !bytes.Contains(b, []byte("module "+ModulePath+"\n")) {
		return ""
	}
	return filepath.Dir(gomod)
}
