package controller

import (
	"context"
	"errors"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Triggers are named event channels; the gateway fires them (it finds
// their active rules with a rule list filtered by trigger, runs the rules'
// actions and stores the trigger's activation record with
// wire.SubjectActivationPut). The controller only stores them.

// handleTriggerPut stores a trigger (wire.TriggerPut → wire.Trigger): an
// existing trigger is a conflict unless Overwrite; an update without a
// version bumps the patch number.
func (c *Controller) handleTriggerPut(ctx context.Context, data []byte) (any, error) {
	put, err := bus.Decode[wire.TriggerPut](data)
	if err != nil {
		return nil, err
	}
	t := put.Trigger
	if err := checkEntityRef(t.Namespace, t.Name); err != nil {
		return nil, err
	}
	if err := checkMeta(t.Version, t.Annotations, t.Parameters); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(t.Namespace, t.Name)
	prev, rev, err := getEntity[wire.Trigger](ctx, c.triggers, "trigger", key)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	if prev != nil && !put.Overwrite {
		return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	if t.Version == "" {
		t.Version = firstVersion
		if prev != nil {
			t.Version = nextVersion(prev.Version)
		}
	}
	t.Updated = c.now().UnixMilli()
	if err := saveEntity(ctx, c.triggers, "trigger", key, &t, prev != nil, rev); err != nil {
		return nil, createConflict(err, prev == nil && !put.Overwrite)
	}
	c.log.Info("trigger stored", "namespace", t.Namespace, "trigger", t.Name, "version", t.Version, "overwrite", prev != nil)
	return &t, nil
}

// handleTriggerGet returns a trigger (wire.EntityRef → wire.Trigger).
func (c *Controller) handleTriggerGet(ctx context.Context, data []byte) (any, error) {
	return getHandler[wire.Trigger](ctx, data, c.triggers, "trigger")
}

// handleTriggerDelete deletes a trigger (wire.EntityRef → wire.Trigger, the
// deleted trigger). Its rules stay, as in OpenWhisk; they fire nothing.
func (c *Controller) handleTriggerDelete(ctx context.Context, data []byte) (any, error) {
	return deleteHandler[wire.Trigger](ctx, c, data, c.triggers, "trigger")
}

// handleTriggerList lists a namespace's triggers, most recently updated
// first (wire.ListRequest → wire.TriggerList); Name filters by exact name.
// Listed triggers carry no parameters (see handlePackageList).
func (c *Controller) handleTriggerList(ctx context.Context, data []byte) (any, error) {
	out, n, err := listHandler(ctx, data, c.triggers, "trigger", checkListFilter,
		func(req *wire.ListRequest, t *wire.Trigger) bool {
			t.Parameters = nil
			return req.Name == "" || t.Name == req.Name
		},
		func(t *wire.Trigger) (int64, string) { return t.Updated, t.Name })
	if err != nil {
		return nil, err
	}
	return &wire.TriggerList{Triggers: out, Count: n}, nil
}
