// Package snpverify verifies AMD SEV-SNP evidence offline, for the KMS.
//
// A report is accepted only if (github.com/google/go-sev-guest/verify and
// validate do the work):
//
//   - its ECDSA P-384 signature verifies under the VCEK (or VLEK) certificate
//     that the evidence's certificate table carries, or else the one in the
//     collateral directory for the report's CHIP_ID and REPORTED_TCB;
//   - that certificate chains to AMD's ARK/ASK for the product line (Milan,
//     Genoa, Turin: the roots embedded in go-sev-guest, or Config.Roots),
//     and is valid at the verification time (Config.Now);
//   - the product line's CRL, signed by the ARK and not past its next update,
//     is in the collateral directory and revokes neither the ASK nor the
//     VCEK/VLEK;
//   - the report is consistent with its certificate: REPORTED_TCB equals the
//     certificate's TCB, CHIP_ID its HWID, the committed TCB/firmware the
//     current one.
//
// No network is used: missing collateral is a refusal with reason
// collateral-missing, a CRL past its next update or an expired certificate
// one with reason collateral-stale. The guest policy, measurement, TCB
// minimums, HOST_DATA and ID key are claims (tee.SNPClaims) that the KMS's
// per-function policy checks.
//
// Collateral directory layout (CollateralDir, filled by the operator; the
// files are what AMD's KDS serves):
//
//	snp/<ProductLine>/crl.der                         the VCEK CRL (…/vcek/v1/<ProductLine>/crl)
//	snp/<ProductLine>/vlek-crl.der                    the VLEK CRL (…/vlek/v1/<ProductLine>/crl)
//	snp/<ProductLine>/vcek-<hwid hex>-<bl>.<tee>.<snp>.<ucode>.der
//	                                                  a VCEK (…/vcek/v1/<ProductLine>/<hwid>?blSPL=…)
package snpverify

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/tee/teelog"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/snp"
)

// MaxCollateralFile bounds a collateral file read from the directory.
const MaxCollateralFile = 1 << 20

// ProductLines are the product lines with embedded AMD roots.
var ProductLines = []string{"Milan", "Genoa", "Turin"}

// Config configures a verifier.
type Config struct {
	// CollateralDir holds cached VCEKs and CRLs (see the package comment).
	// Empty: only the evidence's certificate table, and no CRL, so every
	// report is refused unless CRLOptional.
	CollateralDir string
	// Roots are the trusted AMD roots per product line; nil: AMD's roots
	// embedded in go-sev-guest. Tests use a fake AMD.
	Roots map[string][]*trust.AMDRootCerts
	// Now is the verification time (nil: time.Now). Certificates and CRLs
	// must be valid at it.
	Now func() time.Time
	// CRLOptional accepts a report when no CRL is cached for its product
	// line (a present CRL is still checked). It weakens revocation: an
	// operator sets it only where AMD's CRL cannot be obtained, knowingly.
	CRLOptional bool
}

// Verifier verifies SEV-SNP evidence. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	mu    sync.Mutex
	cache map[string]cachedFile // guarded by mu: parsed collateral by path
}

type cachedFile struct {
	mod  time.Time
	size int64
	val  any // *x509.Certificate or *x509.RevocationList
}

var _ tee.Verifier = (*Verifier)(nil)

// New returns a verifier.
func New(cfg Config) *Verifier {
	teelog.Ready()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, cache: map[string]cachedFile{}}
}

// Verify checks an SEV-SNP evidence blob (the Blob of a tee.Evidence whose
// platform is "sev-snp"). Errors are *tee.Refusal.
func (v *Verifier) Verify(blob []byte) (*tee.Claims, error) {
	b, err := snp.Decode(blob)
	if err != nil {
		return nil, err
	}
	report, err := abi.ReportToProto(b.Report)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "snp report does not parse")
	}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "snp report signer info")
	}
	policy, err := abi.ParseSnpPolicy(report.GetPolicy())
	if err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "snp guest policy")
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	if len(b.CertTable) > 0 {
		certs := new(abi.CertTable)
		if err := certs.Unmarshal(b.CertTable); err != nil {
			return nil, tee.Refuse(tee.ReasonMalformed, err, "snp certificate table does not parse")
		}
		chain = certs.Proto()
	}
	now := v.cfg.Now()

	// The endorsement key certificate: from the table, else the cache.
	var ekDER []byte
	switch info.SigningKey {
	case abi.VcekReportSigner:
		if len(chain.GetVcekCert()) == 0 {
			der, err := v.findVCEK(report)
			if err != nil {
				return nil, err
			}
			chain.VcekCert = der
		}
		ekDER = chain.GetVcekCert()
	case abi.VlekReportSigner:
		if len(chain.GetVlekCert()) == 0 {
			return nil, tee.Refuse(tee.ReasonCollateralMissing, nil, "snp report is signed by a VLEK and the evidence carries no VLEK certificate (the cloud provider must supply it in the extended report)")
		}
		ekDER = chain.GetVlekCert()
	default:
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "snp report signed by unsupported key %v", info.SigningKey)
	}
	ek, err := x509.ParseCertificate(ekDER)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "snp %v certificate does not parse", info.SigningKey)
	}
	if now.Before(ek.NotBefore) || now.After(ek.NotAfter) {
		return nil, tee.Refuse(tee.ReasonCollateralStale, nil, "snp %v certificate is valid from %v to %v, not at %v", info.SigningKey, ek.NotBefore, ek.NotAfter, now.UTC())
	}
	if err := verify.SnpReportSignature(b.Report, ek); err != nil {
		return nil, tee.Refuse(tee.ReasonSignature, err, "snp report signature does not verify under its %v", info.SigningKey)
	}
	exts, err := kds.CertificateExtensions(ek, info.SigningKey)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "snp %v certificate lacks AMD's extensions", info.SigningKey)
	}
	productLine := ""
	if fms := report.GetCpuid1EaxFms(); fms != 0 {
		productLine = kds.ProductLineFromFms(fms)
	} else if p, err := kds.ParseProductName(exts.ProductName, info.SigningKey); err == nil {
		productLine = kds.ProductLine(p)
	}
	roots, err := v.roots(productLine)
	if err != nil {
		return nil, err
	}
	if err := rootsValid(roots, info.SigningKey, now); err != nil {
		return nil, err
	}
	att := &spb.Attestation{Report: report, CertificateChain: chain}
	opts := &verify.Options{DisableCertFetching: true, Now: now, TrustedRoots: map[string][]*trust.AMDRootCerts{productLine: roots}}
	if err := verify.SnpAttestation(att, opts); err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "snp %v certificate does not chain to AMD's %s root", info.SigningKey, productLine)
	}
	if err := v.checkRevocation(productLine, roots, ek, info.SigningKey, now); err != nil {
		return nil, err
	}
	// Consistency of the report with its certificate; the guest policy
	// bits are claims the KMS's policy decides on, so allow them all here.
	vopts := &validate.Options{
		GuestPolicy: abi.SnpPolicy{SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true},
	}
	if err := validate.SnpAttestation(att, vopts); err != nil {
		return nil, tee.Refuse(tee.ReasonTCB, err, "snp report is inconsistent with its %v certificate", info.SigningKey)
	}

	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(report.GetReportedTcb()))
	sc := &tee.SNPClaims{
		Measurement:     bytes.Clone(report.GetMeasurement()),
		HostData:        bytes.Clone(report.GetHostData()),
		IDKeyDigest:     bytes.Clone(report.GetIdKeyDigest()),
		AuthorKeyDigest: bytes.Clone(report.GetAuthorKeyDigest()),
		ReportedTCB:     tee.SNPTCB{BootLoader: tcb.BlSpl, TEE: tcb.TeeSpl, SNP: tcb.SnpSpl, Microcode: tcb.UcodeSpl},
		GuestSVN:        report.GetGuestSvn(),
		VMPL:            report.GetVmpl(),
		Debug:           policy.Debug,
		SMT:             policy.SMT,
		MigrationAgent:  policy.MigrateMA,
		Signer:          strings.ToLower(info.SigningKey.String()),
		ProductLine:     productLine,
		ChipID:          bytes.Clone(report.GetChipId()),
	}
	c := &tee.Claims{
		Platform:        snp.Platform,
		Measurement:     bytes.Clone(sc.Measurement),
		SecurityVersion: sc.GuestSVN,
		Debug:           sc.Debug,
		SNP:             sc,
	}
	copy(c.ReportData[:], report.GetReportData())
	return c, nil
}

// roots returns the trusted roots of a product line.
func (v *Verifier) roots(productLine string) ([]*trust.AMDRootCerts, error) {
	if productLine == "" {
		return nil, tee.Refuse(tee.ReasonChain, nil, "snp product line unknown: the report has no CPUID and its certificate names no product")
	}
	if v.cfg.Roots != nil {
		r := v.cfg.Roots[productLine]
		if len(r) == 0 {
			return nil, tee.Refuse(tee.ReasonChain, nil, "no trusted AMD root for product line %q", productLine)
		}
		return r, nil
	}
	r, err := trust.GetDefaultRootCerts(productLine)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "no trusted AMD root for product line %q", productLine)
	}
	return []*trust.AMDRootCerts{r}, nil
}

// rootsValid refuses (collateral-stale) when no trusted root of the
// product line has an ARK and ASK/ASVK valid at now.
func rootsValid(roots []*trust.AMDRootCerts, key abi.ReportSigner, now time.Time) error {
	valid := func(c *x509.Certificate) bool { return c != nil && !now.Before(c.NotBefore) && !now.After(c.NotAfter) }
	for _, r := range roots {
		if r.ProductCerts == nil {
			continue
		}
		ica := r.ProductCerts.Ask
		if key == abi.VlekReportSigner {
			ica = r.ProductCerts.Asvk
		}
		if ica == nil || (valid(r.ProductCerts.Ark) && valid(ica)) {
			return nil // a missing one is the chain check's to refuse
		}
	}
	return tee.Refuse(tee.ReasonCollateralStale, nil, "the AMD root certificates are not valid at %v", now.UTC())
}

// checkRevocation checks the product line's CRL from the collateral
// directory: signed by the ARK, current, revoking neither the ASK nor ek.
func (v *Verifier) checkRevocation(productLine string, roots []*trust.AMDRootCerts, ek *x509.Certificate, key abi.ReportSigner, now time.Time) error {
	name := "crl.der"
	if key == abi.VlekReportSigner {
		name = "vlek-crl.der"
	}
	path := v.path(productLine, name)
	val, err := v.load(path, func(b []byte) (any, error) { return x509.ParseRevocationList(b) })
	if errors.Is(err, os.ErrNotExist) {
		if v.cfg.CRLOptional {
			return nil
		}
		return tee.Refuse(tee.ReasonCollateralMissing, nil, "no AMD %s CRL cached at %s (fetch it from AMD's KDS into the collateral directory)", productLine, v.display(path))
	}
	if err != nil {
		return tee.Refuse(tee.ReasonCollateralMissing, err, "AMD %s CRL at %s is unreadable", productLine, v.display(path))
	}
	crl := val.(*x509.RevocationList)
	var signer *trust.AMDRootCerts
	for _, r := range roots {
		if r.ProductCerts != nil && r.ProductCerts.Ark != nil && crl.CheckSignatureFrom(r.ProductCerts.Ark) == nil {
			signer = r
			break
		}
	}
	if signer == nil {
		return tee.Refuse(tee.ReasonChain, nil, "AMD %s CRL at %s is not signed by the trusted ARK", productLine, v.display(path))
	}
	if now.After(crl.NextUpdate) || now.Before(crl.ThisUpdate) {
		return tee.Refuse(tee.ReasonCollateralStale, nil, "AMD %s CRL is valid from %v to %v, not at %v: fetch a fresh one", productLine, crl.ThisUpdate, crl.NextUpdate, now.UTC())
	}
	ica := signer.ProductCerts.Ask
	if key == abi.VlekReportSigner {
		ica = signer.ProductCerts.Asvk
	}
	for _, bad := range crl.RevokedCertificateEntries {
		if (ica != nil && ica.SerialNumber.Cmp(bad.SerialNumber) == 0) || ek.SerialNumber.Cmp(bad.SerialNumber) == 0 {
			return tee.Refuse(tee.ReasonRevoked, nil, "AMD revoked a certificate of the chain (serial %v) at %v", bad.SerialNumber, bad.RevocationTime)
		}
	}
	return nil
}

// findVCEK looks the VCEK of the report's chip and reported TCB up in the
// collateral directory, under every product line.
func (v *Verifier) findVCEK(report *spb.Report) ([]byte, error) {
	chip := report.GetChipId()
	if len(chip) == 0 || allZero(chip) {
		return nil, tee.Refuse(tee.ReasonCollateralMissing, nil, "snp report carries no VCEK certificate and masks its CHIP_ID, so no cached VCEK can be found for it")
	}
	name := VCEKFileName(chip, kds.TCBVersion(report.GetReportedTcb()))
	for _, pl := range ProductLines {
		path := v.path(pl, name)
		val, err := v.load(path, func(b []byte) (any, error) { return x509.ParseCertificate(b) })
		if err == nil {
			return val.(*x509.Certificate).Raw, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, tee.Refuse(tee.ReasonCollateralMissing, err, "cached VCEK %s is unreadable", v.display(path))
		}
	}
	return nil, tee.Refuse(tee.ReasonCollateralMissing, nil, "snp report carries no VCEK certificate and none is cached as snp/<product line>/%s", name)
}

// VCEKFileName is the collateral file name of a chip's VCEK at a TCB.
func VCEKFileName(chipID []byte, tcb kds.TCBVersion) string {
	p := kds.DecomposeTCBVersion(tcb)
	return fmt.Sprintf("vcek-%x-%d.%d.%d.%d.der", chipID, p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl)
}

func (v *Verifier) path(productLine, name string) string {
	if v.cfg.CollateralDir == "" {
		return ""
	}
	return filepath.Join(v.cfg.CollateralDir, "snp", productLine, name)
}

func (v *Verifier) display(path string) string {
	if path == "" {
		return "(no collateral directory configured)"
	}
	return path
}

// load reads and parses a collateral file, from the cache while the file
// is unchanged. A missing file (or no directory) is os.ErrNotExist.
func (v *Verifier) load(path string, parse func([]byte) (any, error)) (any, error) {
	if path == "" {
		return nil, os.ErrNotExist
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxCollateralFile {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, MaxCollateralFile)
	}
	v.mu.Lock()
	c, ok := v.cache[path]
	v.mu.Unlock()
	if ok && c.mod.Equal(st.ModTime()) && c.size == st.Size() {
		return c.val, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCollateralFile {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, MaxCollateralFile)
	}
	val, err := parse(b)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.cache[path] = cachedFile{mod: st.ModTime(), size: st.Size(), val: val}
	v.mu.Unlock()
	return val, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
