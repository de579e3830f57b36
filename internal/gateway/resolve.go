package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Resolving what an invocation runs, and with which parameters.
//
// Actions live at "/ns/name" or, in a package, "/ns/pkg/name"; on the wire
// the name is "pkg/name". An action in another namespace is reachable only
// through a public package (OpenWhisk's shared packages), possibly through a
// package binding in the caller's namespace.
//
// Default parameters are merged here, in the gateway, before the envelope
// is sealed (see params.go): package (the bound package's, then the
// binding's), then the action's, then the request's, later ones winning —
// except that a request may not redefine a parameter the action declares
// final. For a sequence, the defaults of the sequence (and its package) go
// into the input of its first step. The components' own defaults are not
// applied: the gateway seals only step 0's input, and the output of step j
// goes to step j+1 inside the enclaves, where nothing merges (a deviation
// from OpenWhisk, which merges each component's defaults when it runs).
//
// A package's Publish flag and binding carry the gateway's MAC
// (integrity.go packageTag); an action's "final" annotation is covered by
// its web tag (webtag.go), checked before parameters are merged.

// Messages (OpenWhisk's wording where it has one).
const (
	msgFinalParams = "Request defines parameters that are not allowed (e.g., reserved properties or already defined by the action)."
	msgBadParams   = "The entity's default parameters could not be authenticated."
	// msgAnnotationsTampered: also an action stored before annotations
	// were tagged; an update that sends its annotations tags them.
	msgAnnotationsTampered = "The action's annotations could not be authenticated; update the action with its annotations to store them again."
)

// target is a resolved action and the defaults it inherits from its
// package (and binding).
type target struct {
	action    *wire.Action
	inherited []wire.KeyValue
	// trigger: action is a trigger's stand-in (fire.go), which has no
	// annotations to authenticate.
	trigger bool
}

// splitAction splits an action name "name" or "pkg/name" into its package
// (empty if none) and simple name.
func splitAction(name string) (pkg, simple string, ok bool) {
	pkg, simple, found := strings.Cut(name, "/")
	if !found {
		return "", name, validName(name)
	}
	return pkg, simple, validName(pkg) && validName(simple)
}

// actionPath returns the namespace and the action name ("name" or
// "pkg/name") a request's path names: routes /actions/{name} and
// /actions/{pkg}/{name} (also {name} = "pkg%2Fname"). The namespace "_" is
// the caller's.
func actionPath(r *http.Request) (ns, name string, ok bool) {
	ns = targetNamespace(r)
	name = r.PathValue("name")
	if pkg := r.PathValue("pkg"); pkg != "" {
		name = pkg + "/" + name
	}
	if _, _, ok := splitAction(name); !ok || !validNamespace(ns) {
		return "", "", false
	}
	return ns, name, true
}

// busFailure wraps a failed bus call: the HTTP layer answers it with
// busError.
func busFailure(err error) *chainError { return &chainError{err: err} }

// answer writes the response for a failure of the invocation path.
func (g *Gateway) answer(w http.ResponseWriter, r *http.Request, what string, cerr *chainError) {
	if cerr.status == 0 {
		g.busError(w, r, what, cerr.err)
		return
	}
	if cerr.err != nil || cerr.status >= 500 {
		g.log.Error(what, "tx", txID(r), "status", cerr.status, "msg", cerr.msg, "err", cerr.err)
	}
	g.fail(w, r, cerr.status, "%s", cerr.msg)
}

func notAuthorized(what string) *chainError {
	return &chainError{status: http.StatusForbidden, msg: strings.Replace(msgNotAuthorized, "%s", what, 1)}
}

// loadPackage fetches package ns/name and opens its default parameters.
func (g *Gateway) loadPackage(ctx context.Context, ns, name string) (*wire.Package, []wire.KeyValue, *chainError) {
	var p wire.Package
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectPackageGet, &wire.EntityRef{Namespace: ns, Name: name}, &p); err != nil {
		return nil, nil, busFailure(err)
	}
	if p.Namespace != ns || p.Name != name {
		return nil, nil, &chainError{http.StatusBadGateway, "The controller answered with another package.", nil}
	}
	params, err := g.openParams(paramsPackage, ns, name, p.Parameters)
	if err != nil {
		return nil, nil, &chainError{http.StatusBadGateway, msgBadParams, err}
	}
	return &p, params, nil
}

// loadTarget loads action name ("name" or "pkg/name") of namespace ns for
// caller. Another namespace's action is reachable only in a public
// package; a package binding leads to the bound package, whose defaults
// the binding's override.
func (g *Gateway) loadTarget(ctx context.Context, caller, ns, name string, lk *lookup) (*target, *chainError) {
	pkg, simple, ok := splitAction(name)
	if !ok {
		return nil, &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	t := &target{}
	actionNS, actionName := ns, name
	if pkg != "" {
		p, params, cerr := g.loadPackage(ctx, ns, pkg)
		if cerr != nil {
			if ns != caller && cerr.status == http.StatusNotFound {
				// A missing package of another namespace answers like a
				// private one: its names cannot be probed.
				return nil, notAuthorized("/" + ns + "/" + pkg)
			}
			return nil, cerr
		}
		if cerr := g.packageAuthentic(ctx, p); cerr != nil {
			return nil, cerr
		}
		if ns != caller && !p.Publish {
			return nil, notAuthorized("/" + ns + "/" + pkg)
		}
		t.inherited = params
		if b := p.Binding; b != nil {
			if !validNamespace(b.Namespace) || !validName(b.Name) {
				return nil, &chainError{http.StatusBadGateway, "The package binding is invalid.", nil}
			}
			bp, bparams, cerr := g.loadPackage(ctx, b.Namespace, b.Name)
			if cerr != nil {
				return nil, cerr
			}
			if cerr := g.packageAuthentic(ctx, bp); cerr != nil {
				return nil, cerr
			}
			if b.Namespace != ns && !bp.Publish {
				return nil, notAuthorized("/" + b.Namespace + "/" + b.Name)
			}
			if bp.Binding != nil {
				return nil, &chainError{http.StatusBadRequest, "A package binding may not refer to another binding.", nil}
			}
			t.inherited = mergeKV(bparams, params)
			actionNS, actionName = b.Namespace, b.Name+"/"+simple
		}
	} else if ns != caller {
		return nil, notAuthorized(ns)
	}
	a, cerr := g.readAction(ctx, actionNS, actionName, lk)
	if cerr != nil {
		return nil, cerr
	}
	// Its annotations and components are of its newest generation.
	if cerr := g.admitEntity(ctx, wire.EntityAction, actionNS, actionName, a.Generation); cerr != nil {
		return nil, cerr
	}
	t.action = a
	return t, nil
}

// readAction reads action entity ns/name, from the cache if lk allows
// (targets.go); a read from the store refreshes the cache.
func (g *Gateway) readAction(ctx context.Context, ns, name string, lk *lookup) (*wire.Action, *chainError) {
	if lk != nil && lk.cached {
		if a := g.targets.get(ns, name); a != nil {
			lk.hit = true
			return a, nil
		}
	}
	var a wire.Action
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionGet, &wire.ActionRef{Namespace: ns, Name: name}, &a); err != nil {
		if isNotFound(err) {
			g.targets.forget(ns, name)
		}
		return nil, busFailure(err)
	}
	if a.Namespace != ns || a.Name != name {
		return nil, &chainError{http.StatusBadGateway, "The controller answered with another action.", nil}
	}
	g.targets.put(&a)
	return &a, nil
}

// mergeKV returns base with over's entries replacing or added (by key).
func mergeKV(base, over []wire.KeyValue) []wire.KeyValue {
	out := append([]wire.KeyValue(nil), base...)
	for _, kv := range over {
		replaced := false
		for i := range out {
			if out[i].Key == kv.Key {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// finalParams returns the parameters of an action a request may not
// redefine: all its defaults (inherited ones included) with the annotation
// {"key": "final", "value": true}, or the names listed by {"key": "final",
// "value": ["p1", …]}.
func finalParams(anns []wire.KeyValue, defaults []wire.KeyValue) map[string]bool {
	out := map[string]bool{}
	for _, kv := range anns {
		if kv.Key != "final" {
			continue
		}
		switch v := kv.Value.(type) {
		case bool:
			if v {
				for _, d := range defaults {
					out[d.Key] = true
				}
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out[s] = true
				}
			}
		}
	}
	return out
}

// mergeParams returns the input of an invocation of t: the JSON object of
// the inherited defaults, the action's own (sealed in the entity) and the
// request's payload (a JSON object), later ones winning. A payload that
// redefines a final parameter is refused.
func (g *Gateway) mergeParams(t *target, payload []byte) ([]byte, *chainError) {
	a := t.action
	// "final" decides which defaults a request may override: honour the
	// annotations only if their MAC (webtag.go) verifies, so the
	// controller can neither drop nor add it.
	if !t.trigger && !g.webIntact(a) {
		return nil, &chainError{http.StatusBadGateway, msgAnnotationsTampered, nil}
	}
	own, err := g.openParams(paramsAction, a.Namespace, a.Name, a.Parameters)
	if err != nil {
		return nil, &chainError{http.StatusBadGateway, msgBadParams, err}
	}
	defaults := mergeKV(t.inherited, own)
	var req map[string]json.RawMessage
	if err := json.Unmarshal(payload, &req); err != nil || req == nil {
		return nil, &chainError{http.StatusBadRequest, "The request content was malformed: the parameters must be a JSON object.", nil}
	}
	if final := finalParams(a.Annotations, defaults); len(final) > 0 {
		for k := range req {
			if final[k] {
				return nil, &chainError{http.StatusBadRequest, msgFinalParams, nil}
			}
		}
	}
	if len(defaults) == 0 {
		return payload, nil
	}
	merged := make(map[string]json.RawMessage, len(defaults)+len(req))
	for _, kv := range defaults {
		b, err := json.Marshal(jsonValue(kv.Value))
		if err != nil {
			return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
		}
		merged[kv.Key] = b
	}
	for k, v := range req {
		merged[k] = v
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	return out, nil
}

// isNotFound reports whether err is the controller's not-found answer.
func isNotFound(err error) bool {
	we, ok := errors.AsType[*wire.Error](err)
	return ok && we.Code == wire.CodeNotFound
}
