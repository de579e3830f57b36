// Package tdx is the Intel TDX attester: the code inside a trust domain that
// obtains a quote binding 64 bytes of report data (the TD's REPORTDATA).
//
// It asks the kernel through configfs-tsm (package tsm), which returns a
// v4 quote signed by the platform's quoting enclave with the PCK
// certificate chain in its certification data, and falls back to
// /dev/tdx_guest (github.com/google/go-tdx-guest/client) on older kernels.
// The evidence blob (inside tee.Evidence, platform "tdx") is the raw quote.
// The verifier lives in package tdxverify, in the KMS: the enclave runtime
// imports this package only, never the verification code.
package tdx

import (
	"errors"
	"fmt"
	"os"

	// teelog first: go-tdx-guest's client would send its log to stdout,
	// the enclave runtime's IPC channel (see package teelog).
	"github.com/clemmys/clemmys/internal/tee/teelog"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-tdx-guest/client"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/tsm"
)

// Platform is the platform name of TDX evidence.
const Platform = tee.PlatformTDX

// MaxQuoteSize bounds a quote (a v4 quote with its PCK chain is ~5 KiB).
const MaxQuoteSize = tsm.MaxOutBlob

// DevicePath is the legacy guest device.
const DevicePath = "/dev/tdx_guest"

// ErrNotTDX means this machine is not a TDX guest.
var ErrNotTDX = errors.New("tdx: not an Intel TDX guest (no configfs-tsm tdx_guest provider, no " + DevicePath + ")")

// Attester obtains TDX quotes.
type Attester struct {
	tsm configfsi.Client // nil: use the device
}

var _ tee.Attester = (*Attester)(nil)

// NewAttester returns an attester that uses configfs-tsm client c (nil: the
// kernel's, if it has the tdx_guest provider) or else the legacy device. It
// fails with ErrNotTDX when neither is there.
func NewAttester(c configfsi.Client) (*Attester, error) {
	teelog.Ready()
	if c == nil {
		if kc, err := tsm.Client(); err == nil {
			c = kc
		}
	}
	if c != nil {
		if p, err := tsm.Provider(c); err == nil && p == tsm.ProviderTDX {
			return &Attester{tsm: c}, nil
		}
	}
	if _, err := os.Stat(DevicePath); err == nil {
		return &Attester{}, nil
	}
	return nil, ErrNotTDX
}

// Available reports whether this machine is a TDX guest.
func Available() bool {
	_, err := NewAttester(nil)
	return err == nil
}

// Attest returns tee.Wrap("tdx", quote).
func (a *Attester) Attest(reportData [tee.ReportDataSize]byte) ([]byte, error) {
	var quote []byte
	if a.tsm != nil {
		out, _, err := tsm.Get(a.tsm, tsm.ProviderTDX, reportData, false)
		if err != nil {
			return nil, fmt.Errorf("tdx: %w", err)
		}
		quote = out
	} else {
		d, err := client.OpenDevice()
		if err != nil {
			return nil, fmt.Errorf("tdx: open %s: %w", DevicePath, err)
		}
		quote, err = client.GetRawQuote(d, reportData)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("tdx: quote: %w", err)
		}
	}
	if len(quote) == 0 || len(quote) > MaxQuoteSize {
		return nil, fmt.Errorf("tdx: quote of %d bytes (1..%d accepted)", len(quote), MaxQuoteSize)
	}
	return tee.Wrap(Platform, quote)
}

// Offsets in a v4 quote: a 48-byte header, then the TD quote body with
// MRTD at 136 and RTMR0..3 at 328 (48 bytes each).
const (
	quoteBodyOffset = 48
	mrtdOffset      = quoteBodyOffset + 136
	rtmrOffset      = quoteBodyOffset + 328
)

// MeasurementOfQuote returns tee.TDXMeasurement of a v4 quote's MRTD and
// RTMRs, unverified (for the runtime to report what it runs as).
func MeasurementOfQuote(q []byte) ([]byte, error) {
	if len(q) < rtmrOffset+4*48 {
		return nil, fmt.Errorf("tdx: quote of %d bytes is too short", len(q))
	}
	var rtmr [4][]byte
	for i := range rtmr {
		rtmr[i] = q[rtmrOffset+48*i : rtmrOffset+48*(i+1)]
	}
	return tee.TDXMeasurement(q[mrtdOffset:mrtdOffset+48], rtmr), nil
}

// Measurement attests once (zero report data) and returns this TD's
// measurement, tee.TDXMeasurement(MRTD, RTMR0..3).
func (a *Attester) Measurement() ([]byte, error) {
	ev, err := a.Attest([tee.ReportDataSize]byte{})
	if err != nil {
		return nil, err
	}
	_, q, err := tee.Unwrap(ev)
	if err != nil {
		return nil, err
	}
	return MeasurementOfQuote(q)
}
