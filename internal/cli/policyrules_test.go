package cli

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/tee"
)

func TestParseAndApplyRules(t *testing.T) {
	m48 := strings.Repeat("ab", 48)
	m48b := strings.Repeat("cd", 48)
	sim := strings.Repeat("11", 32)
	rules, err := parseRules([]string{sim, "snp:measurement=" + m48, "min-tcb=3.0.8.115", "smt=allow",
		"tdx:mrtd=" + m48b, "rtmr2=" + m48, "tcb-status=SWHardeningNeeded", "min-tcb-svn=" + strings.Repeat("00", 16)})
	if err != nil {
		t.Fatal(err)
	}
	var p policyJSON
	for _, r := range rules {
		applyRule(&p, r, false)
	}
	if len(p.Measurements) != 1 || p.SNP == nil || p.SNP.Measurements[0] != m48 || p.SNP.MinTCB != (snpTCBJSON{3, 0, 8, 115}) || !p.SNP.AllowSMT ||
		p.TDX == nil || p.TDX.MRTDs[0] != m48b || p.TDX.RTMR2[0] != m48 || strings.Join(p.TDX.TCBStatuses, ",") != "UpToDate,SWHardeningNeeded" {
		t.Fatalf("%+v %+v %+v", p, p.SNP, p.TDX)
	}
	// Allowing twice keeps one entry; removing the last SNP measurement
	// drops the SNP rules.
	applyRule(&p, rules[1], false)
	if len(p.SNP.Measurements) != 1 {
		t.Fatal("duplicate")
	}
	applyRule(&p, rules[1], true)
	if p.SNP != nil {
		t.Fatalf("snp rules left without a measurement: %+v", p.SNP)
	}
	var out bytes.Buffer
	printPolicy(&out, &p)
	for _, want := range []string{"sim (simulated TEE", sim, "snp (AMD SEV-SNP): no rules", "tdx (Intel TDX):", "mrtd             " + m48b,
		"rtmr2            " + m48, "rtmr0            (any)", "tcb-status       UpToDate, SWHardeningNeeded", "debug            always refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("policy display lacks %q:\n%s", want, out.String())
		}
	}

	for _, bad := range [][]string{
		{"snp:measurement=abcd"},
		{"snp:min-tcb=1.2.3"},
		{"snp:smt=maybe"},
		{"snp:colour=blue"},
		{"tdx:tcb-status=Fine"},
		{"min-tcb=1.2.3.4"},
		{"snp:" + m48},
		{"nothex"},
	} {
		if _, err := parseRules(bad); err == nil {
			t.Errorf("parseRules(%q) accepted", bad)
		}
	}
}

func TestMeasureReal(t *testing.T) {
	var out, errs bytes.Buffer
	exe := t.TempDir() + "/clemmys-enclave"
	if err := os.WriteFile(exe, []byte("runtime"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code := Run([]string{"measure", "--tee", "tdx", "--enclave", exe, "--mrtd", strings.Repeat("ab", 48)}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	mrtd, _ := hex.DecodeString(strings.Repeat("ab", 48))
	z := make([]byte, 48)
	combined := hex.EncodeToString(tee.TDXMeasurement(mrtd, [4][]byte{z, z, z, z}))
	for _, want := range []string{"sha384 ", combined, "combined TDX measurement", "clemmys policy allow tdx:mrtd="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("measure --tee tdx lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := Run([]string{"measure", "--tee", "snp", "--enclave", exe}, &out, &errs); code != 0 || !strings.Contains(out.String(), "sev-snp-measure") {
		t.Fatalf("measure --tee snp: %d %s", code, out.String())
	}
	if code := Run([]string{"measure", "--tee", "sgx", "--enclave", exe}, &out, &errs); code != 2 {
		t.Fatalf("measure --tee sgx: %d", code)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add("snp:measurement=" + strings.Repeat("ab", 48) + " min-tcb=1.2.3.4")
	f.Add("tdx:mrtd=" + strings.Repeat("cd", 48) + " tcb-status=UpToDate")
	f.Add("signer:key=" + strings.Repeat("01", 32) + " min-version=3")
	f.Add(strings.Repeat("11", 32))
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := parseRules(strings.Fields(s))
		if err != nil {
			return
		}
		var p policyJSON
		for _, r := range rules {
			applyRule(&p, r, false)
			applyRule(&p, r, true)
		}
		var out bytes.Buffer
		printPolicy(&out, &p)
	})
}
