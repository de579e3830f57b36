// Package sim is a SIMULATED trusted execution environment, for development
// and CI only. It is INSECURE: the "platform root key" is an ordinary file on
// the host's disk, so whoever can read that file (the operator, in clemmys'
// threat model) can forge evidence for any measurement and derive every
// sealing key. A KMS accepts sim evidence only when its registry explicitly
// contains the sim verifier (`clemmys up` does, and says so loudly).
//
// A Machine is one simulated platform: an ed25519 root key whose seed lives
// in DIR/sim-platform.key. Its attesters sign {measurement, security version,
// debug flag, report data}; a Verifier accepts exactly the evidence signed by
// the root public key it was given. The measurement of code in sim mode is
// the SHA-256 of its executable (MeasureFile, MeasureSelf).
//
// The enclave runtime (the TCB) imports this package: it depends only on the
// standard library, package tee and CBOR.
package sim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"

	"github.com/clemmys/clemmys/internal/tee"
)

// Platform is the platform name of simulated evidence.
const Platform = "sim"

// KeyFile is the name of the root key file inside the platform directory.
const KeyFile = "sim-platform.key"

// MaxMeasurementSize bounds the measurement a sim report carries (SHA-256 is
// 32 bytes; real TEEs use up to 48).
const MaxMeasurementSize = 64

// Context strings (domain separation). Each ends with a zero byte and is
// followed only by fields whose length is fixed or prefixed.
const (
	evidenceContext = "clemmys/v1 sim evidence\x00"
	sealingContext  = "clemmys/v1 sim sealing key\x00"
)

// Machine is a simulated TEE platform: the holder of the simulated root key.
type Machine struct {
	seed []byte
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// LoadOrCreate loads the simulated platform root key from dir/sim-platform.key
// (a raw 32-byte ed25519 seed, mode 0600), creating dir and the key on first
// start. Concurrent first starts (the platform and an enclave runtime sharing
// dir) agree on one key: the file appears atomically.
func LoadOrCreate(dir string) (*Machine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: platform dir: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	m, err := load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if err := create(dir, path); err != nil {
		return nil, err
	}
	return load(path)
}

// Load loads the simulated platform root key from dir/sim-platform.key
// without creating it: every service of a deployment must share one root,
// so a service other than the first one refuses to invent its own.
func Load(dir string) (*Machine, error) {
	m, err := load(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sim: no simulated platform root key in %s: every service of a deployment shares one; copy %s from the machine that created it (the first `clemmys kms` or `clemmys up`): %w", dir, KeyFile, err)
	}
	return m, err
}

func load(path string) (*Machine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim: root key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sim: root key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sim: root key %s is accessible to other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	seed := make([]byte, ed25519.SeedSize+1)
	n, err := io.ReadFull(f, seed)
	if n != ed25519.SeedSize || !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("sim: root key %s is not a %d-byte ed25519 seed", path, ed25519.SeedSize)
	}
	return newMachine(seed[:ed25519.SeedSize]), nil
}

// create writes a fresh seed to a temporary file and links it into place, so
// that readers never see a partial key and a concurrent creator's key wins
// if it was first.
func create(dir, path string) error {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("sim: root key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".sim-platform-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("sim: root key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(seed)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sim: write root key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sim: install root key: %w", err)
	}
	return nil
}

func newMachine(seed []byte) *Machine {
	priv := ed25519.NewKeyFromSeed(seed)
	return &Machine{seed: bytes.Clone(seed), priv: priv, pub: priv.Public().(ed25519.PublicKey)}
}

// PublicKey is the simulated platform root public key: a verifier created
// with it accepts this machine's evidence and nothing else.
func (m *Machine) PublicKey() ed25519.PublicKey { return bytes.Clone(m.pub) }

// SealingKey derives a key bound to this machine and label, the analogue of
// an SGX sealing key, for sealing state at rest:
// HKDF-SHA256(seed, salt = "", info = "clemmys/v1 sim sealing key\x00" || label).
func (m *Machine) SealingKey(label string) [32]byte {
	k, err := hkdf.Key(sha256.New, m.seed, nil, sealingContext+label, 32)
	if err != nil {
		panic("sim: hkdf: " + err.Error()) // cannot happen for a 32-byte output
	}
	var out [32]byte
	copy(out[:], k)
	return out
}

// Attester returns an attester for code with the given measurement, security
// version and debug flag.
func (m *Machine) Attester(measurement []byte, svn uint32, debug bool) tee.Attester {
	return &attester{m: m, measurement: bytes.Clone(measurement), svn: svn, debug: debug}
}

type attester struct {
	m           *Machine
	measurement []byte
	svn         uint32
	debug       bool
}

var _ tee.Attester = (*attester)(nil)

// Attest returns tee.Wrap("sim", CBOR(report)).
func (a *attester) Attest(reportData [tee.ReportDataSize]byte) ([]byte, error) {
	if len(a.measurement) == 0 || len(a.measurement) > MaxMeasurementSize {
		return nil, fmt.Errorf("sim: measurement must be 1..%d bytes", MaxMeasurementSize)
	}
	r := report{
		Measurement: a.measurement,
		SVN:         a.svn,
		Debug:       a.debug,
		ReportData:  reportData[:],
	}
	r.Signature = ed25519.Sign(a.m.priv, r.signed())
	blob, err := encMode.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sim: encode report: %w", err)
	}
	return tee.Wrap(Platform, blob)
}

// report is the sim evidence blob (inside tee.Evidence):
//
//	{1: bstr measurement, 2: uint svn, 3: bool debug, 4: bstr .size 64 report data, 5: bstr .size 64 signature}
//
// The signature is ed25519 by the root key over
// "clemmys/v1 sim evidence\x00" || u32(len(measurement)) || measurement ||
// u32(svn) || u8(debug) || report data.
type report struct {
	Measurement []byte `cbor:"1,keyasint"`
	SVN         uint32 `cbor:"2,keyasint"`
	Debug       bool   `cbor:"3,keyasint"`
	ReportData  []byte `cbor:"4,keyasint"`
	Signature   []byte `cbor:"5,keyasint"`
}

func (r *report) signed() []byte {
	b := make([]byte, 0, len(evidenceContext)+4+len(r.Measurement)+4+1+len(r.ReportData))
	b = append(b, evidenceContext...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Measurement)))
	b = append(b, r.Measurement...)
	b = binary.BigEndian.AppendUint32(b, r.SVN)
	if r.Debug {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, r.ReportData...)
}

var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	decMode, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
	}.DecMode()
)

// NewVerifier returns a verifier that accepts only evidence signed by root.
// Register it under Platform in a tee.Registry.
func NewVerifier(root ed25519.PublicKey) tee.Verifier {
	return &verifier{root: bytes.Clone(root)}
}

type verifier struct {
	root ed25519.PublicKey
}

var _ tee.Verifier = (*verifier)(nil)

// Verify checks a sim report blob (the Blob of a tee.Evidence whose platform
// is "sim"). Errors wrap tee.ErrEvidence.
func (v *verifier) Verify(blob []byte) (*tee.Claims, error) {
	if len(v.root) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: sim verifier has no valid root key", tee.ErrEvidence)
	}
	if len(blob) > tee.MaxEvidenceSize {
		return nil, fmt.Errorf("%w: sim report too large", tee.ErrEvidence)
	}
	var r report
	if err := decMode.Unmarshal(blob, &r); err != nil {
		return nil, fmt.Errorf("%w: malformed sim report", tee.ErrEvidence)
	}
	switch {
	case len(r.Measurement) == 0 || len(r.Measurement) > MaxMeasurementSize:
		return nil, fmt.Errorf("%w: sim report measurement must be 1..%d bytes", tee.ErrEvidence, MaxMeasurementSize)
	case len(r.ReportData) != tee.ReportDataSize:
		return nil, fmt.Errorf("%w: sim report data must be %d bytes", tee.ErrEvidence, tee.ReportDataSize)
	case len(r.Signature) != ed25519.SignatureSize:
		return nil, fmt.Errorf("%w: sim report signature must be %d bytes", tee.ErrEvidence, ed25519.SignatureSize)
	}
	if !ed25519.Verify(v.root, r.signed(), r.Signature) {
		return nil, fmt.Errorf("%w: sim report is not signed by the trusted simulated platform root", tee.ErrEvidence)
	}
	c := &tee.Claims{
		Platform:        Platform,
		Measurement:     bytes.Clone(r.Measurement),
		SecurityVersion: r.SVN,
		Debug:           r.Debug,
	}
	copy(c.ReportData[:], r.ReportData)
	return c, nil
}

// MeasureFile returns the SHA-256 of the file at path: the measurement of a
// binary in sim mode.
func MeasureFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim: measure: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("sim: measure %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// MeasureSelf measures the running executable.
func MeasureSelf() ([]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sim: measure self: %w", err)
	}
	return MeasureFile(exe)
}
