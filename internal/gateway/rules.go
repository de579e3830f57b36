package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Rules (OpenWhisk REST API v1), in the caller's namespace only:
//
//	GET    /namespaces/{ns}/rules[?skip&limit&count]  → [rule] or {"rules": N}
//	PUT    /namespaces/{ns}/rules/{name}[?overwrite]  {"trigger": T, "action": A, annotations, publish} → rule
//	GET    /namespaces/{ns}/rules/{name}               → rule
//	DELETE /namespaces/{ns}/rules/{name}               → rule
//	POST   /namespaces/{ns}/rules/{name}               {"status": "active"|"inactive"} → rule
//
// T is "t" or "/ns/t" (the caller's namespace; "_" stands for it). A is
// "a", "pkg/a", "/ns/a" or "/ns/pkg/a": the caller's action, or an action in
// a public package of another namespace (or reached through a binding).
// Both must exist when the rule is stored; they are stored fully
// qualified. A new rule is active; an updated one keeps its status.

// Rule messages.
const (
	msgRuleTrigger   = "The rule's trigger must be a trigger name: \"t\" or \"/namespace/t\"."
	msgRuleAction    = "The rule's action must be an action name: \"a\", \"pkg/a\", \"/namespace/a\" or \"/namespace/pkg/a\"."
	msgRuleNoTrigger = "The rule's trigger %s does not exist."
	msgRuleNoAction  = "The rule's action %s does not exist."
	msgRuleStatus    = "The rule status must be \"active\" or \"inactive\"."
)

// ruleBody is the JSON body of PUT .../rules/{name}; omitted fields keep
// their value on update.
type ruleBody struct {
	Trigger     *string          `json:"trigger"`
	Action      *string          `json:"action"`
	Publish     *bool            `json:"publish"`
	Annotations *[]wire.KeyValue `json:"annotations"`
}

// ruleTriggerRef parses a rule's trigger into namespace and name.
func ruleTriggerRef(s, caller string) (ns, name string, ok bool) {
	if rest, abs := strings.CutPrefix(s, "/"); abs {
		ns, name, ok = strings.Cut(rest, "/")
		if !ok {
			return "", "", false
		}
	} else {
		ns, name = caller, s
	}
	if ns == "_" {
		ns = caller
	}
	return ns, name, validNamespace(ns) && validName(name)
}

// ruleActionRef parses a rule's action into namespace and action name
// ("a" or "pkg/a").
func ruleActionRef(s, caller string) (ns, name string, ok bool) {
	rest, abs := strings.CutPrefix(s, "/")
	if abs {
		ns, rest, ok = strings.Cut(rest, "/")
		if !ok {
			return "", "", false
		}
		if ns == "_" {
			ns = caller
		}
	} else {
		ns = caller
	}
	if _, _, ok := splitAction(rest); !ok || !validNamespace(ns) {
		return "", "", false
	}
	return ns, rest, true
}

func renderRule(rl *wire.Rule) map[string]any {
	tpath, tname := splitQualified(rl.Trigger)
	apath, aname := splitQualified(rl.Action)
	return map[string]any{
		"namespace":   rl.Namespace,
		"name":        rl.Name,
		"version":     rl.Version,
		"publish":     rl.Publish,
		"annotations": renderKVs(rl.Annotations),
		"status":      rl.Status,
		"trigger":     map[string]any{"path": tpath, "name": tname},
		"action":      map[string]any{"path": apath, "name": aname},
		"updated":     rl.Updated,
	}
}

// fetchRule fetches rule ns/name; nil when it does not exist.
func (g *Gateway) fetchRule(ctx context.Context, ns, name string) (*wire.Rule, *chainError) {
	var rl wire.Rule
	found, err := g.lookup(ctx, wire.SubjectRuleGet, &wire.EntityRef{Namespace: ns, Name: name}, &rl)
	if err != nil {
		return nil, busFailure(err)
	}
	if !found {
		return nil, nil
	}
	if rl.Namespace != ns || rl.Name != name {
		return nil, &chainError{http.StatusBadGateway, "The controller answered with another rule.", nil}
	}
	return &rl, nil
}

// checkRuleTrigger resolves and checks a rule's trigger: the caller's, existing.
// It returns it fully qualified.
func (g *Gateway) checkRuleTrigger(ctx context.Context, caller, s string) (string, *chainError) {
	ns, name, ok := ruleTriggerRef(s, caller)
	if !ok {
		return "", &chainError{http.StatusBadRequest, msgRuleTrigger, nil}
	}
	fq := "/" + ns + "/" + name
	if ns != caller {
		return "", notAuthorized(fq)
	}
	t, cerr := g.fetchTrigger(ctx, ns, name)
	if cerr != nil {
		return "", cerr
	}
	if t == nil {
		return "", &chainError{http.StatusNotFound, strings.Replace(msgRuleNoTrigger, "%s", fq, 1), nil}
	}
	return fq, nil
}

// checkRuleAction resolves and checks a rule's action: the caller's, or in a
// package readable by the caller, existing. It returns it fully qualified
// as named (through a binding, the binding's name).
func (g *Gateway) checkRuleAction(ctx context.Context, caller, s string) (string, *chainError) {
	ns, name, ok := ruleActionRef(s, caller)
	if !ok {
		return "", &chainError{http.StatusBadRequest, msgRuleAction, nil}
	}
	fq := "/" + ns + "/" + name
	pkg, _, _ := splitAction(name)
	if ns != caller {
		if pkg == "" {
			return "", notAuthorized(fq)
		}
		// A missing package of another namespace is 403, like a
		// private one.
		if _, cerr := g.readablePackage(ctx, caller, ns, pkg); cerr != nil {
			return "", cerr
		}
	}
	if _, cerr := g.loadTarget(ctx, caller, ns, name, nil); cerr != nil {
		if cerr.status == 0 && isNotFound(cerr.err) {
			return "", &chainError{http.StatusNotFound, strings.Replace(msgRuleNoAction, "%s", fq, 1), nil}
		}
		return "", cerr
	}
	return fq, nil
}

func (g *Gateway) putRule(w http.ResponseWriter, r *http.Request) {
	var body ruleBody
	p, cancel, ok := startPut(g, w, r, "rule", &body, g.fetchRule)
	defer cancel()
	if !ok {
		return
	}
	ctx, ns, name := p.ctx, p.ns, p.name
	rl := wire.Rule{Namespace: ns, Name: name, Status: wire.RuleActive}
	var prevGen int64
	if existing := p.existing; existing != nil && g.ruleAuthentic(ctx, existing) != nil {
		// An update never takes fields from a rule the controller
		// changed: the body must name the trigger and the action again.
		g.log.Warn("rule update: the stored rule could not be authenticated; its fields are not kept", "tx", txID(r), "namespace", ns, "rule", name)
	} else if existing != nil {
		prevGen = existing.Generation
		rl.Publish, rl.Annotations, rl.Trigger, rl.Action, rl.Status = existing.Publish, existing.Annotations, existing.Trigger, existing.Action, existing.Status
		if rl.Status != wire.RuleInactive {
			rl.Status = wire.RuleActive
		}
	}
	if body.Publish != nil {
		rl.Publish = *body.Publish
	}
	if body.Annotations != nil {
		rl.Annotations = *body.Annotations
	}
	if body.Trigger != nil {
		rl.Trigger = *body.Trigger
	}
	if body.Action != nil {
		rl.Action = *body.Action
	}
	if rl.Trigger == "" {
		g.fail(w, r, http.StatusBadRequest, msgRuleTrigger)
		return
	}
	if rl.Action == "" {
		g.fail(w, r, http.StatusBadRequest, msgRuleAction)
		return
	}
	var cerr *chainError
	if rl.Trigger, cerr = g.checkRuleTrigger(ctx, ns, rl.Trigger); cerr != nil {
		g.answer(w, r, "check rule trigger", cerr)
		return
	}
	if rl.Action, cerr = g.checkRuleAction(ctx, ns, rl.Action); cerr != nil {
		g.answer(w, r, "check rule action", cerr)
		return
	}
	gen, cerr := g.nextGeneration(ctx, wire.EntityRule, ns, name, prevGen)
	if cerr != nil {
		g.answer(w, r, "rule generation", cerr)
		return
	}
	rl.Generation = gen
	rl.Tag = g.ruleTag(&rl)
	stored, ok := p.store(g, w, r, "rule", wire.SubjectRulePut, &wire.RulePut{Rule: rl, Overwrite: p.overwrite},
		func(rl *wire.Rule) (string, string) { return rl.Namespace, rl.Name })
	if !ok {
		return
	}
	if stored.Generation == gen {
		g.commitEntity(ctx, wire.EntityRule, ns, name, gen)
	}
	g.log.Info("rule stored", "namespace", ns, "rule", name, "trigger", stored.Trigger, "action", stored.Action, "status", stored.Status)
	writeJSON(w, http.StatusOK, renderRule(stored))
}

// ruleRef sends the request's rule reference to a controller subject and
// answers the rule, or the error.
func (g *Gateway) ruleRef(w http.ResponseWriter, r *http.Request, subject, what string) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var rl wire.Rule
	if err := bus.Call(ctx, g.cfg.Conn, subject, &wire.EntityRef{Namespace: ns, Name: name}, &rl); err != nil {
		g.busError(w, r, what, err)
		return
	}
	if rl.Namespace != ns || rl.Name != name {
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another rule.")
		return
	}
	if subject == wire.SubjectRuleDelete {
		g.retireEntity(ctx, wire.EntityRule, ns, name, rl.Generation)
		g.log.Info("rule deleted", "namespace", ns, "rule", name)
	}
	writeJSON(w, http.StatusOK, renderRule(&rl))
}

func (g *Gateway) getRule(w http.ResponseWriter, r *http.Request) {
	g.ruleRef(w, r, wire.SubjectRuleGet, "get rule")
}

func (g *Gateway) deleteRule(w http.ResponseWriter, r *http.Request) {
	g.ruleRef(w, r, wire.SubjectRuleDelete, "delete rule")
}

// setRuleStatus enables or disables a rule.
func (g *Gateway) setRuleStatus(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	var body struct {
		Status string `json:"status"`
	}
	if !g.decodeEntity(w, r, &body, "object {\"status\": \"active\" or \"inactive\"}") {
		return
	}
	if body.Status != wire.RuleActive && body.Status != wire.RuleInactive {
		g.fail(w, r, http.StatusBadRequest, msgRuleStatus)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	// The status is covered by the rule's MAC: the gateway re-tags the
	// rule it read (which must be authentic and current) with the new
	// status and a new generation.
	cur, cerr := g.fetchRule(ctx, ns, name)
	if cerr == nil && cur == nil {
		cerr = &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	if cerr == nil {
		cerr = g.ruleAuthentic(ctx, cur)
	}
	var gen int64
	if cerr == nil {
		gen, cerr = g.nextGeneration(ctx, wire.EntityRule, ns, name, cur.Generation)
	}
	if cerr != nil {
		g.answer(w, r, "set rule status", cerr)
		return
	}
	next := *cur
	next.Status, next.Generation = body.Status, gen
	var rl wire.Rule
	req := wire.RuleStatus{Namespace: ns, Name: name, Status: body.Status, Tag: g.ruleTag(&next), Generation: gen, Prev: cur.Generation}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectRuleStatus, &req, &rl); err != nil {
		g.busError(w, r, "set rule status", err)
		return
	}
	if rl.Namespace != ns || rl.Name != name {
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another rule.")
		return
	}
	if rl.Generation == gen {
		g.commitEntity(ctx, wire.EntityRule, ns, name, gen)
	}
	g.log.Info("rule status", "namespace", ns, "rule", name, "status", rl.Status)
	writeJSON(w, http.StatusOK, renderRule(&rl))
}

func (g *Gateway) listRules(w http.ResponseWriter, r *http.Request) {
	listEntities(g, w, r, wire.SubjectRuleList, "rules",
		func(l *wire.RuleList) ([]wire.Rule, int) { return l.Rules, l.Count },
		func(rl *wire.Rule) string { return rl.Namespace }, renderRule)
}
