package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/clemmys/clemmys/internal/srctree"
)

const enclaveBinary = "clemmys-enclave"

// findEnclave locates the enclave runtime binary, in this order: the flag,
// $CLEMMYS_ENCLAVE, next to the running clemmys executable, built from
// source (when run inside the clemmys module, e.g. `go run ./cmd/clemmys`)
// into DATA_DIR/bin, and finally PATH. It returns the path and how it was
// found.
//
// Only `up` (install true) builds DATA_DIR/bin/clemmys-enclave, the binary
// the platform starts runtimes from; tools (`measure`, `policy allow`) build
// DATA_DIR/bin/clemmys-enclave.next, so measuring the runtime that the next
// `up` will use never replaces the one a running platform uses. Builds go to
// a temporary file renamed into place: running runtimes keep their inode.
func findEnclave(ctx context.Context, flagPath, dataDir string, log *slog.Logger, install bool) (string, string, error) {
	if flagPath != "" {
		return checkExec(flagPath, "--enclave")
	}
	if env := os.Getenv("CLEMMYS_ENCLAVE"); env != "" {
		return checkExec(env, "$CLEMMYS_ENCLAVE")
	}
	if self, err := os.Executable(); err == nil {
		sibling := filepath.Join(filepath.Dir(self), enclaveBinary)
		if _, err := os.Stat(sibling); err == nil && !strings.Contains(self, "go-build") {
			return checkExec(sibling, "next to clemmys")
		}
	}
	if root := moduleRoot(ctx); root != "" {
		out := filepath.Join(dataDir, "bin", enclaveBinary)
		if !install {
			out += ".next"
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return "", "", fmt.Errorf("enclave build dir: %w", err)
		}
		log.Info("building the enclave runtime from source", "module", root, "out", out)
		tmp := out + ".tmp"
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-o", tmp, "./cmd/clemmys-enclave")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", "", fmt.Errorf("building the enclave runtime: %v\n%s", err, stderr.String())
		}
		if err := os.Rename(tmp, out); err != nil {
			return "", "", fmt.Errorf("installing the enclave runtime: %w", err)
		}
		return out, "built from source", nil
	}
	if p, err := exec.LookPath(enclaveBinary); err == nil {
		return p, "on PATH", nil
	}
	return "", "", errNoEnclave
}

func checkExec(path, how string) (string, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("enclave runtime (%s): %w", how, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", "", fmt.Errorf("enclave runtime (%s): %s is not an executable file", how, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	return abs, how, nil
}

// moduleRoot returns the root of the clemmys source tree containing the
// working directory if it has the runtime's command, or "".
func moduleRoot(ctx context.Context) string {
	root := srctree.Root(ctx)
	if root == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", enclaveBinary)); err != nil {
		return ""
	}
	return root
}
