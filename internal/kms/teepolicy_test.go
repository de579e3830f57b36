package kms_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/snp/snptest"
	"github.com/clemmys/clemmys/internal/tee/snp/snpverify"
	"github.com/clemmys/clemmys/internal/wire"
)

func fill48(b byte) []byte {
	out := make([]byte, 48)
	for i := range out {
		out[i] = b
	}
	return out
}

// claimsVerifier is a TEST verifier for platform "tdx" that vouches for
// whatever TDX claims its evidence carries (CBOR {claims, report data}).
// It exercises the KMS's TDX rules; the real TDX verifier (tdxverify) is
// tested with Intel's real quote and collateral in its own package.
type claimsVerifier struct{}

type fakeTDXEvidence struct {
	Claims     tee.TDXClaims `cbor:"1,keyasint"`
	ReportData []byte        `cbor:"2,keyasint"`
}

func (claimsVerifier) Verify(blob []byte) (*tee.Claims, error) {
	var ev fakeTDXEvidence
	if err := cbor.Unmarshal(blob, &ev); err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, err, "fake tdx")
	}
	c := &tee.Claims{Platform: tee.PlatformTDX, TDX: &ev.Claims, Debug: ev.Claims.Debug,
		Measurement: tee.TDXMeasurement(ev.Claims.MRTD, ev.Claims.RTMR)}
	copy(c.ReportData[:], ev.ReportData)
	return c, nil
}

type fakeTDXAttester struct{ c tee.TDXClaims }

func (a fakeTDXAttester) Attest(rd [64]byte) ([]byte, error) {
	b, err := cbor.Marshal(fakeTDXEvidence{Claims: a.c, ReportData: rd[:]})
	if err != nil {
		return nil, err
	}
	return tee.Wrap(tee.PlatformTDX, b)
}

func TestReleaseOnSNPClaims(t *testing.T) {
	amd, err := snptest.New()
	if err != nil {
		t.Fatal(err)
	}
	collateral := t.TempDir()
	if err := amd.WriteCRL(collateral, snptest.Time.Add(-time.Hour), snptest.Time.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	goodM := [48]byte(fill48(0x11))
	policy := wire.Policy{SNP: &wire.SNPPolicy{
		Measurements: [][]byte{goodM[:]},
		MinTCB:       wire.SNPTCB{},
		HostData:     make([]byte, 32),
	}}
	e := newEnv(t, func(c *kms.Config) {
		c.Verifiers.Add(snp.Platform, snpverify.New(snpverify.Config{Now: func() time.Time { return snptest.Time },
			Roots: amd.Roots, CollateralDir: collateral}))
		c.DefaultPolicy = policy
	})
	fn := e.create("alice", "hello", envelope.SuiteX25519)

	good := snptest.Guest{Measurement: goodM}
	b, err := e.release(newRuntime(t, amd.Attester(good)), fn.rec.FunctionID)
	if err != nil {
		t.Fatalf("a runtime the policy allows: %v", err)
	}
	if b.Record.Action != "hello" {
		t.Fatalf("bundle %+v", b.Record)
	}

	for _, tc := range []struct {
		name  string
		guest snptest.Guest
		claim string
	}{
		{"measurement not allowed", snptest.Guest{Measurement: [48]byte(fill48(0x22))}, "snp.measurement"},
		{"debug guest", snptest.Guest{Measurement: goodM, Policy: abi.SnpPolicy{Debug: true}}, "snp.policy.debug"},
		{"SMT forbidden", snptest.Guest{Measurement: goodM, Policy: abi.SnpPolicy{SMT: true}}, "snp.policy.smt"},
		{"migration agent forbidden", snptest.Guest{Measurement: goodM, Policy: abi.SnpPolicy{MigrateMA: true}}, "snp.policy.migrate-ma"},
		{"host data", snptest.Guest{Measurement: goodM, HostData: [32]byte{1}}, "snp.host-data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.release(newRuntime(t, amd.Attester(tc.guest)), fn.rec.FunctionID)
			wantCode(t, err, wire.CodePolicy)
			if !strings.Contains(err.Error(), tc.claim) {
				t.Fatalf("refusal does not name %s: %v", tc.claim, err)
			}
		})
	}

	// TCB below the minimum: the fake chip reports TCB 0.0.0.0.
	p2 := policy
	s2 := *policy.SNP
	s2.MinTCB = wire.SNPTCB{BootLoader: 2, SNP: 8, Microcode: 115}
	s2.AllowSMT = true
	p2.SNP = &s2
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: p2}); err != nil {
		t.Fatal(err)
	}
	_, err = e.release(newRuntime(t, amd.Attester(good)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
	if !strings.Contains(err.Error(), "snp.reported-tcb") || !strings.Contains(err.Error(), "2.0.8.115") {
		t.Fatalf("refusal: %v", err)
	}

	// Evidence whose REPORT_DATA does not bind the request's nonce and key.
	rt := newRuntime(t, amd.Attester(good))
	req := e.releaseReq(rt, fn.rec.FunctionID)
	req.EphemeralKey = newRuntime(t, amd.Attester(good)).eph.PublicKey().Bytes()
	_, err = e.send(rt, req)
	wantCode(t, err, wire.CodeAttestation)

	// A sim runtime gets nothing from a policy with only SNP rules.
	_, err = e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
}

// The real Milan report through the real AMD chain, at the KMS: it is
// refused, because its REPORT_DATA binds no KMS nonce (it was made long
// ago) and, were it bound, because the VM was a debug guest.
func TestReleaseRealSNPReport(t *testing.T) {
	report, err := os.ReadFile(filepath.Join("..", "tee", "snp", "snpverify", "testdata", "attestation.bin"))
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := os.ReadFile(filepath.Join("..", "tee", "snp", "snpverify", "testdata", "vcek.testcer"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := snp.Encode(report, abi.CertsFromProto(&spb.CertificateChain{VcekCert: vcek, Extras: map[string][]byte{}}).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := abi.ReportToProto(report)
	e := newEnv(t, func(c *kms.Config) {
		c.Verifiers.Add(snp.Platform, snpverify.New(snpverify.Config{
			Now: func() time.Time { return time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC) }, CRLOptional: true}))
		c.DefaultPolicy = wire.Policy{SNP: &wire.SNPPolicy{Measurements: [][]byte{rep.GetMeasurement()}, AllowSMT: true}}
	})
	fn := e.create("alice", "hello", envelope.SuiteX25519)
	rt := newRuntime(t, nil)
	req := &wire.ReleaseRequest{Nonce: e.nonce(), EphemeralKey: rt.eph.PublicKey().Bytes(), Evidence: ev, FunctionID: fn.rec.FunctionID}
	_, err = e.send(rt, req)
	wantCode(t, err, wire.CodeAttestation)
	if !strings.Contains(err.Error(), "does not bind this request") {
		t.Fatalf("refusal: %v", err)
	}
}

func TestReleaseOnTDXClaims(t *testing.T) {
	mrtd, rtmr2 := fill48(0xaa), fill48(0xbb)
	e := newEnv(t, func(c *kms.Config) {
		c.Verifiers.Add(tee.PlatformTDX, claimsVerifier{})
		c.DefaultPolicy = wire.Policy{TDX: &wire.TDXPolicy{
			MRTDs: [][]byte{mrtd}, RTMR2: [][]byte{rtmr2},
			MinTEETCBSVN: []byte{3, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			TCBStatuses:  []string{"UpToDate", "SWHardeningNeeded"},
		}}
	})
	fn := e.create("alice", "hello", envelope.SuiteX25519)
	good := tee.TDXClaims{MRTD: mrtd, RTMR: [4][]byte{fill48(0), fill48(0), rtmr2, fill48(0)},
		TEETCBSVN: []byte{3, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, TCBStatus: "SWHardeningNeeded", TDAttributes: make([]byte, 8)}
	if _, err := e.release(newRuntime(t, fakeTDXAttester{good}), fn.rec.FunctionID); err != nil {
		t.Fatalf("a TD the policy allows: %v", err)
	}
	for _, tc := range []struct {
		name  string
		mut   func(c *tee.TDXClaims)
		claim string
	}{
		{"MRTD not allowed", func(c *tee.TDXClaims) { c.MRTD = fill48(1) }, "tdx.mrtd"},
		{"RTMR2 not allowed", func(c *tee.TDXClaims) { c.RTMR[2] = fill48(1) }, "tdx.rtmr2"},
		{"debug TD", func(c *tee.TDXClaims) { c.Debug = true }, "tdx.attributes.debug"},
		{"TCB SVN below the minimum", func(c *tee.TDXClaims) { c.TEETCBSVN = []byte{3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} }, "tdx.tee-tcb-svn"},
		{"TCB status not allowed", func(c *tee.TDXClaims) { c.TCBStatus = "OutOfDate" }, "tdx.tcb-status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			c.RTMR = good.RTMR
			tc.mut(&c)
			_, err := e.release(newRuntime(t, fakeTDXAttester{c}), fn.rec.FunctionID)
			wantCode(t, err, wire.CodePolicy)
			if !strings.Contains(err.Error(), tc.claim) {
				t.Fatalf("refusal does not name %s: %v", tc.claim, err)
			}
		})
	}
	// An SNP or sim runtime gets nothing from a TDX-only policy.
	_, err := e.release(newRuntime(t, e.plat.Attester(runtimeMeas, 1, false)), fn.rec.FunctionID)
	wantCode(t, err, wire.CodePolicy)
}

func TestTypedPolicyValidation(t *testing.T) {
	e := newEnv(t)
	for name, p := range map[string]wire.Policy{
		"snp without measurements": {SNP: &wire.SNPPolicy{}},
		"snp measurement of 32":    {SNP: &wire.SNPPolicy{Measurements: [][]byte{make([]byte, 32)}}},
		"snp host data of 31":      {SNP: &wire.SNPPolicy{Measurements: [][]byte{fill48(1)}, HostData: make([]byte, 31)}},
		"tdx without mrtd":         {TDX: &wire.TDXPolicy{RTMR0: [][]byte{fill48(1)}}},
		"tdx rtmr of 32":           {TDX: &wire.TDXPolicy{MRTDs: [][]byte{fill48(1)}, RTMR3: [][]byte{make([]byte, 32)}}},
		"tdx unknown status":       {TDX: &wire.TDXPolicy{MRTDs: [][]byte{fill48(1)}, TCBStatuses: []string{"Fine"}}},
		"tdx min tcb svn of 15":    {TDX: &wire.TDXPolicy{MRTDs: [][]byte{fill48(1)}, MinTEETCBSVN: make([]byte, 15)}},
		"nothing at all":           {},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: p})
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
	// A typed policy round-trips.
	p := wire.Policy{Measurements: [][]byte{runtimeMeas}, SNP: &wire.SNPPolicy{Measurements: [][]byte{fill48(1)}, MinTCB: wire.SNPTCB{BootLoader: 3}},
		TDX: &wire.TDXPolicy{MRTDs: [][]byte{fill48(2)}, TCBStatuses: []string{"UpToDate"}}}
	if _, err := e.gateway.SetPolicy(ctx(t), wire.SetPolicy{Namespace: "alice", Policy: p}); err != nil {
		t.Fatal(err)
	}
	got, err := e.gateway.GetPolicy(ctx(t), "alice")
	if err != nil || got.SNP == nil || got.SNP.MinTCB.BootLoader != 3 || got.TDX == nil || len(got.TDX.MRTDs) != 1 {
		t.Fatalf("%v %+v", err, got)
	}
	_ = sim.Platform
}
