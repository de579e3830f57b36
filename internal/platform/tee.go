package platform

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/google/go-sev-guest/client"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/snp/snpverify"
	"github.com/clemmys/clemmys/internal/tee/tdx"
	"github.com/clemmys/clemmys/internal/tee/tdx/tdxverify"
	"github.com/clemmys/clemmys/internal/wire"
)

// CollateralDir is where, under the data directory, the KMS's verifiers
// read AMD's and Intel's collateral (certificates, CRLs, TCB info).
const CollateralDir = "collateral"

// teeSetup is what the platform's services get from its TEE.
type teeSetup struct {
	name string
	// attester is the platform process's own (the KMS's and the
	// gateway's, which run in it).
	attester   tee.Attester
	verifiers  *tee.Registry
	storageKey [32]byte
	// self is the measurement of this process (KMS and gateway).
	self []byte
	// runtime is the measurement of the enclave runtime (sim: its binary's
	// digest; real TEEs: unknown until it attests, nil).
	runtime       []byte
	enclaveArgs   []string
	defaultPolicy wire.Policy
}

// setupSim sets up the simulated TEE: a root key in DATA_DIR/sim, runtimes
// measured by their binary's digest, and a default policy seeded from the
// runtime binary the platform starts.
func setupSim(cfg Config) (*teeSetup, error) {
	simDir := filepath.Join(cfg.DataDir, "sim")
	plat, err := sim.LoadOrCreate(simDir)
	if err != nil {
		return nil, err
	}
	self, err := sim.MeasureSelf()
	if err != nil {
		return nil, err
	}
	rm, err := sim.MeasureFile(cfg.EnclavePath)
	if err != nil {
		return nil, err
	}
	verifiers := tee.NewRegistry()
	verifiers.Add(sim.Platform, sim.NewVerifier(plat.PublicKey()))
	cfg.Log.Warn("SIMULATED TEE: sim evidence is accepted; this deployment has no hardware protection and is for development only",
		"sim_root", filepath.Join(simDir, "sim-platform.key"))
	return &teeSetup{
		name: sim.Platform,
		// In one process the KMS and the gateway are the same binary:
		// each accepts the other's measurement, the digest of this
		// executable.
		attester:      plat.Attester(self, 1, false),
		verifiers:     verifiers,
		storageKey:    plat.SealingKey("clemmys kms storage"),
		self:          self,
		runtime:       rm,
		enclaveArgs:   []string{"--tee", sim.Platform, "--sim-dir", simDir},
		defaultPolicy: wire.Policy{Measurements: [][]byte{rm}},
	}, nil
}

// ErrNoTEE is returned by Start when the TEE asked for is not this machine's.
var ErrNoTEE = errors.New("platform: the TEE asked for is not available on this machine")

// setupReal sets up a real TEE (cfg.TEE "sev-snp" or "tdx"): the whole
// platform runs in one confidential VM, the KMS verifies with the vendors'
// chains and the collateral in DATA_DIR/collateral, accepts no simulated
// evidence, and has no default policy: every namespace's owner pins the
// runtime they trust (docs/operations.md).
func setupReal(cfg Config) (*teeSetup, error) {
	collateral := filepath.Join(cfg.DataDir, CollateralDir)
	verifiers := tee.NewRegistry()
	verifiers.Add(snp.Platform, snpverify.New(snpverify.Config{CollateralDir: collateral}))
	verifiers.Add(tdx.Platform, tdxverify.New(tdxverify.Config{CollateralDir: collateral}))
	ts := &teeSetup{verifiers: verifiers}
	switch cfg.TEE {
	case snp.Platform:
		a, err := snp.NewAttester(nil)
		if err != nil {
			return nil, fmt.Errorf("%w: --tee sev-snp: %v; run clemmys up inside an SEV-SNP confidential VM, or without --tee for the simulated TEE (development only)", ErrNoTEE, err)
		}
		m, err := a.Measurement()
		if err != nil {
			return nil, fmt.Errorf("platform: sev-snp: %w", err)
		}
		key, err := snpSealingKey()
		if err != nil {
			return nil, err
		}
		ts.name, ts.attester, ts.self, ts.storageKey = snp.Platform, a, m, key
	case tdx.Platform:
		if _, err := tdx.NewAttester(nil); err != nil {
			return nil, fmt.Errorf("%w: --tee tdx: %v; run clemmys up inside a TDX trust domain, or without --tee for the simulated TEE (development only)", ErrNoTEE, err)
		}
		// A TD has no sealing key: the KMS's storage key would have to come
		// from a key broker that attests the TD. Not built yet: refuse
		// rather than seal the state under a key the host could know.
		return nil, errors.New("platform: --tee tdx: Intel TDX gives a trust domain no sealing key, and clemmys has no key broker yet to give the KMS its storage key; run the KMS on SEV-SNP (or sim for development) — TDX runtimes (clemmys-enclave --tee tdx) are verified by any KMS")
	default:
		return nil, fmt.Errorf("platform: unknown TEE %q (sim, sev-snp, tdx)", cfg.TEE)
	}
	ts.enclaveArgs = []string{"--tee", ts.name}
	return ts, nil
}

// snpSealingKey derives the KMS's storage key from the SEV-SNP guest's VCEK
// and launch measurement and policy (MSG_KEY_REQ through /dev/sev-guest):
// only a guest with this image and policy on this chip derives it. Note
// go-sev-guest's stated limitations of derived keys (a key tied to one
// chip: moving the VM or a TCB change loses the state).
func snpSealingKey() ([32]byte, error) {
	var key [32]byte
	d, err := client.OpenDevice()
	if err != nil {
		return key, fmt.Errorf("platform: sev-snp storage key needs %s: %w", snp.DevicePath, err)
	}
	defer d.Close()
	resp, err := client.GetDerivedKeyAcknowledgingItsLimitations(d, &client.SnpDerivedKeyReq{
		UseVCEK:          true,
		GuestFieldSelect: client.GuestFieldSelect{Measurement: true, GuestPolicy: true},
	})
	if err != nil {
		return key, fmt.Errorf("platform: sev-snp derived key: %w", err)
	}
	copy(key[:], resp.Data[:])
	clear(resp.Data[:])
	return key, nil
}

// policyReader is the part of the KMS client warnUnallowed uses.
type policyReader interface {
	GetPolicy(ctx context.Context, namespace string) (*wire.Policy, error)
}

// warnUnallowed logs, loudly, each namespace whose stored policy does not
// accept the sim runtime the platform starts (so its functions would be
// refused key release until the owner allows it). Policies that trust
// release signers are judged by the KMS with the runtime's manifest, not
// here. It returns the namespaces it warned about.
func warnUnallowed(ctx context.Context, kc policyReader, log *slog.Logger, namespaces []string, runtime []byte) []string {
	var out []string
	for _, ns := range namespaces {
		p, err := kc.GetPolicy(ctx, ns)
		if err != nil || len(p.Signers) > 0 {
			continue
		}
		if !tee.MeasurementIn(runtime, p.Measurements) {
			log.Warn("THE RUNTIME THIS PLATFORM STARTS IS NOT ALLOWED BY A NAMESPACE'S POLICY: its functions will be refused key release until its owner allows it (`clemmys policy allow`, see docs/operations.md)",
				"namespace", ns, "runtime_measurement", hex.EncodeToString(runtime))
			out = append(out, ns)
		}
	}
	return out
}
