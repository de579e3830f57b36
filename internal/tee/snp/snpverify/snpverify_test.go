package snpverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sgtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/snp"
)

//go:embed testdata/attestation.bin
var realReport []byte

//go:embed testdata/vcek.testcer
var realVCEK []byte

// realTime is within the real VCEK's validity (2022-09-24 .. 2029-09-24).
var realTime = time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC)

func certTable(t testing.TB, chain *spb.CertificateChain) []byte {
	t.Helper()
	if chain.Extras == nil {
		chain.Extras = map[string][]byte{}
	}
	return abi.CertsFromProto(chain).Marshal()
}

func blobOf(t testing.TB, report, table []byte) []byte {
	t.Helper()
	ev, err := snp.Encode(report, table)
	if err != nil {
		t.Fatal(err)
	}
	_, blob, err := tee.Unwrap(ev)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func wantReason(t *testing.T, err error, r tee.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a refusal (%s)", r)
	}
	if !errors.Is(err, tee.ErrEvidence) || tee.ReasonOf(err) != r {
		t.Fatalf("refusal %v (reason %q); want reason %q", err, tee.ReasonOf(err), r)
	}
}

func TestRealReport(t *testing.T) {
	chipDir := t.TempDir()
	rep, err := abi.ReportToProto(realReport)
	if err != nil {
		t.Fatal(err)
	}
	// The same VCEK, cached in the collateral directory for the chip.
	dir := filepath.Join(chipDir, "snp", "Milan")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, VCEKFileName(rep.GetChipId(), kds.TCBVersion(rep.GetReportedTcb()))), realVCEK, 0o644); err != nil {
		t.Fatal(err)
	}
	withTable := blobOf(t, realReport, certTable(t, &spb.CertificateChain{VcekCert: realVCEK}))
	bare := blobOf(t, realReport, nil)
	now := func() time.Time { return realTime }

	for _, tc := range []struct {
		name string
		blob []byte
		cfg  Config
	}{
		{"vcek in the certificate table", withTable, Config{Now: now, CRLOptional: true}},
		{"vcek from the collateral directory", bare, Config{Now: now, CRLOptional: true, CollateralDir: chipDir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg).Verify(tc.blob)
			if err != nil {
				t.Fatal(err)
			}
			if c.Platform != snp.Platform || c.SNP == nil || len(c.Measurement) != 48 ||
				string(c.Measurement) != string(rep.GetMeasurement()) || string(c.ReportData[:]) != string(rep.GetReportData()) {
				t.Fatalf("claims %+v", c)
			}
			if c.SNP.ProductLine != "Milan" || c.SNP.Signer != "vcek" || !c.Debug || !c.SNP.Debug || !c.SNP.SMT {
				t.Errorf("product %q signer %q", c.SNP.ProductLine, c.SNP.Signer)
			}
			tcb := kds.DecomposeTCBVersion(kds.TCBVersion(rep.GetReportedTcb()))
			if c.SNP.ReportedTCB != (tee.SNPTCB{BootLoader: tcb.BlSpl, TEE: tcb.TeeSpl, SNP: tcb.SnpSpl, Microcode: tcb.UcodeSpl}) {
				t.Errorf("tcb %v", c.SNP.ReportedTCB)
			}
			t.Logf("real report: measurement %x tcb %v debug %v smt %v ma %v", c.Measurement, c.SNP.ReportedTCB, c.SNP.Debug, c.SNP.SMT, c.SNP.MigrationAgent)
		})
	}

	t.Run("no CRL is a refusal", func(t *testing.T) {
		_, err := New(Config{Now: now, CollateralDir: chipDir}).Verify(withTable)
		wantReason(t, err, tee.ReasonCollateralMissing)
	})
	t.Run("no VCEK anywhere", func(t *testing.T) {
		_, err := New(Config{Now: now, CRLOptional: true, CollateralDir: t.TempDir()}).Verify(bare)
		wantReason(t, err, tee.ReasonCollateralMissing)
	})
	t.Run("expired VCEK", func(t *testing.T) {
		_, err := New(Config{Now: func() time.Time { return realTime.AddDate(10, 0, 0) }, CRLOptional: true}).Verify(withTable)
		wantReason(t, err, tee.ReasonCollateralStale)
	})
	t.Run("flipped signature byte", func(t *testing.T) {
		r := append([]byte(nil), realReport...)
		r[0x2A0+5] ^= 1
		_, err := New(Config{Now: now, CRLOptional: true}).Verify(blobOf(t, r, certTable(t, &spb.CertificateChain{VcekCert: realVCEK})))
		wantReason(t, err, tee.ReasonSignature)
	})
	t.Run("changed report data", func(t *testing.T) {
		r := append([]byte(nil), realReport...)
		r[0x50] ^= 1
		_, err := New(Config{Now: now, CRLOptional: true}).Verify(blobOf(t, r, certTable(t, &spb.CertificateChain{VcekCert: realVCEK})))
		wantReason(t, err, tee.ReasonSignature)
	})
	// The real report was made by a debug VM (policy 0xb0000): clearing
	// the bit to pass a debug-forbidding policy breaks the signature.
	t.Run("debug bit cleared", func(t *testing.T) {
		r := append([]byte(nil), realReport...)
		p := binary.LittleEndian.Uint64(r[0x08:])
		binary.LittleEndian.PutUint64(r[0x08:], p&^(1<<19))
		_, err := New(Config{Now: now, CRLOptional: true}).Verify(blobOf(t, r, certTable(t, &spb.CertificateChain{VcekCert: realVCEK})))
		wantReason(t, err, tee.ReasonSignature)
	})
}

// fakeAMD is go-sev-guest's test-only AMD chain (public test keys).
type fakeAMD struct {
	s     *sgtest.AmdSigner
	roots map[string][]*trust.AMDRootCerts
}

var fakeTime = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

func newFakeAMD(t testing.TB) *fakeAMD {
	t.Helper()
	s, err := sgtest.DefaultTestOnlyCertChain("Milan-B1", fakeTime.AddDate(0, -1, 0))
	if err != nil {
		t.Fatal(err)
	}
	root := trust.AMDRootCertsProduct("Milan")
	root.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}
	return &fakeAMD{s: s, roots: map[string][]*trust.AMDRootCerts{"Milan": {root}}}
}

// fakeOpts describe a fake report.
type fakeOpts struct {
	policy      abi.SnpPolicy
	measurement byte
	reportData  [64]byte
	hostData    byte
}

func (f *fakeAMD) report(t testing.TB, o fakeOpts) []byte {
	t.Helper()
	fms := abi.MaskedCpuid1EaxFromSevProduct(&spb.SevProduct{Name: spb.SevProduct_SEV_PRODUCT_MILAN})
	raw := sgtest.CreateRawReport(&sgtest.TestReportOptions{ReportData: o.reportData[:], FMS: fms, Version: 3})
	r := raw[:abi.ReportSize]
	binary.LittleEndian.PutUint64(r[0x08:], abi.SnpPolicyToBytes(o.policy))
	for i := range 48 {
		r[0x90+i] = o.measurement
	}
	for i := range 32 {
		r[0xC0+i] = o.hostData
	}
	rr, ss, err := f.s.Sign(abi.SignedComponent(r))
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(rr, ss, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fakeAMD) table(t testing.TB) []byte {
	t.Helper()
	tb, err := f.s.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// crl writes a CRL signed by the fake ARK into dir.
func (f *fakeAMD) crl(t testing.TB, dir string, this, next time.Time, revoked ...*big.Int) {
	t.Helper()
	f.crlBy(t, dir, f.s.Ark, f.s.Keys.Ark, this, next, revoked...)
}

func (f *fakeAMD) crlBy(t testing.TB, dir string, issuer *x509.Certificate, key crypto.Signer, this, next time.Time, revoked ...*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, sn := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "snp", "Milan")
	os.MkdirAll(p, 0o755)
	if err := os.WriteFile(filepath.Join(p, "crl.der"), der, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFakeAMD(t *testing.T) {
	f := newFakeAMD(t)
	now := func() time.Time { return fakeTime }
	good := blobOf(t, f.report(t, fakeOpts{measurement: 7, hostData: 9, policy: abi.SnpPolicy{SMT: true}}), f.table(t))
	current := t.TempDir()
	f.crl(t, current, fakeTime.Add(-time.Hour), fakeTime.Add(30*24*time.Hour))

	c, err := New(Config{Now: now, Roots: f.roots, CollateralDir: current}).Verify(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.SNP.Measurement[0] != 7 || c.SNP.HostData[0] != 9 || !c.SNP.SMT || c.SNP.Debug || c.SNP.MigrationAgent || c.SNP.ProductLine != "Milan" {
		t.Fatalf("claims %+v", c.SNP)
	}
	debug := blobOf(t, f.report(t, fakeOpts{policy: abi.SnpPolicy{Debug: true}}), f.table(t))
	c, err = New(Config{Now: now, Roots: f.roots, CollateralDir: current}).Verify(debug)
	if err != nil || !c.Debug || !c.SNP.Debug {
		t.Fatalf("debug report: %v %+v", err, c)
	}

	stale, revokedVCEK, revokedASK, foreign := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	f.crl(t, stale, fakeTime.Add(-60*24*time.Hour), fakeTime.Add(-time.Hour))
	f.crl(t, revokedVCEK, fakeTime.Add(-time.Hour), fakeTime.Add(time.Hour), f.s.Vcek.SerialNumber)
	f.crl(t, revokedASK, fakeTime.Add(-time.Hour), fakeTime.Add(time.Hour), f.s.Ask.SerialNumber)
	// A CRL signed by another CA than the ARK.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	otherDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(5), Subject: f.s.Ark.Subject,
		NotBefore: fakeTime.AddDate(-1, 0, 0), NotAfter: fakeTime.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, &x509.Certificate{SerialNumber: big.NewInt(5), Subject: f.s.Ark.Subject}, &otherKey.PublicKey, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := x509.ParseCertificate(otherDER)
	f.crlBy(t, foreign, otherCA, otherKey, fakeTime.Add(-time.Hour), fakeTime.Add(time.Hour))

	for _, tc := range []struct {
		name   string
		cfg    Config
		blob   []byte
		reason tee.Reason
	}{
		{"wrong chain: fake AMD against the real AMD roots", Config{Now: now, CRLOptional: true}, good, tee.ReasonChain},
		{"stale CRL", Config{Now: now, Roots: f.roots, CollateralDir: stale}, good, tee.ReasonCollateralStale},
		{"revoked VCEK", Config{Now: now, Roots: f.roots, CollateralDir: revokedVCEK}, good, tee.ReasonRevoked},
		{"revoked ASK", Config{Now: now, Roots: f.roots, CollateralDir: revokedASK}, good, tee.ReasonRevoked},
		{"CRL not signed by the ARK", Config{Now: now, Roots: f.roots, CollateralDir: foreign}, good, tee.ReasonChain},
		{"no CRL", Config{Now: now, Roots: f.roots, CollateralDir: t.TempDir()}, good, tee.ReasonCollateralMissing},
		{"VCEK not yet valid", Config{Now: func() time.Time { return fakeTime.AddDate(-1, 0, 0) }, Roots: f.roots, CollateralDir: current}, good, tee.ReasonCollateralStale},
		{"malformed", Config{Now: now}, []byte{0xa0}, tee.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg).Verify(tc.blob)
			wantReason(t, err, tc.reason)
		})
	}
}

func TestRealReportThroughRegistry(t *testing.T) {
	ev, err := snp.Encode(realReport, certTable(t, &spb.CertificateChain{VcekCert: realVCEK}))
	if err != nil {
		t.Fatal(err)
	}
	r := tee.NewRegistry()
	r.Add(snp.Platform, New(Config{Now: func() time.Time { return realTime }, CRLOptional: true}))
	c, err := r.Verify(ev)
	if err != nil || c.Platform != tee.PlatformSNP {
		t.Fatalf("%v %+v", err, c)
	}
}

func BenchmarkVerifySNP(b *testing.B) {
	rep, _ := abi.ReportToProto(realReport)
	dir := b.TempDir()
	p := filepath.Join(dir, "snp", "Milan")
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, VCEKFileName(rep.GetChipId(), kds.TCBVersion(rep.GetReportedTcb()))), realVCEK, 0o644)
	blob := blobOf(b, realReport, nil)
	cfg := Config{Now: func() time.Time { return realTime }, CRLOptional: true, CollateralDir: dir}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if _, err := New(cfg).Verify(blob); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-collateral", func(b *testing.B) {
		v := New(cfg)
		for b.Loop() {
			if _, err := v.Verify(blob); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add(blobOf(f, realReport, certTable(f, &spb.CertificateChain{VcekCert: realVCEK})))
	f.Add(blobOf(f, realReport, nil))
	f.Add([]byte{0xa1, 0x01, 0x40})
	v := New(Config{Now: func() time.Time { return realTime }})
	f.Fuzz(func(t *testing.T, blob []byte) {
		c, err := v.Verify(blob)
		if err == nil {
			t.Fatalf("accepted fuzzed evidence without a CRL: %+v", c)
		}
		if !errors.Is(err, tee.ErrEvidence) {
			t.Fatalf("error %v is not a refusal", err)
		}
	})
}
