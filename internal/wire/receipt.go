package wire

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
)

// Activation receipts (docs/protocol.md §Receipts).
//
// Every enclave runtime makes an ed25519 receipt key when it starts and has
// its evidence bind it (ReleaseReportData). The KMS, when it releases a
// function's keys to the runtime, also certifies the key: a RuntimeCert,
// signed by the attested KMS identity, says "this receipt key belongs to a
// runtime of this platform and measurement, which holds keys of this
// namespace". For every step it runs, the runtime signs a Receipt (what
// ran, on what, with which outcome) and seals the signed receipt, with its
// certificate, for the request's owner under a key derived from the next
// step key (envelope.SealReceipt): the controller stores it but can
// neither read nor forge it. The gateway opens it to authenticate the
// record's status, logs and chain; the owner checks the signatures up to
// the KMS's evidence (package client, `clemmys activation verify`).

// ReceiptVersion is the version of the Receipt format.
const ReceiptVersion = 1

// Receipt is what a runtime vouches for about one step it ran.
type Receipt struct {
	Version    uint16 `cbor:"1,keyasint"`
	FunctionID []byte `cbor:"2,keyasint"` // 16 bytes
	CodeDigest []byte `cbor:"3,keyasint"` // SHA-256 of the function's code
	KeyVersion uint32 `cbor:"4,keyasint"`
	Namespace  string `cbor:"5,keyasint"` // the function's owner
	Action     string `cbor:"6,keyasint"` // its name in the namespace
	RequestID  []byte `cbor:"7,keyasint"` // 16 bytes: the activation id (a sequence's, for its components)
	Step       uint32 `cbor:"8,keyasint"` // chain step, 0-based
	// Steps is the length of the request's chain, and HeaderDigest the
	// digest of its authenticated header (which names every step's
	// function): a receipt belongs to one position of one chain.
	Steps        uint32 `cbor:"9,keyasint"`
	HeaderDigest []byte `cbor:"10,keyasint"`
	// SHA-256 digests of the step's input (the parameters, or the previous
	// step's output), its output (the JSON result, exact bytes) and its
	// logs (ReceiptLogsDigest).
	InputDigest  []byte `cbor:"11,keyasint"`
	OutputDigest []byte `cbor:"12,keyasint"`
	LogsDigest   []byte `cbor:"13,keyasint"`
	Status       string `cbor:"14,keyasint"` // one of the Status* values
	Start        int64  `cbor:"15,keyasint"` // unix ms, the runtime's clock
	End          int64  `cbor:"16,keyasint"`
	RuntimeID    []byte `cbor:"17,keyasint"` // envelope.RuntimeID of the runtime's ephemeral key
}

// SignedReceipt is a CBOR Receipt, the runtime's ed25519 signature over
// ReceiptMessage(Receipt) — or, for a receipt signed in a batch, over
// ReceiptBatchMessage of the batch's root, Batch placing the receipt in it
// (receiptbatch.go) — and the CBOR SignedCert of the receipt key.
type SignedReceipt struct {
	Receipt []byte        `cbor:"1,keyasint"`
	Sig     []byte        `cbor:"2,keyasint"`
	Cert    []byte        `cbor:"3,keyasint"`
	Batch   *ReceiptBatch `cbor:"4,keyasint,omitempty"`
}

// RuntimeCert is the KMS's statement about a runtime's receipt key, made
// when it released keys to the runtime after verifying its evidence.
type RuntimeCert struct {
	RuntimeID       []byte `cbor:"1,keyasint"` // envelope.RuntimeID of the ephemeral key
	ReceiptKey      []byte `cbor:"2,keyasint"` // ed25519 public key
	Namespace       string `cbor:"3,keyasint"`
	Platform        string `cbor:"4,keyasint"` // "sim", "sev-snp", "tdx"
	Measurement     []byte `cbor:"5,keyasint"`
	SecurityVersion uint32 `cbor:"6,keyasint,omitempty"`
	Debug           bool   `cbor:"7,keyasint,omitempty"`
	Issued          int64  `cbor:"8,keyasint"` // unix ms, the KMS's clock
}

// SignedCert is a CBOR RuntimeCert and the KMS identity's ed25519
// signature over CertMessage(Cert).
type SignedCert struct {
	Cert []byte `cbor:"1,keyasint"`
	Sig  []byte `cbor:"2,keyasint"`
}

// Domain-separation prefixes of the receipt and certificate signatures.
const (
	ReceiptContext = "clemmys/v1 activation receipt\x00"
	CertContext    = "clemmys/v1 runtime certificate\x00"
)

// MaxSignedReceipt bounds a signed receipt (with its certificate) on the
// wire and in a record.
const MaxSignedReceipt = 4 << 10

// ReceiptMessage is what a runtime signs.
func ReceiptMessage(receipt []byte) []byte { return concat([]byte(ReceiptContext), receipt) }

// CertMessage is what the KMS signs in a runtime certificate.
func CertMessage(cert []byte) []byte { return concat([]byte(CertContext), cert) }

// ReceiptLogsDigest is the digest of a step's logs as a receipt names it:
// SHA-256 of the logs without trailing newlines (what the owner's log
// lines hold once the gateway's time stamps are taken off).
func ReceiptLogsDigest(logs []byte) []byte {
	for len(logs) > 0 && logs[len(logs)-1] == '\n' {
		logs = logs[:len(logs)-1]
	}
	d := sha256.Sum256(logs)
	return d[:]
}

// Holder is a runtime the KMS released a namespace's keys to (the latest
// release per runtime), as the attestation API shows it.
type Holder struct {
	Cert        SignedCert `cbor:"1,keyasint"`
	LastRelease int64      `cbor:"2,keyasint"` // unix ms
	Releases    uint64     `cbor:"3,keyasint"` // functions released to it
}

// HoldersRequest asks for the runtimes holding a namespace's keys.
type HoldersRequest struct {
	Namespace string `cbor:"1,keyasint"`
}

// HolderList answers HoldersRequest, most recent release first.
type HolderList struct {
	Holders []Holder `cbor:"1,keyasint"`
}

// OpHolders is the gateway op listing a namespace's key holders.
const OpHolders = "holders" // HoldersRequest → HolderList

// ReceiptOutputDigest is the digest of a step's output as a receipt names
// it: SHA-256 of the JSON value in the form Go's encoding/json gives a raw
// JSON value it writes (compact, with <, >, &, U+2028 and U+2029 escaped
// as \u00XX), so that the owner can recompute it from the result in the
// activation record the gateway sends, whatever whitespace the function
// printed. Output that is not JSON is hashed as it is.
func ReceiptOutputDigest(out []byte) []byte {
	if canon, err := json.Marshal(json.RawMessage(out)); err == nil {
		out = canon
	}
	d := sha256.Sum256(out)
	return d[:]
}

// The attestation API (GET /api/v1/clemmys/attestation, docs/protocol.md
// §Attestation API).

// AttestationFormat names the attestation API's JSON format.
const AttestationFormat = "clemmys-attestation/v1"

// GatewayAttestationContext prefixes the gateway's attestation report data.
const GatewayAttestationContext = "clemmys/v1 gateway attestation\x00"

// MaxAttestationNonce bounds the caller's nonce.
const MaxAttestationNonce = 64

// GatewayAttestationReportData is what the gateway's evidence binds in an
// attestation answer: the caller's nonce (freshness) and the SHA-256 of
// the SubjectPublicKeyInfo of the gateway's TLS certificate (so the
// evidence is of the gateway the caller's TLS session ends at).
func GatewayAttestationReportData(nonce, tlsKeyDigest []byte) [64]byte {
	return sha512.Sum512(concat([]byte(GatewayAttestationContext), lp(nonce), lp(tlsKeyDigest)))
}
