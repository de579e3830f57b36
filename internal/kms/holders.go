package kms

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// Runtime certificates and key holders (wire/receipt.go).
//
// When it releases keys to a runtime whose evidence also binds a receipt
// key, the KMS certifies that key (RuntimeCert: runtime id, receipt key,
// namespace, verified platform and measurement) and records the runtime
// as a holder of the namespace's keys, so that the attestation API can
// show an owner which runtimes hold them.

// holderTTL is how long a holder is listed after its latest release: a
// runtime that has not received keys for that long has most likely been
// stopped (the KMS does not see runtimes stop).
const holderTTL = 24 * time.Hour

// maxHolders bounds a holder list.
const maxHolders = 256

func keyHolder(namespace string, runtimeID []byte) string {
	return store.Key("held", namespace, hex.EncodeToString(runtimeID))
}

func prefixHolders(namespace string) string { return store.Prefix("held", namespace) }

// certify signs a certificate of receiptKey for the runtime whose verified
// claims are c and which gets keys of namespace ns.
func (k *KMS) certify(c *tee.Claims, ephemeralKey, receiptKey []byte, ns string) (*wire.SignedCert, error) {
	if len(receiptKey) != ed25519.PublicKeySize {
		return nil, wire.Errorf(wire.CodeBadRequest, "receipt key must be an ed25519 public key")
	}
	cert := wire.RuntimeCert{
		RuntimeID:       envelope.RuntimeID(ephemeralKey),
		ReceiptKey:      receiptKey,
		Namespace:       ns,
		Platform:        c.Platform,
		Measurement:     c.Measurement,
		SecurityVersion: c.SecurityVersion,
		Debug:           c.Debug,
		Issued:          k.cfg.Now().UnixMilli(),
	}
	b, err := bus.Marshal(&cert)
	if err != nil {
		return nil, fmt.Errorf("kms: encode certificate: %w", err)
	}
	return &wire.SignedCert{Cert: b, Sig: ed25519.Sign(k.signKey, wire.CertMessage(b))}, nil
}

// recordHolder notes that the runtime of sc holds keys of namespace ns. A
// failure is logged, not returned: the release itself succeeded.
func (k *KMS) recordHolder(ctx context.Context, ns string, runtimeID []byte, sc *wire.SignedCert) {
	key := keyHolder(ns, runtimeID)
	var h wire.Holder
	if _, err := k.st.get(ctx, key, &h); err != nil && !errors.Is(err, errNotFound) {
		k.log.Warn("read key holder", "namespace", ns, "err", err)
	}
	h.Cert = *sc
	h.LastRelease = k.cfg.Now().UnixMilli()
	h.Releases++
	if err := k.st.put(ctx, key, &h); err != nil {
		k.log.Warn("record key holder", "namespace", ns, "err", err)
	}
}

// holders lists the runtimes that received keys of a namespace within
// holderTTL, most recent first; older entries are deleted on the way.
func (k *KMS) holders(ctx context.Context, req *wire.HoldersRequest) (*wire.HolderList, error) {
	if err := validNamespace(req.Namespace); err != nil {
		return nil, err
	}
	lister, err := k.st.kv.ListKeysFiltered(ctx, prefixHolders(req.Namespace))
	if err != nil {
		return nil, fmt.Errorf("kms: list key holders: %w", err)
	}
	defer lister.Stop()
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cutoff := k.cfg.Now().Add(-holderTTL).UnixMilli()
	out := &wire.HolderList{Holders: []wire.Holder{}}
	for _, key := range keys {
		var h wire.Holder
		if _, err := k.st.get(ctx, key, &h); err != nil {
			if errors.Is(err, errNotFound) {
				continue
			}
			return nil, err
		}
		if h.LastRelease < cutoff {
			_ = k.st.kv.Delete(ctx, key)
			continue
		}
		out.Holders = append(out.Holders, h)
	}
	slices.SortFunc(out.Holders, func(a, b wire.Holder) int { return cmp.Compare(b.LastRelease, a.LastRelease) })
	if len(out.Holders) > maxHolders {
		out.Holders = out.Holders[:maxHolders]
	}
	return out, nil
}
