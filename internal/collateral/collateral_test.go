package collateral

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/snp/snptest"
	"github.com/clemmys/clemmys/internal/tee/snp/snpverify"
	"github.com/clemmys/clemmys/internal/tee/tdx/tdxverify"
)

const (
	tdxData = "../tee/tdx/tdxverify/testdata/"
	snpData = "../tee/snp/snpverify/testdata/"
)

// realTDXTime is when go-tdx-guest's real collateral was current.
var realTDXTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vendors is a fake AMD KDS and Intel PCS serving the real Intel collateral
// (go-tdx-guest's) and CRLs of the fake AMD.
type vendors struct {
	srv      *httptest.Server
	amd      *snptest.AMD
	requests atomic.Int32
	override map[string]func(w http.ResponseWriter)
	files    map[string][]byte
}

func newVendors(t *testing.T) *vendors {
	t.Helper()
	amd, err := snptest.New()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: snptest.Time.Add(-time.Hour), NextUpdate: snptest.Time.AddDate(0, 0, 7),
	}, amd.Signer.Ark, amd.Signer.Keys.Ark)
	if err != nil {
		t.Fatal(err)
	}
	v := &vendors{amd: amd, override: map[string]func(http.ResponseWriter){}}
	v.files = map[string][]byte{
		"/vcek/v1/Milan/crl":                                     crl,
		"/vlek/v1/Milan/crl":                                     crl,
		"/tdx/certification/v4/qe/identity":                      read(t, tdxData+"sample_qeIdentity_response"),
		"/tdx/certification/v4/tcb?fmspc=50806f000000":           read(t, tdxData+"sample_tcbInfo_response"),
		"/sgx/certification/v4/pckcrl?ca=platform&encoding=der":  read(t, tdxData+"pckcrl"),
		"/sgx/certification/v4/pckcrl?ca=processor&encoding=der": read(t, tdxData+"pckcrl"),
		"/IntelSGXRootCA.der":                                    read(t, tdxData+"rootcrl.der"),
	}
	chain := read(t, tdxData+"tcb-signing-chain.pem")
	v.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.requests.Add(1)
		key := r.URL.RequestURI()
		if o, ok := v.override[key]; ok {
			o(w)
			return
		}
		b, ok := v.files[key]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(key, "/tdx/certification/v4/tcb") {
			w.Header().Set("TCB-Info-Issuer-Chain", url.QueryEscape(string(chain)))
		}
		w.Write(b)
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *vendors) fetcher(dir string) *Fetcher {
	return &Fetcher{Dir: dir, Client: v.srv.Client(), AMD: v.srv.URL, Intel: v.srv.URL, IntelRootCRL: v.srv.URL + "/IntelSGXRootCA.der"}
}

// TestFetchFeedsTheVerifiers: what fetch writes is what the verifiers read.
func TestFetchFeedsTheVerifiers(t *testing.T) {
	v := newVendors(t)
	dir := t.TempDir()
	got, err := v.fetcher(dir).Fetch(context.Background(), Request{SNP: []string{"Milan"}, FMSPCs: []string{"50806F000000"}})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range got {
		paths = append(paths, filepath.ToSlash(f.Path))
	}
	want := "snp/Milan/crl.der snp/Milan/vlek-crl.der tdx/qe-identity.json tdx/root-crl.der tdx/pck-crl-platform.der tdx/pck-crl-processor.der tdx/tcbinfo-50806f000000.json tdx/tcb-signing-chain.pem"
	if strings.Join(paths, " ") != want {
		t.Fatalf("fetched %v\nwant %s", paths, want)
	}

	// The real TDX quote against the fetched real collateral: every file is
	// found and verifies, and the quote is refused only because no TCB
	// level of this collateral matches it (upstream's known negative);
	// without the files it is refused for missing collateral.
	quote := read(t, tdxData+"tdx_prod_quote_SPR_E4.dat")
	at := func() time.Time { return realTDXTime }
	if _, err := tdxverify.New(tdxverify.Config{Now: at, CollateralDir: dir}).Verify(quote); tee.ReasonOf(err) != tee.ReasonTCB {
		t.Fatalf("real quote with fetched collateral: %v, want reason tcb", err)
	}
	if _, err := tdxverify.New(tdxverify.Config{Now: at, CollateralDir: t.TempDir()}).Verify(quote); tee.ReasonOf(err) != tee.ReasonCollateralMissing {
		t.Fatalf("real quote without collateral: %v, want reason collateral-missing", err)
	}

	// The real SNP report without its certificate table, against the real
	// VCEK fetched for its CHIP_ID and REPORTED_TCB: accepted (no real AMD
	// CRL ships with the libraries, hence CRLOptional).
	realReport := read(t, snpData+"attestation.bin")
	pr, err := abi.ReportToProto(realReport)
	if err != nil {
		t.Fatal(err)
	}
	tcb := kds.TCBVersion(pr.GetReportedTcb())
	v.files[strings.TrimPrefix(kds.VCEKCertURL("Milan", pr.GetChipId(), tcb), AMDKDS)] = read(t, snpData+"vcek.testcer")
	// (Its own directory: the fake AMD CRL fetched above is rightly refused
	// for the real chain.)
	realDir := t.TempDir()
	if _, err := v.fetcher(realDir).Fetch(context.Background(), Request{VCEKs: []VCEK{{ProductLine: "Milan", ChipID: pr.GetChipId(), TCB: tcb}}}); err != nil {
		t.Fatal(err)
	}
	realSNPTime := func() time.Time { return time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC) }
	bare := unwrap(t, realReport, nil)
	if _, err := snpverify.New(snpverify.Config{Now: realSNPTime, CRLOptional: true, CollateralDir: realDir}).Verify(bare); err != nil {
		t.Fatalf("real SNP report with the fetched VCEK: %v", err)
	}
	if _, err := snpverify.New(snpverify.Config{Now: realSNPTime, CRLOptional: true, CollateralDir: t.TempDir()}).Verify(bare); tee.ReasonOf(err) != tee.ReasonCollateralMissing {
		t.Fatalf("real SNP report without the VCEK: %v, want reason collateral-missing", err)
	}

	// A fake-AMD report against the fetched CRL (which the fake ARK signed):
	// accepted; without the CRL: refused.
	raw, err := v.amd.Report(snptest.Guest{}, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	table, err := v.amd.CertTable()
	if err != nil {
		t.Fatal(err)
	}
	fake := unwrap(t, raw, table)
	at = func() time.Time { return snptest.Time }
	if _, err := snpverify.New(snpverify.Config{Now: at, Roots: v.amd.Roots, CollateralDir: dir}).Verify(fake); err != nil {
		t.Fatalf("fake AMD report with the fetched CRL: %v", err)
	}
	if _, err := snpverify.New(snpverify.Config{Now: at, Roots: v.amd.Roots, CollateralDir: t.TempDir()}).Verify(fake); tee.ReasonOf(err) != tee.ReasonCollateralMissing {
		t.Fatalf("fake AMD report without the CRL: %v, want reason collateral-missing", err)
	}

	st, err := Status(dir, realTDXTime)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(got) {
		t.Fatalf("status lists %d files, want %d", len(st), len(got))
	}
	for _, f := range st {
		if f.Err != nil {
			t.Errorf("%s: %v", f.Path, f.Err)
		}
		if strings.HasPrefix(f.Path, "tdx/") && f.Stale {
			t.Errorf("%s (%s) stale at the real collateral's time: valid %v to %v", f.Path, f.Kind, f.From, f.To)
		}
	}
}

// TestFetchRefusesWhatIsNotCollateral: a bad answer never replaces a good
// file.
func TestFetchRefusesWhatIsNotCollateral(t *testing.T) {
	v := newVendors(t)
	dir := t.TempDir()
	if _, err := v.fetcher(dir).Fetch(context.Background(), Request{SNP: []string{"Milan"}}); err != nil {
		t.Fatal(err)
	}
	good := read(t, filepath.Join(dir, "snp", "Milan", "crl.der"))
	for name, answer := range map[string]func(w http.ResponseWriter){
		"an HTML page":   func(w http.ResponseWriter) { w.Write([]byte("<html>maintenance</html>")) },
		"a certificate":  func(w http.ResponseWriter) { w.Write(v.amd.Signer.Ark.Raw) },
		"a server error": func(w http.ResponseWriter) { http.Error(w, "busy", http.StatusServiceUnavailable) },
		"too much":       func(w http.ResponseWriter) { w.Write(make([]byte, MaxFile+1)) },
	} {
		t.Run(name, func(t *testing.T) {
			v.override["/vcek/v1/Milan/crl"] = answer
			_, err := v.fetcher(dir).Fetch(context.Background(), Request{SNP: []string{"Milan"}})
			if err == nil || !strings.Contains(err.Error(), "snp/Milan/crl.der") {
				t.Fatalf("err = %v, want a refusal naming the file", err)
			}
			if b := read(t, filepath.Join(dir, "snp", "Milan", "crl.der")); string(b) != string(good) {
				t.Fatal("the cached CRL was replaced")
			}
		})
	}
	delete(v.override, "/vcek/v1/Milan/crl")

	// TCB info without its issuer chain, or with a chain that is not PEM.
	for name, answer := range map[string]func(w http.ResponseWriter){
		"no issuer chain": func(w http.ResponseWriter) { w.Write(read(t, tdxData+"sample_tcbInfo_response")) },
		"unsigned": func(w http.ResponseWriter) {
			w.Write([]byte(`{"tcbInfo":{"id":"TDX","nextUpdate":"2023-08-01T00:00:00Z"}}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			v.override["/tdx/certification/v4/tcb?fmspc=50806f000000"] = answer
			if _, err := v.fetcher(dir).Fetch(context.Background(), Request{FMSPCs: []string{"50806f000000"}}); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(filepath.Join(dir, "tdx", "tcbinfo-50806f000000.json")); !os.IsNotExist(err) {
				t.Fatalf("a TCB info was written: %v", err)
			}
		})
	}
}

func TestFetchRefusesBadRequests(t *testing.T) {
	v := newVendors(t)
	f := v.fetcher(t.TempDir())
	for name, req := range map[string]Request{
		"unknown product line": {SNP: []string{"Naples"}},
		"short FMSPC":          {FMSPCs: []string{"50806f"}},
		"FMSPC not hex":        {FMSPCs: []string{"zz806f000000"}},
		"Turin VCEK":           {VCEKs: []VCEK{{ProductLine: "Turin", ChipID: make([]byte, 64)}}},
		"short chip id":        {VCEKs: []VCEK{{ProductLine: "Milan", ChipID: make([]byte, 8)}}},
	} {
		if _, err := f.Fetch(context.Background(), req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if n := v.requests.Load(); n != 0 {
		t.Fatalf("%d requests made for refused requests", n)
	}
}

func TestFetchHonoursCancellation(t *testing.T) {
	v := newVendors(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.fetcher(t.TempDir()).Fetch(ctx, Request{SNP: []string{"Milan"}}); err == nil {
		t.Fatal("a cancelled fetch succeeded")
	}
}

func TestStatus(t *testing.T) {
	v := newVendors(t)
	dir := t.TempDir()
	if _, err := v.fetcher(dir).Fetch(context.Background(), Request{SNP: []string{"Milan"}}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "snp", "Milan", "crl.pem"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(dir, "tdx"), 0o755)
	os.WriteFile(filepath.Join(dir, "tdx", "root-crl.der"), []byte("not a crl"), 0o644)
	st, err := Status(dir, snptest.Time)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]File{}
	for _, f := range st {
		byPath[f.Path] = f
	}
	if f := byPath["snp/Milan/crl.der"]; f.Err != nil || f.Stale || f.Kind != "AMD Milan VCEK CRL" || f.ExpiresIn != 7*24*time.Hour {
		t.Errorf("current CRL: %+v", f)
	}
	if f := byPath["snp/Milan/crl.pem"]; f.Err == nil {
		t.Errorf("misnamed file listed as fine: %+v", f)
	}
	if f := byPath["tdx/root-crl.der"]; f.Err == nil {
		t.Errorf("malformed CRL listed as fine: %+v", f)
	}
	later, err := Status(dir, snptest.Time.AddDate(0, 0, 8))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range later {
		if f.Path == "snp/Milan/crl.der" && !f.Stale {
			t.Errorf("CRL past its next update not stale: %+v", f)
		}
	}
	if _, err := Status(filepath.Join(dir, "missing"), snptest.Time); err == nil {
		t.Error("status of a missing directory succeeded")
	}
}

// unwrap returns the SNP evidence blob the verifier reads.
func unwrap(t testing.TB, report, table []byte) []byte {
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

// FuzzParse: the parsers of fetched bodies never panic, and what they
// accept has a validity window.
func FuzzParse(f *testing.F) {
	f.Add(read(f, tdxData+"sample_tcbInfo_response"))
	f.Add(read(f, tdxData+"sample_qeIdentity_response"))
	f.Add(read(f, tdxData+"tcb-signing-chain.pem"))
	f.Add([]byte(`{"tcbInfo":{"nextUpdate":"2023-01-01T00:00:00Z"},"signature":"00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, field := range []string{"tcbInfo", "enclaveIdentity"} {
			if body, err := parseSigned(b, field); err == nil && body.NextUpdate.IsZero() {
				t.Fatal("accepted without nextUpdate")
			}
		}
		if certs, err := parsePEMCerts(b); err == nil {
			for _, c := range certs {
				if c == nil {
					t.Fatal("nil certificate")
				}
			}
		}
		checkCRL(b)
		checkCert(b)
	})
}
