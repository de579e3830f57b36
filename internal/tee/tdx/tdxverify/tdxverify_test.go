package tdxverify

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

//go:embed testdata/tdx_prod_quote_SPR_E4.dat
var realQuote []byte

// realTime is when the real collateral was current (as upstream tests it).
var realTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

func now() time.Time { return realTime }

// collateral lays the real Intel collateral out as a collateral directory,
// leaving out the files named in skip.
func collateral(t testing.TB, skip ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tdx"), 0o755)
	for src, dst := range map[string]string{
		"sample_tcbInfo_response":    "tcbinfo-50806f000000.json",
		"sample_qeIdentity_response": "qe-identity.json",
		"tcb-signing-chain.pem":      "tcb-signing-chain.pem",
		"pckcrl":                     "pck-crl-platform.der",
		"rootcrl.der":                "root-crl.der",
	} {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == dst
		}
		if skipped {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tdx", dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
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

func mutate(off int) []byte {
	q := bytes.Clone(realQuote)
	q[off] ^= 1
	return q
}

// Offsets in a v4 quote: header 48 bytes, then the TD quote body (MRTD at
// body+136, REPORTDATA at body+520, 584 bytes), then the signature data
// length (4) and the quote signature (64).
const (
	bodyOff       = 48
	mrtdOff       = bodyOff + 136
	reportDataOff = bodyOff + 520
	sigOff        = bodyOff + 584 + 4
)

func TestRealQuote(t *testing.T) {
	full := collateral(t)
	t.Run("real collateral has no TCB level for it", func(t *testing.T) {
		// Upstream's known negative: the sample TCB info is newer than the
		// quote. Everything before the TCB level (chain, signatures,
		// collateral signatures and CRLs) has verified when this refusal
		// comes.
		_, err := New(Config{Now: now, CollateralDir: full}).Verify(realQuote)
		wantReason(t, err, tee.ReasonTCB)
	})
	for _, tc := range []struct {
		name   string
		quote  []byte
		cfg    Config
		reason tee.Reason
	}{
		{"flipped signature byte", mutate(sigOff + 3), Config{Now: now, CollateralDir: full}, tee.ReasonSignature},
		{"changed MRTD", mutate(mrtdOff), Config{Now: now, CollateralDir: full}, tee.ReasonSignature},
		{"changed REPORTDATA", mutate(reportDataOff), Config{Now: now, CollateralDir: full}, tee.ReasonSignature},
		{"expired PCK chain", realQuote, Config{Now: func() time.Time { return realTime.AddDate(30, 0, 0) }, CollateralDir: full}, tee.ReasonCollateralStale},
		{"stale TCB info", realQuote, Config{Now: func() time.Time { return realTime.AddDate(0, 1, 0) }, CollateralDir: full}, tee.ReasonCollateralStale},
		{"no collateral directory", realQuote, Config{Now: now}, tee.ReasonCollateralMissing},
		{"no TCB info", realQuote, Config{Now: now, CollateralDir: collateral(t, "tcbinfo-50806f000000.json")}, tee.ReasonCollateralMissing},
		{"no QE identity", realQuote, Config{Now: now, CollateralDir: collateral(t, "qe-identity.json")}, tee.ReasonCollateralMissing},
		{"no PCK CRL", realQuote, Config{Now: now, CollateralDir: collateral(t, "pck-crl-platform.der")}, tee.ReasonCollateralMissing},
		{"no root CRL", realQuote, Config{Now: now, CollateralDir: collateral(t, "root-crl.der")}, tee.ReasonCollateralMissing},
		{"truncated", realQuote[:600], Config{Now: now, CollateralDir: full}, tee.ReasonMalformed},
		{"empty", nil, Config{Now: now, CollateralDir: full}, tee.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg).Verify(tc.quote)
			wantReason(t, err, tc.reason)
		})
	}
	t.Run("tampered TCB info", func(t *testing.T) {
		dir := collateral(t)
		p := filepath.Join(dir, "tdx", "tcbinfo-50806f000000.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, bytes.Replace(b, []byte(`"UpToDate"`), []byte(`"OutOfDate"`), 1), 0o644)
		_, err := New(Config{Now: now, CollateralDir: dir}).Verify(realQuote)
		wantReason(t, err, tee.ReasonChain)
	})
	t.Run("CRL of another issuer", func(t *testing.T) {
		dir := collateral(t)
		// The root CA's CRL where the PCK CA's belongs.
		b, _ := os.ReadFile(filepath.Join("testdata", "rootcrl.der"))
		os.WriteFile(filepath.Join(dir, "tdx", "pck-crl-platform.der"), b, 0o644)
		_, err := New(Config{Now: now, CollateralDir: dir}).Verify(realQuote)
		wantReason(t, err, tee.ReasonChain)
	})
	t.Run("wrong root", func(t *testing.T) {
		_, err := New(Config{Now: now, CollateralDir: full, Roots: emptyPool()}).Verify(realQuote)
		wantReason(t, err, tee.ReasonChain)
	})
}

// TestTCBStatus applies Intel's TCB level algorithm to the real TCB info
// with the real quote's PCK certificate, at TEE_TCB_SVNs below, at and
// above its levels.
func TestTCBStatus(t *testing.T) {
	q, err := abi.QuoteToProto(realQuote)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pckChain(q.(*pb.QuoteV4))
	if err != nil {
		t.Fatal(err)
	}
	exts, err := pcs.PckCertificateExtensions(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	v := New(Config{Now: now, CollateralDir: collateral(t)})
	signing, err := v.signingCert(realTime)
	if err != nil {
		t.Fatal(err)
	}
	ti, err := v.tcbInfo(exts.FMSPC, signing, realTime)
	if err != nil {
		t.Fatal(err)
	}
	real := q.(*pb.QuoteV4).GetTdQuoteBody().GetTeeTcbSvn()
	if _, err := TCBStatus(ti, real, exts); tee.ReasonOf(err) != tee.ReasonTCB {
		t.Fatalf("real TEE_TCB_SVN %x: %v", real, err)
	}
	svn := func(b ...byte) []byte { out := make([]byte, 16); copy(out, b); return out }
	// The real PCK certificate's SGX SVNs are below every level of the
	// (newer) sample TCB info; a platform updated to the newest level:
	t.Logf("real PCK: CPUSVN %v PCESVN %d", exts.TCB.CPUSvnComponents, exts.TCB.PCESvn)
	updated := *exts
	updated.TCB.CPUSvnComponents = []byte{5, 5, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}
	updated.TCB.PCESvn = 11
	lowPCE := updated
	lowPCE.TCB.PCESvn = 5
	for _, tc := range []struct {
		name string
		svn  []byte
		exts *pcs.PckExtensions
		want pcs.TcbComponentStatus
	}{
		{"at the newest level", svn(3, 0, 5), &updated, pcs.TcbComponentStatusUpToDate},
		{"above it", svn(9, 0, 9), &updated, pcs.TcbComponentStatusUpToDate},
		{"PCE below the newest level", svn(3, 0, 5), &lowPCE, pcs.TcbComponentStatusOutOfDate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TCBStatus(ti, tc.svn, tc.exts)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := TCBStatus(ti, svn(2, 0, 5), &updated); tee.ReasonOf(err) != tee.ReasonTCB {
		t.Fatalf("below every level: %v", err)
	}
	if _, err := TCBStatus(ti, svn(3, 1, 5), &updated); tee.ReasonOf(err) != tee.ReasonTCB {
		t.Fatalf("unknown TDX module: %v", err)
	}
}

func TestWorst(t *testing.T) {
	u, s, o := pcs.TcbComponentStatusUpToDate, pcs.TcbComponentStatusSwHardeningNeeded, pcs.TcbComponentStatusOutOfDate
	for _, tc := range [][3]pcs.TcbComponentStatus{{u, u, u}, {u, s, s}, {s, u, s}, {o, s, o}, {u, "Weird", "Weird"}} {
		if got := worst(tc[0], tc[1]); got != tc[2] {
			t.Errorf("worst(%s, %s) = %s, want %s", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestThroughRegistry(t *testing.T) {
	r := tee.NewRegistry()
	r.Add(tdx.Platform, New(Config{Now: now, CollateralDir: collateral(t)}))
	ev, _ := tee.Wrap(tdx.Platform, realQuote)
	_, err := r.Verify(ev)
	wantReason(t, err, tee.ReasonTCB)
}

func BenchmarkVerifyTDX(b *testing.B) {
	// The real quote is refused at its TCB level, after every signature,
	// chain, collateral and CRL check: the cost of a verification.
	dir := collateral(b)
	cfg := Config{Now: now, CollateralDir: dir}
	check := func(err error) {
		if tee.ReasonOf(err) != tee.ReasonTCB {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			_, err := New(cfg).Verify(realQuote)
			check(err)
		}
	})
	b.Run("cached-collateral", func(b *testing.B) {
		v := New(cfg)
		for b.Loop() {
			_, err := v.Verify(realQuote)
			check(err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add(realQuote)
	f.Add(realQuote[:1000])
	f.Add([]byte{4, 0, 2, 0})
	dir := collateral(f)
	v := New(Config{Now: now, CollateralDir: dir})
	f.Fuzz(func(t *testing.T, q []byte) {
		c, err := v.Verify(q)
		if err == nil {
			t.Fatalf("accepted a fuzzed quote: %+v", c)
		}
		if !errors.Is(err, tee.ErrEvidence) {
			t.Fatalf("error %v is not a refusal", err)
		}
	})
}

func emptyPool() *x509.CertPool { return x509.NewCertPool() }
