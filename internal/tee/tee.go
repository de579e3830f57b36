// Package tee abstracts trusted execution environments: an Attester produces
// evidence that binds 64 bytes of report data to the measurement of the code
// that runs; a Verifier checks evidence and returns its claims.
//
// Backends (tee/sim; tee/snp and tee/tdx for the attesters inside a
// confidential VM, tee/snp/snpverify and tee/tdx/tdxverify for the verifiers
// of the KMS) register themselves; this package never imports a backend.
// Evidence on the wire is CBOR {platform, blob} so a Registry can route it to
// the right verifier.
//
// Claims carry the platform-independent facts every policy uses
// (measurement, debug, report data) and, for real hardware, the typed claims
// of the platform (SNPClaims, TDXClaims) that per-platform policy rules
// check. A refused evidence's error is a *Refusal whose Reason tells why
// (signature, chain, collateral missing or stale, revoked, TCB, malformed);
// every refusal matches ErrEvidence with errors.Is.
package tee

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// ReportDataSize is the number of bytes of caller data evidence binds.
const ReportDataSize = 64

// MaxEvidenceSize bounds evidence read from outside.
const MaxEvidenceSize = 64 << 10

// Platform names of the real TEEs (sim's is in package sim).
const (
	PlatformSNP = "sev-snp"
	PlatformTDX = "tdx"
)

// Claims are what a verifier vouches for.
type Claims struct {
	Platform string // "sim", "sev-snp", "tdx"
	// Measurement is the digest of the launched code: sim's SHA-256 of the
	// runtime binary, SEV-SNP's launch MEASUREMENT, TDX's
	// TDXMeasurement(MRTD, RTMR0..3).
	Measurement     []byte
	SecurityVersion uint32 // TCB / security version number (sim)
	Debug           bool   // debug-mode enclave: memory readable by the host
	ReportData      [ReportDataSize]byte
	// SNP and TDX are the typed claims of real hardware (nil for sim).
	SNP *SNPClaims
	TDX *TDXClaims
}

// SNPTCB is an AMD TCB version: the security version numbers of the
// firmware components the VCEK is derived from.
type SNPTCB struct {
	BootLoader uint8 `cbor:"1,keyasint" json:"bootloader"`
	TEE        uint8 `cbor:"2,keyasint" json:"tee"`
	SNP        uint8 `cbor:"3,keyasint" json:"snp"`
	Microcode  uint8 `cbor:"4,keyasint" json:"microcode"`
}

// AtLeast reports whether every component of t is >= the one of min.
func (t SNPTCB) AtLeast(min SNPTCB) bool {
	return t.BootLoader >= min.BootLoader && t.TEE >= min.TEE && t.SNP >= min.SNP && t.Microcode >= min.Microcode
}

// String renders t as the CLI writes it: bl.tee.snp.ucode.
func (t SNPTCB) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", t.BootLoader, t.TEE, t.SNP, t.Microcode)
}

// SNPClaims are the verified fields of an AMD SEV-SNP attestation report.
type SNPClaims struct {
	Measurement     []byte // MEASUREMENT (48): launch digest of the guest's initial memory
	HostData        []byte // HOST_DATA (32): chosen by the host at launch
	IDKeyDigest     []byte // ID_KEY_DIGEST (48): all zero without an ID block
	AuthorKeyDigest []byte // AUTHOR_KEY_DIGEST (48)
	ReportedTCB     SNPTCB // REPORTED_TCB, equal to the VCEK certificate's TCB
	GuestSVN        uint32
	VMPL            uint32
	Debug           bool   // guest policy DEBUG
	SMT             bool   // guest policy SMT allowed
	MigrationAgent  bool   // guest policy MIGRATE_MA
	Signer          string // "vcek" or "vlek"
	ProductLine     string // "Milan", "Genoa", "Turin"
	ChipID          []byte // CHIP_ID (64), zero when masked
}

// TDXClaims are the verified fields of an Intel TDX quote.
type TDXClaims struct {
	MRTD         []byte    // 48: the TD's initial contents (TDVF firmware)
	RTMR         [4][]byte // 48 each: runtime measurement registers
	MRConfigID   []byte    // 48
	MROwner      []byte    // 48
	TEETCBSVN    []byte    // 16: TEE_TCB_SVN of the TDX module
	TDAttributes []byte    // 8
	Debug        bool      // TD_ATTRIBUTES.DEBUG
	TCBStatus    string    // from Intel's TCB info for the platform: UpToDate, SWHardeningNeeded, ...
	FMSPC        string    // hex, from the PCK certificate
}

// TDXMeasurementContext is the domain-separation prefix of TDXMeasurement.
const TDXMeasurementContext = "clemmys/v1 tdx measurement\x00"

// TDXMeasurement is the single measurement a TDX runtime is known by:
// SHA-384(TDXMeasurementContext || MRTD || RTMR0 || RTMR1 || RTMR2 || RTMR3),
// all 48 bytes. It changes with the firmware (MRTD), the boot chain and
// kernel command line (RTMR0..2) and anything extended at run time (RTMR3).
func TDXMeasurement(mrtd []byte, rtmr [4][]byte) []byte {
	h := sha512.New384()
	h.Write([]byte(TDXMeasurementContext))
	h.Write(mrtd)
	for _, r := range rtmr {
		h.Write(r)
	}
	return h.Sum(nil)
}

// Reason classifies a refusal.
type Reason string

// Reasons of refusals.
const (
	ReasonMalformed         Reason = "malformed"          // does not parse, bad sizes, unknown version
	ReasonSignature         Reason = "signature"          // the report's signature does not verify
	ReasonChain             Reason = "chain"              // the certificate chain does not lead to the vendor root
	ReasonCollateralMissing Reason = "collateral-missing" // a certificate, CRL or TCB info needed is not available offline
	ReasonCollateralStale   Reason = "collateral-stale"   // a CRL or TCB info is past its next update, or a certificate expired
	ReasonRevoked           Reason = "revoked"            // a certificate of the chain is revoked
	ReasonTCB               Reason = "tcb"                // the TCB is inconsistent with its certificate or not supported by the vendor
	ReasonPlatform          Reason = "platform"           // the platform is not accepted
)

// Refusal is the error of rejected evidence. errors.Is(r, ErrEvidence)
// holds for every refusal; errors.Is(r, &Refusal{Reason: x}) matches a
// reason.
type Refusal struct {
	Reason Reason
	Detail string
	Err    error // underlying cause, may be nil
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("tee: evidence rejected (%s): %s: %v", r.Reason, r.Detail, r.Err)
	}
	return fmt.Sprintf("tee: evidence rejected (%s): %s", r.Reason, r.Detail)
}

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Err }

// Is matches ErrEvidence and any Refusal of the same reason.
func (r *Refusal) Is(target error) bool {
	if target == ErrEvidence {
		return true
	}
	t, ok := target.(*Refusal)
	return ok && t.Reason == r.Reason
}

// Refuse returns a *Refusal.
func Refuse(reason Reason, err error, format string, args ...any) error {
	return &Refusal{Reason: reason, Detail: fmt.Sprintf(format, args...), Err: err}
}

// ReasonOf returns the reason of a refusal, or "" if err is not one.
func ReasonOf(err error) Reason {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Attester produces evidence binding reportData.
type Attester interface {
	Attest(reportData [ReportDataSize]byte) ([]byte, error)
}

// Verifier checks evidence of one platform.
type Verifier interface {
	Verify(evidence []byte) (*Claims, error)
}

// ErrEvidence marks evidence that failed verification.
var ErrEvidence = errors.New("tee: evidence rejected")

// Evidence is the platform-tagged wire form of evidence.
type Evidence struct {
	Platform string `cbor:"1,keyasint"`
	Blob     []byte `cbor:"2,keyasint"`
}

var decMode, _ = cbor.DecOptions{MaxArrayElements: 1024, MaxMapPairs: 64, MaxNestedLevels: 8}.DecMode()
var encMode, _ = cbor.CoreDetEncOptions().EncMode()

// Wrap encodes platform-tagged evidence.
func Wrap(platform string, blob []byte) ([]byte, error) {
	return encMode.Marshal(Evidence{Platform: platform, Blob: blob})
}

// Unwrap decodes platform-tagged evidence into its platform and blob.
func Unwrap(evidence []byte) (string, []byte, error) {
	if len(evidence) > MaxEvidenceSize {
		return "", nil, Refuse(ReasonMalformed, nil, "evidence exceeds %d bytes", MaxEvidenceSize)
	}
	var ev Evidence
	if err := decMode.Unmarshal(evidence, &ev); err != nil {
		return "", nil, Refuse(ReasonMalformed, nil, "malformed evidence")
	}
	return ev.Platform, ev.Blob, nil
}

// Registry routes evidence to the verifier of its platform. Only platforms
// added to a Registry are accepted: a KMS that must refuse simulated evidence
// simply does not add "sim".
type Registry struct {
	mu        sync.RWMutex
	verifiers map[string]Verifier
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{verifiers: map[string]Verifier{}} }

// Add registers v for platform.
func (r *Registry) Add(platform string, v Verifier) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifiers[platform] = v
}

// Platforms lists the accepted platforms.
func (r *Registry) Platforms() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.verifiers))
	for p := range r.verifiers {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Verify decodes platform-tagged evidence and verifies it with the
// platform's verifier. Errors wrap ErrEvidence.
func (r *Registry) Verify(evidence []byte) (*Claims, error) {
	if len(evidence) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: evidence too large", ErrEvidence)
	}
	var ev Evidence
	if err := decMode.Unmarshal(evidence, &ev); err != nil {
		return nil, fmt.Errorf("%w: malformed evidence", ErrEvidence)
	}
	r.mu.RLock()
	v, ok := r.verifiers[ev.Platform]
	r.mu.RUnlock()
	if !ok {
		return nil, Refuse(ReasonPlatform, nil, "platform %q not accepted", truncate(ev.Platform, 32))
	}
	c, err := v.Verify(ev.Blob)
	if err != nil {
		if errors.Is(err, ErrEvidence) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	c.Platform = ev.Platform
	return c, nil
}

// MeasurementIn reports whether m equals one of accepted. Each comparison is
// constant-time and every entry is compared, so the time taken does not tell
// which entry (if any) matched.
func MeasurementIn(m []byte, accepted [][]byte) bool {
	found := 0
	for _, a := range accepted {
		found |= subtle.ConstantTimeCompare(m, a)
	}
	return found == 1 && len(m) > 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
