package kms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Policy limits.
const (
	MinMeasurementSize = 32 // SHA-256 (sim)
	MaxMeasurementSize = 64 // SEV-SNP and TDX use 48
	MaxMeasurements    = 64
	MaxNamespaceSize   = 256
	MaxActionSize      = 1024
)

// validatePolicy checks p and returns a wire error (CodeBadRequest) that
// tells the owner what is wrong.
func validatePolicy(p *wire.Policy) error {
	if policyEmpty(p) {
		return wire.Errorf(wire.CodeBadRequest, "a policy needs at least one runtime measurement (sim), sev-snp launch measurement, tdx MRTD or release signer")
	}
	if err := validateTyped(p); err != nil {
		return err
	}
	if len(p.Measurements) > MaxMeasurements {
		return wire.Errorf(wire.CodeBadRequest, "a policy holds at most %d measurements", MaxMeasurements)
	}
	for i, m := range p.Measurements {
		if len(m) < MinMeasurementSize || len(m) > MaxMeasurementSize {
			return wire.Errorf(wire.CodeBadRequest, "measurement %d is %d bytes; measurements are %d..%d bytes", i, len(m), MinMeasurementSize, MaxMeasurementSize)
		}
	}
	return nil
}

func validNamespace(ns string) error {
	if ns == "" || len(ns) > MaxNamespaceSize {
		return wire.Errorf(wire.CodeBadRequest, "namespace must be 1..%d bytes", MaxNamespaceSize)
	}
	return nil
}

func clonePolicy(p wire.Policy) wire.Policy {
	out := p
	out.Measurements = make([][]byte, len(p.Measurements))
	for i, m := range p.Measurements {
		out.Measurements[i] = bytes.Clone(m)
	}
	cloneTyped(&out, &p)
	return out
}

// policyEqual compares two policies by their deterministic encodings.
func policyEqual(a, b *wire.Policy) bool {
	if a.AllowDebug != b.AllowDebug || a.MinSecurityVersion != b.MinSecurityVersion ||
		!slices.EqualFunc(a.Measurements, b.Measurements, bytes.Equal) {
		return false
	}
	ea, erra := bus.Marshal(&wire.Policy{SNP: a.SNP, TDX: a.TDX, Signers: a.Signers})
	eb, errb := bus.Marshal(&wire.Policy{SNP: b.SNP, TDX: b.TDX, Signers: b.Signers})
	return erra == nil && errb == nil && bytes.Equal(ea, eb)
}

// namespacePolicy returns the namespace's policy, or the default policy if
// it has none.
func (k *KMS) namespacePolicy(ctx context.Context, namespace string) (*wire.Policy, error) {
	var p wire.Policy
	_, err := k.st.get(ctx, keyPolicy(namespace), &p)
	if errors.Is(err, errNotFound) {
		d := clonePolicy(k.cfg.DefaultPolicy)
		return &d, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// setPolicy stores p as the namespace's policy, then brings every function
// version of the namespace to it. This is how a runtime upgrade works: the
// owner adds the new runtime's measurement.
func (k *KMS) setPolicy(ctx context.Context, namespace string, p wire.Policy) error {
	if err := k.st.put(ctx, keyPolicy(namespace), &p); err != nil {
		return err
	}
	lister, err := k.st.kv.ListKeysFiltered(ctx, prefixIndex(namespace))
	if err != nil {
		return fmt.Errorf("kms: list functions of a namespace: %w", err)
	}
	defer lister.Stop()
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	updated := 0
	for _, key := range keys {
		var idx indexState
		if _, err := k.st.get(ctx, key, &idx); err != nil {
			if errors.Is(err, errNotFound) {
				continue
			}
			return err
		}
		changed, err := k.syncFunctionPolicy(ctx, namespace, idx.FunctionID)
		if err != nil {
			return err
		}
		if changed {
			updated++
		}
	}
	k.log.Info("namespace policy set", "namespace", namespace, "measurements", hexList(p.Measurements),
		"allow_debug", p.AllowDebug, "min_security_version", p.MinSecurityVersion, "functions_updated", updated)
	return nil
}

// syncFunctionPolicy sets the policy of a function version to its
// namespace's current policy. It re-reads both under compare-and-set, so
// that a SetPolicy racing with a CreateFunction (possibly on another
// replica) cannot leave a function on a stale policy: whichever writes last
// sees the other's write.
func (k *KMS) syncFunctionPolicy(ctx context.Context, namespace string, id []byte) (bool, error) {
	key := keyFunction(id)
	for range 16 {
		var fs functionState
		rev, err := k.st.get(ctx, key, &fs)
		if errors.Is(err, errNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if fs.Record.Namespace != namespace {
			// Cannot happen without the storage key (index values are
			// sealed to their key); never let it move a policy across
			// namespaces anyway.
			clearFunction(&fs)
			k.log.Error("namespace index names a function of another namespace: skipped", "namespace", namespace)
			return false, nil
		}
		p, err := k.namespacePolicy(ctx, namespace)
		if err != nil {
			return false, err
		}
		if policyEqual(&fs.Policy, p) {
			return false, nil
		}
		fs.Policy = *p
		err = k.st.update(ctx, key, &fs, rev)
		clearFunction(&fs)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, err
		}
	}
	return false, errors.New("kms: function policy update did not settle")
}

func clearFunction(fs *functionState) {
	clear(fs.PrivateKey)
	clear(fs.CodeKey)
}
