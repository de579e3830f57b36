package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	f.Add(`{"measurements":["` + strings.Repeat("ab", 32) + `"],"snp":{"measurements":["` + strings.Repeat("cd", 48) + `"],"minTcb":{"bootloader":3},"hostData":"00"},"tdx":{"mrtd":["aa"],"rtmr2":["bb"],"minTeeTcbSvn":"0001","tcbStatuses":["UpToDate"]},"signers":[{"publicKey":"01","minVersion":2}]}`)
	f.Add(`{"snp":{"hostData":"zz"}}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		var body policyBody
		if json.Unmarshal([]byte(s), &body) != nil {
			return
		}
		p, err := parsePolicy(&body)
		if err != nil {
			return
		}
		// What parses renders and parses again to the same policy.
		r := renderPolicy(&p)
		p2, err := parsePolicy(&r)
		if err != nil {
			t.Fatalf("rendered policy does not parse: %v", err)
		}
		if len(p2.Measurements) != len(p.Measurements) || (p.SNP == nil) != (p2.SNP == nil) || (p.TDX == nil) != (p2.TDX == nil) || len(p2.Signers) != len(p.Signers) {
			t.Fatalf("round trip changed the policy: %+v != %+v", p, p2)
		}
	})
}
