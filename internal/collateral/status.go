package collateral

import (
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File is one collateral file and its validity.
type File struct {
	Path      string    // relative to the collateral directory
	Kind      string    // what it is, e.g. "AMD Milan VCEK CRL"
	From, To  time.Time // validity (CRL this/next update, certificate not before/after, PCS issue date/next update)
	Err       error     // unreadable, malformed or unknown
	Stale     bool      // not valid at the time of the status
	ExpiresIn time.Duration
}

// Status lists the collateral files under dir and their validity at now,
// sorted by path. Files the verifiers do not read are listed with an error
// (a misnamed file is as good as a missing one).
func Status(dir string, now time.Time) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".fetch-") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files = append(files, inspect(dir, filepath.ToSlash(rel), now))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the collateral directory: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func inspect(dir, rel string, now time.Time) File {
	f := File{Path: rel}
	parts := strings.Split(rel, "/")
	name := parts[len(parts)-1]
	var parse func([]byte) error
	crl := func(b []byte) error {
		c, err := x509.ParseRevocationList(b)
		if err != nil {
			return fmt.Errorf("not a DER CRL: %w", err)
		}
		f.From, f.To = c.ThisUpdate, c.NextUpdate
		return nil
	}
	signed := func(field string) func([]byte) error {
		return func(b []byte) error {
			body, err := parseSigned(b, field)
			if err != nil {
				return err
			}
			f.From, f.To = body.IssueDate, body.NextUpdate
			return nil
		}
	}
	switch {
	case len(parts) == 3 && parts[0] == "snp" && validLine(parts[1]) && name == "crl.der":
		f.Kind, parse = "AMD "+parts[1]+" VCEK CRL", crl
	case len(parts) == 3 && parts[0] == "snp" && validLine(parts[1]) && name == "vlek-crl.der":
		f.Kind, parse = "AMD "+parts[1]+" VLEK CRL", crl
	case len(parts) == 3 && parts[0] == "snp" && validLine(parts[1]) && strings.HasPrefix(name, "vcek-") && strings.HasSuffix(name, ".der"):
		f.Kind = "AMD " + parts[1] + " VCEK"
		parse = func(b []byte) error {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("not a DER certificate: %w", err)
			}
			f.From, f.To = c.NotBefore, c.NotAfter
			return nil
		}
	case len(parts) == 2 && parts[0] == "tdx" && name == "qe-identity.json":
		f.Kind, parse = "Intel TD_QE identity", signed("enclaveIdentity")
	case len(parts) == 2 && parts[0] == "tdx" && strings.HasPrefix(name, "tcbinfo-") && strings.HasSuffix(name, ".json"):
		f.Kind, parse = "Intel TDX TCB info, FMSPC "+strings.TrimSuffix(strings.TrimPrefix(name, "tcbinfo-"), ".json"), signed("tcbInfo")
	case len(parts) == 2 && parts[0] == "tdx" && name == "tcb-signing-chain.pem":
		f.Kind = "Intel TCB signing chain"
		parse = func(b []byte) error {
			certs, err := parsePEMCerts(b)
			if err != nil {
				return err
			}
			if len(certs) == 0 {
				return fmt.Errorf("no PEM certificate")
			}
			// The chain is valid while every certificate of it is.
			f.From, f.To = certs[0].NotBefore, certs[0].NotAfter
			for _, c := range certs[1:] {
				if c.NotBefore.After(f.From) {
					f.From = c.NotBefore
				}
				if c.NotAfter.Before(f.To) {
					f.To = c.NotAfter
				}
			}
			return nil
		}
	case len(parts) == 2 && parts[0] == "tdx" && name == "root-crl.der":
		f.Kind, parse = "Intel SGX Root CA CRL", crl
	case len(parts) == 2 && parts[0] == "tdx" && (name == "pck-crl-platform.der" || name == "pck-crl-processor.der"):
		f.Kind, parse = "Intel PCK "+strings.TrimSuffix(strings.TrimPrefix(name, "pck-crl-"), ".der")+" CA CRL", crl
	default:
		f.Kind = "unknown"
		f.Err = fmt.Errorf("not a file the verifiers read (see docs/operations.md for the layout)")
		return f
	}
	b, err := readLimited(filepath.Join(dir, filepath.FromSlash(rel)))
	if err == nil {
		err = parse(b)
	}
	if err != nil {
		f.Err = err
		return f
	}
	f.Stale = now.Before(f.From) || now.After(f.To)
	f.ExpiresIn = f.To.Sub(now)
	return f
}

func readLimited(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxFile {
		return nil, fmt.Errorf("exceeds %d bytes", MaxFile)
	}
	return os.ReadFile(path)
}
