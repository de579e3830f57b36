package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
)

func leaves(n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		out[i] = ReceiptLeaf([]byte(fmt.Sprintf("receipt %d", i)))
	}
	return out
}

// mth is RFC 9162 §2.1.1's MTH, written as the RFC states it.
func mth(d [][32]byte) [32]byte {
	if len(d) == 1 {
		return d[0]
	}
	k := 1
	for k*2 < len(d) {
		k *= 2
	}
	l, r := mth(d[:k]), mth(d[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func TestReceiptTree(t *testing.T) {
	// The leaf hash is SHA-256(0x00 || receipt).
	if got, want := ReceiptLeaf([]byte("r")), sha256.Sum256([]byte("\x00r")); got != want {
		t.Fatalf("leaf %x, want %x", got, want)
	}
	for n := 1; n <= 40; n++ {
		ls := leaves(n)
		root, paths := ReceiptTree(ls)
		if root != mth(ls) {
			t.Fatalf("n=%d: root is not RFC 9162's MTH", n)
		}
		if n == 1 {
			if len(paths[0]) != 0 {
				t.Fatalf("a single leaf has a path")
			}
			continue
		}
		for i := range ls {
			b := &ReceiptBatch{Size: uint32(n), Index: uint32(i), Path: paths[i]}
			got, err := ReceiptBatchRoot(ls[i], b)
			if err != nil || got != root {
				t.Fatalf("n=%d i=%d: path gives %x, %v; want the root", n, i, got, err)
			}
			// The same path proves no other leaf, at no other index.
			if got, err := ReceiptBatchRoot(ls[(i+1)%n], b); err == nil && got == root {
				t.Fatalf("n=%d i=%d: the path proves another leaf", n, i)
			}
			if i+1 < n {
				moved := &ReceiptBatch{Size: uint32(n), Index: uint32(i + 1), Path: paths[i]}
				if got, err := ReceiptBatchRoot(ls[i], moved); err == nil && got == root {
					t.Fatalf("n=%d i=%d: the path proves the leaf at another index", n, i)
				}
			}
		}
	}
}

func TestReceiptBatchRootRefuses(t *testing.T) {
	ls := leaves(5)
	_, paths := ReceiptTree(ls)
	long := append(append([][]byte{}, paths[0]...), make([]byte, 32))
	for _, tc := range []struct {
		name string
		b    ReceiptBatch
	}{
		{"size 0", ReceiptBatch{Size: 0}},
		{"size 1", ReceiptBatch{Size: 1, Path: nil}},
		{"index outside", ReceiptBatch{Size: 5, Index: 5, Path: paths[0]}},
		{"oversize batch", ReceiptBatch{Size: MaxReceiptBatch + 1, Path: paths[0]}},
		{"path too short", ReceiptBatch{Size: 5, Index: 0, Path: paths[0][:1]}},
		{"path too long", ReceiptBatch{Size: 5, Index: 0, Path: long}},
		{"short hash", ReceiptBatch{Size: 5, Index: 0, Path: [][]byte{paths[0][0][:31], paths[0][1], paths[0][2]}}},
	} {
		if _, err := ReceiptBatchRoot(ls[0], &tc.b); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestReceiptSigned(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	other, _, _ := ed25519.GenerateKey(nil)
	body := []byte("receipt")
	single := &SignedReceipt{Receipt: body, Sig: ed25519.Sign(priv, ReceiptMessage(body))}
	ls := [][32]byte{ReceiptLeaf([]byte("a")), ReceiptLeaf(body), ReceiptLeaf([]byte("c"))}
	root, paths := ReceiptTree(ls)
	batched := &SignedReceipt{Receipt: body, Sig: ed25519.Sign(priv, ReceiptBatchMessage(root)),
		Batch: &ReceiptBatch{Size: 3, Index: 1, Path: paths[1]}}
	for _, tc := range []struct {
		name string
		key  ed25519.PublicKey
		sr   *SignedReceipt
		ok   bool
	}{
		{"single", pub, single, true},
		{"batched", pub, batched, true},
		{"single, other key", other, single, false},
		{"batched, other key", other, batched, false},
		{"single signature given a batch", pub, &SignedReceipt{Receipt: body, Sig: single.Sig, Batch: batched.Batch}, false},
		{"batch signature without its batch", pub, &SignedReceipt{Receipt: body, Sig: batched.Sig}, false},
		{"another receipt in the batch's place", pub, &SignedReceipt{Receipt: []byte("a"), Sig: batched.Sig, Batch: batched.Batch}, false},
		{"no key", nil, single, false},
	} {
		if got := ReceiptSigned(tc.key, tc.sr); got != tc.ok {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func FuzzReceiptBatchRoot(f *testing.F) {
	ls := leaves(7)
	_, paths := ReceiptTree(ls)
	f.Add(uint32(7), uint32(3), bytes.Join(paths[3], nil))
	f.Add(uint32(2), uint32(0), make([]byte, 32))
	f.Add(uint32(0), uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, size, index uint32, path []byte) {
		var p [][]byte
		for len(path) > 0 && len(p) <= MaxReceiptPath {
			n := min(len(path), 32)
			p, path = append(p, path[:n]), path[n:]
		}
		b := &ReceiptBatch{Size: size, Index: index, Path: p}
		if _, err := ReceiptBatchRoot(ls[0], b); err != nil {
			return
		}
		// An accepted place has an in-bound size and index, and a path of
		// exactly the tree's height at that index: the tree of that size
		// proves leaf index with a path as long.
		if size < 2 || size > MaxReceiptBatch || index >= size {
			t.Fatalf("accepted size %d index %d", size, index)
		}
		all := make([][32]byte, size)
		all[index] = ls[0]
		_, ps := ReceiptTree(all)
		if len(ps[index]) != len(p) {
			t.Fatalf("size %d index %d: accepted a path of %d hashes, the tree's is %d", size, index, len(p), len(ps[index]))
		}
	})
}
