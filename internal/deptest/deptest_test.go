package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/clemmys/clemmys"

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.." // the module root: patterns are relative to it
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func isStd(t *testing.T) map[string]bool {
	std := map[string]bool{}
	for _, p := range goList(t, "std") {
		std[p] = true
	}
	return std
}

// The enclave runtime binary is the trusted computing base: every import
// must be the standard library or on this list.
func TestEnclaveImports(t *testing.T) {
	allowedPrefixes := []string{
		mod + "/internal/enclave",
		mod + "/internal/envelope",
		mod + "/internal/fncode",
		mod + "/internal/ipc",
		mod + "/internal/sandbox",
		mod + "/internal/tee",
		mod + "/internal/wire",
		mod + "/cmd/clemmys-enclave",
		"github.com/tetratelabs/wazero",
		"github.com/fxamacker/cbor/v2",
		"github.com/x448/float16",
		// wazero ≥ 1.10 uses these for CPU feature detection and mmap.
		"golang.org/x/sys/cpu",
		"golang.org/x/sys/unix",
	}
	forbiddenStd := []string{"net/http", "os/exec", "net/rpc"}
	std := isStd(t)
	for _, p := range goList(t, "-deps", "./cmd/clemmys-enclave") {
		if std[p] || strings.HasPrefix(p, "vendor/") || strings.HasPrefix(p, "internal/") {
			for _, f := range forbiddenStd {
				if p == f {
					t.Errorf("enclave runtime imports %s", p)
				}
			}
			continue
		}
		ok := false
		for _, a := range allowedPrefixes {
			if p == a || strings.HasPrefix(p, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("enclave runtime imports %s, which is not on the TCB allowlist", p)
		}
	}
}

// Services talk over the bus; none imports another.
func TestServicesDoNotImportEachOther(t *testing.T) {
	services := []string{"gateway", "controller", "invoker", "kms"}
	for _, s := range services {
		deps := goList(t, "-deps", "./internal/"+s)
		for _, d := range deps {
			for _, o := range services {
				if o != s && d == mod+"/internal/"+o {
					t.Errorf("internal/%s imports internal/%s", s, o)
				}
			}
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{.Doc}}", "./...") {
		path, doc, _ := strings.Cut(line, "|")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no package comment", path)
		}
	}
}
