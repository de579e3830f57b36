// Package client checks, on the owner's side, what a clemmys deployment
// claims: the attestation evidence of its KMS and gateway and the
// certificates of the runtimes that hold a namespace's keys
// (VerifyAttestation, over GET /api/v1/clemmys/attestation), and the
// runtime-signed receipts of an activation record (VerifyActivation). It
// uses the same verifiers as the KMS (sim; AMD SEV-SNP and Intel TDX with
// the vendors' chains and the collateral in a local directory) and trusts
// nothing the gateway says that no TEE or KMS signed. `clemmys attest` and
// `clemmys activation verify` are its command-line front ends; the formats
// are in docs/protocol.md (§Receipts, §Attestation API).
package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/tee/snp/snpverify"
	"github.com/clemmys/clemmys/internal/tee/tdx/tdxverify"
	"github.com/clemmys/clemmys/internal/wire"
)

// MaxAttestationBytes bounds the attestation API's answer.
const MaxAttestationBytes = 1 << 20

// Attestation is the answer of GET /api/v1/clemmys/attestation.
type Attestation struct {
	Format    string `json:"format"`
	TEE       string `json:"tee"`
	Simulated bool   `json:"simulated"`
	Namespace string `json:"namespace"`
	Nonce     string `json:"nonce"`
	KMS       struct {
		SignKey  string `json:"signKey"`
		Evidence []byte `json:"evidence"`
	} `json:"kms"`
	Gateway *struct {
		TLSKeyDigest string `json:"tlsKeyDigest"`
		Evidence     []byte `json:"evidence"`
	} `json:"gateway"`
	SimRoot  string          `json:"simRoot"`
	Policy   json.RawMessage `json:"policy"`
	Runtimes []struct {
		Cert        []byte `json:"cert"`
		LastRelease int64  `json:"lastRelease"`
		Releases    uint64 `json:"releases"`
	} `json:"runtimes"`
}

// Expect is what the owner pins (`clemmys attest --expect FILE`, JSON).
// Empty fields are not checked; the report says what was not pinned.
type Expect struct {
	TEE                 string   `json:"tee,omitempty"`     // "sim", "sev-snp", "tdx"
	SimRoot             string   `json:"simRoot,omitempty"` // hex ed25519: the sim root the owner trusts
	KMSSignKey          string   `json:"kmsSignKey,omitempty"`
	KMSMeasurements     []string `json:"kmsMeasurements,omitempty"`     // hex
	GatewayMeasurements []string `json:"gatewayMeasurements,omitempty"` // hex
	RuntimeMeasurements []string `json:"runtimeMeasurements,omitempty"` // hex
	MinSecurityVersion  uint32   `json:"minSecurityVersion,omitempty"`
	AllowDebug          bool     `json:"allowDebug,omitempty"`
	// CollateralDir holds AMD's and Intel's collateral for SEV-SNP and
	// TDX evidence (as the KMS's DATA_DIR/collateral).
	CollateralDir string `json:"collateralDir,omitempty"`
}

// TEEClaims are the verified facts of one piece of evidence or
// certificate.
type TEEClaims struct {
	Platform        string `json:"platform"`
	Measurement     string `json:"measurement"` // hex
	SecurityVersion uint32 `json:"securityVersion"`
	Debug           bool   `json:"debug"`
}

// RuntimeReport is a runtime holding the namespace's keys, as the KMS
// certified it.
type RuntimeReport struct {
	TEEClaims
	RuntimeID   string `json:"runtimeId"`
	ReceiptKey  string `json:"receiptKey"`
	Issued      int64  `json:"issued"`
	LastRelease int64  `json:"lastRelease"`
	Releases    uint64 `json:"releases"`
}

// AttestationReport is the outcome of VerifyAttestation. Problems are
// mismatches (the verdict fails); Warnings are what holds but proves less
// than it seems (simulated evidence, nothing pinned).
type AttestationReport struct {
	TEE        string          `json:"tee"`
	Simulated  bool            `json:"simulated"`
	SimRoot    string          `json:"simRoot,omitempty"` // the sim root the evidence was checked against
	KMS        *TEEClaims      `json:"kms,omitempty"`
	KMSSignKey string          `json:"kmsSignKey,omitempty"`
	Gateway    *TEEClaims      `json:"gateway,omitempty"`
	Runtimes   []RuntimeReport `json:"runtimes"`
	Policy     json.RawMessage `json:"policy,omitempty"`
	Problems   []string        `json:"problems"`
	Warnings   []string        `json:"warnings"`

	kmsKey ed25519.PublicKey
}

// OK reports whether everything verified and matched what was pinned.
func (r *AttestationReport) OK() bool { return len(r.Problems) == 0 && r.kmsKey != nil }

// KMSKey returns the verified KMS signing key (nil unless it verified):
// the key runtime certificates, and so receipts, chain up to.
func (r *AttestationReport) KMSKey() ed25519.PublicKey { return r.kmsKey }

func (r *AttestationReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *AttestationReport) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// NewNonce returns a fresh random nonce for an attestation request.
func NewNonce() []byte {
	n := make([]byte, 32)
	_, _ = rand.Read(n)
	return n
}

// FetchAttestation gets the attestation API's answer for nonce from the
// gateway at apiHost (https://HOST:PORT) with the namespace credential
// auth ("uuid:key"), over hc. It also returns the SHA-256 of the TLS
// certificate key the session ended at, which the gateway's evidence
// must bind.
func FetchAttestation(ctx context.Context, hc *http.Client, apiHost, auth string, nonce []byte) (*Attestation, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimRight(apiHost, "/")+"/api/v1/clemmys/attestation?nonce="+hex.EncodeToString(nonce), nil)
	if err != nil {
		return nil, nil, err
	}
	u, k, _ := strings.Cut(auth, ":")
	req.SetBasicAuth(u, k)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAttestationBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > MaxAttestationBytes {
		return nil, nil, errors.New("client: attestation answer too large")
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return nil, nil, fmt.Errorf("client: attestation API: %s: %s", resp.Status, e.Error)
	}
	var a Attestation
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, nil, fmt.Errorf("client: decode the attestation answer: %w", err)
	}
	var tlsKey []byte
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		d := sha256.Sum256(resp.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
		tlsKey = d[:]
	}
	return &a, tlsKey, nil
}

// verifiers returns the verifier registry for the deployment's TEE: sim
// with the pinned root (or, unpinned, the root the deployment shows, with
// a warning), the vendors' chains for SEV-SNP and TDX.
func verifiers(a *Attestation, exp Expect, r *AttestationReport) *tee.Registry {
	reg := tee.NewRegistry()
	if exp.CollateralDir != "" {
		reg.Add(tee.PlatformSNP, snpverify.New(snpverify.Config{CollateralDir: exp.CollateralDir}))
		reg.Add(tee.PlatformTDX, tdxverify.New(tdxverify.Config{CollateralDir: exp.CollateralDir}))
	} else if a.TEE == tee.PlatformSNP || a.TEE == tee.PlatformTDX {
		r.problem("no collateral directory: %s evidence cannot be verified offline (pin collateralDir)", a.TEE)
	}
	root := exp.SimRoot
	if root == "" && a.TEE == sim.Platform {
		root = a.SimRoot
		r.warn("the sim root key was not pinned: the deployment's own (%s) was used, so the evidence proves nothing", short(root))
	}
	if root != "" {
		r.SimRoot = root
		k, err := hex.DecodeString(root)
		if err != nil || len(k) != ed25519.PublicKeySize {
			r.problem("the sim root key is not a hex ed25519 public key")
		} else {
			reg.Add(sim.Platform, sim.NewVerifier(k))
		}
	}
	return reg
}

// VerifyAttestation verifies an attestation answer fetched with nonce
// over a TLS session to a certificate whose key digest is tlsKey, and
// compares it with what the owner pinned.
func VerifyAttestation(a *Attestation, nonce, tlsKey []byte, exp Expect) *AttestationReport {
	r := &AttestationReport{TEE: a.TEE, Simulated: a.Simulated || a.TEE == sim.Platform, Runtimes: []RuntimeReport{},
		Policy: a.Policy, Problems: []string{}, Warnings: []string{}}
	if a.Format != wire.AttestationFormat {
		r.problem("unknown attestation format %q (want %s)", a.Format, wire.AttestationFormat)
		return r
	}
	if exp.TEE != "" && a.TEE != exp.TEE {
		r.problem("the deployment's TEE is %q, pinned %q", a.TEE, exp.TEE)
	}
	if r.Simulated {
		r.warn("SIMULATED TEE: the evidence is simulated; no hardware protects this deployment")
	}
	reg := verifiers(a, exp, r)

	// The KMS: evidence binding its signing key.
	key, err := hex.DecodeString(a.KMS.SignKey)
	if err != nil || len(key) != ed25519.PublicKeySize {
		r.problem("the KMS signing key is not a hex ed25519 public key")
		return r
	}
	r.KMSSignKey = a.KMS.SignKey
	if exp.KMSSignKey != "" && !strings.EqualFold(exp.KMSSignKey, a.KMS.SignKey) {
		r.problem("the KMS signing key %s is not the pinned %s", short(a.KMS.SignKey), short(exp.KMSSignKey))
	}
	kc, err := reg.Verify(a.KMS.Evidence)
	switch {
	case err != nil:
		r.problem("the KMS's evidence does not verify: %v", err)
	case kc.ReportData != wire.KMSIdentityReportData(key):
		r.problem("the KMS's evidence does not bind its signing key")
	default:
		r.KMS = claimsOf(kc)
		r.checkClaims("KMS", r.KMS, exp.KMSMeasurements, exp)
		if len(r.Problems) == 0 {
			r.kmsKey = key
		}
	}

	// The gateway: evidence binding the nonce and the TLS key.
	switch {
	case a.Gateway == nil:
		r.warn("the gateway sent no evidence of its own")
	default:
		gk, err := hex.DecodeString(a.Gateway.TLSKeyDigest)
		if err != nil {
			r.problem("the gateway's TLS key digest is not hex")
			break
		}
		if tlsKey != nil && !bytes.Equal(gk, tlsKey) {
			r.problem("the gateway's evidence is for another TLS key than this session's (a proxy between you and the gateway?)")
		}
		gc, err := reg.Verify(a.Gateway.Evidence)
		switch {
		case err != nil:
			r.problem("the gateway's evidence does not verify: %v", err)
		case gc.ReportData != wire.GatewayAttestationReportData(nonce, gk):
			r.problem("the gateway's evidence does not bind this request's nonce and TLS key (a replayed answer?)")
		default:
			r.Gateway = claimsOf(gc)
			r.checkClaims("gateway", r.Gateway, exp.GatewayMeasurements, exp)
		}
	}

	// The runtimes: the KMS's certificates of their receipt keys.
	for i, h := range a.Runtimes {
		c, err := verifyCert(h.Cert, key)
		if err != nil {
			r.problem("runtime %d: %v", i, err)
			continue
		}
		if c.Namespace != a.Namespace {
			r.problem("runtime %d: certified for namespace %q, not %q", i, c.Namespace, a.Namespace)
			continue
		}
		rr := RuntimeReport{TEEClaims: TEEClaims{Platform: c.Platform, Measurement: hex.EncodeToString(c.Measurement),
			SecurityVersion: c.SecurityVersion, Debug: c.Debug},
			RuntimeID: hex.EncodeToString(c.RuntimeID), ReceiptKey: hex.EncodeToString(c.ReceiptKey),
			Issued: c.Issued, LastRelease: h.LastRelease, Releases: h.Releases}
		r.checkClaims("runtime "+short(rr.RuntimeID), &rr.TEEClaims, exp.RuntimeMeasurements, exp)
		r.Runtimes = append(r.Runtimes, rr)
	}
	if len(exp.RuntimeMeasurements) == 0 {
		r.warn("no runtime measurement pinned: the namespace's policy at the KMS decides which runtimes get keys")
	}
	return r
}

func (r *AttestationReport) checkClaims(who string, c *TEEClaims, pinned []string, exp Expect) {
	if c.Debug && !exp.AllowDebug {
		r.problem("the %s runs in a debug-mode TEE (its memory is readable by the host)", who)
	}
	if c.SecurityVersion < exp.MinSecurityVersion {
		r.problem("the %s's security version %d is below the pinned %d", who, c.SecurityVersion, exp.MinSecurityVersion)
	}
	if exp.TEE != "" && c.Platform != exp.TEE {
		r.problem("the %s runs on %q, pinned %q", who, c.Platform, exp.TEE)
	}
	if len(pinned) > 0 && !containsFold(pinned, c.Measurement) {
		r.problem("the %s's measurement %s is not pinned", who, short(c.Measurement))
	}
}

// verifyCert checks a runtime certificate's signature under the KMS key.
func verifyCert(raw []byte, kmsKey ed25519.PublicKey) (*wire.RuntimeCert, error) {
	if len(raw) == 0 || len(raw) > wire.MaxSignedReceipt {
		return nil, errors.New("no certificate, or an oversize one")
	}
	var sc wire.SignedCert
	if err := bus.Unmarshal(raw, &sc); err != nil {
		return nil, errors.New("malformed certificate")
	}
	if len(kmsKey) != ed25519.PublicKeySize || !ed25519.Verify(kmsKey, wire.CertMessage(sc.Cert), sc.Sig) {
		return nil, errors.New("the certificate is not signed by the attested KMS")
	}
	var c wire.RuntimeCert
	if err := bus.Unmarshal(sc.Cert, &c); err != nil || len(c.ReceiptKey) != ed25519.PublicKeySize {
		return nil, errors.New("malformed certificate")
	}
	return &c, nil
}

func claimsOf(c *tee.Claims) *TEEClaims {
	return &TEEClaims{Platform: c.Platform, Measurement: hex.EncodeToString(c.Measurement), SecurityVersion: c.SecurityVersion, Debug: c.Debug}
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// short abbreviates a hex string for messages.
func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
