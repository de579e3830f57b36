package deptest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/bench"
)

// unprotectedMarker is in internal/envelope/unprotected.go's banner, and
// nowhere else.
const unprotectedMarker = "UNPROTECTED BENCHMARK BUILD"

func goBuild(t *testing.T, out, pkg string, tags ...string) {
	t.Helper()
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, b)
	}
}

// The benchmark-only unprotected build (docs/performance.md) exists only
// with -tags clemmys_unprotected: the default build compiles none of its
// files, and the default binaries of clemmys and clemmys-enclave do not
// contain it, so no flag, variable or configuration can switch protection
// off. A tagged binary refuses to run outside `clemmys bench`.
func TestUnprotectedBuildIsBenchmarkOnly(t *testing.T) {
	tagged := []string{"unprotected.go", "session_unprotected.go"}
	files := strings.Fields(goList(t, "-f", "{{join .GoFiles \" \"}}", "./internal/envelope")[0])
	for _, f := range tagged {
		if slices.Contains(files, f) {
			t.Errorf("the default build of internal/envelope compiles %s", f)
		}
	}
	if !slices.Contains(files, "protection.go") {
		t.Errorf("the default build of internal/envelope lacks protection.go: %v", files)
	}
	files = strings.Fields(goList(t, "-tags", bench.UnprotectedTag, "-f", "{{join .GoFiles \" \"}}", "./internal/envelope")[0])
	if !slices.Contains(files, "unprotected.go") || slices.Contains(files, "protection.go") {
		t.Errorf("the tagged build of internal/envelope compiles %v", files)
	}

	dir := t.TempDir()
	for _, pkg := range []string{"./cmd/clemmys", "./cmd/clemmys-enclave"} {
		out := filepath.Join(dir, filepath.Base(pkg))
		goBuild(t, out, pkg)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(unprotectedMarker)) {
			t.Errorf("the default build of %s contains the unprotected build", pkg)
		}
	}

	// The check above means something: the tagged build has the marker.
	enc := filepath.Join(dir, "clemmys-enclave-unprotected")
	goBuild(t, enc, "./cmd/clemmys-enclave", bench.UnprotectedTag)
	b, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(unprotectedMarker)) {
		t.Fatalf("the tagged enclave runtime lacks the marker %q", unprotectedMarker)
	}

	// Without the bench's environment it refuses to start; with it (the
	// strings of internal/bench, so they agree with envelope's) it starts
	// and fails only on its missing flags.
	run := func(env ...string) string {
		cmd := exec.Command(enc)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("the enclave runtime ran without --sim-dir:\n%s", out)
		}
		return string(out)
	}
	if out := run(bench.UnprotectedEnv + "=yes"); !strings.Contains(out, "refusing to run") {
		t.Errorf("the unprotected runtime started without the bench's environment:\n%s", out)
	}
	out := run(bench.UnprotectedEnv + "=" + bench.UnprotectedEnvValue)
	if strings.Contains(out, "refusing to run") || !strings.Contains(out, unprotectedMarker) || !strings.Contains(out, "--sim-dir") {
		t.Errorf("the unprotected runtime with the bench's environment:\n%s", out)
	}

	// The whole tree builds with the tag (nothing is compiled only in the
	// default build), and in that build the envelope's crypto is the
	// identity (internal/envelope/unprotected_test.go).
	for _, args := range [][]string{
		{"build", "-tags", bench.UnprotectedTag, "./..."},
		{"test", "-count=1", "-tags", bench.UnprotectedTag, "-run", "^TestUnprotected", "./internal/envelope/"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), bench.UnprotectedEnv+"="+bench.UnprotectedEnvValue)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %v: %v\n%s", args, err, b)
		}
	}
}
