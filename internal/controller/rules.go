package controller

import (
	"context"
	"errors"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Rules connect a trigger of their own namespace ("/ns/trigger") to an
// action of any namespace ("/ns/action" or "/ns/pkg/action"; whether the
// rule's owner may run it is the gateway's business). Both must exist when
// the rule is stored or activated; either may be deleted later, and the
// gateway then skips the rule when the trigger fires.

// handleRulePut stores a rule (wire.RulePut → wire.Rule). An existing rule
// is a conflict unless Overwrite; an update without a version bumps the
// patch number, and one without a status keeps the rule's status (a new
// rule is active).
func (c *Controller) handleRulePut(ctx context.Context, data []byte) (any, error) {
	put, err := bus.Decode[wire.RulePut](data)
	if err != nil {
		return nil, err
	}
	r := put.Rule
	if err := checkEntityRef(r.Namespace, r.Name); err != nil {
		return nil, err
	}
	if err := checkMeta(r.Version, r.Annotations, nil); err != nil {
		return nil, err
	}
	switch r.Status {
	case "", wire.RuleActive, wire.RuleInactive:
	default:
		return nil, badRequest("invalid rule status")
	}
	tns, _, ok := splitTrigger(r.Trigger)
	if !ok {
		return nil, badRequest("invalid trigger")
	}
	if tns != r.Namespace {
		return nil, badRequest("the trigger must be in the rule's namespace")
	}
	if _, _, ok := splitComponent(r.Action); !ok {
		return nil, badRequest("invalid action")
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := c.checkRuleTargets(ctx, &r); err != nil {
		return nil, err
	}
	key := store.Key(r.Namespace, r.Name)
	prev, rev, err := getEntity[wire.Rule](ctx, c.rules, "rule", key)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	if prev != nil && !put.Overwrite {
		return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	if r.Status == "" {
		r.Status = wire.RuleActive
		if prev != nil {
			r.Status = prev.Status
		}
	}
	if r.Version == "" {
		r.Version = firstVersion
		if prev != nil {
			r.Version = nextVersion(prev.Version)
		}
	}
	r.Updated = c.now().UnixMilli()
	if err := saveEntity(ctx, c.rules, "rule", key, &r, prev != nil, rev); err != nil {
		return nil, createConflict(err, prev == nil && !put.Overwrite)
	}
	c.log.Info("rule stored", "namespace", r.Namespace, "rule", r.Name, "trigger", r.Trigger, "action", r.Action,
		"status", r.Status, "version", r.Version, "overwrite", prev != nil)
	return &r, nil
}

// handleRuleGet returns a rule (wire.EntityRef → wire.Rule).
func (c *Controller) handleRuleGet(ctx context.Context, data []byte) (any, error) {
	return getHandler[wire.Rule](ctx, data, c.rules, "rule")
}

// handleRuleDelete deletes a rule (wire.EntityRef → wire.Rule, the deleted
// rule), active or not.
func (c *Controller) handleRuleDelete(ctx context.Context, data []byte) (any, error) {
	return deleteHandler[wire.Rule](ctx, c, data, c.rules, "rule")
}

// handleRuleStatus activates or deactivates a rule (wire.RuleStatus →
// wire.Rule). Activating checks that its trigger and action still exist;
// setting the status a rule has changes nothing.
func (c *Controller) handleRuleStatus(ctx context.Context, data []byte) (any, error) {
	st, err := bus.Decode[wire.RuleStatus](data)
	if err != nil {
		return nil, err
	}
	if err := checkEntityRef(st.Namespace, st.Name); err != nil {
		return nil, err
	}
	if st.Status != wire.RuleActive && st.Status != wire.RuleInactive {
		return nil, badRequest("invalid rule status")
	}
	if len(st.Tag) > maxDefinitionTagLen {
		return nil, badRequest("rule tag too long")
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key := store.Key(st.Namespace, st.Name)
	r, rev, err := findEntity[wire.Rule](ctx, c.rules, "rule", key)
	if err != nil {
		return nil, err
	}
	if st.Generation != 0 && r.Generation != st.Prev {
		return nil, wire.Errorf(wire.CodeConflict, conflictMessage)
	}
	if r.Status == st.Status && st.Generation == 0 {
		return r, nil
	}
	if st.Status == wire.RuleActive {
		if err := c.checkRuleTargets(ctx, r); err != nil {
			return nil, err
		}
	}
	r.Status = st.Status
	if st.Generation != 0 {
		r.Tag, r.Generation = st.Tag, st.Generation
	}
	r.Updated = c.now().UnixMilli()
	if err := saveEntity(ctx, c.rules, "rule", key, r, true, rev); err != nil {
		return nil, err
	}
	c.log.Info("rule status", "namespace", r.Namespace, "rule", r.Name, "status", r.Status)
	return r, nil
}

// handleRuleList lists a namespace's rules, most recently updated first
// (wire.ListRequest → wire.RuleList). Name "/ns/trigger" lists only the
// rules of that trigger, active or not: a trigger fires its active ones.
func (c *Controller) handleRuleList(ctx context.Context, data []byte) (any, error) {
	checkTrigger := func(name string) error {
		if name == "" {
			return nil
		}
		if _, _, ok := splitTrigger(name); !ok {
			return badRequest("invalid trigger")
		}
		return nil
	}
	out, n, err := listHandler(ctx, data, c.rules, "rule", checkTrigger,
		func(req *wire.ListRequest, r *wire.Rule) bool { return req.Name == "" || r.Trigger == req.Name },
		func(r *wire.Rule) (int64, string) { return r.Updated, r.Name })
	if err != nil {
		return nil, err
	}
	return &wire.RuleList{Rules: out, Count: n}, nil
}

// checkRuleTargets checks that the trigger and the action of rule r exist.
// The action may be named through a package binding ("/ns/binding/name"):
// it then exists in the bound package.
func (c *Controller) checkRuleTargets(ctx context.Context, r *wire.Rule) error {
	tns, tname, ok := splitTrigger(r.Trigger)
	if !ok {
		return badRequest("invalid trigger")
	}
	_, _, err := getEntity[wire.Trigger](ctx, c.triggers, "trigger", store.Key(tns, tname))
	if errors.Is(err, errNotFound) {
		return wire.Errorf(wire.CodeNotFound, "trigger does not exist")
	}
	if err != nil {
		return err
	}
	ans, aname, ok := splitComponent(r.Action)
	if !ok {
		return badRequest("invalid action")
	}
	_, _, err = c.getAction(ctx, store.Key(ans, aname))
	if errors.Is(err, errNotFound) {
		if pkg, name, packaged := strings.Cut(aname, "/"); packaged {
			var p *wire.Package
			p, _, err = getEntity[wire.Package](ctx, c.packages, "package", store.Key(ans, pkg))
			if err == nil && p.Binding != nil {
				_, _, err = c.getAction(ctx, store.Key(p.Binding.Namespace, p.Binding.Name+"/"+name))
			} else if err == nil {
				err = errNotFound
			}
		}
	}
	if errors.Is(err, errNotFound) {
		return wire.Errorf(wire.CodeNotFound, "action does not exist")
	}
	return err
}

// splitTrigger splits a fully qualified trigger name "/ns/name".
func splitTrigger(p string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(p, "/")
	if !found {
		return "", "", false
	}
	ns, name, found = strings.Cut(rest, "/")
	if !found || checkEntityRef(ns, name) != nil {
		return "", "", false
	}
	return ns, name, true
}
