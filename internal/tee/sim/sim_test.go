package sim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clemmys/clemmys/internal/tee"
)

func testMachine(t testing.TB) *Machine {
	t.Helper()
	m, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rd(s string) (out [tee.ReportDataSize]byte) {
	copy(out[:], s)
	return out
}

func registry(m *Machine) *tee.Registry {
	r := tee.NewRegistry()
	r.Add(Platform, NewVerifier(m.PublicKey()))
	return r
}

func TestRoundTrip(t *testing.T) {
	m := testMachine(t)
	meas := sha256.Sum256([]byte("runtime"))
	for _, debug := range []bool{false, true} {
		ev, err := m.Attester(meas[:], 7, debug).Attest(rd("hello"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := registry(m).Verify(ev)
		if err != nil {
			t.Fatal(err)
		}
		if c.Platform != Platform || !bytes.Equal(c.Measurement, meas[:]) || c.SecurityVersion != 7 || c.Debug != debug || c.ReportData != rd("hello") {
			t.Fatalf("claims = %+v", c)
		}
	}
}

func TestLoadOrCreateIsStable(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := LoadOrCreate(dir)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = m.PublicKey()
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent first starts disagree on the root key")
		}
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	m, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.PublicKey(), keys[0]) {
		t.Fatal("reload changed the root key")
	}
	if m.SealingKey("a") != m.SealingKey("a") || m.SealingKey("a") == m.SealingKey("b") {
		t.Fatal("sealing keys must be deterministic per label and differ between labels")
	}
	if other := testMachine(t); other.SealingKey("a") == m.SealingKey("a") {
		t.Fatal("sealing keys of two machines must differ")
	}
}

func TestLoadRejectsBadKeyFiles(t *testing.T) {
	for name, tc := range map[string]struct {
		content []byte
		mode    os.FileMode
	}{
		"short":          {make([]byte, 31), 0o600},
		"long":           {make([]byte, 33), 0o600},
		"empty":          {nil, 0o600},
		"world-readable": {make([]byte, 32), 0o644},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, KeyFile)
			if err := os.WriteFile(p, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(dir); err == nil {
				t.Fatal("bad key file accepted")
			}
		})
	}
}

func TestForgedEvidence(t *testing.T) {
	trusted, other := testMachine(t), testMachine(t)
	meas := sha256.Sum256([]byte("runtime"))
	ev, err := other.Attester(meas[:], 1, false).Attest(rd("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = registry(trusted).Verify(ev)
	if !errors.Is(err, tee.ErrEvidence) {
		t.Fatalf("forged evidence: err = %v, want ErrEvidence", err)
	}
}

// tamper decodes a sim report, lets f change it and re-encodes it with the
// original signature.
func tamper(t *testing.T, ev []byte, f func(r *report)) []byte {
	t.Helper()
	var outer tee.Evidence
	if err := decMode.Unmarshal(ev, &outer); err != nil {
		t.Fatal(err)
	}
	var r report
	if err := decMode.Unmarshal(outer.Blob, &r); err != nil {
		t.Fatal(err)
	}
	f(&r)
	blob, err := encMode.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tee.Wrap(outer.Platform, blob)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTamperedEvidence(t *testing.T) {
	m := testMachine(t)
	meas := sha256.Sum256([]byte("runtime"))
	ev, err := m.Attester(meas[:], 3, false).Attest(rd("report"))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry(m)
	cases := map[string]func(r *report){
		"measurement":  func(r *report) { r.Measurement[0] ^= 1 },
		"longer meas":  func(r *report) { r.Measurement = append(r.Measurement, 0) },
		"report data":  func(r *report) { r.ReportData[63] ^= 1 },
		"svn":          func(r *report) { r.SVN = 4 },
		"debug":        func(r *report) { r.Debug = true },
		"signature":    func(r *report) { r.Signature[0] ^= 1 },
		"short rd":     func(r *report) { r.ReportData = r.ReportData[:32] },
		"no signature": func(r *report) { r.Signature = nil },
		"no meas":      func(r *report) { r.Measurement = nil },
		"huge meas":    func(r *report) { r.Measurement = make([]byte, 65) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := reg.Verify(tamper(t, ev, f)); !errors.Is(err, tee.ErrEvidence) {
				t.Fatalf("err = %v, want ErrEvidence", err)
			}
		})
	}
}

func TestPlatformNotInRegistry(t *testing.T) {
	m := testMachine(t)
	meas := sha256.Sum256([]byte("runtime"))
	ev, err := m.Attester(meas[:], 1, false).Attest(rd("x"))
	if err != nil {
		t.Fatal(err)
	}
	reg := tee.NewRegistry()
	reg.Add("sev-snp", NewVerifier(m.PublicKey()))
	if _, err := reg.Verify(ev); !errors.Is(err, tee.ErrEvidence) {
		t.Fatalf("err = %v, want ErrEvidence", err)
	}
	if _, err := tee.NewRegistry().Verify(ev); !errors.Is(err, tee.ErrEvidence) {
		t.Fatalf("empty registry: err = %v, want ErrEvidence", err)
	}
}

func TestAttesterRejectsBadMeasurement(t *testing.T) {
	m := testMachine(t)
	for _, meas := range [][]byte{nil, make([]byte, 65)} {
		if _, err := m.Attester(meas, 1, false).Attest(rd("x")); err == nil {
			t.Fatalf("measurement of %d bytes accepted", len(meas))
		}
	}
}

func TestMeasure(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := MeasureFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("binary"))
	if !bytes.Equal(got, want[:]) {
		t.Fatal("MeasureFile is not the SHA-256 of the file")
	}
	if _, err := MeasureFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file measured")
	}
	self, err := MeasureSelf()
	if err != nil || len(self) != sha256.Size {
		t.Fatalf("MeasureSelf = %x, %v", self, err)
	}
}

func TestMeasurementIn(t *testing.T) {
	a, b := []byte("aaaa"), []byte("bbbb")
	if !tee.MeasurementIn(a, [][]byte{b, a}) || tee.MeasurementIn(a, [][]byte{b}) ||
		tee.MeasurementIn(nil, [][]byte{nil}) || tee.MeasurementIn(a, nil) || tee.MeasurementIn([]byte("aaa"), [][]byte{a}) {
		t.Fatal("MeasurementIn")
	}
}

func FuzzVerify(f *testing.F) {
	m := testMachine(f)
	meas := sha256.Sum256([]byte("runtime"))
	ev, err := m.Attester(meas[:], 1, false).Attest(rd("seed"))
	if err != nil {
		f.Fatal(err)
	}
	var outer tee.Evidence
	if err := decMode.Unmarshal(ev, &outer); err != nil {
		f.Fatal(err)
	}
	f.Add(ev)
	f.Add(outer.Blob)
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	reg := registry(m)
	v := NewVerifier(m.PublicKey())
	f.Fuzz(func(t *testing.T, data []byte) {
		// Through the registry (platform-tagged) and directly (the blob).
		for _, verify := range []func([]byte) (*tee.Claims, error){reg.Verify, v.Verify} {
			c, err := verify(data)
			if err != nil {
				if !errors.Is(err, tee.ErrEvidence) {
					t.Fatalf("error does not wrap ErrEvidence: %v", err)
				}
				continue
			}
			// Anything accepted must be a genuine report: only the seed
			// evidence is signed by this root.
			if !bytes.Equal(c.Measurement, meas[:]) || c.ReportData != rd("seed") {
				t.Fatalf("accepted a report the root never signed: %+v", c)
			}
		}
	})
}
