package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Packages (OpenWhisk REST API v1):
//
//	GET    /namespaces/{ns}/packages[?skip&limit&count]  → [summary] or {"packages": N}
//	PUT    /namespaces/{ns}/packages/{name}[?overwrite]  {publish, parameters, annotations, binding} → package
//	GET    /namespaces/{ns}/packages/{name}               → package with actions and feeds
//	DELETE /namespaces/{ns}/packages/{name}[?force]       → package (409 if it has actions, unless force)
//
// A namespace reads its own packages; another namespace's package (and the
// actions in it) only when it is published (publish: true). A private
// package of another namespace and one that does not exist are both 403,
// so that a caller cannot probe which private packages exist.
//
// Default parameters are confidential: the gateway seals them (params.go)
// before the package leaves it. The owner sees them; other namespaces
// reading a public package see an empty parameter list (OpenWhisk shows
// them — clemmys does not, since they often hold the package owner's
// credentials; they are still applied when the other namespace invokes
// the package's actions).
//
// A binding ({"binding": {"namespace", "name"}}) names a package that is
// the caller's own or public, and not itself a binding. Reading a binding
// lists the bound package's actions; its parameters are the binding's own,
// over the bound package's when the caller owns that too.

// Package messages (OpenWhisk's wording where it has one).
const (
	msgBindingMissing    = "Binding references a package that does not exist."
	msgBindingOfBinding  = "Cannot bind to another package binding."
	msgBindingSelf       = "A package binding may not refer to itself."
	msgBindingBad        = "The binding must name a package: {\"namespace\": \"...\", \"name\": \"...\"}."
	msgPackageNotBinding = "Resource is a package and cannot be converted into a binding."
	msgPackageNotEmpty   = "Package not empty (contains %d %s). Set force param or delete package contents."
)

// Entity bodies: OpenWhisk's entities other than actions.
const (
	// maxEntityBodyBytes bounds the body of a package, trigger or rule
	// PUT: default parameters (at most maxParamsBytes) and annotations.
	maxEntityBodyBytes = maxParamsBytes + 256<<10
	// maxKVs bounds the number of annotations of an entity (as the
	// controller does), maxParams the number of its parameters.
	maxKVs    = 256
	maxParams = 1000
)

// packageBody is the JSON body of PUT .../packages/{name}. Omitted fields
// keep their value on update (?overwrite=true), as in OpenWhisk.
type packageBody struct {
	Publish     *bool            `json:"publish"`
	Parameters  *[]wire.KeyValue `json:"parameters"`
	Annotations *[]wire.KeyValue `json:"annotations"`
	Binding     *bindingBody     `json:"binding"`
}

type bindingBody struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// decodeEntity reads a JSON entity body into v (an empty body is {}); it
// answers the request itself and returns false when it cannot.
func (g *Gateway) decodeEntity(w http.ResponseWriter, r *http.Request, v any, what string) bool {
	raw, ok := g.readBody(w, r, maxEntityBodyBytes)
	if !ok {
		return false
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return true
	}
	if err := json.Unmarshal(raw, v); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the body must be a JSON %s.", jsonDetail(raw, err), what)
		return false
	}
	return true
}

// sealEntityParams seals the default parameters of an entity; it answers
// the request itself on failure.
func (g *Gateway) sealEntityParams(w http.ResponseWriter, r *http.Request, kind, ns, name string, params []wire.KeyValue) (wire.SealedParams, bool) {
	sealed, err := g.sealParams(kind, ns, name, params)
	if err != nil {
		if b, merr := json.Marshal(params); merr == nil && len(b) > maxParamsBytes {
			g.fail(w, r, http.StatusRequestEntityTooLarge, msgTooLarge, maxParamsBytes)
			return nil, false
		}
		g.log.Error("seal parameters", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return nil, false
	}
	return sealed, true
}

// lookup calls a controller get subject; found is false (and err nil) when
// the entity does not exist.
func (g *Gateway) lookup(ctx context.Context, subject string, req, resp any) (found bool, err error) {
	err = bus.Call(ctx, g.cfg.Conn, subject, req, resp)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// fetchPackage fetches package ns/name as stored (parameters sealed); nil
// when it does not exist.
func (g *Gateway) fetchPackage(ctx context.Context, ns, name string) (*wire.Package, *chainError) {
	var p wire.Package
	found, err := g.lookup(ctx, wire.SubjectPackageGet, &wire.EntityRef{Namespace: ns, Name: name}, &p)
	if err != nil {
		return nil, busFailure(err)
	}
	if !found {
		return nil, nil
	}
	if p.Namespace != ns || p.Name != name {
		return nil, &chainError{http.StatusBadGateway, "The controller answered with another package.", nil}
	}
	return &p, nil
}

// readablePackage fetches package ns/name for caller: nil and a 404 when
// the caller's own package does not exist, a 403 when another namespace's
// package does not exist or is not public.
func (g *Gateway) readablePackage(ctx context.Context, caller, ns, name string) (*wire.Package, *chainError) {
	if !validNamespace(ns) || !validName(name) {
		if ns != caller {
			return nil, notAuthorized("the package") // do not echo what is not a name
		}
		return nil, &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	p, cerr := g.fetchPackage(ctx, ns, name)
	if cerr != nil {
		return nil, cerr
	}
	if p != nil {
		if cerr := g.packageAuthentic(ctx, p); cerr != nil {
			return nil, cerr
		}
	}
	if ns != caller && (p == nil || !p.Publish) {
		return nil, notAuthorized("/" + ns + "/" + name)
	}
	if p == nil {
		return nil, &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	return p, nil
}

// msgPackageTampered: the stored publish flag or binding is not what the
// gateway stored.
const msgPackageTampered = "The package's sharing or binding could not be authenticated."

// beginPut starts the PUT of a package, trigger or rule (kind): it checks
// the name and the overwrite query and decodes the body into body. It
// answers the request itself and returns ok false on error.
func (g *Gateway) beginPut(w http.ResponseWriter, r *http.Request, kind string, body any) (ns, name string, overwrite, ok bool) {
	ns, name = callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusBadRequest, "The %s name is not valid.", kind)
		return "", "", false, false
	}
	overwrite, err := queryBool(r.URL.Query(), "overwrite")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return "", "", false, false
	}
	if !g.decodeEntity(w, r, body, kind) {
		return "", "", false, false
	}
	return ns, name, overwrite, true
}

func renderBinding(b *wire.Binding) map[string]any {
	if b == nil {
		return map[string]any{}
	}
	return map[string]any{"namespace": b.Namespace, "name": b.Name}
}

// renderPackage is OpenWhisk's JSON of a package, with the parameters the
// viewer may see.
func renderPackage(p *wire.Package, params []wire.KeyValue) map[string]any {
	return map[string]any{
		"namespace":   p.Namespace,
		"name":        p.Name,
		"version":     p.Version,
		"publish":     p.Publish,
		"annotations": renderKVs(p.Annotations),
		"parameters":  renderKVs(params),
		"binding":     renderBinding(p.Binding),
		"updated":     p.Updated,
	}
}

// packageSummary is a package in a list: no parameters, and binding false
// when it is not a binding (OpenWhisk).
func packageSummary(p *wire.Package) map[string]any {
	var binding any = false
	if p.Binding != nil {
		binding = renderBinding(p.Binding)
	}
	return map[string]any{
		"namespace":   p.Namespace,
		"name":        p.Name,
		"version":     p.Version,
		"publish":     p.Publish,
		"annotations": renderKVs(p.Annotations),
		"binding":     binding,
		"updated":     p.Updated,
	}
}

func (g *Gateway) putPackage(w http.ResponseWriter, r *http.Request) {
	var body packageBody
	p, cancel, ok := startPut(g, w, r, "package", &body, g.fetchPackage)
	defer cancel()
	if !ok {
		return
	}
	ctx, ns, name, existing := p.ctx, p.ns, p.name, p.existing
	var prevGen int64
	if existing != nil {
		// Merging would re-tag what the controller changed.
		if cerr := g.packageAuthentic(ctx, existing); cerr != nil {
			g.answer(w, r, "load package", cerr)
			return
		}
		prevGen = existing.Generation
	}
	pkg := wire.Package{Namespace: ns, Name: name}
	if existing != nil {
		pkg.Publish, pkg.Annotations, pkg.Parameters, pkg.Binding = existing.Publish, existing.Annotations, existing.Parameters, existing.Binding
	}
	if body.Publish != nil {
		pkg.Publish = *body.Publish
	}
	if body.Annotations != nil {
		pkg.Annotations = *body.Annotations
	}
	if b := body.Binding; b != nil && (b.Namespace != "" || b.Name != "") {
		bns := b.Namespace
		if bns == "" || bns == "_" {
			bns = ns
		}
		if !validNamespace(bns) || !validName(b.Name) {
			g.fail(w, r, http.StatusBadRequest, msgBindingBad)
			return
		}
		if existing != nil && existing.Binding == nil {
			g.fail(w, r, http.StatusBadRequest, msgPackageNotBinding)
			return
		}
		if bns == ns && b.Name == name {
			g.fail(w, r, http.StatusBadRequest, msgBindingSelf)
			return
		}
		bound, cerr := g.readablePackage(ctx, ns, bns, b.Name)
		if cerr != nil {
			if cerr.status == http.StatusNotFound {
				cerr = &chainError{http.StatusBadRequest, msgBindingMissing, nil}
			}
			g.answer(w, r, "load bound package", cerr)
			return
		}
		if bound.Binding != nil {
			g.fail(w, r, http.StatusBadRequest, msgBindingOfBinding)
			return
		}
		pkg.Binding = &wire.Binding{Namespace: bns, Name: b.Name}
	}
	if body.Parameters != nil {
		sealed, ok := g.sealEntityParams(w, r, paramsPackage, ns, name, *body.Parameters)
		if !ok {
			return
		}
		pkg.Parameters = sealed
	}
	gen, cerr := g.nextGeneration(ctx, wire.EntityPackage, ns, name, prevGen)
	if cerr != nil {
		g.answer(w, r, "package generation", cerr)
		return
	}
	pkg.Generation = gen
	pkg.Tag = g.packageTag(&pkg)
	stored, ok := p.store(g, w, r, "package", wire.SubjectPackagePut, &wire.PackagePut{Package: pkg, Overwrite: p.overwrite},
		func(pkg *wire.Package) (string, string) { return pkg.Namespace, pkg.Name })
	if !ok {
		return
	}
	if stored.Generation == gen {
		g.commitEntity(ctx, wire.EntityPackage, ns, name, gen)
	}
	params, err := g.openParams(paramsPackage, ns, name, stored.Parameters)
	if err != nil {
		g.answer(w, r, "store package", &chainError{http.StatusBadGateway, msgBadParams, err})
		return
	}
	g.log.Info("package stored", "namespace", ns, "package", name, "version", stored.Version, "binding", stored.Binding != nil, "publish", stored.Publish)
	writeJSON(w, http.StatusOK, renderPackage(stored, params))
}

// getPackage answers a package with its actions and feeds (actions
// annotated "feed"). Public route: the {ns} may be another namespace's.
func (g *Gateway) getPackage(w http.ResponseWriter, r *http.Request) {
	caller, ns, name := callerNamespace(r), targetNamespace(r), r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	p, cerr := g.readablePackage(ctx, caller, ns, name)
	if cerr != nil {
		g.answer(w, r, "get package", cerr)
		return
	}
	var params []wire.KeyValue
	if ns == caller {
		own, err := g.openParams(paramsPackage, ns, name, p.Parameters)
		if err != nil {
			g.answer(w, r, "get package", &chainError{http.StatusBadGateway, msgBadParams, err})
			return
		}
		params = own
	}
	// The actions are the package's, or the bound package's.
	src := p
	if b := p.Binding; b != nil {
		bound, cerr := g.readablePackage(ctx, caller, b.Namespace, b.Name)
		switch {
		case cerr != nil && cerr.status == 0:
			g.answer(w, r, "get bound package", cerr)
			return
		case cerr != nil || bound.Binding != nil:
			src = nil // gone or no longer readable: no actions
		default:
			src = bound
			if bound.Namespace == caller && ns == caller {
				inherited, err := g.openParams(paramsPackage, bound.Namespace, bound.Name, bound.Parameters)
				if err != nil {
					g.answer(w, r, "get bound package", &chainError{http.StatusBadGateway, msgBadParams, err})
					return
				}
				params = mergeKV(inherited, params)
			}
		}
	}
	actions, feeds := []map[string]any{}, []map[string]any{}
	if src != nil {
		list, cerr := g.packageActions(ctx, src.Namespace, src.Name, maxListLimit)
		if cerr != nil {
			g.answer(w, r, "list package actions", cerr)
			return
		}
		for _, a := range list {
			_, simple, _ := strings.Cut(a.Name, "/")
			item := map[string]any{"name": simple, "version": a.Version, "annotations": renderKVs(a.Annotations)}
			if hasKey(a.Annotations, "feed") {
				feeds = append(feeds, item)
			} else {
				actions = append(actions, item)
			}
		}
	}
	view := renderPackage(p, params)
	view["actions"] = actions
	view["feeds"] = feeds
	writeJSON(w, http.StatusOK, view)
}

func hasKey(kvs []wire.KeyValue, key string) bool {
	for _, kv := range kvs {
		if kv.Key == key {
			return true
		}
	}
	return false
}

// packageActions lists up to limit actions of package ns/pkg (action names
// "pkg/name"), dropping anything the controller answers that is not in it.
func (g *Gateway) packageActions(ctx context.Context, ns, pkg string, limit int) ([]wire.Action, *chainError) {
	var out []wire.Action
	prefix := pkg + "/"
	for skip := 0; len(out) < limit; {
		var list wire.ActionList
		req := wire.ListRequest{Namespace: ns, Name: prefix, Skip: skip, Limit: min(limit-len(out), maxListLimit)}
		if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionList, &req, &list); err != nil {
			return nil, busFailure(err)
		}
		for _, a := range list.Actions {
			if a.Namespace == ns && strings.HasPrefix(a.Name, prefix) {
				out = append(out, a)
			}
		}
		if len(list.Actions) < req.Limit {
			break
		}
		skip += len(list.Actions)
	}
	return out, nil
}

// countPackageActions counts the actions of package ns/pkg.
func (g *Gateway) countPackageActions(ctx context.Context, ns, pkg string) (int, error) {
	var list wire.ActionList
	req := wire.ListRequest{Namespace: ns, Name: pkg + "/", Count: true}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionList, &req, &list); err != nil {
		return 0, err
	}
	return list.Count, nil
}

// deletePackage deletes a package; one that holds actions only with
// ?force=true, which deletes its actions too.
func (g *Gateway) deletePackage(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	force, err := queryBool(r.URL.Query(), "force")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	p, cerr := g.readablePackage(ctx, ns, ns, name)
	if cerr != nil {
		g.answer(w, r, "delete package", cerr)
		return
	}
	var doomed []wire.Action
	if p.Binding == nil {
		n, err := g.countPackageActions(ctx, ns, name)
		if err != nil {
			g.busError(w, r, "count package actions", err)
			return
		}
		if n > 0 && !force {
			noun := "entities"
			if n == 1 {
				noun = "entity"
			}
			g.fail(w, r, http.StatusConflict, msgPackageNotEmpty, n, noun)
			return
		}
		if n > 0 {
			// Remember what force deletes, like deleteAction does, so that
			// a controller serving them again later is refused.
			if doomed, cerr = g.packageActions(ctx, ns, name, n); cerr != nil {
				g.answer(w, r, "list package actions", cerr)
				return
			}
		}
	}
	var deleted wire.Package
	ref := wire.EntityRef{Namespace: ns, Name: name, Force: force}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectPackageDelete, &ref, &deleted); err != nil {
		g.busError(w, r, "delete package", err)
		return
	}
	g.retireEntity(ctx, wire.EntityPackage, ns, name, max(deleted.Generation, p.Generation))
	for i := range doomed {
		a := &doomed[i]
		g.retireEntity(ctx, wire.EntityAction, a.Namespace, a.Name, a.Generation)
		if a.Kind == kindSequence {
			continue
		}
		var created int64
		if rec, err := g.cfg.KMS.VerifyRecord(a.Function); err == nil {
			created = rec.Created
		}
		g.retireAction(ctx, a.Namespace, a.Name, created)
	}
	if deleted.Namespace != ns || deleted.Name != name {
		deleted = *p
	}
	g.log.Info("package deleted", "namespace", ns, "package", name, "actions", len(doomed))
	params, _ := g.openParams(paramsPackage, ns, name, deleted.Parameters)
	writeJSON(w, http.StatusOK, renderPackage(&deleted, params))
}

func (g *Gateway) listPackages(w http.ResponseWriter, r *http.Request) {
	if ns := targetNamespace(r); ns != callerNamespace(r) {
		g.listPublicPackages(w, r, ns)
		return
	}
	listEntities(g, w, r, wire.SubjectPackageList, "packages",
		func(l *wire.PackageList) ([]wire.Package, int) { return l.Packages, l.Count },
		func(p *wire.Package) string { return p.Namespace }, packageSummary)
}

// listEntities answers a list of the caller's entities of one kind
// (packages, triggers, rules; L is the controller's list): the page, each
// rendered, or under count=true {what: count}. Entities of another
// namespace in the controller's answer are dropped.
func listEntities[L, E any](g *Gateway, w http.ResponseWriter, r *http.Request, subject, what string,
	items func(*L) ([]E, int), namespace func(*E) string, render func(*E) map[string]any) {
	req, ok := g.listRequest(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var list L
	if err := bus.Call(ctx, g.cfg.Conn, subject, &req, &list); err != nil {
		g.busError(w, r, "list "+what, err)
		return
	}
	page, count := items(&list)
	if req.Count {
		writeJSON(w, http.StatusOK, map[string]int{what: count})
		return
	}
	out := make([]map[string]any, 0, len(page))
	for i := range page {
		if e := &page[i]; namespace(e) == req.Namespace {
			out = append(out, render(e))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// listRequest parses the query of a list of the caller's entities: skip,
// limit (default 30, at most 200, 0 = 200) and count.
func (g *Gateway) listRequest(w http.ResponseWriter, r *http.Request) (wire.ListRequest, bool) {
	skip, limit, ok := g.paging(w, r)
	if !ok {
		return wire.ListRequest{}, false
	}
	count, err := queryBool(r.URL.Query(), "count")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return wire.ListRequest{}, false
	}
	return wire.ListRequest{Namespace: callerNamespace(r), Skip: skip, Limit: limit, Count: count}, true
}

// maxPublicScan bounds how many packages of another namespace are read to
// list its public ones.
const maxPublicScan = 10 * maxListLimit

// listPublicPackages lists the published packages of namespace ns for
// another namespace (GET /namespaces/whisk.system/packages): only those
// whose publish flag carries the gateway's MAC, paged by the gateway.
func (g *Gateway) listPublicPackages(w http.ResponseWriter, r *http.Request, ns string) {
	req, ok := g.listRequest(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var public []wire.Package
	for skip := 0; skip < maxPublicScan; {
		var list wire.PackageList
		lr := wire.ListRequest{Namespace: ns, Skip: skip, Limit: maxListLimit}
		if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectPackageList, &lr, &list); err != nil {
			g.busError(w, r, "list packages", err)
			return
		}
		for i := range list.Packages {
			if p := &list.Packages[i]; p.Namespace == ns && p.Publish && g.packageIntact(p) {
				public = append(public, *p)
			}
		}
		if len(list.Packages) < maxListLimit {
			break
		}
		skip += len(list.Packages)
	}
	if req.Count {
		writeJSON(w, http.StatusOK, map[string]int{"packages": len(public)})
		return
	}
	out := []map[string]any{}
	for i := req.Skip; i < len(public) && len(out) < req.Limit; i++ {
		out = append(out, packageSummary(&public[i]))
	}
	writeJSON(w, http.StatusOK, out)
}
