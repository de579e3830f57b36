package deptest

import (
	"os/exec"
	"slices"
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

		// The attester clients of real TEEs (internal/tee/snp, tee/tdx),
		// and only them: the verification code stays in the KMS
		// (TestEnclaveHasNoVerifier).
		// configfs-tsm: the kernel's report interface (Linux ≥ 6.7), the
		// primary way to get an SNP report or a TDX quote.
		"github.com/google/go-configfs-tsm/configfs/configfsi",
		"github.com/google/go-configfs-tsm/configfs/linuxtsm",
		"github.com/google/go-configfs-tsm/report",
		// The legacy guest devices /dev/sev-guest and /dev/tdx_guest
		// (older kernels): the clients, their ioctl ABI and report layout.
		"github.com/google/go-sev-guest/client",
		"github.com/google/go-sev-guest/abi",
		"github.com/google/go-tdx-guest/client",
		"github.com/google/go-tdx-guest/abi",
		// The clients' abi packages convert reports to protobuf messages
		// (their types, generated code).
		"github.com/google/go-sev-guest/proto/sevsnp",
		"github.com/google/go-tdx-guest/proto/tdx",
		"google.golang.org/protobuf",
		// Used by the clients: logging (silenced and kept off stdout by
		// internal/tee/teelog), GUIDs of the SNP certificate table, error
		// lists of go-configfs-tsm, ASN.1 of abi's signature conversion.
		"github.com/google/logger",
		"github.com/google/uuid",
		"go.uber.org/multierr",
		"golang.org/x/crypto/cryptobyte",
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

// The enclave runtime obtains reports; it never verifies them. The vendors'
// verification code and clemmys' verifiers live in the KMS.
func TestEnclaveHasNoVerifier(t *testing.T) {
	forbidden := []string{
		mod + "/internal/tee/snp/snpverify",
		mod + "/internal/tee/tdx/tdxverify",
		mod + "/internal/tee/snp/snptest",
		"github.com/google/go-sev-guest/verify",
		"github.com/google/go-sev-guest/validate",
		"github.com/google/go-sev-guest/kds",
		"github.com/google/go-sev-guest/testing",
		"github.com/google/go-tdx-guest/verify",
		"github.com/google/go-tdx-guest/validate",
		"github.com/google/go-tdx-guest/pcs",
		"github.com/google/go-configfs-tsm/configfs/faketsm",
	}
	deps := goList(t, "-deps", "./cmd/clemmys-enclave")
	for _, p := range deps {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("enclave runtime imports %s", p)
			}
		}
	}
	// The check means something: the attesters are there.
	for _, want := range []string{mod + "/internal/tee/snp", mod + "/internal/tee/tdx", mod + "/internal/tee/teelog"} {
		if !slices.Contains(deps, want) {
			t.Errorf("enclave runtime does not import %s", want)
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
