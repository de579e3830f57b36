package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math/bits"
)

// Batched receipt signatures (docs/protocol.md §Receipts). A runtime that
// has several receipts to sign at once (steps that ended while it was
// signing) signs them with one signature: over the root of a Merkle tree
// whose leaves are the receipts, built as RFC 9162 §2.1.1 builds a
// transparency log's tree (SHA-256, leaf prefix 0x00, node prefix 0x01).
// Each signed receipt then carries its leaf's index, the tree's size and
// the leaf's inclusion path (RFC 9162 §2.1.3), from which the verifier
// recomputes the root the signature covers. A receipt signed alone has no
// batch and a signature over ReceiptMessage, as before batching.

// ReceiptBatch places a receipt in the tree of a batch signature.
type ReceiptBatch struct {
	Size  uint32   `cbor:"1,keyasint"` // leaves in the tree, ≥ 2
	Index uint32   `cbor:"2,keyasint"` // this receipt's leaf, < Size
	Path  [][]byte `cbor:"3,keyasint"` // inclusion path, 32-byte hashes, leaf to root
}

// MaxReceiptBatch bounds the receipts of one batch signature (and so a
// path to MaxReceiptPath hashes).
const (
	MaxReceiptBatch = 256
	MaxReceiptPath  = 8
)

// ReceiptBatchContext prefixes the root a batch signature covers.
const ReceiptBatchContext = "clemmys/v1 activation receipt batch\x00"

// ReceiptBatchMessage is what a runtime signs for a batch of receipts
// whose tree has root.
func ReceiptBatchMessage(root [32]byte) []byte { return concat([]byte(ReceiptBatchContext), root[:]) }

// ReceiptLeaf is the tree leaf of a CBOR Receipt.
func ReceiptLeaf(receipt []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(receipt)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func receiptNode(l, r []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ReceiptTree returns the root of the tree of leaves (at least one, at
// most MaxReceiptBatch) and each leaf's inclusion path.
func ReceiptTree(leaves [][32]byte) (root [32]byte, paths [][][]byte) {
	paths = make([][][]byte, len(leaves))
	root = subtree(leaves, paths)
	return root, paths
}

// subtree is MTH of leaves (RFC 9162 §2.1.1); it appends to paths[i] the
// hashes leaf i needs above it within this subtree.
func subtree(leaves [][32]byte, paths [][][]byte) [32]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1) // largest power of two < n
	l := subtree(leaves[:k], paths[:k])
	r := subtree(leaves[k:], paths[k:])
	for i := range paths[:k] {
		paths[i] = append(paths[i], r[:])
	}
	for i := range paths[k:] {
		paths[k+i] = append(paths[k+i], l[:])
	}
	return receiptNode(l[:], r[:])
}

// ReceiptBatchRoot recomputes the root of a batch's tree from a receipt's
// leaf and its place in the batch (RFC 9162 §2.1.3.2). It fails on a
// malformed place: a size out of bounds, an index outside the tree, a
// path of another length than the tree's.
func ReceiptBatchRoot(leaf [32]byte, b *ReceiptBatch) ([32]byte, error) {
	var zero [32]byte
	if b.Size < 2 || b.Size > MaxReceiptBatch || b.Index >= b.Size || len(b.Path) > MaxReceiptPath {
		return zero, errors.New("receipt batch: malformed place")
	}
	fn, sn := b.Index, b.Size-1
	r := leaf
	for _, p := range b.Path {
		if len(p) != sha256.Size || sn == 0 {
			return zero, errors.New("receipt batch: malformed path")
		}
		if fn&1 == 1 || fn == sn {
			r = receiptNode(p, r[:])
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = receiptNode(r[:], p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return zero, errors.New("receipt batch: path too short")
	}
	return r, nil
}

// ReceiptSigned reports whether sr's signature by key covers its receipt:
// directly (no batch) or through its batch's root.
func ReceiptSigned(key ed25519.PublicKey, sr *SignedReceipt) bool {
	if len(key) != ed25519.PublicKeySize {
		return false
	}
	if sr.Batch == nil {
		return ed25519.Verify(key, ReceiptMessage(sr.Receipt), sr.Sig)
	}
	root, err := ReceiptBatchRoot(ReceiptLeaf(sr.Receipt), sr.Batch)
	return err == nil && ed25519.Verify(key, ReceiptBatchMessage(root), sr.Sig)
}
