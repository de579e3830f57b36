package cli

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The typed key-release rules in `clemmys policy`'s argument form:
//
//	snp:measurement=HEX min-tcb=BL.TEE.SNP.UCODE smt=allow host-data=HEX ...
//	tdx:mrtd=HEX rtmr1=HEX min-tcb-svn=HEX tcb-status=SWHardeningNeeded ...
//
// A platform prefix applies to the KEY=VALUE arguments after it until the
// next one. A bare hex string is a measurement of the simulated TEE.

// snpTCBJSON, snpJSON, tdxJSON mirror the gateway's policy document.
type snpTCBJSON struct {
	BootLoader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

type snpJSON struct {
	Measurements        []string   `json:"measurements"`
	MinTCB              snpTCBJSON `json:"minTcb"`
	AllowSMT            bool       `json:"allowSmt"`
	AllowMigrationAgent bool       `json:"allowMigrationAgent"`
	HostData            string     `json:"hostData,omitempty"`
	IDKeyDigests        []string   `json:"idKeyDigests,omitempty"`
	MinGuestSVN         uint32     `json:"minGuestSvn,omitempty"`
}

type tdxJSON struct {
	MRTDs        []string `json:"mrtd"`
	RTMR0        []string `json:"rtmr0,omitempty"`
	RTMR1        []string `json:"rtmr1,omitempty"`
	RTMR2        []string `json:"rtmr2,omitempty"`
	RTMR3        []string `json:"rtmr3,omitempty"`
	MinTEETCBSVN string   `json:"minTeeTcbSvn,omitempty"`
	TCBStatuses  []string `json:"tcbStatuses,omitempty"`
}

type signerJSON struct {
	PublicKey  string `json:"publicKey"`
	MinVersion uint32 `json:"minVersion"`
}

// rule is one parsed argument.
type rule struct {
	platform string // "", "snp", "tdx"
	key      string // "" for a bare sim measurement
	value    string
}

func (r rule) String() string {
	if r.platform == "" {
		return r.value
	}
	return r.platform + ":" + r.key + "=" + r.value
}

var ruleKeys = map[string][]string{
	"snp":    {"measurement", "min-tcb", "smt", "migration-agent", "host-data", "id-key-digest", "min-guest-svn"},
	"tdx":    {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "min-tcb-svn", "tcb-status"},
	"signer": {"key", "min-version"},
}

// parseRules parses policy arguments and checks each value's form.
func parseRules(args []string) ([]rule, error) {
	var out []rule
	platform := ""
	for _, a := range args {
		a = strings.TrimSpace(a)
		if p, rest, ok := strings.Cut(a, ":"); ok && (p == "snp" || p == "tdx" || p == "signer") {
			platform, a = p, rest
		}
		k, v, hasEq := strings.Cut(a, "=")
		if !hasEq {
			if platform != "" && a != "" {
				return nil, fmt.Errorf("%q: write %s rules as KEY=VALUE (keys: %s)", a, platform, strings.Join(ruleKeys[platform], ", "))
			}
			m := strings.ToLower(a)
			if b, err := hex.DecodeString(m); err != nil || len(b) < 32 || len(b) > 64 {
				return nil, fmt.Errorf("%q is not a measurement (32 to 64 bytes in hex) nor a snp:/tdx: rule", a)
			}
			out = append(out, rule{value: m})
			continue
		}
		if platform == "" {
			return nil, fmt.Errorf("%q: name the platform first (snp:%s or tdx:%s)", a, a, a)
		}
		k = strings.ToLower(k)
		if !slices.Contains(ruleKeys[platform], k) {
			return nil, fmt.Errorf("%s:%s is not a rule; %s rules: %s", platform, k, platform, strings.Join(ruleKeys[platform], ", "))
		}
		r := rule{platform: platform, key: k, value: strings.TrimSpace(v)}
		if err := checkRuleValue(r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func hexOf(v string, size int) (string, error) {
	v = strings.ToLower(v)
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != size {
		return "", fmt.Errorf("%q is not %d bytes of hex", v, size)
	}
	return v, nil
}

func checkRuleValue(r rule) error {
	var err error
	switch r.key {
	case "measurement", "id-key-digest", "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3":
		_, err = hexOf(r.value, 48)
	case "host-data":
		_, err = hexOf(r.value, 32)
	case "min-tcb-svn":
		_, err = hexOf(r.value, 16)
	case "key":
		_, err = hexOf(r.value, 32)
	case "min-version":
		_, err = strconv.ParseUint(r.value, 10, 32)
	case "min-tcb":
		_, err = parseSNPTCB(r.value)
	case "smt", "migration-agent":
		if r.value != "allow" && r.value != "forbid" {
			err = fmt.Errorf("%q: write allow or forbid", r.value)
		}
	case "min-guest-svn":
		_, err = strconv.ParseUint(r.value, 10, 32)
	case "tcb-status":
		known := []string{"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"}
		if !slices.Contains(known, r.value) {
			err = fmt.Errorf("%q: TCB statuses are %s", r.value, strings.Join(known, ", "))
		}
	}
	if err != nil {
		return fmt.Errorf("%s:%s: %v", r.platform, r.key, err)
	}
	return nil
}

func parseSNPTCB(v string) (snpTCBJSON, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 {
		return snpTCBJSON{}, fmt.Errorf("%q: write BOOTLOADER.TEE.SNP.MICROCODE, e.g. 3.0.8.115", v)
	}
	var n [4]uint8
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return snpTCBJSON{}, fmt.Errorf("%q: write BOOTLOADER.TEE.SNP.MICROCODE, each 0..255", v)
		}
		n[i] = uint8(x)
	}
	return snpTCBJSON{n[0], n[1], n[2], n[3]}, nil
}

func addUnique(l []string, v string) []string {
	if slices.Contains(l, v) {
		return l
	}
	return append(l, v)
}

func without(l []string, v string) []string {
	return slices.DeleteFunc(slices.Clone(l), func(x string) bool { return x == v })
}

// applyRule changes p: allow adds a list entry or sets a value, remove
// takes an entry out or resets a value to its default.
func applyRule(p *policyJSON, r rule, remove bool) {
	if r.platform == "" {
		if remove {
			p.Measurements = without(p.Measurements, r.value)
		} else {
			p.Measurements = addUnique(p.Measurements, r.value)
		}
		return
	}
	list := func(l *[]string, v string) {
		if remove {
			*l = without(*l, v)
		} else {
			*l = addUnique(*l, v)
		}
	}
	v := strings.ToLower(r.value)
	if r.platform == "signer" {
		applySigner(p, r, remove)
		return
	}
	if r.platform == "snp" {
		if p.SNP == nil {
			p.SNP = &snpJSON{}
		}
		s := p.SNP
		switch r.key {
		case "measurement":
			list(&s.Measurements, v)
		case "id-key-digest":
			list(&s.IDKeyDigests, v)
		case "min-tcb":
			s.MinTCB, _ = parseSNPTCB(v)
			if remove {
				s.MinTCB = snpTCBJSON{}
			}
		case "smt":
			s.AllowSMT = v == "allow" && !remove
		case "migration-agent":
			s.AllowMigrationAgent = v == "allow" && !remove
		case "host-data":
			s.HostData = v
			if remove {
				s.HostData = ""
			}
		case "min-guest-svn":
			n, _ := strconv.ParseUint(v, 10, 32)
			s.MinGuestSVN = uint32(n)
			if remove {
				s.MinGuestSVN = 0
			}
		}
		if len(s.Measurements) == 0 && remove {
			p.SNP = nil // no measurement left: no SNP runtime is accepted
		}
		return
	}
	if p.TDX == nil {
		p.TDX = &tdxJSON{}
	}
	t := p.TDX
	switch r.key {
	case "mrtd":
		list(&t.MRTDs, v)
	case "rtmr0":
		list(&t.RTMR0, v)
	case "rtmr1":
		list(&t.RTMR1, v)
	case "rtmr2":
		list(&t.RTMR2, v)
	case "rtmr3":
		list(&t.RTMR3, v)
	case "min-tcb-svn":
		t.MinTEETCBSVN = v
		if remove {
			t.MinTEETCBSVN = ""
		}
	case "tcb-status":
		if len(t.TCBStatuses) == 0 {
			t.TCBStatuses = []string{"UpToDate"} // the default the list replaces
		}
		list(&t.TCBStatuses, r.value)
	}
	if len(t.MRTDs) == 0 && remove {
		p.TDX = nil
	}
}

// applySigner adds or removes a release signer; min-version applies to the
// signer named last before it (or the only one).
func applySigner(p *policyJSON, r rule, remove bool) {
	switch r.key {
	case "key":
		v := strings.ToLower(r.value)
		i := slices.IndexFunc(p.Signers, func(s signerJSON) bool { return s.PublicKey == v })
		switch {
		case remove && i >= 0:
			p.Signers = slices.Delete(slices.Clone(p.Signers), i, i+1)
		case !remove && i < 0:
			p.Signers = append(p.Signers, signerJSON{PublicKey: v})
		case !remove:
			// Move it last, so a min-version after it applies to it.
			s := p.Signers[i]
			p.Signers = append(slices.Delete(slices.Clone(p.Signers), i, i+1), s)
		}
	case "min-version":
		if len(p.Signers) == 0 || remove {
			return
		}
		n, _ := strconv.ParseUint(r.value, 10, 32)
		p.Signers[len(p.Signers)-1].MinVersion = uint32(n)
	}
}

func orAny(l []string) []string {
	if len(l) == 0 {
		return []string{"(any)"}
	}
	return l
}

func allowed(b bool) string {
	if b {
		return "allowed"
	}
	return "forbidden"
}

// printPolicy shows a policy in the argument form's vocabulary.
func printPolicy(w io.Writer, p *policyJSON) int {
	fmt.Fprintln(w, "sim (simulated TEE, no protection) runtime measurements:")
	for _, m := range p.Measurements {
		fmt.Fprintln(w, "  "+m)
	}
	if len(p.Measurements) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	fmt.Fprintf(w, "  debug enclaves allowed: %v\n  minimum security version: %d\n", p.AllowDebug, p.MinSecurityVersion)
	if len(p.Signers) > 0 {
		fmt.Fprintln(w, "trusted runtime release signers (their signed releases are accepted on every platform):")
		for _, s := range p.Signers {
			fmt.Fprintf(w, "  key %s  from release version %d\n", s.PublicKey, s.MinVersion)
		}
	}
	if s := p.SNP; s != nil {
		fmt.Fprintln(w, "snp (AMD SEV-SNP):")
		for _, m := range s.Measurements {
			fmt.Fprintf(w, "  measurement      %s\n", m)
		}
		fmt.Fprintf(w, "  min-tcb          %d.%d.%d.%d (bootloader.tee.snp.microcode)\n", s.MinTCB.BootLoader, s.MinTCB.TEE, s.MinTCB.SNP, s.MinTCB.Microcode)
		fmt.Fprintf(w, "  smt              %s\n  migration-agent  %s\n  debug            always refused\n", allowed(s.AllowSMT), allowed(s.AllowMigrationAgent))
		hd := s.HostData
		if hd == "" {
			hd = "(any)"
		}
		fmt.Fprintf(w, "  host-data        %s\n", hd)
		for _, d := range orAny(s.IDKeyDigests) {
			fmt.Fprintf(w, "  id-key-digest    %s\n", d)
		}
		fmt.Fprintf(w, "  min-guest-svn    %d\n", s.MinGuestSVN)
	} else {
		fmt.Fprintln(w, "snp (AMD SEV-SNP): no rules, no SEV-SNP runtime is accepted")
	}
	if t := p.TDX; t != nil {
		fmt.Fprintln(w, "tdx (Intel TDX):")
		for _, m := range t.MRTDs {
			fmt.Fprintf(w, "  mrtd             %s\n", m)
		}
		for i, l := range [][]string{t.RTMR0, t.RTMR1, t.RTMR2, t.RTMR3} {
			for _, m := range orAny(l) {
				fmt.Fprintf(w, "  rtmr%d            %s\n", i, m)
			}
		}
		svn := t.MinTEETCBSVN
		if svn == "" {
			svn = "(any)"
		}
		st := t.TCBStatuses
		if len(st) == 0 {
			st = []string{"UpToDate"}
		}
		fmt.Fprintf(w, "  min-tcb-svn      %s\n  tcb-status       %s\n  debug            always refused\n", svn, strings.Join(st, ", "))
	} else {
		fmt.Fprintln(w, "tdx (Intel TDX): no rules, no TDX runtime is accepted")
	}
	return 0
}
