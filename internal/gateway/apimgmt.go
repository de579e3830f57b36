package gateway

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
)

// API routes (OpenWhisk's API gateway, as the openwhisk client's routes
// API and `wsk api` use it):
//
//	POST   /api/v1/web/whisk.system/apimgmt/createApi  {apidoc: {gatewayBasePath, gatewayPath, gatewayMethod, action: {name, namespace}, apiName}}
//	GET    /api/v1/web/whisk.system/apimgmt/getApi     ?basepath&relpath&operation
//	DELETE /api/v1/web/whisk.system/apimgmt/deleteApi  ?basepath&relpath&operation
//
// with the caller's credentials, map a base path, a path (with {param}
// segments) and a verb of the caller's namespace to one of its web
// actions; the route then answers without credentials at
//
//	/api/{namespace}/{basepath}/{path}
//
// as the web action would (web.go; path parameters become parameters),
// with ?responsetype= of the create (json by default; http, html, text,
// svg) as its extension. The action must be web-exported. The gateway
// serves these itself (OpenWhisk runs them as whisk.system actions that
// call an external API gateway). The APIs live in the JetStream KV bucket
// store.BucketRoutes, one entry per namespace and base path, MACed by the
// gateway; an entry that does not verify is not served.

// apiMgmt is the prefix of the management API.
const apiMgmt = webPrefix + "whisk.system/apimgmt/"

// Route limits.
const (
	maxRoutesPerAPI = 200
	maxRoutePath    = 512
	maxRouteBody    = 256 << 10
	apiKeyInfo      = "clemmys/v1 api routes"
)

// apiDef is one namespace's API under one base path.
type apiDef struct {
	Namespace string     `cbor:"1,keyasint"`
	BasePath  string     `cbor:"2,keyasint"` // "/books"
	Name      string     `cbor:"3,keyasint,omitempty"`
	Routes    []apiRoute `cbor:"4,keyasint"`
	Tag       []byte     `cbor:"5,keyasint,omitempty"`
}

type apiRoute struct {
	Path      string `cbor:"1,keyasint"` // "/{id}"
	Method    string `cbor:"2,keyasint"` // upper case
	ActionNS  string `cbor:"3,keyasint"`
	Action    string `cbor:"4,keyasint"` // "name" or "pkg/name"
	Response  string `cbor:"5,keyasint"` // web extension
	SecureKey string `cbor:"6,keyasint,omitempty"`
}

func (g *Gateway) apiTag(a *apiDef) []byte {
	c := *a
	c.Tag = nil
	b, _ := bus.Marshal(&c)
	m := g.seqMAC.get()
	m.Write([]byte(apiKeyInfo + "\x00"))
	m.Write(b)
	return g.seqMAC.sum(m)
}

// routeStore opens the routes bucket on first use.
type routeStore struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (g *Gateway) routesKV(ctx context.Context) (jetstream.KeyValue, error) {
	s := &g.routeState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := store.KV(ctx, g.cfg.JS, store.BucketRoutes, g.cfg.Replicas)
	if err != nil {
		return nil, err
	}
	s.kv = kv
	return kv, nil
}

// cleanPath normalizes a base path or path: "/a/b", no trailing slash
// (the root is "/"), at most maxRoutePath bytes, segments that are names
// or {params}.
func cleanPath(p string) (string, bool) {
	if len(p) > maxRoutePath {
		return "", false
	}
	segs := []string{}
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue
		}
		if s == "." || s == ".." || strings.ContainsAny(s, "?#%\\ \t\r\n") {
			return "", false
		}
		segs = append(segs, s)
	}
	return "/" + strings.Join(segs, "/"), true
}

var routeMethods = map[string]bool{"GET": true, "POST": true, "PUT": true, "DELETE": true, "PATCH": true, "HEAD": true, "OPTIONS": true}

// createAPIBody is the body of createApi (the openwhisk client's form).
type createAPIBody struct {
	APIDoc struct {
		Namespace string          `json:"namespace"`
		BasePath  string          `json:"gatewayBasePath"`
		Path      string          `json:"gatewayPath"`
		Method    string          `json:"gatewayMethod"`
		APIName   string          `json:"apiName"`
		Swagger   json.RawMessage `json:"swagger"`
		Action    *struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
			SecureKey string `json:"secureKey"`
		} `json:"action"`
	} `json:"apidoc"`
}

func (g *Gateway) createAPI(w http.ResponseWriter, r *http.Request) {
	caller := callerNamespace(r)
	raw, ok := g.readBody(w, r, maxRouteBody)
	if !ok {
		return
	}
	var body createAPIBody
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the body must be {\"apidoc\": {...}}.", jsonDetail(raw, err))
		return
	}
	d := &body.APIDoc
	if len(d.Swagger) > 0 {
		g.fail(w, r, http.StatusBadRequest, "clemmys creates APIs from a base path, path, verb and action; swagger definitions are not supported.")
		return
	}
	base, ok1 := cleanPath(d.BasePath)
	path, ok2 := cleanPath(d.Path)
	method := strings.ToUpper(d.Method)
	if !ok1 || !ok2 || base == "/" && path == "/" || !routeMethods[method] || d.Action == nil {
		g.fail(w, r, http.StatusBadRequest, "An API needs a base path, a path, an HTTP verb and an action.")
		return
	}
	ans := d.Action.Namespace
	if ans == "" || ans == "_" {
		ans = caller
	}
	if ans != caller {
		g.fail(w, r, http.StatusForbidden, msgNotAuthorized, ans)
		return
	}
	aname := strings.TrimPrefix(d.Action.Name, "/")
	if strings.HasPrefix(aname, caller+"/") {
		aname = strings.TrimPrefix(aname, caller+"/")
	}
	if _, _, ok := splitAction(aname); !ok {
		g.fail(w, r, http.StatusBadRequest, "The API's action name is not valid.")
		return
	}
	resp := r.URL.Query().Get("responsetype")
	if resp == "" {
		resp = "json"
	}
	if _, ok := webExtensions[resp]; !ok {
		g.fail(w, r, http.StatusBadRequest, "responsetype must be json, http, html, text or svg.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	t, cerr := g.loadTarget(ctx, caller, caller, aname, nil)
	if cerr != nil {
		g.answer(w, r, "API action", cerr)
		return
	}
	if !g.webIntact(t.action) || !annotationTrue(t.action.Annotations, annWebExport) {
		g.fail(w, r, http.StatusBadRequest, "The action %s is not a web action: deploy it with the annotation web-export: true.", aname)
		return
	}
	kv, err := g.routesKV(ctx)
	if err != nil {
		g.log.Error("routes bucket", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	key := store.Key(caller, base)
	for attempt := 0; attempt < 3; attempt++ {
		api, rev, err := g.loadAPI(ctx, kv, caller, base)
		if err != nil {
			g.log.Error("load API", "tx", txID(r), "err", err)
			g.fail(w, r, http.StatusBadGateway, "The stored API could not be authenticated.")
			return
		}
		if api == nil {
			api = &apiDef{Namespace: caller, BasePath: base}
		}
		if d.APIName != "" {
			api.Name = d.APIName
		}
		route := apiRoute{Path: path, Method: method, ActionNS: caller, Action: aname, Response: resp, SecureKey: d.Action.SecureKey}
		replaced := false
		for i := range api.Routes {
			if api.Routes[i].Path == path && api.Routes[i].Method == method {
				api.Routes[i], replaced = route, true
			}
		}
		if !replaced {
			if len(api.Routes) >= maxRoutesPerAPI {
				g.fail(w, r, http.StatusBadRequest, "An API has at most %d routes.", maxRoutesPerAPI)
				return
			}
			api.Routes = append(api.Routes, route)
		}
		api.Tag = g.apiTag(api)
		b, err := bus.Marshal(api)
		if err != nil {
			g.fail(w, r, http.StatusInternalServerError, msgInternal)
			return
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			g.log.Info("API route created", "namespace", caller, "basepath", base, "path", path, "method", method, "action", aname)
			writeJSON(w, http.StatusOK, g.apiView(r, api))
			return
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			g.log.Error("store API", "tx", txID(r), "err", err)
			g.fail(w, r, http.StatusServiceUnavailable, msgUnavailable)
			return
		}
	}
	g.fail(w, r, http.StatusConflict, "The API changed meanwhile; retry.")
}

// loadAPI reads the API of ns at base path base; nil when there is none.
func (g *Gateway) loadAPI(ctx context.Context, kv jetstream.KeyValue, ns, base string) (*apiDef, uint64, error) {
	e, err := kv.Get(ctx, store.Key(ns, base))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var api apiDef
	if err := bus.Unmarshal(e.Value(), &api); err != nil || !hmac.Equal(api.Tag, g.apiTag(&api)) || api.Namespace != ns || api.BasePath != base {
		return nil, 0, errors.New("gateway: stored API does not authenticate")
	}
	return &api, e.Revision(), nil
}

// listAPIs reads the caller's APIs (all, or the one at base).
func (g *Gateway) listAPIs(ctx context.Context, ns, base string) ([]*apiDef, error) {
	kv, err := g.routesKV(ctx)
	if err != nil {
		return nil, err
	}
	if base != "" {
		api, _, err := g.loadAPI(ctx, kv, ns, base)
		if err != nil || api == nil {
			return nil, err
		}
		return []*apiDef{api}, nil
	}
	lister, err := kv.ListKeysFiltered(ctx, store.Prefix(ns))
	if err != nil {
		return nil, err
	}
	var out []*apiDef
	for k := range lister.Keys() {
		parts, err := store.SplitKey(k)
		if err != nil || len(parts) != 2 {
			continue
		}
		if api, _, err := g.loadAPI(ctx, kv, ns, parts[1]); err == nil && api != nil {
			out = append(out, api)
		}
		if len(out) >= maxListLimit {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].BasePath < out[j].BasePath })
	return out, nil
}

// routeFilter is getApi's and deleteApi's query.
func routeFilter(r *http.Request) (base, rel, op string, ok bool) {
	q := r.URL.Query()
	if b := q.Get("basepath"); b != "" {
		if base, ok = cleanPath(b); !ok {
			return "", "", "", false
		}
	}
	if p := q.Get("relpath"); p != "" {
		if rel, ok = cleanPath(p); !ok {
			return "", "", "", false
		}
	}
	return base, rel, strings.ToUpper(q.Get("operation")), true
}

func (g *Gateway) getAPI(w http.ResponseWriter, r *http.Request) {
	base, rel, op, ok := routeFilter(r)
	if !ok {
		g.fail(w, r, http.StatusBadRequest, "basepath and relpath must be paths.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	apis, err := g.listAPIs(ctx, callerNamespace(r), base)
	if err != nil {
		g.log.Error("list APIs", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusBadGateway, "The stored APIs could not be read.")
		return
	}
	out := []map[string]any{}
	for _, api := range apis {
		f := *api
		f.Routes = nil
		for _, rt := range api.Routes {
			if (rel == "" || rt.Path == rel) && (op == "" || rt.Method == op) {
				f.Routes = append(f.Routes, rt)
			}
		}
		if len(f.Routes) > 0 {
			out = append(out, g.apiView(r, &f))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"apis": out})
}

func (g *Gateway) deleteAPI(w http.ResponseWriter, r *http.Request) {
	caller := callerNamespace(r)
	base, rel, op, ok := routeFilter(r)
	if !ok || base == "" {
		g.fail(w, r, http.StatusBadRequest, "deleteApi needs a basepath.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	kv, err := g.routesKV(ctx)
	if err != nil {
		g.fail(w, r, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	api, rev, err := g.loadAPI(ctx, kv, caller, base)
	if err != nil {
		g.fail(w, r, http.StatusBadGateway, "The stored API could not be authenticated.")
		return
	}
	if api == nil {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	keep := api.Routes[:0:0]
	for _, rt := range api.Routes {
		if (rel != "" && rt.Path != rel) || (op != "" && rt.Method != op) {
			keep = append(keep, rt)
		}
	}
	if len(keep) == len(api.Routes) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	key := store.Key(caller, base)
	if len(keep) == 0 {
		err = kv.Delete(ctx, key, jetstream.LastRevision(rev))
	} else {
		api.Routes = keep
		api.Tag = g.apiTag(api)
		var b []byte
		if b, err = bus.Marshal(api); err == nil {
			_, err = kv.Update(ctx, key, b, rev)
		}
	}
	if err != nil {
		g.fail(w, r, http.StatusConflict, "The API changed meanwhile; retry.")
		return
	}
	g.log.Info("API routes deleted", "namespace", caller, "basepath", base, "relpath", rel, "operation", op)
	writeJSON(w, http.StatusOK, map[string]any{})
}

// apiView is OpenWhisk's form of an API: {id, key, value: {namespace,
// gwApiActivated, gwApiUrl, apidoc: swagger 2.0}}.
func (g *Gateway) apiView(r *http.Request, api *apiDef) map[string]any {
	host := "https://" + r.Host
	url := host + "/api/" + api.Namespace + strings.TrimSuffix(api.BasePath, "/")
	paths := map[string]any{}
	for _, rt := range api.Routes {
		ops, _ := paths[rt.Path].(map[string]any)
		if ops == nil {
			ops = map[string]any{}
			paths[rt.Path] = ops
		}
		pkg, simple, _ := splitAction(rt.Action)
		webPkg := pkg
		if webPkg == "" {
			webPkg = "default"
		}
		ops[strings.ToLower(rt.Method)] = map[string]any{
			"operationId": strings.ToLower(rt.Method) + rt.Path,
			"responses":   map[string]any{"default": map[string]any{"description": "Default response"}},
			"x-openwhisk": map[string]any{
				"namespace": rt.ActionNS, "package": pkg, "action": simple,
				"url": host + webPrefix + rt.ActionNS + "/" + webPkg + "/" + simple + "." + rt.Response,
			},
		}
	}
	title := api.Name
	if title == "" {
		title = api.BasePath
	}
	return map[string]any{
		"id":  "API:" + api.Namespace + ":" + api.BasePath,
		"key": "API:" + api.Namespace + ":" + api.BasePath,
		"value": map[string]any{
			"namespace":      api.Namespace,
			"gwApiActivated": true,
			"gwApiUrl":       url,
			"apidoc": map[string]any{
				"swagger":  "2.0",
				"basePath": api.BasePath,
				"info":     map[string]any{"title": title, "version": "1.0.0"},
				"paths":    paths,
			},
		},
	}
}

// matchRoute matches a request path's segments against a route path's,
// {param} segments binding path parameters.
func matchRoute(route string, segs []string) (map[string]string, bool) {
	rs := strings.Split(strings.Trim(route, "/"), "/")
	if route == "/" {
		rs = nil
	}
	if len(rs) != len(segs) {
		return nil, false
	}
	params := map[string]string{}
	for i, s := range rs {
		if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' {
			params[s[1:len(s)-1]] = segs[i]
			continue
		}
		if s != segs[i] {
			return nil, false
		}
	}
	return params, true
}

// maxRouteDepth bounds the base path segments tried for a request.
const maxRouteDepth = 8

// serveRoute answers /api/{namespace}/{basepath}/{path} without
// credentials: the route's web action answers it.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	if ns == "v1" || !validNamespace(ns) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	rest, ok := cleanPath(r.PathValue("path"))
	if !ok {
		webCORS(w, r, false)
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	kv, err := g.routesKV(ctx)
	if err != nil {
		cancel()
		g.fail(w, r, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	method := r.Method
	for n := min(len(segs), maxRouteDepth); n >= 1; n-- {
		base := "/" + strings.Join(segs[:n], "/")
		api, _, err := g.loadAPI(ctx, kv, ns, base)
		if err != nil {
			g.log.Warn("stored API does not authenticate: not served", "tx", txID(r), "namespace", ns, "basepath", base)
			continue
		}
		if api == nil {
			continue
		}
		for _, rt := range api.Routes {
			if rt.Method != method && !(method == http.MethodOptions) {
				continue
			}
			params, ok := matchRoute(rt.Path, segs[n:])
			if !ok {
				continue
			}
			if method == http.MethodOptions && rt.Method != method {
				params = nil // a preflight of the route: CORS from the action's settings
			}
			cancel()
			g.serveWeb(w, r, webPath{ns: rt.ActionNS, name: rt.Action, ext: rt.Response}, &webExtra{params: params})
			return
		}
	}
	cancel()
	webCORS(w, r, false)
	g.fail(w, r, http.StatusNotFound, msgNotFound)
}
