package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCollateralFetchAndStatus: fetch writes where the KMS reads
// (DATA_DIR/collateral), status tells current from stale with its exit
// status, and a vendor error is reported with what to do.
func TestCollateralFetchAndStatus(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ARK"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(der)
	crl := func(next time.Time) []byte {
		b, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
			ThisUpdate: time.Now().Add(-48 * time.Hour), NextUpdate: next}, ca, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	next := time.Now().Add(30 * 24 * time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/vcek/v1/Genoa/crl" && r.URL.Path != "/vlek/v1/Genoa/crl" {
			http.NotFound(w, r)
			return
		}
		w.Write(crl(next))
	}))
	defer srv.Close()

	data := t.TempDir()
	var out, errs strings.Builder
	if code := Run([]string{"collateral", "fetch", "--data-dir", data, "--snp", "Genoa", "--amd-kds", srv.URL}, &out, &errs); code != 0 {
		t.Fatalf("fetch: %d %s", code, errs.String())
	}
	for _, f := range []string{"crl.der", "vlek-crl.der"} {
		if _, err := os.Stat(filepath.Join(data, "collateral", "snp", "Genoa", f)); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	errs.Reset()
	if code := Run([]string{"collateral", "status", "--data-dir", data}, &out, &errs); code != 0 || !strings.Contains(out.String(), "AMD Genoa VCEK CRL") || !strings.Contains(out.String(), " ok") {
		t.Fatalf("status of current collateral: %d\n%s%s", code, out.String(), errs.String())
	}

	// A CRL past its next update: stale, exit status 1.
	next = time.Now().Add(-time.Hour)
	if code := Run([]string{"collateral", "fetch", "--dir", filepath.Join(data, "collateral"), "--snp", "Genoa", "--amd-kds", srv.URL}, &out, &errs); code != 0 {
		t.Fatalf("fetch: %d %s", code, errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := Run([]string{"collateral", "status", "--data-dir", data}, &out, &errs); code != 1 || !strings.Contains(out.String(), "STALE") {
		t.Fatalf("status of stale collateral: %d\n%s%s", code, out.String(), errs.String())
	}

	// The vendor answers 404 for Milan: a clear failure naming the file.
	errs.Reset()
	if code := Run([]string{"collateral", "fetch", "--data-dir", data, "--snp", "Milan", "--amd-kds", srv.URL}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "snp/Milan/crl.der") || !strings.Contains(errs.String(), "404") {
		t.Fatalf("fetch from a failing vendor: %d %s", code, errs.String())
	}
	// Bad flags are refused before any request.
	for _, args := range [][]string{
		{"collateral", "fetch", "--data-dir", data, "--vcek", "Milan:zz:1.2.3.4"},
		{"collateral", "fetch", "--data-dir", data, "--vcek", "Milan:00:1.2.3"},
	} {
		if code := Run(args, &out, &errs); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	errs.Reset()
	if code := Run([]string{"collateral", "status", "--data-dir", t.TempDir()}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "collateral fetch") {
		t.Fatalf("status without a directory: %d %s", code, errs.String())
	}
}
