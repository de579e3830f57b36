package gateway

import (
	"bytes"
	"crypto/subtle"
	"fmt"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// Activation receipts (wire/receipt.go, docs/protocol.md §Receipts). The
// runtime that ran a step seals its signed receipt under the request's
// keys, so the controller, which stores it, can neither read nor forge
// nor move it. The gateway opens each receipt of a record and holds the
// record's plaintext parts to it: the status, the chain's length and
// continuity, the output and the logs. It does not check the signatures
// (the seal authenticates the runtime to the gateway); they are for the
// owner, who gets the signed receipts with the record and verifies them
// up to the KMS's evidence (package client).

// Messages of records whose receipts do not hold.
const (
	msgNoReceipt     = "The activation has no receipt from the runtime that ran it."
	msgBadReceipt    = "The activation's receipt could not be authenticated."
	msgReceiptStatus = "The activation's status does not match its receipt."
	msgReceiptChain  = "The sequence's receipts do not form its chain."
	msgWithheldLogs  = "[clemmys: the activation logs were withheld]"
)

// openedReceipt is a receipt the gateway opened: the signed form the
// owner gets, and the decoded receipt it checked.
type openedReceipt struct {
	signed  []byte // CBOR wire.SignedReceipt
	receipt wire.Receipt
}

// openReceipt opens the sealed receipt of step of the request k is of and
// checks that it is that step's: request, chain, function.
func openReceipt(k *envelope.OwnerKeys, step uint32, sealed []byte) (*openedReceipt, error) {
	if len(sealed) > wire.MaxSignedReceipt+64 {
		return nil, fmt.Errorf("receipt of %d bytes", len(sealed))
	}
	h, d := k.Header(), k.Digest()
	signed, err := k.OpenReceipt(step, sealed)
	if err != nil {
		return nil, err
	}
	var sr wire.SignedReceipt
	if err := bus.Unmarshal(signed, &sr); err != nil {
		return nil, fmt.Errorf("decode signed receipt: %w", err)
	}
	o := &openedReceipt{signed: signed}
	if err := bus.Unmarshal(sr.Receipt, &o.receipt); err != nil {
		return nil, fmt.Errorf("decode receipt: %w", err)
	}
	rc := &o.receipt
	s := h.Chain[step]
	switch {
	case rc.Version != wire.ReceiptVersion:
		return nil, fmt.Errorf("receipt version %d", rc.Version)
	case !bytes.Equal(rc.RequestID, h.RequestID), rc.Step != step, rc.Steps != uint32(len(h.Chain)),
		subtle.ConstantTimeCompare(rc.HeaderDigest, d[:]) != 1:
		return nil, fmt.Errorf("receipt of another request or step")
	case !bytes.Equal(rc.FunctionID, s.FunctionID), !bytes.Equal(rc.CodeDigest, s.CodeDigest), rc.KeyVersion != s.KeyVersion:
		return nil, fmt.Errorf("receipt of another function")
	case len(s.Runtime) > 0 && !bytes.Equal(rc.RuntimeID, s.Runtime):
		return nil, fmt.Errorf("receipt of another runtime")
	}
	return o, nil
}

// checkReceipts opens and checks the receipts of a record whose result
// (out, the output of step last, 0-based) the gateway opened: one receipt
// for a single step (a single action or a component), one per step run
// for a sequence, all successful but the last, each step's input the
// previous one's output, the last one's output out and status the
// record's. It returns the opened receipts, or the message of the first
// check that failed.
func checkReceipts(rec *wire.Activation, k *envelope.OwnerKeys, first, last uint32, out []byte) ([]*openedReceipt, string) {
	sealed := rec.Receipts
	if len(sealed) == 0 {
		return nil, msgNoReceipt
	}
	if uint64(len(sealed)) != uint64(last-first)+1 {
		return nil, msgReceiptChain
	}
	opened := make([]*openedReceipt, len(sealed))
	for i, s := range sealed {
		step := first + uint32(i)
		o, err := openReceipt(k, step, s)
		if err != nil {
			return nil, msgBadReceipt
		}
		if i > 0 && !bytes.Equal(o.receipt.InputDigest, opened[i-1].receipt.OutputDigest) {
			return nil, msgReceiptChain
		}
		if step < last && o.receipt.Status != wire.StatusSuccess {
			// A sequence stops at its first failure.
			return nil, msgReceiptChain
		}
		opened[i] = o
	}
	final := &opened[len(opened)-1].receipt
	if final.Status != rec.Status {
		return nil, msgReceiptStatus
	}
	if !bytes.Equal(final.OutputDigest, wire.ReceiptOutputDigest(out)) {
		return nil, msgBadReceipt
	}
	return opened, ""
}

// signedReceipts returns the signed receipts the owner gets with a record.
func signedReceipts(rs []*openedReceipt) [][]byte {
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r.signed
	}
	return out
}
