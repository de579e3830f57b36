// Package tsm obtains attestation reports through the Linux configfs-tsm
// interface (/sys/kernel/config/tsm/report, Linux ≥ 6.7) with
// github.com/google/go-configfs-tsm. The SEV-SNP and TDX attesters use it
// first and fall back to their legacy device (/dev/sev-guest,
// /dev/tdx_guest) on older kernels. Tests hand in a faketsm client.
package tsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
)

// Providers as the kernel names them in a report's "provider" attribute.
const (
	ProviderSNP = "sev_guest"
	ProviderTDX = "tdx_guest"
)

// MaxOutBlob bounds a report read from the kernel (a TDX quote with its
// certification data is ~5 KiB, an SNP report 1184 bytes).
const MaxOutBlob = 32 << 10

// MaxAuxBlob bounds an SNP certificate table (ARK, ASK, VCEK and extras).
const MaxAuxBlob = 24 << 10

// ErrUnavailable means configfs-tsm is not available on this machine.
var ErrUnavailable = errors.New("tsm: configfs-tsm report interface not available")

// Client returns the kernel's configfs-tsm client, or ErrUnavailable.
func Client() (configfsi.Client, error) {
	c, err := linuxtsm.MakeClient()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return c, nil
}

// Provider returns the provider behind c ("sev_guest", "tdx_guest", ...).
func Provider(c configfsi.Client) (string, error) {
	r, err := report.Create(c, &report.Request{})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer r.Destroy()
	// An entry's attributes are readable once written (so the fake
	// behaves; the kernel does not mind): write an empty request first.
	if err := r.WriteOption("inblob", make([]byte, 64)); err != nil {
		return "", fmt.Errorf("tsm: probe: %w", err)
	}
	p, err := r.ReadOption("provider")
	if err != nil {
		return "", fmt.Errorf("tsm: read provider: %w", err)
	}
	return strings.TrimSpace(string(p)), nil
}

// Get obtains a report binding reportData from provider want. It refuses a
// report from another provider and one larger than the bounds.
func Get(c configfsi.Client, want string, reportData [64]byte, aux bool) (outblob, auxblob []byte, err error) {
	resp, err := report.Get(c, &report.Request{InBlob: reportData[:], GetAuxBlob: aux})
	if err != nil {
		return nil, nil, fmt.Errorf("tsm: get report: %w", err)
	}
	if p := strings.TrimSpace(resp.Provider); p != want {
		return nil, nil, fmt.Errorf("tsm: report provider is %q, want %q", p, want)
	}
	if len(resp.OutBlob) == 0 || len(resp.OutBlob) > MaxOutBlob {
		return nil, nil, fmt.Errorf("tsm: report of %d bytes (1..%d accepted)", len(resp.OutBlob), MaxOutBlob)
	}
	if len(resp.AuxBlob) > MaxAuxBlob {
		return nil, nil, fmt.Errorf("tsm: auxiliary blob of %d bytes (at most %d accepted)", len(resp.AuxBlob), MaxAuxBlob)
	}
	return resp.OutBlob, resp.AuxBlob, nil
}
