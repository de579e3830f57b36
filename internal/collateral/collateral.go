// Package collateral fetches and inspects the vendors' attestation
// collateral that the KMS's offline verifiers (tee/snp/snpverify,
// tee/tdx/tdxverify) read from the collateral directory: AMD's CRLs and
// VCEKs from the Key Distribution Service, Intel's TDX TCB info, TD_QE
// identity, TCB signing chain and CRLs from the Provisioning Certification
// Service.
//
// It is the operator's tool (`clemmys collateral fetch|status`), run where
// the network allows; the KMS itself never goes to the network. Nothing
// fetched is trusted for being fetched: the verifiers check every
// signature, chain and date at each verification, so a mirror or a
// network attacker can make a release fail, never pass. Fetch still
// refuses what cannot be the file asked for (an HTML error page, a
// certificate where a CRL belongs, a response over the size limit), so a
// bad answer never replaces a good cached file, and writes each file
// atomically (a temporary file renamed over the old one).
package collateral

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-sev-guest/kds"

	"github.com/clemmys/clemmys/internal/tee/snp/snpverify"
)

// MaxFile bounds one fetched file (the verifiers read at most as much).
const MaxFile = 1 << 20

// The vendors' services.
const (
	AMDKDS         = "https://kdsintf.amd.com"
	IntelPCS       = "https://api.trustedservices.intel.com"
	IntelRootCRLAt = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

// SNPProductLines are the AMD product lines whose CRLs can be fetched.
var SNPProductLines = []string{"Milan", "Genoa", "Turin"}

// Fetcher downloads collateral into Dir.
type Fetcher struct {
	// Dir is the collateral directory (DATA_DIR/collateral).
	Dir string
	// Client makes the requests (nil: a client with a 30 s timeout).
	Client *http.Client
	// AMD, Intel and IntelRootCRL override the vendors' URLs (mirrors,
	// tests); empty: AMDKDS, IntelPCS, IntelRootCRLAt.
	AMD, Intel, IntelRootCRL string
}

// VCEK names one chip's VCEK at one TCB (only needed when the host does not
// put the VCEK in the extended report).
type VCEK struct {
	ProductLine string
	ChipID      []byte
	TCB         kds.TCBVersion
}

// Request says what to fetch.
type Request struct {
	// SNP are the AMD product lines whose VCEK and VLEK CRLs to fetch.
	SNP []string
	// VCEKs are VCEK certificates to fetch.
	VCEKs []VCEK
	// TDX fetches Intel's QE identity, Root CA CRL and the PCK CA CRLs
	// (platform and processor), and the TCB info of each FMSPC.
	TDX    bool
	FMSPCs []string
}

// Fetched is one file written.
type Fetched struct {
	Path string // relative to the collateral directory
	URL  string
}

// Fetch downloads what req asks for. It stops at the first failure; the
// files already written stay (each is complete).
func (f *Fetcher) Fetch(ctx context.Context, req Request) ([]Fetched, error) {
	amd := orDefault(f.AMD, AMDKDS)
	intel := orDefault(f.Intel, IntelPCS)
	var jobs []job
	for _, line := range req.SNP {
		if !validLine(line) {
			return nil, fmt.Errorf("unknown AMD product line %q: %s", line, strings.Join(SNPProductLines, ", "))
		}
		jobs = append(jobs,
			job{url: amd + "/vcek/v1/" + line + "/crl", path: filepath.Join("snp", line, "crl.der"), check: checkCRL},
			job{url: amd + "/vlek/v1/" + line + "/crl", path: filepath.Join("snp", line, "vlek-crl.der"), check: checkCRL})
	}
	for _, v := range req.VCEKs {
		if v.ProductLine != "Milan" && v.ProductLine != "Genoa" {
			return nil, fmt.Errorf("fetching a %s VCEK is not supported (Milan and Genoa only): have the host supply it in the extended report", v.ProductLine)
		}
		if len(v.ChipID) != 64 {
			return nil, fmt.Errorf("a %s CHIP_ID is 64 bytes (128 hex digits), not %d", v.ProductLine, len(v.ChipID))
		}
		u := strings.TrimPrefix(kds.VCEKCertURL(v.ProductLine, v.ChipID, v.TCB), AMDKDS)
		jobs = append(jobs, job{url: amd + u, path: filepath.Join("snp", v.ProductLine, snpverify.VCEKFileName(v.ChipID, v.TCB)), check: checkCert})
	}
	if req.TDX || len(req.FMSPCs) > 0 {
		jobs = append(jobs,
			job{url: intel + "/tdx/certification/v4/qe/identity", path: filepath.Join("tdx", "qe-identity.json"), check: signedJSON("enclaveIdentity")},
			job{url: orDefault(f.IntelRootCRL, IntelRootCRLAt), path: filepath.Join("tdx", "root-crl.der"), check: checkCRL},
			job{url: intel + "/sgx/certification/v4/pckcrl?ca=platform&encoding=der", path: filepath.Join("tdx", "pck-crl-platform.der"), check: checkCRL},
			job{url: intel + "/sgx/certification/v4/pckcrl?ca=processor&encoding=der", path: filepath.Join("tdx", "pck-crl-processor.der"), check: checkCRL})
		for i, fmspc := range req.FMSPCs {
			b, err := hex.DecodeString(fmspc)
			if err != nil || len(b) != 6 {
				return nil, fmt.Errorf("FMSPC %q is not 6 bytes in hex (12 digits)", fmspc)
			}
			fmspc = hex.EncodeToString(b)
			j := job{url: intel + "/tdx/certification/v4/tcb?fmspc=" + fmspc, path: filepath.Join("tdx", "tcbinfo-"+fmspc+".json"), check: signedJSON("tcbInfo")}
			if i == 0 {
				// The TCB info's issuer chain is the TCB signing chain
				// (the QE identity's is the same certificate).
				j.header, j.headerPath = "Tcb-Info-Issuer-Chain", filepath.Join("tdx", "tcb-signing-chain.pem")
			}
			jobs = append(jobs, j)
		}
	}
	var done []Fetched
	for _, j := range jobs {
		written, err := f.fetch(ctx, j)
		done = append(done, written...)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

type job struct {
	url, path  string
	check      func([]byte) error
	header     string // a response header to keep, URL-decoded PEM
	headerPath string
}

func (f *Fetcher) fetch(ctx context.Context, j job) ([]Fetched, error) {
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", j.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", j.path, j.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s answered %s", j.path, j.url, resp.Status)
	}
	if len(body) > MaxFile {
		return nil, fmt.Errorf("fetching %s: %s answered more than %d bytes", j.path, j.url, MaxFile)
	}
	if err := j.check(body); err != nil {
		return nil, fmt.Errorf("fetching %s: %s did not answer one: %w", j.path, j.url, err)
	}
	var chain []byte
	if j.header != "" {
		h := resp.Header.Get(j.header)
		if h == "" {
			return nil, fmt.Errorf("fetching %s: %s answered without the %s header", j.headerPath, j.url, j.header)
		}
		if len(h) > MaxFile {
			return nil, fmt.Errorf("fetching %s: the %s header exceeds %d bytes", j.headerPath, j.header, MaxFile)
		}
		s, err := url.QueryUnescape(h)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: the %s header: %w", j.headerPath, j.header, err)
		}
		chain = []byte(s)
		if err := checkPEMChain(chain); err != nil {
			return nil, fmt.Errorf("fetching %s: the %s header: %w", j.headerPath, j.header, err)
		}
	}
	if err := writeFile(filepath.Join(f.Dir, j.path), body); err != nil {
		return nil, err
	}
	done := []Fetched{{Path: j.path, URL: j.url}}
	if chain != nil {
		if err := writeFile(filepath.Join(f.Dir, j.headerPath), chain); err != nil {
			return done, err
		}
		done = append(done, Fetched{Path: j.headerPath, URL: j.url + " (" + j.header + ")"})
	}
	return done, nil
}

// writeFile replaces path atomically.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fetch-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func checkCRL(b []byte) error {
	_, err := x509.ParseRevocationList(b)
	if err != nil {
		return fmt.Errorf("not a DER CRL: %w", err)
	}
	return nil
}

func checkCert(b []byte) error {
	if _, err := x509.ParseCertificate(b); err != nil {
		return fmt.Errorf("not a DER certificate: %w", err)
	}
	return nil
}

func checkPEMChain(b []byte) error {
	certs, err := parsePEMCerts(b)
	if err != nil {
		return err
	}
	if len(certs) == 0 {
		return errors.New("no PEM certificate")
	}
	return nil
}

func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return certs, nil
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %q block where certificates belong", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}

// pcsBody is the part of a PCS TCB info or enclave identity both share.
type pcsBody struct {
	ID         string    `json:"id"`
	Version    int       `json:"version"`
	IssueDate  time.Time `json:"issueDate"`
	NextUpdate time.Time `json:"nextUpdate"`
}

// parseSigned parses a PCS response whose field is the signed body.
func parseSigned(b []byte, field string) (*pcsBody, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	raw, ok := m[field]
	if !ok {
		return nil, fmt.Errorf("no %q field", field)
	}
	var sig string
	if err := json.Unmarshal(m["signature"], &sig); err != nil || sig == "" {
		return nil, errors.New("no signature")
	}
	var body pcsBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if body.NextUpdate.IsZero() {
		return nil, fmt.Errorf("%s has no nextUpdate", field)
	}
	return &body, nil
}

func signedJSON(field string) func([]byte) error {
	return func(b []byte) error {
		_, err := parseSigned(b, field)
		return err
	}
}

func validLine(line string) bool {
	for _, l := range SNPProductLines {
		if l == line {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return strings.TrimSuffix(s, "/")
}
