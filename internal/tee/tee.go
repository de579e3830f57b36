// Package tee abstracts trusted execution environments: an Attester produces
// evidence that binds 64 bytes of report data to the measurement of the code
// that runs; a Verifier checks evidence and returns its claims.
//
// Backends (tee/sim, later tee/snp and tee/tdx) register themselves; this
// package never imports a backend. Evidence on the wire is CBOR
// {platform, blob} so a Registry can route it to the right verifier.
package tee

import (
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

// Claims are what a verifier vouches for.
type Claims struct {
	Platform        string // "sim", "sev-snp", "tdx"
	Measurement     []byte // digest of the launched code
	SecurityVersion uint32 // TCB / security version number
	Debug           bool   // debug-mode enclave: memory readable by the host
	ReportData      [ReportDataSize]byte
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
		return nil, fmt.Errorf("%w: platform %q not accepted", ErrEvidence, ev.Platform)
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
