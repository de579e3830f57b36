package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// The version registry. The untrusted store can serve an older version of
// an action (an older entity still carrying a function record the KMS
// signed) or one that was deleted. Gateways refuse what is older than the
// newest version they know of; to make that knowledge outlive a gateway
// process and be shared by every gateway replica, the KMS keeps, per
// action, the creation time of the newest version that was stored (a
// gateway commits a version once the controller stored it, not when the
// KMS creates it: a version that lost a race to be stored must not make
// the winner look outdated) and the creation time up to which versions
// were deleted. Entries only move forward (a compare-and-set on the sealed
// KV value), so replicas and concurrent gateways agree.
//
// What this does not stop: the registry lives in the KMS's sealed state,
// which the operator can roll back to an older snapshot while every KMS
// replica restarts (values cannot be forged or moved between keys, but
// they can be rolled back); a TEE monotonic counter bound into the state
// would close that. And a gateway uses an entry for a bounded time
// (gateway.latestTTL) before asking again.
//
// The same registry keeps the generations of rules, packages and action
// entities (sequence definitions, annotations), which carry no function
// record: the gateway MACs a generation into each entity it stores and
// commits it here (commit_entity); retire_action and latest_version serve
// them under their entity key wire.EntityKey(kind, name) ("rule:r"), where
// Created is the newest generation stored and Deleted the generation up to
// which the entity was deleted. A ':' is not allowed in action names, so
// these entries never mix with an action's function versions.
//
// Key: latest.<ns>.<action> or latest.<ns>.<kind>:<name> → latestState.

type latestState struct {
	Created int64 `cbor:"1,keyasint,omitempty"`
	Deleted int64 `cbor:"2,keyasint,omitempty"`
}

func keyLatest(ns, action string) string { return store.Key("latest", ns, action) }

// versionOp serves the registry's gateway calls.
func (k *KMS) versionOp(ctx context.Context, op string, body []byte) (*wire.LatestVersion, error) {
	switch op {
	case wire.OpCommitVersion:
		req, err := bus.Decode[wire.CommitVersion](body)
		if err != nil {
			return nil, err
		}
		if len(req.FunctionID) != 16 {
			return nil, wire.Errorf(wire.CodeBadRequest, "function id must be 16 bytes")
		}
		var fs functionState
		if _, err := k.st.get(ctx, keyFunction(req.FunctionID), &fs); err != nil {
			if errors.Is(err, errNotFound) {
				return nil, wire.Errorf(wire.CodeNotFound, "unknown function version")
			}
			return nil, err
		}
		defer clearFunction(&fs)
		rec := fs.Record
		return k.advance(ctx, rec.Namespace, rec.Action, func(l *latestState) { l.Created = max(l.Created, rec.Created) })
	case wire.OpRetireAction:
		req, err := bus.Decode[wire.RetireAction](body)
		if err != nil {
			return nil, err
		}
		if err := validRef(req.Namespace, req.Action); err != nil {
			return nil, err
		}
		if req.Created < 0 {
			return nil, wire.Errorf(wire.CodeBadRequest, "creation time out of range")
		}
		return k.advance(ctx, req.Namespace, req.Action, func(l *latestState) {
			l.Deleted = max(l.Deleted, l.Created, req.Created)
		})
	case wire.OpCommitEntity:
		req, err := bus.Decode[wire.CommitEntity](body)
		if err != nil {
			return nil, err
		}
		if err := validRef(req.Namespace, req.Entity); err != nil {
			return nil, err
		}
		if !isEntityKey(req.Entity) {
			return nil, wire.Errorf(wire.CodeBadRequest, "entity must be kind:name with kind rule, package or action")
		}
		if req.Generation <= 0 {
			return nil, wire.Errorf(wire.CodeBadRequest, "generation out of range")
		}
		return k.advance(ctx, req.Namespace, req.Entity, func(l *latestState) { l.Created = max(l.Created, req.Generation) })
	default: // wire.OpLatestVersion
		req, err := bus.Decode[wire.LatestRequest](body)
		if err != nil {
			return nil, err
		}
		if err := validRef(req.Namespace, req.Action); err != nil {
			return nil, err
		}
		var l latestState
		if _, err := k.st.get(ctx, keyLatest(req.Namespace, req.Action), &l); err != nil && !errors.Is(err, errNotFound) {
			return nil, err
		}
		return &wire.LatestVersion{Created: l.Created, Deleted: l.Deleted}, nil
	}
}

// advance applies f to the action's entry, retrying on concurrent updates.
func (k *KMS) advance(ctx context.Context, ns, action string, f func(*latestState)) (*wire.LatestVersion, error) {
	key := keyLatest(ns, action)
	for range 16 {
		var l latestState
		rev, err := k.st.get(ctx, key, &l)
		if err != nil && !errors.Is(err, errNotFound) {
			return nil, err
		}
		f(&l)
		if errors.Is(err, errNotFound) {
			err = k.st.create(ctx, key, &l)
		} else {
			err = k.st.update(ctx, key, &l, rev)
		}
		if err == nil {
			return &wire.LatestVersion{Created: l.Created, Deleted: l.Deleted}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("kms: version registry of %s/%s: too many concurrent updates", ns, action)
}

// validRef checks a namespace and an action name from a gateway call.
func validRef(ns, action string) error {
	if err := validNamespace(ns); err != nil {
		return err
	}
	if action == "" || len(action) > MaxActionSize {
		return wire.Errorf(wire.CodeBadRequest, "action name must be 1..%d bytes", MaxActionSize)
	}
	return nil
}

// isEntityKey reports whether a registry name is an entity's
// (wire.EntityKey), not an action's.
func isEntityKey(name string) bool {
	kind, rest, ok := strings.Cut(name, ":")
	if !ok || rest == "" {
		return false
	}
	switch kind {
	case wire.EntityRule, wire.EntityPackage, wire.EntityAction:
		return true
	}
	return false
}
