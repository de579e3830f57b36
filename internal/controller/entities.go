package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Buckets of the entities other than actions (packages, triggers, rules),
// keyed like actions by store.Key(namespace, name).
const (
	bucketPackages = store.BucketPackages
	bucketTriggers = store.BucketTriggers
	bucketRules    = store.BucketRules
)

// maxSealedParamsLen bounds an entity's sealed default parameters: the
// gateway seals at most 1 MiB of JSON (nonce and tag add 28 bytes).
const maxSealedParamsLen = 1<<20 + 1<<10

// maxDefinitionTagLen bounds a sequence's definition tag (the gateway's
// MAC, 32 bytes).
const maxDefinitionTagLen = 1024

// validName reports whether s is a single entity name (no '/').
func validName(s string) bool { return len(s) <= maxNameLen && entityName.MatchString(s) }

// checkEntityRef checks the namespace and name of a package, trigger or
// rule: both are single names (packages do not nest, and triggers and rules
// live in no package).
func checkEntityRef(ns, name string) error {
	if err := checkEntityNamespace(ns); err != nil {
		return err
	}
	if name == "" {
		return badRequest("name is required")
	}
	if !validName(name) {
		return badRequest("invalid name")
	}
	return nil
}

func checkEntityNamespace(ns string) error {
	if ns == "" {
		return badRequest("namespace is required")
	}
	if !validName(ns) {
		return badRequest("invalid namespace")
	}
	return nil
}

// checkMeta checks the metadata every entity has: an optional version and
// bounded annotations.
func checkMeta(version string, anns []wire.KeyValue, params wire.SealedParams) error {
	if version != "" && (len(version) > maxVersionLen || !versionRE.MatchString(version)) {
		return badRequest("invalid version")
	}
	if err := checkAnnotations(anns); err != nil {
		return err
	}
	if len(params) > maxSealedParamsLen {
		return badRequest("parameters too large")
	}
	return nil
}

// checkAnnotations bounds the number, keys and encoded size of annotations.
func checkAnnotations(anns []wire.KeyValue) error {
	if len(anns) > maxAnnotations {
		return badRequest("too many annotations")
	}
	for _, kv := range anns {
		if kv.Key == "" || len(kv.Key) > maxAnnotationKey {
			return badRequest("invalid annotation key")
		}
	}
	if len(anns) > 0 {
		b, err := bus.Marshal(anns)
		if err != nil {
			return badRequest("the annotations cannot be encoded")
		}
		if len(b) > maxAnnotationsBytes {
			return badRequest("annotations too large")
		}
	}
	return nil
}

// getEntity loads the entity at key of kv and its revision; a missing one
// is errNotFound.
func getEntity[T any](ctx context.Context, kv jetstream.KeyValue, what, key string) (*T, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("controller: load %s: %w", what, err)
	}
	v := new(T)
	if err := bus.Unmarshal(e.Value(), v); err != nil {
		return nil, 0, fmt.Errorf("controller: decode stored %s: %w", what, err)
	}
	return v, e.Revision(), nil
}

// findEntity is getEntity for a handler: a missing entity is the user-safe
// not-found error.
func findEntity[T any](ctx context.Context, kv jetstream.KeyValue, what, key string) (*T, uint64, error) {
	v, rev, err := getEntity[T](ctx, kv, what, key)
	if errors.Is(err, errNotFound) {
		return nil, 0, notFound()
	}
	return v, rev, err
}

// saveEntity stores v at key: created when exists is false (a concurrent
// create is a conflict), else updated at revision rev (a concurrent change
// is a conflict).
func saveEntity(ctx context.Context, kv jetstream.KeyValue, what, key string, v any, exists bool, rev uint64) error {
	value, err := bus.Marshal(v)
	if err != nil {
		return badRequest("the %s cannot be encoded", what)
	}
	if exists {
		_, err = kv.Update(ctx, key, value, rev)
	} else {
		_, err = kv.Create(ctx, key, value)
	}
	return storeError(err, what, "store")
}

// deleteEntity deletes key of kv if it is still at revision rev.
func deleteEntity(ctx context.Context, kv jetstream.KeyValue, what, key string, rev uint64) error {
	return storeError(kv.Delete(ctx, key, jetstream.LastRevision(rev)), what, "delete")
}

// storeError maps a failed revision check to a conflict.
func storeError(err error, what, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return wire.Errorf(wire.CodeConflict, concurrentMessage)
	}
	return fmt.Errorf("controller: %s %s: %w", op, what, err)
}

// listEntities loads every entity of namespace ns in kv.
func listEntities[T any](ctx context.Context, kv jetstream.KeyValue, what, ns string) ([]T, error) {
	keys, err := listKeys(ctx, kv, ns)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		v, _, err := getEntity[T](ctx, kv, what, k)
		if errors.Is(err, errNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, nil
}

// listPage orders entities most recently updated first (ties by name) and
// returns the page of req: skip and limit, or with req.Count no entities
// and the number of matches after skip (OpenWhisk's count ignores the
// limit but not the skip).
func listPage[T any](items []T, key func(*T) (updated int64, name string), req *wire.ListRequest) ([]T, int, error) {
	skip, limit, err := page(req.Skip, req.Limit)
	if err != nil {
		return nil, 0, err
	}
	if req.Count {
		return []T{}, max(len(items)-skip, 0), nil
	}
	slices.SortFunc(items, func(x, y T) int {
		xu, xn := key(&x)
		yu, yn := key(&y)
		if c := cmp.Compare(yu, xu); c != 0 {
			return c
		}
		return strings.Compare(xn, yn)
	})
	items = items[min(skip, len(items)):]
	return items[:min(limit, len(items))], 0, nil
}

// checkListFilter checks ListRequest.Name of a package or trigger list: an
// exact entity name or nothing.
func checkListFilter(name string) error {
	if name != "" && !validName(name) {
		return badRequest("invalid name")
	}
	return nil
}

// actionKeys returns the store keys of namespace ns's actions whose names
// satisfy match.
func (c *Controller) actionKeys(ctx context.Context, ns string, match func(name string) bool) ([]string, error) {
	keys, err := listKeys(ctx, c.actions, ns)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		parts, err := store.SplitKey(k)
		if err != nil || len(parts) != 2 || parts[0] != ns {
			continue
		}
		if match(parts[1]) {
			out = append(out, k)
		}
	}
	return out, nil
}

// listHandler is the body of the package, trigger and rule list handlers
// (wire.ListRequest → a page): it checks the request (checkName checks its
// Name filter), loads the namespace's entities of kv, keeps those keep
// accepts (keep may also clear fields a list does not carry) and pages them
// most recently updated first.
func listHandler[T any](ctx context.Context, data []byte, kv jetstream.KeyValue, what string,
	checkName func(string) error, keep func(req *wire.ListRequest, v *T) bool,
	key func(*T) (updated int64, name string)) ([]T, int, error) {
	req, err := bus.Decode[wire.ListRequest](data)
	if err != nil {
		return nil, 0, err
	}
	if err := checkEntityNamespace(req.Namespace); err != nil {
		return nil, 0, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, 0, err
	}
	if _, _, err := page(req.Skip, req.Limit); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	all, err := listEntities[T](ctx, kv, what, req.Namespace)
	if err != nil {
		return nil, 0, err
	}
	kept := all[:0]
	for i := range all {
		if keep(req, &all[i]) {
			kept = append(kept, all[i])
		}
	}
	return listPage(kept, key, req)
}

// getHandler serves the get of one entity of kv (wire.EntityRef → *T):
// packages, triggers and rules.
func getHandler[T any](ctx context.Context, data []byte, kv jetstream.KeyValue, what string) (*T, error) {
	ref, err := decodeEntityRef(data)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	v, _, err := findEntity[T](ctx, kv, what, store.Key(ref.Namespace, ref.Name))
	return v, err
}

// deleteHandler serves the delete of one entity of kv that nothing else
// refers to in the store (wire.EntityRef → *T, the deleted entity):
// triggers and rules.
func deleteHandler[T any](ctx context.Context, c *Controller, data []byte, kv jetstream.KeyValue, what string) (*T, error) {
	ref, err := decodeEntityRef(data)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(ref.Namespace, ref.Name)
	v, rev, err := findEntity[T](ctx, kv, what, key)
	if err != nil {
		return nil, err
	}
	if err := deleteEntity(ctx, kv, what, key, rev); err != nil {
		return nil, err
	}
	c.log.Info(what+" deleted", "namespace", ref.Namespace, what, ref.Name)
	return v, nil
}

// decodeEntityRef decodes and checks the wire.EntityRef of a get or delete.
func decodeEntityRef(data []byte) (*wire.EntityRef, error) {
	ref, err := bus.Decode[wire.EntityRef](data)
	if err != nil {
		return nil, err
	}
	if err := checkEntityRef(ref.Namespace, ref.Name); err != nil {
		return nil, err
	}
	return ref, nil
}
