// Package tdxverify verifies Intel TDX quotes offline, for the KMS.
//
// A v4 quote is accepted only if:
//
//   - github.com/google/go-tdx-guest/verify accepts its PCK certificate
//     chain (PCK → Intel SGX PCK Platform/Processor CA → the Intel SGX Root
//     CA, intel_sgx_root_ca.pem, a copy of the root go-tdx-guest embeds, or
//     Config.Roots) at the verification time, the QE report's signature by
//     the PCK key, the attestation key's binding in the QE report, and the
//     quote's signature by the attestation key;
//   - the collateral from the collateral directory verifies: the TDX TCB
//     info for the PCK certificate's FMSPC and the TD_QE identity, each
//     signed by the Intel SGX TCB Signing certificate (chained to the root),
//     and not past its next update; the Root CA CRL (signed by the root)
//     revokes neither the PCK CA nor the TCB signing certificate, the PCK
//     CA's CRL revokes not the PCK certificate, both current;
//   - the quote matches the collateral: FMSPC, PCEID, the TDX module's
//     MRSIGNERSEAM and attributes, the QE's MRSIGNER, ISVPRODID,
//     MISCSELECT and attributes; and a TCB level of the TCB info matches
//     the PCK certificate's SVNs and the quote's TEE_TCB_SVN (Intel's
//     algorithm). The level's status (UpToDate, SWHardeningNeeded, …; the
//     worst of the platform's, the TDX module's and the QE's) is the claim
//     tee.TDXClaims.TCBStatus, which the KMS's policy allows or not; no
//     matching level, or a Revoked one, is a refusal.
//
// No network is used: missing collateral is a refusal (collateral-missing),
// expired collateral or certificates another (collateral-stale).
//
// Collateral directory layout (Config.CollateralDir; bodies as Intel's PCS
// serves them, issuer chains as PEM, URL-decoded from the response headers):
//
//	tdx/tcbinfo-<fmspc>.json     …/tdx/certification/v4/tcb?fmspc=<fmspc>
//	tdx/qe-identity.json         …/tdx/certification/v4/qe/identity
//	tdx/tcb-signing-chain.pem    the Tcb-Info-Issuer-Chain header
//	tdx/pck-crl-<ca>.der         …/sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der
//	tdx/root-crl.der             https://certificates.trustedservices.intel.com/IntelSGXRootCA.der
package tdxverify

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/tee/teelog"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// MaxCollateralFile bounds a collateral file read from the directory.
const MaxCollateralFile = 1 << 20

// Config configures a verifier.
type Config struct {
	// CollateralDir holds Intel's collateral (see the package comment).
	CollateralDir string
	// Roots are the trusted roots; nil: the Intel SGX Root CA.
	Roots *x509.CertPool
	// Now is the verification time (nil: time.Now).
	Now func() time.Time
}

// Verifier verifies TDX quotes. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	roots *x509.CertPool
	mu    sync.Mutex
	cache map[string]cachedFile // guarded by mu
}

type cachedFile struct {
	mod  time.Time
	size int64
	val  any
}

var _ tee.Verifier = (*Verifier)(nil)

// IntelRoot returns the Intel SGX Root CA certificate.
func IntelRoot() *x509.Certificate {
	b, _ := pem.Decode(intelRootPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic("tdxverify: embedded Intel root: " + err.Error())
	}
	return c
}

// New returns a verifier.
func New(cfg Config) *Verifier {
	teelog.Ready()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	roots := cfg.Roots
	if roots == nil {
		roots = x509.NewCertPool()
		roots.AddCert(IntelRoot())
	}
	return &Verifier{cfg: cfg, roots: roots, cache: map[string]cachedFile{}}
}

// Verify checks a TDX evidence blob (the raw quote of a tee.Evidence whose
// platform is "tdx"). Errors are *tee.Refusal.
func (v *Verifier) Verify(raw []byte) (*tee.Claims, error) {
	if len(raw) == 0 || len(raw) > tdx.MaxQuoteSize {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "tdx quote of %d bytes (1..%d accepted)", len(raw), tdx.MaxQuoteSize)
	}
	anyQuote, err := abi.QuoteToProto(raw)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "tdx quote does not parse")
	}
	quote, ok := anyQuote.(*pb.QuoteV4)
	if !ok {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "tdx quote is not version 4")
	}
	if err := abi.CheckQuoteV4(quote); err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "tdx quote is malformed")
	}
	now := v.cfg.Now()
	chain, err := pckChain(quote)
	if err != nil {
		return nil, err
	}
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, tee.Refuse(tee.ReasonCollateralStale, nil, "tdx PCK chain certificate %q is valid from %v to %v, not at %v", c.Subject.CommonName, c.NotBefore, c.NotAfter, now.UTC())
		}
	}
	opts := &verify.Options{GetCollateral: false, CheckRevocations: false, Now: now, TrustedRoots: v.roots}
	if err := verify.TdxQuote(quote, opts); err != nil {
		reason := tee.ReasonChain
		msg := err.Error()
		if errors.Is(err, verify.ErrHashVerificationFail) || errors.Is(err, verify.ErrSHA56VerificationFail) || strings.Contains(msg, "QE report signature") {
			reason = tee.ReasonSignature
		}
		return nil, tee.Refuse(reason, err, "tdx quote does not verify against Intel's root")
	}
	pck, ca := chain[0], chain[1]
	exts, err := pcs.PckCertificateExtensions(pck)
	if err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "tdx PCK certificate lacks Intel's SGX extensions")
	}
	body := quote.GetTdQuoteBody()

	// Collateral.
	signing, err := v.signingCert(now)
	if err != nil {
		return nil, err
	}
	tcbInfo, err := v.tcbInfo(exts.FMSPC, signing, now)
	if err != nil {
		return nil, err
	}
	qeID, err := v.qeIdentity(signing, now)
	if err != nil {
		return nil, err
	}
	if err := v.checkCRLs(pck, ca, signing, now); err != nil {
		return nil, err
	}

	// The quote against the collateral.
	if !strings.EqualFold(tcbInfo.Fmspc, exts.FMSPC) || !strings.EqualFold(tcbInfo.PceID, exts.PCEID) {
		return nil, tee.Refuse(tee.ReasonTCB, nil, "tdx TCB info is for FMSPC %s/PCEID %s, the PCK certificate for %s/%s", tcbInfo.Fmspc, tcbInfo.PceID, exts.FMSPC, exts.PCEID)
	}
	if !bytes.Equal(tcbInfo.TdxModule.Mrsigner.Bytes, body.GetMrSignerSeam()) {
		return nil, tee.Refuse(tee.ReasonTCB, nil, "tdx module MRSIGNERSEAM %x is not Intel's %x", body.GetMrSignerSeam(), tcbInfo.TdxModule.Mrsigner.Bytes)
	}
	if !maskedEqual(body.GetSeamAttributes(), tcbInfo.TdxModule.AttributesMask.Bytes, tcbInfo.TdxModule.Attributes.Bytes) {
		return nil, tee.Refuse(tee.ReasonTCB, nil, "tdx module attributes %x do not match Intel's TCB info", body.GetSeamAttributes())
	}
	status, err := TCBStatus(tcbInfo, body.GetTeeTcbSvn(), exts)
	if err != nil {
		return nil, err
	}
	qeStatus, err := checkQE(quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport(), qeID)
	if err != nil {
		return nil, err
	}
	status = worst(status, qeStatus)
	if status == pcs.TcbComponentStatusRevoked {
		return nil, tee.Refuse(tee.ReasonRevoked, nil, "tdx TCB level of this platform is Revoked by Intel")
	}

	attrs := body.GetTdAttributes()
	tc := &tee.TDXClaims{
		MRTD:         bytes.Clone(body.GetMrTd()),
		MRConfigID:   bytes.Clone(body.GetMrConfigId()),
		MROwner:      bytes.Clone(body.GetMrOwner()),
		TEETCBSVN:    bytes.Clone(body.GetTeeTcbSvn()),
		TDAttributes: bytes.Clone(attrs),
		Debug:        len(attrs) > 0 && attrs[0]&1 != 0, // TD_ATTRIBUTES bit 0: DEBUG
		TCBStatus:    string(status),
		FMSPC:        strings.ToLower(exts.FMSPC),
	}
	for i, r := range body.GetRtmrs() {
		if i < 4 {
			tc.RTMR[i] = bytes.Clone(r)
		}
	}
	c := &tee.Claims{
		Platform:    tdx.Platform,
		Measurement: tee.TDXMeasurement(tc.MRTD, tc.RTMR),
		Debug:       tc.Debug,
		TDX:         tc,
	}
	copy(c.ReportData[:], body.GetReportData())
	return c, nil
}

// pckChain returns the PCK certificate chain of a quote: leaf, CA, root.
func pckChain(q *pb.QuoteV4) ([]*x509.Certificate, error) {
	rest := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var out []*x509.Certificate
	for len(out) < 3 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, tee.Refuse(tee.ReasonMalformed, err, "tdx PCK chain certificate does not parse")
		}
		out = append(out, c)
	}
	if len(out) != 3 {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "tdx quote carries no complete PCK certificate chain (leaf, CA, root)")
	}
	return out, nil
}

// signingCert returns the Intel SGX TCB Signing certificate from the
// collateral, verified against the roots.
func (v *Verifier) signingCert(now time.Time) (*x509.Certificate, error) {
	path := v.path("tcb-signing-chain.pem")
	val, err := v.load(path, func(b []byte) (any, error) {
		var certs []*x509.Certificate
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, err
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, errors.New("no certificate")
		}
		return certs[0], nil
	})
	if err != nil {
		return nil, missing(err, path, "the Intel TCB signing certificate chain (Tcb-Info-Issuer-Chain)")
	}
	c := val.(*x509.Certificate)
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, tee.Refuse(tee.ReasonCollateralStale, nil, "Intel TCB signing certificate is valid from %v to %v, not at %v", c.NotBefore, c.NotAfter, now.UTC())
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "Intel TCB signing certificate at %s does not chain to the trusted root", path)
	}
	if !strings.Contains(c.Subject.CommonName, "Intel SGX TCB Signing") {
		return nil, tee.Refuse(tee.ReasonChain, nil, "the TCB signing certificate is %q, not Intel SGX TCB Signing", c.Subject.CommonName)
	}
	return c, nil
}

// signedBody is a PCS response: one field (tcbInfo or enclaveIdentity)
// whose exact bytes are signed, and the hex signature.
func signedBody(b []byte, field string) (json.RawMessage, []byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, err
	}
	body, ok := m[field]
	if !ok {
		return nil, nil, fmt.Errorf("no %q field", field)
	}
	var sigHex string
	if err := json.Unmarshal(m["signature"], &sigHex); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	return body, sig, nil
}

func checkSigned(signing *x509.Certificate, body, sig []byte) error {
	der, err := abi.SignatureToDER(sig)
	if err != nil {
		return err
	}
	return signing.CheckSignature(x509.ECDSAWithSHA256, body, der)
}

type signedFile struct {
	body json.RawMessage
	sig  []byte
}

func (v *Verifier) tcbInfo(fmspc string, signing *x509.Certificate, now time.Time) (*pcs.TcbInfo, error) {
	path := v.path("tcbinfo-" + strings.ToLower(fmspc) + ".json")
	val, err := v.load(path, func(b []byte) (any, error) {
		body, sig, err := signedBody(b, "tcbInfo")
		return &signedFile{body, sig}, err
	})
	if err != nil {
		return nil, missing(err, path, "Intel's TDX TCB info for FMSPC "+fmspc)
	}
	sf := val.(*signedFile)
	if err := checkSigned(signing, sf.body, sf.sig); err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "Intel TDX TCB info at %s is not signed by Intel's TCB signing key", path)
	}
	var ti pcs.TcbInfo
	if err := json.Unmarshal(sf.body, &ti); err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "Intel TDX TCB info at %s", path)
	}
	if ti.ID != "TDX" || ti.Version != 3 || len(ti.TcbLevels) == 0 {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "Intel TCB info at %s is not TDX TCB info version 3 with TCB levels", path)
	}
	if now.After(ti.NextUpdate) || now.Before(ti.IssueDate) {
		return nil, tee.Refuse(tee.ReasonCollateralStale, nil, "Intel TDX TCB info is valid from %v to %v, not at %v: fetch a fresh one", ti.IssueDate, ti.NextUpdate, now.UTC())
	}
	return &ti, nil
}

func (v *Verifier) qeIdentity(signing *x509.Certificate, now time.Time) (*pcs.EnclaveIdentity, error) {
	path := v.path("qe-identity.json")
	val, err := v.load(path, func(b []byte) (any, error) {
		body, sig, err := signedBody(b, "enclaveIdentity")
		return &signedFile{body, sig}, err
	})
	if err != nil {
		return nil, missing(err, path, "Intel's TD_QE identity")
	}
	sf := val.(*signedFile)
	if err := checkSigned(signing, sf.body, sf.sig); err != nil {
		return nil, tee.Refuse(tee.ReasonChain, err, "Intel QE identity at %s is not signed by Intel's TCB signing key", path)
	}
	var id pcs.EnclaveIdentity
	if err := json.Unmarshal(sf.body, &id); err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "Intel QE identity at %s", path)
	}
	if id.ID != "TD_QE" || id.Version != 2 || len(id.TcbLevels) == 0 {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "Intel QE identity at %s is not a TD_QE identity version 2 with TCB levels", path)
	}
	if now.After(id.NextUpdate) || now.Before(id.IssueDate) {
		return nil, tee.Refuse(tee.ReasonCollateralStale, nil, "Intel QE identity is valid from %v to %v, not at %v: fetch a fresh one", id.IssueDate, id.NextUpdate, now.UTC())
	}
	return &id, nil
}

// checkCRLs checks the Root CA CRL and the PCK CA's CRL.
func (v *Verifier) checkCRLs(pck, ca, signing *x509.Certificate, now time.Time) error {
	root, err := v.rootOf(ca, now)
	if err != nil {
		return err
	}
	caKind := "platform"
	if strings.Contains(ca.Subject.CommonName, "Processor") {
		caKind = "processor"
	}
	for _, c := range []struct {
		file     string
		what     string
		issuer   *x509.Certificate
		revocees []*x509.Certificate
	}{
		{"root-crl.der", "Intel SGX Root CA CRL", root, []*x509.Certificate{ca, signing}},
		{"pck-crl-" + caKind + ".der", "Intel PCK " + caKind + " CA CRL", ca, []*x509.Certificate{pck}},
	} {
		path := v.path(c.file)
		val, err := v.load(path, func(b []byte) (any, error) { return x509.ParseRevocationList(b) })
		if err != nil {
			return missing(err, path, "the "+c.what)
		}
		crl := val.(*x509.RevocationList)
		if err := crl.CheckSignatureFrom(c.issuer); err != nil {
			return tee.Refuse(tee.ReasonChain, err, "the %s at %s is not signed by %q", c.what, path, c.issuer.Subject.CommonName)
		}
		if now.After(crl.NextUpdate) || now.Before(crl.ThisUpdate) {
			return tee.Refuse(tee.ReasonCollateralStale, nil, "the %s is valid from %v to %v, not at %v: fetch a fresh one", c.what, crl.ThisUpdate, crl.NextUpdate, now.UTC())
		}
		for _, bad := range crl.RevokedCertificateEntries {
			for _, r := range c.revocees {
				if r.SerialNumber.Cmp(bad.SerialNumber) == 0 {
					return tee.Refuse(tee.ReasonRevoked, nil, "Intel revoked %q (serial %v) at %v", r.Subject.CommonName, bad.SerialNumber, bad.RevocationTime)
				}
			}
		}
	}
	return nil
}

// rootOf returns the trusted root that issued ca.
func (v *Verifier) rootOf(ca *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	chains, err := ca.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil || len(chains) == 0 || len(chains[0]) < 2 {
		return nil, tee.Refuse(tee.ReasonChain, err, "the PCK CA does not chain to the trusted root")
	}
	return chains[0][len(chains[0])-1], nil
}

// TCBStatus returns the status of the TCB level of tcbInfo that matches a
// platform (the PCK certificate's SGX SVNs and PCESVN) and a TD
// (TEE_TCB_SVN), following Intel's algorithm: the first level, in the
// info's order, whose every component is ≤ the platform's; for a TDX
// module of version > 0 (TEE_TCB_SVN[1]), the module identity's level too,
// the worse of both. No matching level is a refusal (reason tcb).
func TCBStatus(ti *pcs.TcbInfo, teeTcbSvn []byte, exts *pcs.PckExtensions) (pcs.TcbComponentStatus, error) {
	if len(teeTcbSvn) != 16 {
		return "", tee.Refuse(tee.ReasonMalformed, nil, "TEE_TCB_SVN is %d bytes, want 16", len(teeTcbSvn))
	}
	var status pcs.TcbComponentStatus
	for _, l := range ti.TcbLevels {
		if svnsAtLeast(exts.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents, 0) && exts.TCB.PCESvn >= l.Tcb.Pcesvn &&
			svnsAtLeast(teeTcbSvn, l.Tcb.TdxTcbcomponents, tdxStart(teeTcbSvn)) {
			status = l.TcbStatus
			break
		}
	}
	if status == "" {
		return "", tee.Refuse(tee.ReasonTCB, nil, "no TCB level of Intel's TCB info for FMSPC %s matches this platform (TEE_TCB_SVN %x): the platform's TCB is not supported", ti.Fmspc, teeTcbSvn)
	}
	if teeTcbSvn[1] > 0 {
		id := fmt.Sprintf("TDX_%02X", teeTcbSvn[1])
		var ms pcs.TcbComponentStatus
		for _, m := range ti.TdxModuleIdentities {
			if strings.EqualFold(m.ID, id) {
				for _, l := range m.TcbLevels {
					if uint32(teeTcbSvn[0]) >= l.Tcb.Isvsvn {
						ms = l.TcbStatus
						break
					}
				}
			}
		}
		if ms == "" {
			return "", tee.Refuse(tee.ReasonTCB, nil, "no TDX module identity %s level of Intel's TCB info matches ISVSVN %d", id, teeTcbSvn[0])
		}
		status = worst(status, ms)
	}
	return status, nil
}

func tdxStart(teeTcbSvn []byte) int {
	if teeTcbSvn[1] > 0 {
		return 2 // components 0 and 1 are the module's, judged by its identity
	}
	return 0
}

func svnsAtLeast(have []byte, levels []pcs.TcbComponent, start int) bool {
	if len(have) != len(levels) {
		return false
	}
	for i := start; i < len(have); i++ {
		if have[i] < levels[i].Svn {
			return false
		}
	}
	return true
}

// checkQE checks the quoting enclave's report against Intel's identity and
// returns its TCB status.
func checkQE(r *pb.EnclaveReport, id *pcs.EnclaveIdentity) (pcs.TcbComponentStatus, error) {
	misc := make([]byte, 4)
	ms := r.GetMiscSelect()
	misc[0], misc[1], misc[2], misc[3] = byte(ms), byte(ms>>8), byte(ms>>16), byte(ms>>24)
	switch {
	case !bytes.Equal(r.GetMrSigner(), id.Mrsigner.Bytes):
		return "", tee.Refuse(tee.ReasonTCB, nil, "the quoting enclave's MRSIGNER %x is not Intel's", r.GetMrSigner())
	case r.GetIsvProdId() != uint32(id.IsvProdID):
		return "", tee.Refuse(tee.ReasonTCB, nil, "the quoting enclave's ISVPRODID %d is not %d", r.GetIsvProdId(), id.IsvProdID)
	case !maskedEqual(misc, id.MiscselectMask.Bytes, id.Miscselect.Bytes):
		return "", tee.Refuse(tee.ReasonTCB, nil, "the quoting enclave's MISCSELECT does not match Intel's identity")
	case !maskedEqual(r.GetAttributes(), id.AttributesMask.Bytes, id.Attributes.Bytes):
		return "", tee.Refuse(tee.ReasonTCB, nil, "the quoting enclave's attributes do not match Intel's identity")
	}
	for _, l := range id.TcbLevels {
		if l.Tcb.Isvsvn <= r.GetIsvSvn() {
			return l.TcbStatus, nil
		}
	}
	return "", tee.Refuse(tee.ReasonTCB, nil, "no TCB level of Intel's QE identity matches the quoting enclave's ISVSVN %d", r.GetIsvSvn())
}

func maskedEqual(v, mask, want []byte) bool {
	if len(v) != len(mask) || len(mask) != len(want) {
		return false
	}
	for i := range v {
		if v[i]&mask[i] != want[i] {
			return false
		}
	}
	return true
}

// severity orders TCB statuses from best to worst.
var severity = map[pcs.TcbComponentStatus]int{
	pcs.TcbComponentStatusUpToDate:                          0,
	pcs.TcbComponentStatusSwHardeningNeeded:                 1,
	pcs.TcbComponentStatusConfigurationNeeded:               2,
	pcs.TcbComponentStatusConfigurationAndSWHardeningNeeded: 3,
	pcs.TcbComponentStatusOutOfDate:                         4,
	pcs.TcbComponentStatusOutOfDateConfigurationNeeded:      5,
	pcs.TcbComponentStatusRevoked:                           6,
}

func worst(a, b pcs.TcbComponentStatus) pcs.TcbComponentStatus {
	sa, oka := severity[a]
	sb, okb := severity[b]
	switch {
	case !oka: // an unknown status: no policy allows it unless it names it
		return a
	case !okb:
		return b
	case sa >= sb:
		return a
	}
	return b
}

func missing(err error, path, what string) error {
	if errors.Is(err, os.ErrNotExist) {
		return tee.Refuse(tee.ReasonCollateralMissing, nil, "%s is not cached at %s (fetch it from Intel's PCS into the collateral directory)", what, displayPath(path))
	}
	return tee.Refuse(tee.ReasonCollateralMissing, err, "%s at %s is unreadable", what, displayPath(path))
}

func displayPath(p string) string {
	if p == "" {
		return "(no collateral directory configured)"
	}
	return p
}

func (v *Verifier) path(name string) string {
	if v.cfg.CollateralDir == "" {
		return ""
	}
	return filepath.Join(v.cfg.CollateralDir, "tdx", name)
}

// load reads and parses a collateral file, from the cache while the file
// is unchanged.
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
