package controller

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Packages group actions: the action "pkg/name" of a namespace belongs to
// its package "pkg", which must exist when the action is stored and must
// not be a binding. A binding refers to another package (whether the
// caller may see it is the gateway's business) and holds no actions.

const (
	msgNoPackage          = "package does not exist"
	msgActionInBinding    = "cannot create an action in a package binding"
	msgPackageNotEmpty    = "package is not empty"
	msgPackageFromBinding = "a package cannot become a package binding"
)

// handlePackagePut stores a package (wire.PackagePut → wire.Package).
// Like an action, an existing package is a conflict unless Overwrite, and
// an update without a version bumps the patch number.
func (c *Controller) handlePackagePut(ctx context.Context, data []byte) (any, error) {
	put, err := bus.Decode[wire.PackagePut](data)
	if err != nil {
		return nil, err
	}
	p := put.Package
	if err := checkEntityRef(p.Namespace, p.Name); err != nil {
		return nil, err
	}
	if err := checkMeta(p.Version, p.Annotations, p.Parameters); err != nil {
		return nil, err
	}
	if b := p.Binding; b != nil {
		if checkEntityRef(b.Namespace, b.Name) != nil {
			return nil, badRequest("invalid binding")
		}
		if b.Namespace == p.Namespace && b.Name == p.Name {
			return nil, badRequest("a package cannot be bound to itself")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(p.Namespace, p.Name)
	prev, rev, err := getEntity[wire.Package](ctx, c.packages, "package", key)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	if prev != nil && !put.Overwrite {
		return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	// A package may hold actions, a binding may not (OpenWhisk refuses the
	// change whether or not the package is empty).
	if prev != nil && prev.Binding == nil && p.Binding != nil {
		return nil, badRequest(msgPackageFromBinding)
	}
	if p.Version == "" {
		p.Version = firstVersion
		if prev != nil {
			p.Version = nextVersion(prev.Version)
		}
	}
	p.Updated = c.now().UnixMilli()
	if err := saveEntity(ctx, c.packages, "package", key, &p, prev != nil, rev); err != nil {
		return nil, createConflict(err, prev == nil && !put.Overwrite)
	}
	c.log.Info("package stored", "namespace", p.Namespace, "package", p.Name, "version", p.Version,
		"binding", p.Binding != nil, "overwrite", prev != nil)
	return &p, nil
}

// createConflict reports a lost race to create an entity (without
// Overwrite) as an existing entity, like a create that found it.
func createConflict(err error, create bool) error {
	if we, ok := errors.AsType[*wire.Error](err); ok && create && we.Code == wire.CodeConflict {
		return wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	return err
}

// handlePackageGet returns a package (wire.EntityRef → wire.Package).
func (c *Controller) handlePackageGet(ctx context.Context, data []byte) (any, error) {
	return getHandler[wire.Package](ctx, data, c.packages, "package")
}

// handlePackageDelete deletes a package (wire.EntityRef → wire.Package, the
// deleted package). A package that holds actions is a conflict unless
// Force, which deletes the actions (and their code) first.
func (c *Controller) handlePackageDelete(ctx context.Context, data []byte) (any, error) {
	ref, err := decodeEntityRef(data)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(ref.Namespace, ref.Name)
	p, rev, err := findEntity[wire.Package](ctx, c.packages, "package", key)
	if err != nil {
		return nil, err
	}
	inPackage := func(name string) bool { return strings.HasPrefix(name, ref.Name+"/") }
	keys, err := c.actionKeys(ctx, ref.Namespace, inPackage)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 && !ref.Force {
		return nil, wire.Errorf(wire.CodeConflict, msgPackageNotEmpty)
	}
	// The actions go first: if anything fails, the package is still there
	// and the delete can be retried.
	deleted := 0
	for _, k := range keys {
		ok, err := c.removeAction(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			deleted++
		}
	}
	if err := deleteEntity(ctx, c.packages, "package", key, rev); err != nil {
		return nil, err
	}
	if ref.Force {
		// An action put that checked the package before it was deleted
		// may have landed meanwhile.
		if keys, err := c.actionKeys(ctx, ref.Namespace, inPackage); err == nil {
			for _, k := range keys {
				if ok, err := c.removeAction(ctx, k); err != nil {
					c.log.Warn("delete action of deleted package", "namespace", ref.Namespace, "package", ref.Name, "err", err)
				} else if ok {
					deleted++
				}
			}
		}
	}
	c.log.Info("package deleted", "namespace", p.Namespace, "package", p.Name, "actions", deleted)
	return p, nil
}

// removeAction deletes the action at key and its code; it reports false if
// the action was gone already.
func (c *Controller) removeAction(ctx context.Context, key string) (bool, error) {
	a, rev, err := c.getAction(ctx, key)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := c.actions.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		return false, storeError(err, "action", "delete")
	}
	c.revs.ObserveDeleted(key, rev)
	if obj := codeObject(a); obj != "" {
		c.deleteCode(ctx, obj)
	}
	return true, nil
}

// handlePackageList lists a namespace's packages, most recently updated
// first (wire.ListRequest → wire.PackageList); Name filters by exact name.
// Listed packages carry no parameters (OpenWhisk lists none; a page of
// sealed parameters would not fit in one message): get returns them.
func (c *Controller) handlePackageList(ctx context.Context, data []byte) (any, error) {
	out, n, err := listHandler(ctx, data, c.packages, "package", checkListFilter,
		func(req *wire.ListRequest, p *wire.Package) bool {
			p.Parameters = nil
			return req.Name == "" || p.Name == req.Name
		},
		func(p *wire.Package) (int64, string) { return p.Updated, p.Name })
	if err != nil {
		return nil, err
	}
	return &wire.PackageList{Packages: out, Count: n}, nil
}

// checkActionPackage checks that the package of a packaged action
// ("pkg/name") exists in namespace ns and is not a binding.
func (c *Controller) checkActionPackage(ctx context.Context, ns, name string) error {
	pkg, _, ok := strings.Cut(name, "/")
	if !ok {
		return nil
	}
	p, _, err := getEntity[wire.Package](ctx, c.packages, "package", store.Key(ns, pkg))
	if errors.Is(err, errNotFound) {
		return badRequest(msgNoPackage)
	}
	if err != nil {
		return err
	}
	if p.Binding != nil {
		return badRequest(msgActionInBinding)
	}
	return nil
}
