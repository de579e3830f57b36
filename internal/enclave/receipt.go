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

// unsignedReceipt is the receipt of a step that ran, not yet signed: what
// it needs to be signed and sealed for the owner.
type unsignedReceipt struct {
	fn   *function
	o    *envelope.Opened
	body []byte // CBOR wire.Receipt
}

// stepReceipt makes the receipt of a step that ran.
func (r *Runtime) stepReceipt(fn *function, o *envelope.Opened, status string, input, output, logs []byte, start, end int64) (*unsignedReceipt, error) {
	d := o.Digest()
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
		Steps:        o.Steps(),
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
	return &unsignedReceipt{fn: fn, o: o, body: body}, nil
}

// seal seals the receipt with its signature (and place in a batch) for
// the owner.
func (p *unsignedReceipt) seal(sig []byte, batch *wire.ReceiptBatch) ([]byte, error) {
	signed, err := ipc.Marshal(&wire.SignedReceipt{Receipt: p.body, Sig: sig, Cert: p.fn.cert, Batch: batch})
	if err != nil {
		return nil, err
	}
	return p.o.SealReceipt(signed)
}

// signReceipts signs the receipts of the steps of one chain together
// (their replies leave the runtime together anyway) and seals each: one
// signature for the chain's steps, and for any other step whose receipt
// was ready meanwhile (receiptSigner). It returns the sealed receipts up
// to the first that could not be sealed, and that one's index.
func (r *Runtime) signReceipts(ps []*unsignedReceipt) ([][]byte, int, error) {
	bodies := make([][]byte, len(ps))
	for i, p := range ps {
		bodies[i] = p.body
	}
	sigs, batches := r.signer.signAll(r.receiptPriv, bodies)
	out := make([][]byte, 0, len(ps))
	for i, p := range ps {
		sealed, err := p.seal(sigs[i], batches[i])
		if err != nil {
			return out, i, err
		}
		out = append(out, sealed)
	}
	return out, len(ps), nil
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
	sigs, batches := s.signAll(key, [][]byte{body})
	return sigs[0], batches[0]
}

// signAll is sign for several bodies at once: they join the queue
// together, so that they are signed in one batch (or in consecutive ones,
// beyond wire.MaxReceiptBatch).
func (s *receiptSigner) signAll(key ed25519.PrivateKey, bodies [][]byte) ([][]byte, []*wire.ReceiptBatch) {
	ps := make([]*pendingReceipt, len(bodies))
	for i, body := range bodies {
		ps[i] = &pendingReceipt{body: body, done: make(chan struct{})}
	}
	s.mu.Lock()
	s.queue = append(s.queue, ps...)
	s.mu.Unlock()
	sigs, batches := make([][]byte, len(ps)), make([]*wire.ReceiptBatch, len(ps))
	for i, p := range ps {
		s.settle(key, p)
		sigs[i], batches[i] = p.sig, p.batch
	}
	return sigs, batches
}

// settle returns once p, which is queued, is signed: by a leader, or by
// this caller as the leader when none is signing or the lead is handed to
// p.
func (s *receiptSigner) settle(key ed25519.PrivateKey, p *pendingReceipt) {
	s.mu.Lock()
	if s.signing {
		s.mu.Unlock()
		<-p.done
		if !p.lead {
			return
		}
		s.mu.Lock() // handed the lead: sign what waited, p among it
	} else if p.signed() {
		s.mu.Unlock() // signed in a batch this caller led for another of its receipts
		return
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
}

// signed reports whether p's signature was made (its done is closed and
// it was not handed the lead).
func (p *pendingReceipt) signed() bool {
	select {
	case <-p.done:
		return !p.lead
	default:
		return false
	}
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
