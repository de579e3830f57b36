package enclave

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/wire"
)

// Receipts (wire/receipt.go): the runtime's receipt key is made at start
// and bound to its evidence; the KMS's certificate of it comes with each
// key bundle; every step that ran gets a signed receipt sealed for the
// owner.

// maxCert bounds a certificate from the invoker.
const maxCert = 2 << 10

// checkCert verifies a certificate of the runtime's receipt key for
// namespace ns: signed by a pinned KMS key, for this runtime's id and
// receipt key. It returns the certificate's bytes to attach to receipts.
func (r *Runtime) checkCert(raw []byte, ns string) ([]byte, error) {
	if len(raw) == 0 || len(raw) > maxCert {
		return nil, errors.New("no certificate of the runtime's receipt key")
	}
	var sc wire.SignedCert
	if err := ipc.Unmarshal(raw, &sc); err != nil || len(sc.Sig) != ed25519.SignatureSize {
		return nil, errors.New("malformed certificate")
	}
	ok := false
	for _, k := range r.cfg.KMSKeys {
		if ed25519.Verify(k, wire.CertMessage(sc.Cert), sc.Sig) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, errors.New("certificate not signed by the pinned KMS identity")
	}
	var c wire.RuntimeCert
	if err := ipc.Unmarshal(sc.Cert, &c); err != nil {
		return nil, errors.New("malformed certificate")
	}
	if subtle.ConstantTimeCompare(c.ReceiptKey, r.receiptPub) != 1 || subtle.ConstantTimeCompare(c.RuntimeID, r.id) != 1 {
		return nil, errors.New("certificate is for another runtime")
	}
	if c.Namespace != ns {
		return nil, errors.New("certificate is for another namespace")
	}
	return bytes.Clone(raw), nil
}

// signReceipt signs the receipt of a step that ran and seals it for the
// owner.
func (r *Runtime) signReceipt(fn *function, o *envelope.Opened, status string, input, output, logs []byte, start, end int64) ([]byte, error) {
	d := o.Digest()
	h := o.Header()
	in := sha256.Sum256(input)
	rc := wire.Receipt{
		Version:      wire.ReceiptVersion,
		FunctionID:   fn.record.FunctionID,
		CodeDigest:   fn.record.CodeDigest,
		KeyVersion:   fn.record.KeyVersion,
		Namespace:    fn.record.Namespace,
		Action:       fn.record.Action,
		RequestID:    o.RequestID,
		Step:         o.Step,
		Steps:        uint32(len(h.Chain)),
		HeaderDigest: d[:],
		InputDigest:  in[:],
		OutputDigest: wire.ReceiptOutputDigest(output),
		LogsDigest:   wire.ReceiptLogsDigest(logs),
		Status:       status,
		Start:        start,
		End:          max(end, start),
		RuntimeID:    r.id,
	}
	body, err := ipc.Marshal(&rc)
	if err != nil {
		return nil, err
	}
	signed, err := ipc.Marshal(&wire.SignedReceipt{
		Receipt: body,
		Sig:     ed25519.Sign(r.receiptPriv, wire.ReceiptMessage(body)),
		Cert:    fn.cert,
	})
	if err != nil {
		return nil, err
	}
	return o.SealReceipt(signed)
}

// afterFailure reports whether a later step's input is a failed step's
// output: OpenWhisk stops a sequence at its first failure (a result with
// an "error" field is never a success), so a controller that sends such a
// step on is refused rather than obeyed.
func afterFailure(o *envelope.Opened) bool {
	if o.Step == 0 {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(o.Input, &obj) != nil {
		return false // the step sees what it got; not a failure record
	}
	_, failed := obj["error"]
	return failed
}
