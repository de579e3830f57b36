package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of the self-signed certificate under DataDir.
const (
	selfCertFile = "tls/gateway-cert.pem"
	selfKeyFile  = "tls/gateway-key.pem"
	certValidity = 365 * 24 * time.Hour
)

// loadTLS returns the server TLS configuration and the PEM certificate. With
// certFile and keyFile it uses them; otherwise it loads the self-signed
// certificate from dataDir, creating (or renewing, within 30 days of expiry)
// it first.
func loadTLS(dataDir, certFile, keyFile string, now func() time.Time) (*tls.Config, []byte, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, nil, errors.New("gateway: --tls-cert and --tls-key go together")
	}
	if certFile == "" {
		if dataDir == "" {
			return nil, nil, errors.New("gateway: DataDir is required for the self-signed certificate")
		}
		certFile = filepath.Join(dataDir, selfCertFile)
		keyFile = filepath.Join(dataDir, selfKeyFile)
		if err := ensureSelfSigned(certFile, keyFile, now()); err != nil {
			return nil, nil, err
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: load TLS key pair: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: read certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
	}, certPEM, nil
}

// ensureSelfSigned creates a self-signed ECDSA P-256 certificate for
// localhost, 127.0.0.1 and ::1 unless a valid one exists.
func ensureSelfSigned(certFile, keyFile string, now time.Time) error {
	if b, err := os.ReadFile(certFile); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil && now.Add(30*24*time.Hour).Before(c.NotAfter) {
				if _, err := os.Stat(keyFile); err == nil {
					return nil
				}
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return fmt.Errorf("gateway: certificate dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("gateway: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("gateway: certificate serial: %w", err)
	}
	host, _ := os.Hostname()
	names := []string{"localhost"}
	if host != "" && host != "localhost" {
		names = append(names, host)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "clemmys gateway (self-signed)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("gateway: create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("gateway: encode certificate key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("gateway: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("gateway: write %s: %w", filepath.Base(path), err)
	}
	return nil
}
