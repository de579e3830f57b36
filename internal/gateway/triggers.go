package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Triggers (OpenWhisk REST API v1), in the caller's namespace only:
//
//	GET    /namespaces/{ns}/triggers[?skip&limit&count]  → [summary] or {"triggers": N}
//	PUT    /namespaces/{ns}/triggers/{name}[?overwrite]  {publish, parameters, annotations} → trigger
//	GET    /namespaces/{ns}/triggers/{name}               → trigger with its rules
//	DELETE /namespaces/{ns}/triggers/{name}               → trigger
//	POST   /namespaces/{ns}/triggers/{name}               fire (fireTrigger, fire.go)
//
// Default parameters are sealed like packages' (paramsTrigger) and shown
// only to the owner. Deleting a trigger leaves its rules (OpenWhisk).

// triggerBody is the JSON body of PUT .../triggers/{name}; omitted fields
// keep their value on update. OpenWhisk's "limits" of a trigger are empty;
// they are accepted and ignored.
type triggerBody struct {
	Publish     *bool            `json:"publish"`
	Parameters  *[]wire.KeyValue `json:"parameters"`
	Annotations *[]wire.KeyValue `json:"annotations"`
}

func renderTrigger(t *wire.Trigger, params []wire.KeyValue) map[string]any {
	return map[string]any{
		"namespace":   t.Namespace,
		"name":        t.Name,
		"version":     t.Version,
		"publish":     t.Publish,
		"annotations": renderKVs(t.Annotations),
		"parameters":  renderKVs(params),
		"limits":      map[string]any{},
		"updated":     t.Updated,
	}
}

func triggerSummary(t *wire.Trigger) map[string]any {
	return map[string]any{
		"namespace":   t.Namespace,
		"name":        t.Name,
		"version":     t.Version,
		"publish":     t.Publish,
		"annotations": renderKVs(t.Annotations),
		"updated":     t.Updated,
	}
}

// fetchTrigger fetches trigger ns/name; nil when it does not exist.
func (g *Gateway) fetchTrigger(ctx context.Context, ns, name string) (*wire.Trigger, *chainError) {
	var t wire.Trigger
	found, err := g.lookup(ctx, wire.SubjectTriggerGet, &wire.EntityRef{Namespace: ns, Name: name}, &t)
	if err != nil {
		return nil, busFailure(err)
	}
	if !found {
		return nil, nil
	}
	if t.Namespace != ns || t.Name != name {
		return nil, &chainError{http.StatusBadGateway, "The controller answered with another trigger.", nil}
	}
	return &t, nil
}

func (g *Gateway) putTrigger(w http.ResponseWriter, r *http.Request) {
	var body triggerBody
	p, cancel, ok := startPut(g, w, r, "trigger", &body, g.fetchTrigger)
	defer cancel()
	if !ok {
		return
	}
	ns, name := p.ns, p.name
	t := wire.Trigger{Namespace: ns, Name: name}
	if existing := p.existing; existing != nil {
		t.Publish, t.Annotations, t.Parameters = existing.Publish, existing.Annotations, existing.Parameters
	}
	if body.Publish != nil {
		t.Publish = *body.Publish
	}
	if body.Annotations != nil {
		t.Annotations = *body.Annotations
	}
	if body.Parameters != nil {
		sealed, ok := g.sealEntityParams(w, r, paramsTrigger, ns, name, *body.Parameters)
		if !ok {
			return
		}
		t.Parameters = sealed
	}
	stored, ok := p.store(g, w, r, "trigger", wire.SubjectTriggerPut, &wire.TriggerPut{Trigger: t, Overwrite: p.overwrite},
		func(t *wire.Trigger) (string, string) { return t.Namespace, t.Name })
	if !ok {
		return
	}
	params, err := g.openParams(paramsTrigger, ns, name, stored.Parameters)
	if err != nil {
		g.answer(w, r, "store trigger", &chainError{http.StatusBadGateway, msgBadParams, err})
		return
	}
	g.log.Info("trigger stored", "namespace", ns, "trigger", name, "version", stored.Version)
	writeJSON(w, http.StatusOK, renderTrigger(stored, params))
}

// getTrigger answers a trigger with its rules:
// {"ns/rule": {"action": {"name", "path"}, "status"}}.
func (g *Gateway) getTrigger(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	t, cerr := g.fetchTrigger(ctx, ns, name)
	if cerr == nil && t == nil {
		cerr = &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	if cerr != nil {
		g.answer(w, r, "get trigger", cerr)
		return
	}
	params, err := g.openParams(paramsTrigger, ns, name, t.Parameters)
	if err != nil {
		g.answer(w, r, "get trigger", &chainError{http.StatusBadGateway, msgBadParams, err})
		return
	}
	fq := "/" + ns + "/" + name
	var list wire.RuleList
	req := wire.ListRequest{Namespace: ns, Name: fq, Limit: maxListLimit}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectRuleList, &req, &list); err != nil {
		g.busError(w, r, "list trigger rules", err)
		return
	}
	rules := map[string]any{}
	for _, rl := range list.Rules {
		if rl.Namespace != ns || rl.Trigger != fq {
			continue
		}
		path, action := splitQualified(rl.Action)
		rules[ns+"/"+rl.Name] = map[string]any{
			"action": map[string]any{"name": action, "path": path},
			"status": rl.Status,
		}
	}
	view := renderTrigger(t, params)
	view["rules"] = rules
	writeJSON(w, http.StatusOK, view)
}

func (g *Gateway) deleteTrigger(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var t wire.Trigger
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectTriggerDelete, &wire.EntityRef{Namespace: ns, Name: name}, &t); err != nil {
		g.busError(w, r, "delete trigger", err)
		return
	}
	if t.Namespace != ns || t.Name != name {
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another trigger.")
		return
	}
	g.log.Info("trigger deleted", "namespace", ns, "trigger", name)
	params, _ := g.openParams(paramsTrigger, ns, name, t.Parameters)
	writeJSON(w, http.StatusOK, renderTrigger(&t, params))
}

func (g *Gateway) listTriggers(w http.ResponseWriter, r *http.Request) {
	listEntities(g, w, r, wire.SubjectTriggerList, "triggers",
		func(l *wire.TriggerList) ([]wire.Trigger, int) { return l.Triggers, l.Count },
		func(t *wire.Trigger) string { return t.Namespace }, triggerSummary)
}

// splitQualified splits a fully qualified name "/ns/name" or
// "/ns/pkg/name" into OpenWhisk's path ("ns" or "ns/pkg") and name.
func splitQualified(fq string) (path, name string) {
	s := strings.TrimPrefix(fq, "/")
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

// fireTrigger (POST .../triggers/{name}) is in fire.go.
