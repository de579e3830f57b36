// Package snp is the AMD SEV-SNP attester: the code inside a confidential VM
// that obtains an attestation report binding 64 bytes of report data (the
// runtime's REPORT_DATA) from the AMD secure processor.
//
// It asks the kernel through configfs-tsm (package tsm) and falls back to
// /dev/sev-guest (github.com/google/go-sev-guest/client) on kernels without
// it. The evidence blob (inside tee.Evidence, platform "sev-snp") is
//
//	CBOR {1: bstr report (1184 bytes), 2: bstr certificate table (optional)}
//
// where the certificate table is the one the host provisioned for extended
// reports (VCEK or VLEK, ASK, ARK in AMD's GUID table format). The verifier
// lives in package snpverify, in the KMS: the enclave runtime imports this
// package only, never the verification code.
package snp

import (
	"errors"
	"fmt"
	"os"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-sev-guest/client"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/teelog"
	"github.com/clemmys/clemmys/internal/tee/tsm"
)

// Platform is the platform name of SEV-SNP evidence.
const Platform = tee.PlatformSNP

// ReportSize is the size of an SNP ATTESTATION_REPORT.
const ReportSize = 0x4A0

// MaxCertTableSize bounds the certificate table carried in evidence.
const MaxCertTableSize = tsm.MaxAuxBlob

// DevicePath is the legacy guest device.
const DevicePath = "/dev/sev-guest"

// Blob is the SEV-SNP evidence blob.
type Blob struct {
	Report    []byte `cbor:"1,keyasint"`
	CertTable []byte `cbor:"2,keyasint,omitempty"`
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

// Encode returns the tee.Evidence of a report and its certificate table.
func Encode(report, certTable []byte) ([]byte, error) {
	if len(report) != ReportSize {
		return nil, fmt.Errorf("snp: report is %d bytes, want %d", len(report), ReportSize)
	}
	if len(certTable) > MaxCertTableSize {
		return nil, fmt.Errorf("snp: certificate table of %d bytes exceeds %d", len(certTable), MaxCertTableSize)
	}
	blob, err := encMode.Marshal(Blob{Report: report, CertTable: certTable})
	if err != nil {
		return nil, fmt.Errorf("snp: encode evidence: %w", err)
	}
	return tee.Wrap(Platform, blob)
}

// Decode parses an evidence blob (the Blob of a tee.Evidence), checking
// sizes. Errors are tee refusals (malformed).
func Decode(blob []byte) (*Blob, error) {
	if len(blob) > tee.MaxEvidenceSize {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "snp evidence exceeds %d bytes", tee.MaxEvidenceSize)
	}
	var b Blob
	if err := decMode.Unmarshal(blob, &b); err != nil {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "snp evidence is not CBOR {1: report, 2: certificate table}")
	}
	if len(b.Report) != ReportSize {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "snp report is %d bytes, want %d", len(b.Report), ReportSize)
	}
	if len(b.CertTable) > MaxCertTableSize {
		return nil, tee.Refuse(tee.ReasonMalformed, nil, "snp certificate table exceeds %d bytes", MaxCertTableSize)
	}
	return &b, nil
}

// Attester obtains SEV-SNP reports.
type Attester struct {
	tsm    configfsi.Client // nil: use the device
	device string
}

var _ tee.Attester = (*Attester)(nil)

// ErrNotSNP means this machine is not an SEV-SNP guest.
var ErrNotSNP = errors.New("snp: not an AMD SEV-SNP guest (no configfs-tsm sev_guest provider, no " + DevicePath + ")")

// NewAttester returns an attester that uses configfs-tsm client c (nil: the
// kernel's, if it has the sev_guest provider) or else the legacy device.
// It fails with ErrNotSNP when neither is there.
func NewAttester(c configfsi.Client) (*Attester, error) {
	teelog.Ready()
	if c == nil {
		if kc, err := tsm.Client(); err == nil {
			c = kc
		}
	}
	if c != nil {
		if p, err := tsm.Provider(c); err == nil && p == tsm.ProviderSNP {
			return &Attester{tsm: c}, nil
		}
	}
	if _, err := os.Stat(DevicePath); err == nil {
		return &Attester{device: DevicePath}, nil
	}
	return nil, ErrNotSNP
}

// Available reports whether this machine is an SEV-SNP guest.
func Available() bool {
	_, err := NewAttester(nil)
	return err == nil
}

// Attest returns tee.Wrap("sev-snp", CBOR{report, certificate table}).
func (a *Attester) Attest(reportData [tee.ReportDataSize]byte) ([]byte, error) {
	var report, certs []byte
	if a.tsm != nil {
		out, aux, err := tsm.Get(a.tsm, tsm.ProviderSNP, reportData, true)
		if err != nil {
			return nil, fmt.Errorf("snp: %w", err)
		}
		report, certs = out, aux
	} else {
		d, err := client.OpenDevice()
		if err != nil {
			return nil, fmt.Errorf("snp: open %s: %w", a.device, err)
		}
		report, certs, err = client.GetRawExtendedReport(d, reportData)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("snp: extended report: %w", err)
		}
	}
	// The kernel may return the report with its response header stripped
	// or padded; the report proper is the first ReportSize bytes.
	if len(report) < ReportSize {
		return nil, fmt.Errorf("snp: report of %d bytes is shorter than %d", len(report), ReportSize)
	}
	return Encode(report[:ReportSize], trimCertTable(certs))
}

// trimCertTable cuts the certificate table to the extent its entries
// describe: the legacy device returns it in a page-sized buffer. A table
// whose entries do not parse is kept whole for the verifier to refuse.
func trimCertTable(b []byte) []byte {
	n, ok := CertTableExtent(b)
	if !ok {
		return b
	}
	return b[:n]
}

// CertTableEntrySize is the size of one entry of a certificate table
// header: GUID (16), offset (4, little endian), length (4).
const CertTableEntrySize = 24

// CertTableExtent returns the number of bytes a certificate table's header
// and blobs occupy: the header's entries up to the all-zero terminator, and
// the largest offset+length. It reports false if the table is empty, lacks
// a terminator, or points outside b.
func CertTableExtent(b []byte) (int, bool) {
	end := 0
	for off := 0; ; off += CertTableEntrySize {
		if off+CertTableEntrySize > len(b) {
			return 0, false
		}
		e := b[off : off+CertTableEntrySize]
		if allZero(e) {
			end = max(end, off+CertTableEntrySize)
			break
		}
		o := uint64(le32(e[16:])) + uint64(le32(e[20:]))
		if o > uint64(len(b)) {
			return 0, false
		}
		end = max(end, int(o))
	}
	if end <= CertTableEntrySize {
		return 0, false
	}
	return end, true
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// MeasurementOffset is the offset of MEASUREMENT (48 bytes) in a report.
const MeasurementOffset = 0x90

// Measurement attests once (zero report data) and returns this guest's
// launch MEASUREMENT, for the runtime to report what it runs as.
func (a *Attester) Measurement() ([]byte, error) {
	ev, err := a.Attest([tee.ReportDataSize]byte{})
	if err != nil {
		return nil, err
	}
	_, blob, err := tee.Unwrap(ev)
	if err != nil {
		return nil, err
	}
	b, err := Decode(blob)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b.Report[MeasurementOffset:MeasurementOffset+48]...), nil
}
