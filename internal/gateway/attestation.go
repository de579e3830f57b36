package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// The attestation API (docs/protocol.md §Attestation API): what a caller
// needs to check, with its own verifier, what the platform claims — the
// KMS's evidence and signing key, the gateway's evidence bound to the
// caller's nonce and to the TLS key its session ends at, the namespace's
// policy, and the runtimes that hold the namespace's keys with the KMS's
// certificates of their receipt keys. The gateway vouches for nothing
// here: every statement is signed by the KMS or a TEE, and the client
// (package client, `clemmys attest`) verifies them.

// attestationKMS is what the attestation API needs of the KMS client.
type attestationKMS interface {
	SignKey() ed25519.PublicKey
	IdentityEvidence() []byte
	Holders(ctx context.Context, ns string) (*wire.HolderList, error)
}

// attestationBody is the answer of GET /api/v1/clemmys/attestation.
type attestationBody struct {
	Format    string            `json:"format"`
	TEE       string            `json:"tee"`
	Simulated bool              `json:"simulated"`
	Namespace string            `json:"namespace"`
	Nonce     string            `json:"nonce,omitempty"`
	KMS       attestationKMSDoc `json:"kms"`
	Gateway   *attestationGWDoc `json:"gateway,omitempty"`
	// SimRoot is the simulated TEE's root public key (sim only): evidence
	// signed by it proves nothing unless the caller pinned the key.
	SimRoot  string           `json:"simRoot,omitempty"`
	Policy   policyBody       `json:"policy"`
	Runtimes []runtimeHolding `json:"runtimes"`
}

type attestationKMSDoc struct {
	SignKey  string `json:"signKey"`  // hex ed25519 public key
	Evidence []byte `json:"evidence"` // base64: evidence binding wire.KMSIdentityReportData(signKey)
}

type attestationGWDoc struct {
	TLSKeyDigest string `json:"tlsKeyDigest"` // hex SHA-256 of the TLS certificate's SubjectPublicKeyInfo
	Evidence     []byte `json:"evidence"`     // base64: binds wire.GatewayAttestationReportData(nonce, TLS key digest)
}

// runtimeHolding is a runtime holding the namespace's keys: the KMS's
// signed certificate (what the client verifies) and, for reading, its
// decoded fields.
type runtimeHolding struct {
	Cert            []byte `json:"cert"` // base64 CBOR wire.SignedCert
	RuntimeID       string `json:"runtimeId"`
	Platform        string `json:"platform"`
	Measurement     string `json:"measurement"`
	SecurityVersion uint32 `json:"securityVersion"`
	Debug           bool   `json:"debug"`
	Issued          int64  `json:"issued"`
	LastRelease     int64  `json:"lastRelease"`
	Releases        uint64 `json:"releases"`
}

// tlsKeyDigest is the SHA-256 of the SubjectPublicKeyInfo of the first
// certificate in certPEM.
func tlsKeyDigest(certPEM []byte) ([]byte, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("gateway: no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return d[:], nil
}

func (g *Gateway) getAttestation(w http.ResponseWriter, r *http.Request) {
	src, ok := g.cfg.KMS.(attestationKMS)
	if !ok {
		g.fail(w, r, http.StatusNotImplemented, "This gateway's KMS client does not serve attestation evidence.")
		return
	}
	var nonce []byte
	if q := r.URL.Query().Get("nonce"); q != "" {
		n, err := hex.DecodeString(q)
		if err != nil || len(n) > wire.MaxAttestationNonce {
			g.fail(w, r, http.StatusBadRequest, "The nonce must be hex, at most %d bytes.", wire.MaxAttestationNonce)
			return
		}
		nonce = n
	}
	ns := callerNamespace(r)
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	pol, err := g.cfg.KMS.GetPolicy(ctx, ns)
	if err != nil {
		g.busError(w, r, "get policy", err)
		return
	}
	hl, err := src.Holders(ctx, ns)
	if err != nil {
		g.busError(w, r, "list key holders", err)
		return
	}
	body := attestationBody{
		Format: wire.AttestationFormat, TEE: g.cfg.TEE, Simulated: g.cfg.TEE == "sim" || g.cfg.TEE == "",
		Namespace: ns, Nonce: hex.EncodeToString(nonce),
		KMS:      attestationKMSDoc{SignKey: hex.EncodeToString(src.SignKey()), Evidence: src.IdentityEvidence()},
		SimRoot:  hex.EncodeToString(g.cfg.SimRoot),
		Policy:   renderPolicy(pol),
		Runtimes: []runtimeHolding{},
	}
	if g.cfg.Attester != nil && g.tlsKey != nil {
		ev, err := g.cfg.Attester.Attest(wire.GatewayAttestationReportData(nonce, g.tlsKey))
		if err != nil {
			g.log.Error("gateway attestation", "err", err)
			g.fail(w, r, http.StatusInternalServerError, "The gateway could not produce its evidence.")
			return
		}
		body.Gateway = &attestationGWDoc{TLSKeyDigest: hex.EncodeToString(g.tlsKey), Evidence: ev}
	}
	for _, h := range hl.Holders {
		var c wire.RuntimeCert
		raw, err := bus.Marshal(&h.Cert)
		if err != nil || bus.Unmarshal(h.Cert.Cert, &c) != nil {
			continue // the client would refuse it anyway
		}
		body.Runtimes = append(body.Runtimes, runtimeHolding{
			Cert: raw, RuntimeID: hex.EncodeToString(c.RuntimeID), Platform: c.Platform,
			Measurement: hex.EncodeToString(c.Measurement), SecurityVersion: c.SecurityVersion, Debug: c.Debug,
			Issued: c.Issued, LastRelease: h.LastRelease, Releases: h.Releases,
		})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}
