// Package snptest is a FAKE AMD for tests: go-sev-guest's test-only
// certificate chain (public test keys, never trusted outside tests) signs
// SEV-SNP reports with chosen fields, so tests can drive the real verifier
// (snpverify) and the KMS's SEV-SNP rules end to end. Only _test files and
// test helpers import it.
package snptest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sgtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/snp"
)

// Time is a time at which the fake chain is valid.
var Time = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// AMD is a fake AMD: ARK, ASK and one chip's VCEK (product line Milan).
type AMD struct {
	Signer *sgtest.AmdSigner
	Roots  map[string][]*trust.AMDRootCerts
	mu     sync.Mutex // serialises Sign (its randomness source is not safe for concurrent use)
}

// New returns the fake AMD, its certificates created a month before Time.
func New() (*AMD, error) {
	s, err := sgtest.DefaultTestOnlyCertChain("Milan-B1", Time.AddDate(0, -1, 0))
	if err != nil {
		return nil, err
	}
	root := trust.AMDRootCertsProduct("Milan")
	root.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}
	return &AMD{Signer: s, Roots: map[string][]*trust.AMDRootCerts{"Milan": {root}}}, nil
}

// Guest describes the fake guest a report comes from.
type Guest struct {
	Policy      abi.SnpPolicy
	Measurement [48]byte
	HostData    [32]byte
	GuestSVN    uint32
}

// Report returns a signed report of g binding reportData.
func (a *AMD) Report(g Guest, reportData [64]byte) ([]byte, error) {
	fms := abi.MaskedCpuid1EaxFromSevProduct(&spb.SevProduct{Name: spb.SevProduct_SEV_PRODUCT_MILAN})
	raw := sgtest.CreateRawReport(&sgtest.TestReportOptions{ReportData: reportData[:], FMS: fms, Version: 3})
	r := raw[:abi.ReportSize]
	binary.LittleEndian.PutUint32(r[0x04:], g.GuestSVN)
	binary.LittleEndian.PutUint64(r[0x08:], abi.SnpPolicyToBytes(g.Policy))
	copy(r[0x90:], g.Measurement[:])
	copy(r[0xC0:], g.HostData[:])
	a.mu.Lock()
	rr, ss, err := a.Signer.Sign(abi.SignedComponent(r))
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := abi.SetSignature(rr, ss, r); err != nil {
		return nil, err
	}
	return r, nil
}

// CertTable is the extended report's certificate table (ARK, ASK, VCEK).
func (a *AMD) CertTable() ([]byte, error) { return a.Signer.CertTableBytes() }

// Attester returns a tee.Attester of the fake guest g.
func (a *AMD) Attester(g Guest) tee.Attester { return &attester{a: a, g: g} }

type attester struct {
	a *AMD
	g Guest
}

func (t *attester) Attest(rd [tee.ReportDataSize]byte) ([]byte, error) {
	r, err := t.a.Report(t.g, rd)
	if err != nil {
		return nil, err
	}
	table, err := t.a.CertTable()
	if err != nil {
		return nil, err
	}
	return snp.Encode(r, table)
}

// WriteCRL writes a CRL of the fake ARK, valid from this to next and
// revoking the given serials, as dir/snp/Milan/crl.der.
func (a *AMD) WriteCRL(dir string, this, next time.Time, revoked ...*big.Int) error {
	return WriteCRLBy(dir, a.Signer.Ark, a.Signer.Keys.Ark, this, next, revoked...)
}

// WriteCRLBy writes a CRL issued by issuer/key as dir/snp/Milan/crl.der.
func WriteCRLBy(dir string, issuer *x509.Certificate, key crypto.Signer, this, next time.Time, revoked ...*big.Int) error {
	var entries []x509.RevocationListEntry
	for _, sn := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, issuer, key)
	if err != nil {
		return fmt.Errorf("snptest: crl: %w", err)
	}
	p := filepath.Join(dir, "snp", "Milan")
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p, "crl.der"), der, 0o644)
}
