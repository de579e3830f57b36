package kms

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// Key-release rules on the typed claims of real hardware (wire.SNPPolicy,
// wire.TDXPolicy). checkPolicy (release.go) applies them; every refusal is
// a *ClaimError naming the claim that failed.

// Typed policy limits.
const (
	SNPMeasurementSize = 48
	SNPHostDataSize    = 32
	SNPIDKeyDigestSize = 48
	TDXRegisterSize    = 48
	TDXTCBSVNSize      = 16
)

// ClaimError is a key-release refusal on one claim of a runtime's
// evidence: Claim names it ("snp.measurement", "tdx.tcb-status", ...),
// Detail says what the claim is and what the policy wants.
type ClaimError struct {
	Claim  string
	Detail string
}

func (e *ClaimError) Error() string { return "claim " + e.Claim + ": " + e.Detail }

func claimErr(claim, format string, args ...any) *ClaimError {
	return &ClaimError{Claim: claim, Detail: fmt.Sprintf(format, args...)}
}

// checkClaims applies a policy to a runtime's claims: the sim rules to sim
// claims, the typed rules of the platform to SNP and TDX claims. A runtime
// whose measurement a trusted release signer vouches for (manifest, see
// signers.go) passes the measurement rules; every other rule still holds.
func checkClaims(c *tee.Claims, p *wire.Policy, manifest []byte) *ClaimError {
	signed, why := vouched(p.Signers, manifest, c.Platform, c.Measurement)
	switch {
	case c.SNP != nil:
		return checkSNP(c.SNP, p.SNP, signed, why, len(p.Signers) > 0)
	case c.TDX != nil:
		return checkTDX(c.TDX, p.TDX, signed, why, len(p.Signers) > 0)
	}
	m := hex.EncodeToString(c.Measurement)
	if !signed && !tee.MeasurementIn(c.Measurement, p.Measurements) {
		return claimErr("measurement", "runtime measurement %s is not in the policy%s", m, why)
	}
	if c.Debug && !p.AllowDebug {
		return claimErr("debug", "runtime %s is a debug-mode enclave (the host can read its memory) and the policy does not allow debug", m)
	}
	if c.SecurityVersion < p.MinSecurityVersion {
		return claimErr("security-version", "runtime security version %d is below the policy's minimum %d: update the TEE's firmware/TCB", c.SecurityVersion, p.MinSecurityVersion)
	}
	return nil
}

func checkSNP(c *tee.SNPClaims, p *wire.SNPPolicy, signed bool, why string, hasSigners bool) *ClaimError {
	if p == nil {
		if !hasSigners {
			return claimErr("platform", "the runtime runs on AMD SEV-SNP and the policy has no sev-snp rules (`clemmys policy allow snp:measurement=HEX`)")
		}
		p = &wire.SNPPolicy{} // the defaults, for a runtime a signer vouches for
	}
	m := hex.EncodeToString(c.Measurement)
	if !signed && !tee.MeasurementIn(c.Measurement, p.Measurements) {
		return claimErr("snp.measurement", "launch measurement %s is not in the policy%s", m, why)
	}
	if c.Debug {
		return claimErr("snp.policy.debug", "the guest policy allows DEBUG (the host can decrypt the guest's memory); a debug guest never receives keys")
	}
	if c.SMT && !p.AllowSMT {
		return claimErr("snp.policy.smt", "the guest policy allows SMT and the policy forbids it (`clemmys policy allow snp:smt=allow` to accept it)")
	}
	if c.MigrationAgent && !p.AllowMigrationAgent {
		return claimErr("snp.policy.migrate-ma", "the guest may have a migration agent and the policy forbids it")
	}
	min := tee.SNPTCB{BootLoader: p.MinTCB.BootLoader, TEE: p.MinTCB.TEE, SNP: p.MinTCB.SNP, Microcode: p.MinTCB.Microcode}
	if !c.ReportedTCB.AtLeast(min) {
		return claimErr("snp.reported-tcb", "reported TCB %v (bootloader.tee.snp.microcode) is below the policy's minimum %v: the host must update its firmware", c.ReportedTCB, min)
	}
	if c.GuestSVN < p.MinGuestSVN {
		return claimErr("snp.guest-svn", "GUEST_SVN %d is below the policy's minimum %d", c.GuestSVN, p.MinGuestSVN)
	}
	if len(p.HostData) > 0 && !bytes.Equal(c.HostData, p.HostData) {
		return claimErr("snp.host-data", "HOST_DATA %x is not the policy's %x", c.HostData, p.HostData)
	}
	if len(p.IDKeyDigests) > 0 && !tee.MeasurementIn(c.IDKeyDigest, p.IDKeyDigests) {
		return claimErr("snp.id-key-digest", "ID_KEY_DIGEST %x is not in the policy", c.IDKeyDigest)
	}
	return nil
}

func checkTDX(c *tee.TDXClaims, p *wire.TDXPolicy, signed bool, why string, hasSigners bool) *ClaimError {
	if p == nil {
		if !hasSigners {
			return claimErr("platform", "the runtime runs on Intel TDX and the policy has no tdx rules (`clemmys policy allow tdx:mrtd=HEX`)")
		}
		p = &wire.TDXPolicy{}
	}
	if c.Debug {
		return claimErr("tdx.attributes.debug", "the TD has the DEBUG attribute (the host can read its memory); a debug TD never receives keys")
	}
	// A release signer vouches for the whole image (MRTD and RTMRs).
	if !signed {
		if !tee.MeasurementIn(c.MRTD, p.MRTDs) {
			return claimErr("tdx.mrtd", "MRTD %x is not in the policy%s", c.MRTD, why)
		}
		for i, allowed := range [4][][]byte{p.RTMR0, p.RTMR1, p.RTMR2, p.RTMR3} {
			if len(allowed) > 0 && !tee.MeasurementIn(c.RTMR[i], allowed) {
				return claimErr(fmt.Sprintf("tdx.rtmr%d", i), "RTMR%d %x is not in the policy", i, c.RTMR[i])
			}
		}
	}
	if len(p.MinTEETCBSVN) > 0 {
		if len(c.TEETCBSVN) != len(p.MinTEETCBSVN) {
			return claimErr("tdx.tee-tcb-svn", "TEE_TCB_SVN %x has not the policy's size", c.TEETCBSVN)
		}
		for i := range c.TEETCBSVN {
			if c.TEETCBSVN[i] < p.MinTEETCBSVN[i] {
				return claimErr("tdx.tee-tcb-svn", "TEE_TCB_SVN %x is below the policy's minimum %x (component %d)", c.TEETCBSVN, p.MinTEETCBSVN, i)
			}
		}
	}
	allowed := p.TCBStatuses
	if len(allowed) == 0 {
		allowed = []string{"UpToDate"}
	}
	if !slices.Contains(allowed, c.TCBStatus) {
		return claimErr("tdx.tcb-status", "Intel's TCB status of the platform is %s; the policy accepts %v", c.TCBStatus, allowed)
	}
	return nil
}

// policyEmpty reports whether p accepts no runtime at all.
func policyEmpty(p *wire.Policy) bool {
	return len(p.Measurements) == 0 && len(p.Signers) == 0 && (p.SNP == nil || len(p.SNP.Measurements) == 0) && (p.TDX == nil || len(p.TDX.MRTDs) == 0)
}

func checkSizes(what string, list [][]byte, size int) error {
	if len(list) > MaxMeasurements {
		return wire.Errorf(wire.CodeBadRequest, "a policy holds at most %d %s", MaxMeasurements, what)
	}
	for i, m := range list {
		if len(m) != size {
			return wire.Errorf(wire.CodeBadRequest, "%s %d is %d bytes; they are %d bytes", what, i, len(m), size)
		}
	}
	return nil
}

// validateTyped checks the typed rules of a policy.
func validateTyped(p *wire.Policy) error {
	if err := validateSigners(p); err != nil {
		return err
	}
	if s := p.SNP; s != nil {
		if len(s.Measurements) == 0 && len(p.Signers) == 0 {
			return wire.Errorf(wire.CodeBadRequest, "sev-snp rules need at least one launch measurement")
		}
		if err := checkSizes("sev-snp measurements", s.Measurements, SNPMeasurementSize); err != nil {
			return err
		}
		if len(s.HostData) != 0 && len(s.HostData) != SNPHostDataSize {
			return wire.Errorf(wire.CodeBadRequest, "sev-snp host data is %d bytes", SNPHostDataSize)
		}
		if err := checkSizes("sev-snp ID key digests", s.IDKeyDigests, SNPIDKeyDigestSize); err != nil {
			return err
		}
	}
	if t := p.TDX; t != nil {
		if len(t.MRTDs) == 0 && len(p.Signers) == 0 {
			return wire.Errorf(wire.CodeBadRequest, "tdx rules need at least one MRTD")
		}
		for i, list := range [][][]byte{t.MRTDs, t.RTMR0, t.RTMR1, t.RTMR2, t.RTMR3} {
			what := "tdx MRTDs"
			if i > 0 {
				what = fmt.Sprintf("tdx RTMR%d values", i-1)
			}
			if err := checkSizes(what, list, TDXRegisterSize); err != nil {
				return err
			}
		}
		if len(t.MinTEETCBSVN) != 0 && len(t.MinTEETCBSVN) != TDXTCBSVNSize {
			return wire.Errorf(wire.CodeBadRequest, "tdx minimum TEE_TCB_SVN is %d bytes", TDXTCBSVNSize)
		}
		if len(t.TCBStatuses) > len(wire.TDXTCBStatuses) {
			return wire.Errorf(wire.CodeBadRequest, "too many tdx TCB statuses")
		}
		for _, s := range t.TCBStatuses {
			if !slices.Contains(wire.TDXTCBStatuses, s) {
				return wire.Errorf(wire.CodeBadRequest, "unknown tdx TCB status %q; known: %v", truncate(s, 64), wire.TDXTCBStatuses)
			}
		}
	}
	return nil
}

func cloneList(l [][]byte) [][]byte {
	if l == nil {
		return nil
	}
	out := make([][]byte, len(l))
	for i, b := range l {
		out[i] = bytes.Clone(b)
	}
	return out
}

func cloneTyped(out *wire.Policy, p *wire.Policy) {
	out.Signers = nil
	for _, s := range p.Signers {
		out.Signers = append(out.Signers, wire.ReleaseSigner{PublicKey: bytes.Clone(s.PublicKey), MinVersion: s.MinVersion})
	}
	if p.SNP != nil {
		s := *p.SNP
		s.Measurements, s.IDKeyDigests, s.HostData = cloneList(s.Measurements), cloneList(s.IDKeyDigests), bytes.Clone(s.HostData)
		out.SNP = &s
	}
	if p.TDX != nil {
		t := *p.TDX
		t.MRTDs, t.RTMR0, t.RTMR1, t.RTMR2, t.RTMR3 = cloneList(t.MRTDs), cloneList(t.RTMR0), cloneList(t.RTMR1), cloneList(t.RTMR2), cloneList(t.RTMR3)
		t.MinTEETCBSVN, t.TCBStatuses = bytes.Clone(t.MinTEETCBSVN), slices.Clone(t.TCBStatuses)
		out.TDX = &t
	}
}
