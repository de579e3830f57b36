package enclave

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

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
	sig, batch := r.signer.sign(r.receiptPriv, body)
	signed, err := ipc.Marshal(&wire.SignedReceipt{Receipt: body, Sig: sig, Cert: fn.cert, Batch: batch})
	if err != nil {
		return nil, err
	}
	return o.SealReceipt(signed)
}

// receiptSigner signs receipts by group commit: a step whose receipt is
// ready while another step's signature is being made waits, and the
// receipts that waited are signed together, with one signature over the
// root of their tree (wire.ReceiptBatch). With one step at a time each
// receipt is signed alone, as soon as it is ready; under load a signature
// (≈ 50 µs of a busy core) is shared by the steps that ended meanwhile
// rather than paid by each. A receipt waits for at most the signature in
// progress and its own batch's.
type receiptSigner struct {
	mu      sync.Mutex
	queue   []*pendingReceipt
	signing bool // a leader is signing; the queue waits for it

	signatures, receipts atomic.Uint64 // made, and receipts they covered
}

type pendingReceipt struct {
	body  []byte
	sig   []byte
	batch *wire.ReceiptBatch
	done  chan struct{} // closed when signed, or when made the leader
	lead  bool
}

// sign returns body's signature by key and, when it was signed in a
// batch, its place in the batch.
func (s *receiptSigner) sign(key ed25519.PrivateKey, body []byte) ([]byte, *wire.ReceiptBatch) {
	p := &pendingReceipt{body: body, done: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	if s.signing {
		s.mu.Unlock()
		<-p.done
		if !p.lead {
			return p.sig, p.batch
		}
		s.mu.Lock() // handed the lead: sign what waited, p among it
	}
	s.signing = true
	n := min(len(s.queue), wire.MaxReceiptBatch)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	s.mu.Unlock()

	signBatch(key, batch)
	s.signatures.Add(1)
	s.receipts.Add(uint64(len(batch)))
	for _, q := range batch {
		if q != p && !q.lead {
			close(q.done)
		}
	}

	s.mu.Lock()
	if len(s.queue) > 0 {
		next := s.queue[0]
		next.lead = true
		close(next.done)
	} else {
		s.signing = false
		s.queue = nil
	}
	s.mu.Unlock()
	return p.sig, p.batch
}

// signBatch signs the receipts of batch: alone if it is one, else over
// their tree's root.
func signBatch(key ed25519.PrivateKey, batch []*pendingReceipt) {
	if len(batch) == 1 {
		batch[0].sig = ed25519.Sign(key, wire.ReceiptMessage(batch[0].body))
		return
	}
	leaves := make([][32]byte, len(batch))
	for i, q := range batch {
		leaves[i] = wire.ReceiptLeaf(q.body)
	}
	root, paths := wire.ReceiptTree(leaves)
	sig := ed25519.Sign(key, wire.ReceiptBatchMessage(root))
	for i, q := range batch {
		q.sig = sig
		q.batch = &wire.ReceiptBatch{Size: uint32(len(batch)), Index: uint32(i), Path: paths[i]}
	}
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
