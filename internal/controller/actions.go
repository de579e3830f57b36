package controller

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// handleActionPut stores an action and its sealed code (wire.ActionPut →
// wire.Action).
func (c *Controller) handleActionPut(ctx context.Context, data []byte) (any, error) {
	put, err := bus.Decode[wire.ActionPut](data)
	if err != nil {
		return nil, err
	}
	a := put.Action
	if err := checkRef(a.Namespace, a.Name); err != nil {
		return nil, err
	}
	if err := normalizeAction(&a); err != nil {
		return nil, err
	}
	// obj is the code object of a wasm action; a sequence has none.
	obj := ""
	switch a.Kind {
	case wire.KindSequence:
		if len(put.SealedCode) != 0 || a.CodeSize != 0 {
			return nil, badRequest("a sequence has no code")
		}
		if len(a.Function.Record) != 0 || len(a.Function.Sig) != 0 {
			return nil, badRequest("a sequence has no function record")
		}
	default:
		if put.KeepCode != (len(put.SealedCode) == 0) {
			return nil, badRequest("code is required (and only without KeepCode)")
		}
		fid, err := functionID(a.Function)
		if err != nil {
			return nil, err
		}
		obj = hex.EncodeToString(fid)
	}

	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := c.checkActionPackage(ctx, a.Namespace, a.Name); err != nil {
		return nil, err
	}
	key := store.Key(a.Namespace, a.Name)
	prev, rev, err := c.getAction(ctx, key)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	if prev != nil && !put.Overwrite {
		return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	if put.KeepCode && (prev == nil || obj == "" || codeObject(prev) != obj) {
		return nil, wire.Errorf(wire.CodeConflict, concurrentMessage) // the code to keep is gone
	}
	if a.Version == "" {
		a.Version = firstVersion
		if prev != nil {
			a.Version = nextVersion(prev.Version)
		}
	}
	a.Updated = c.now().UnixMilli()
	a.Revision = 0 // a read's, not stored
	value, err := bus.Marshal(&a)
	if err != nil {
		return nil, badRequest("the action cannot be encoded")
	}

	prevObj := ""
	if prev != nil {
		prevObj = codeObject(prev)
	}
	if obj != "" && !put.KeepCode {
		if _, err := c.code.PutBytes(ctx, obj, put.SealedCode); err != nil {
			return nil, fmt.Errorf("controller: store code: %w", err)
		}
	}
	var newRev uint64
	if prev == nil {
		newRev, err = c.actions.Create(ctx, key, value)
	} else {
		newRev, err = c.actions.Update(ctx, key, value, rev)
	}
	if err != nil {
		// Remove the code just stored, unless the action that won the race
		// uses it too (a retried put of the same function version).
		if obj != "" && obj != prevObj && !c.codeInUse(ctx, key, obj) {
			c.deleteCode(ctx, obj)
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyExists) && prev == nil && !put.Overwrite:
			return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
			return nil, wire.Errorf(wire.CodeConflict, concurrentMessage)
		}
		return nil, fmt.Errorf("controller: store action: %w", err)
	}
	c.revs.Observe(key, newRev, false) // before the watch brings it
	if prevObj != "" && prevObj != obj {
		c.deleteCode(ctx, prevObj)
	}
	c.log.Info("action stored", "namespace", a.Namespace, "action", a.Name, "kind", a.Kind, "version", a.Version,
		"function", obj, "code_bytes", len(put.SealedCode), "components", len(a.Components), "overwrite", prev != nil)
	return &a, nil
}

// handleActionGet returns an action (wire.ActionRef → wire.Action).
func (c *Controller) handleActionGet(ctx context.Context, data []byte) (any, error) {
	ref, err := bus.Decode[wire.ActionRef](data)
	if err != nil {
		return nil, err
	}
	if err := checkRef(ref.Namespace, ref.Name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	a, _, err := c.getAction(ctx, store.Key(ref.Namespace, ref.Name))
	if errors.Is(err, errNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// handleActionDelete deletes an action and its code (wire.ActionRef →
// wire.Action, the deleted action).
func (c *Controller) handleActionDelete(ctx context.Context, data []byte) (any, error) {
	ref, err := bus.Decode[wire.ActionRef](data)
	if err != nil {
		return nil, err
	}
	if err := checkRef(ref.Namespace, ref.Name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(ref.Namespace, ref.Name)
	a, rev, err := c.getAction(ctx, key)
	if errors.Is(err, errNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	if err := c.actions.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return nil, wire.Errorf(wire.CodeConflict, concurrentMessage)
		}
		return nil, fmt.Errorf("controller: delete action: %w", err)
	}
	c.revs.ObserveDeleted(key, rev)
	if obj := codeObject(a); obj != "" {
		c.deleteCode(ctx, obj)
	}
	c.log.Info("action deleted", "namespace", a.Namespace, "action", a.Name)
	return a, nil
}

// handleActionList lists a namespace's actions, most recently updated first
// (wire.ListRequest → wire.ActionList). Name "pkg/" lists the actions of
// package pkg, any other Name the action of that name; Count counts them
// instead. Listed actions carry no parameters (see handlePackageList).
func (c *Controller) handleActionList(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.ListRequest](data)
	if err != nil {
		return nil, err
	}
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	pkg, inPackage := strings.CutSuffix(req.Name, "/")
	switch {
	case inPackage && !validName(pkg):
		return nil, badRequest("invalid package")
	case !inPackage && req.Name != "" && !validPath(req.Name):
		return nil, badRequest("invalid name")
	}
	skip, limit, err := page(req.Skip, req.Limit)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	keys, err := listKeys(ctx, c.actions, req.Namespace)
	if err != nil {
		return nil, err
	}
	actions := make([]wire.Action, 0, len(keys))
	for _, k := range keys {
		a, _, err := c.getAction(ctx, k)
		if errors.Is(err, errNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, err
		}
		switch {
		case inPackage && !strings.HasPrefix(a.Name, req.Name):
			continue
		case !inPackage && req.Name != "" && a.Name != req.Name:
			continue
		}
		actions = append(actions, *a)
	}
	if req.Count {
		return &wire.ActionList{Actions: []wire.Action{}, Count: max(len(actions)-skip, 0)}, nil
	}
	slices.SortFunc(actions, func(x, y wire.Action) int {
		if c := cmp.Compare(y.Updated, x.Updated); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	skip = min(skip, len(actions))
	actions = actions[skip:]
	actions = actions[:min(limit, len(actions))]
	// The sealed default parameters go with the page (the gateway shows
	// them to the owner) up to a budget that keeps the answer small.
	out := &wire.ActionList{Actions: actions}
	budget := maxListParamsBytes
	for i := range actions {
		if n := len(actions[i].Parameters); n > budget {
			actions[i].Parameters, out.ParamsOmitted = nil, out.ParamsOmitted || n > 0
		} else {
			budget -= n
		}
	}
	return out, nil
}

// maxListParamsBytes bounds the sealed parameters an action list carries.
const maxListParamsBytes = 256 << 10

// errNotFound is returned by the store helpers for a missing entity.
var errNotFound = errors.New("controller: not found")

// getAction loads the action at key and its revision.
func (c *Controller) getAction(ctx context.Context, key string) (*wire.Action, uint64, error) {
	e, err := c.actions.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("controller: load action: %w", err)
	}
	var a wire.Action
	if err := bus.Unmarshal(e.Value(), &a); err != nil {
		return nil, 0, fmt.Errorf("controller: decode stored action: %w", err)
	}
	a.Revision = e.Revision()
	return &a, e.Revision(), nil
}

// loadAction loads the action ns/name for an invocation. With rev non-zero
// the stored entity must have that revision: the gateway sealed the
// invocation for it (CodeStale otherwise).
//
// An entity known to be at rev (revisions) is not read again: the result
// may be shared and must not be modified.
func (c *Controller) loadAction(ctx context.Context, ns, name string, rev uint64) (*wire.Action, error) {
	key := store.Key(ns, name)
	if rev != 0 {
		if a, ok := c.revs.action(key, rev); ok {
			return a, nil
		}
	}
	a, got, err := c.getAction(ctx, key)
	if errors.Is(err, errNotFound) {
		return nil, notFound()
	}
	if err == nil && rev != 0 && got != rev {
		return nil, wire.Errorf(wire.CodeStale, "the action changed since the invocation was sealed")
	}
	if err == nil {
		c.revs.remember(key, got, a)
	}
	return a, err
}

// codeInUse reports whether the action stored at key uses code object obj
// (or cannot be read, in which case the object is kept).
func (c *Controller) codeInUse(ctx context.Context, key, obj string) bool {
	a, _, err := c.getAction(ctx, key)
	if errors.Is(err, errNotFound) {
		return false
	}
	if err != nil {
		return true
	}
	return codeObject(a) == obj
}

// codeObject returns the name of the code object of a stored action, or ""
// if it has none (a sequence).
func codeObject(a *wire.Action) string {
	if a.Kind == wire.KindSequence {
		return ""
	}
	fid, err := functionID(a.Function)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(fid)
}

// deleteCode removes a code object; failures are logged (an orphaned sealed
// object is garbage, not a leak).
func (c *Controller) deleteCode(ctx context.Context, obj string) {
	if err := c.code.Delete(ctx, obj); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		c.log.Warn("delete code object", "function", obj, "err", err)
	}
}

// listKeys returns the keys of namespace ns in kv, without duplicates.
func listKeys(ctx context.Context, kv jetstream.KeyValue, ns string) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lister, err := kv.ListKeysFiltered(ctx, store.Prefix(ns))
	if err != nil {
		return nil, fmt.Errorf("controller: list keys: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// The lister closes its channel early, without an error, when ctx ends.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("controller: list keys: %w", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// functionID extracts the function id from a signed function record. The
// controller does not verify the KMS signature: it is untrusted, and the
// gateway and the enclave runtime do.
func functionID(rec wire.SignedRecord) ([]byte, error) {
	if len(rec.Record) == 0 {
		return nil, badRequest("function record is required")
	}
	if len(rec.Record) > maxRecordLen || len(rec.Sig) > maxSigLen {
		return nil, badRequest("function record too large")
	}
	var fr wire.FunctionRecord
	if err := bus.Unmarshal(rec.Record, &fr); err != nil {
		return nil, badRequest("malformed function record")
	}
	if len(fr.FunctionID) == 0 || len(fr.FunctionID) > maxFunctionIDLen {
		return nil, badRequest("invalid function id")
	}
	return fr.FunctionID, nil
}

// normalizeAction checks the plaintext metadata of an action and fills in
// defaults.
func normalizeAction(a *wire.Action) error {
	switch a.Kind {
	case "":
		a.Kind = kindWasm
	case kindWasm, wire.KindSequence, wire.KindNodeJS20, wire.KindNodeJS22:
	default:
		return badRequest("unsupported kind")
	}
	if a.Kind == wire.KindSequence {
		if err := checkComponents(a); err != nil {
			return err
		}
	} else if len(a.Components) != 0 {
		return badRequest("only a sequence has components")
	}
	l, err := normalizeLimits(a.Limits)
	if err != nil {
		return err
	}
	a.Limits = l
	if a.Version != "" && (len(a.Version) > maxVersionLen || !versionRE.MatchString(a.Version)) {
		return badRequest("invalid version")
	}
	if a.CodeSize < 0 {
		return badRequest("invalid code size")
	}
	if len(a.Parameters) > maxSealedParamsLen {
		return badRequest("parameters too large")
	}
	if len(a.DefinitionTag) > maxDefinitionTagLen {
		return badRequest("definition tag too large")
	}
	if len(a.WebTag) > maxDefinitionTagLen {
		return badRequest("web tag too large")
	}
	return checkAnnotations(a.Annotations)
}

// checkComponents checks the components of sequence a: 1 to
// wire.MaxSequenceComponents fully qualified action paths, not a itself.
// Whether they exist (and do not form a cycle) is the gateway's business:
// it resolves them when the sequence is stored and again when it runs.
func checkComponents(a *wire.Action) error {
	if len(a.Components) == 0 {
		return badRequest("a sequence needs at least one component")
	}
	if len(a.Components) > wire.MaxSequenceComponents {
		return badRequest("a sequence has at most %d components", wire.MaxSequenceComponents)
	}
	self := "/" + a.Namespace + "/" + a.Name
	for i, p := range a.Components {
		if _, _, ok := splitComponent(p); !ok {
			return badRequest("invalid sequence component %d", i)
		}
		if p == self {
			return badRequest("a sequence may not refer to itself")
		}
	}
	return nil
}

// splitComponent splits a fully qualified action path, "/namespace/name" or
// "/namespace/package/name", into its namespace and (package-qualified)
// name.
func splitComponent(p string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(p, "/")
	if !found {
		return "", "", false
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 || len(segs) > 3 {
		return "", "", false
	}
	ns, name = segs[0], strings.Join(segs[1:], "/")
	if checkRef(ns, name) != nil {
		return "", "", false
	}
	return ns, name, true
}

// nextVersion bumps the patch number of a semantic version (OpenWhisk
// increments it on every update); anything unparsable restarts at 0.0.1.
func nextVersion(v string) string {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return firstVersion
	}
	var n [3]uint64
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return firstVersion
		}
		n[i] = x
	}
	return fmt.Sprintf("%d.%d.%d", n[0], n[1], n[2]+1)
}
