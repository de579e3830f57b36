package snpverify

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/snp"
)

// fakeSNPGuest is a configfs-tsm report subsystem (faketsm) whose
// provider is sev_guest and whose reports the fake AMD signs over the
// inblob written by the attester.
func fakeSNPGuest(t *testing.T, f *fakeAMD, provider string) configfsi.Client {
	sub := faketsm.ReportV7(0)
	sub.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider + "\n"), nil
		case "auxblob":
			return f.table(t), nil
		case "outblob":
			var rd [64]byte
			copy(rd[:], e.InAttrs["inblob"].Value)
			return f.report(t, fakeOpts{reportData: rd, measurement: 3}), nil
		case "privlevel_floor":
			return []byte("0\n"), nil
		}
		return nil, os.ErrNotExist
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestAttesterThroughConfigfsTSM(t *testing.T) {
	f := newFakeAMD(t)
	a, err := snp.NewAttester(fakeSNPGuest(t, f, "sev_guest"))
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], "bind this key")
	ev, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f.crl(t, dir, fakeTime.Add(-time.Hour), fakeTime.Add(time.Hour))
	reg := tee.NewRegistry()
	reg.Add(snp.Platform, New(Config{Now: func() time.Time { return fakeTime }, Roots: f.roots, CollateralDir: dir}))
	c, err := reg.Verify(ev)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReportData != rd || c.SNP.Measurement[0] != 3 {
		t.Fatalf("claims: report data %s", hex.EncodeToString(c.ReportData[:]))
	}
}

func TestAttesterRefusesAnotherProvider(t *testing.T) {
	f := newFakeAMD(t)
	_, err := snp.NewAttester(fakeSNPGuest(t, f, "tdx_guest"))
	// Without configfs sev_guest and without /dev/sev-guest (the test
	// machine has none) there is no SNP attester.
	if err == nil || !strings.Contains(err.Error(), "not an AMD SEV-SNP guest") {
		t.Fatalf("got %v", err)
	}
}

func FuzzCertTableExtent(f *testing.F) {
	f.Add(make([]byte, 24))
	f.Add(newFakeAMD(f).table(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := snp.CertTableExtent(b)
		if ok && (n <= 0 || n > len(b)) {
			t.Fatalf("extent %d of %d bytes", n, len(b))
		}
	})
}
