package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

// On a machine that is not a confidential VM (CI), the runtime refuses to
// start unless the simulated TEE is asked for explicitly.
func TestFailsClosedWithoutHardware(t *testing.T) {
	if snp.Available() || tdx.Available() {
		t.Skip("this machine is a confidential VM")
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 1, "found no confidential-computing hardware"},
		{[]string{"--tee", "auto"}, 1, "--tee sim --sim-dir"},
		{[]string{"--tee", "snp"}, 1, "not an AMD SEV-SNP guest"},
		{[]string{"--tee", "sev-snp"}, 1, "not an AMD SEV-SNP guest"},
		{[]string{"--tee", "tdx"}, 1, "not an Intel TDX guest"},
		{[]string{"--tee", "sgx"}, 1, "unknown TEE platform"},
		{[]string{"--tee", "sim"}, 2, "--sim-dir is required"},
	} {
		var out, errs bytes.Buffer
		code := run(tc.args, strings.NewReader(""), &out, &errs)
		if code != tc.code || !strings.Contains(errs.String(), tc.want) || out.Len() != 0 {
			t.Errorf("clemmys-enclave %v: exit %d, stderr %q, stdout %q; want exit %d and %q", tc.args, code, errs.String(), out.String(), tc.code, tc.want)
		}
	}
}
