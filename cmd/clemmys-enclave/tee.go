package main

import (
	"errors"
	"fmt"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

// Platform choices of --tee.
const teeAuto = "auto"

// errNoHardware is the refusal of --tee auto on a machine that is not a
// confidential VM.
var errNoHardware = errors.New("--tee auto found no confidential-computing hardware: this machine is neither an AMD SEV-SNP guest nor an Intel TDX trust domain (no configfs-tsm report provider, no /dev/sev-guest, no /dev/tdx_guest); it will not start without hardware protection. For development only, ask for the simulated TEE explicitly: --tee sim --sim-dir DIR")

// platformTEE is the attester and measurement of a real TEE.
type platformTEE struct {
	name        string
	attester    tee.Attester
	measurement []byte
}

// openTEE opens the TEE asked for: snp, tdx, or auto (the one this
// machine is, or errNoHardware). sim is handled by the caller.
func openTEE(choice string) (*platformTEE, error) {
	switch choice {
	case snp.Platform, "snp":
		a, err := snp.NewAttester(nil)
		if err != nil {
			return nil, fmt.Errorf("--tee snp: %w", err)
		}
		m, err := a.Measurement()
		if err != nil {
			return nil, fmt.Errorf("--tee snp: first report: %w", err)
		}
		return &platformTEE{name: snp.Platform, attester: a, measurement: m}, nil
	case tdx.Platform:
		a, err := tdx.NewAttester(nil)
		if err != nil {
			return nil, fmt.Errorf("--tee tdx: %w", err)
		}
		m, err := a.Measurement()
		if err != nil {
			return nil, fmt.Errorf("--tee tdx: first quote: %w", err)
		}
		return &platformTEE{name: tdx.Platform, attester: a, measurement: m}, nil
	case teeAuto:
		if snp.Available() {
			return openTEE(snp.Platform)
		}
		if tdx.Available() {
			return openTEE(tdx.Platform)
		}
		return nil, errNoHardware
	}
	return nil, fmt.Errorf("unknown TEE platform %q: use auto, snp, tdx or %s", choice, sim.Platform)
}
