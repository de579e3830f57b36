package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/clemmys/clemmys/internal/wire"
)

// Web actions, OpenWhisk's contract (docs/functions.md):
//
//	ANY /api/v1/web/{namespace}/{package or "default"}/{action}[.json|.html|.svg|.text|.http][/path…]
//
// An action annotated web-export: true answers HTTP without credentials.
// The request becomes the action's parameters: __ow_method (lower case),
// __ow_headers (lower-case names), __ow_path (the path after the action),
// the query parameters and the body's (a JSON object's fields, or a form's;
// any other body is __ow_body, a string for text and base64 otherwise),
// over the action's default parameters ("final" ones may not be
// redefined). With raw-http: true the query is __ow_query, unparsed, and
// the body __ow_body, as is. require-whisk-auth: true asks for valid
// credentials (Basic auth; the caller's namespace is __ow_user), a string
// or number for an X-Require-Whisk-Auth header of that value. The
// extension says how the result is answered: .json the object (or a field
// of it named by the path), .html/.svg/.text its "html"/"svg"/"text"
// field, .http (the default) {statusCode, headers, body} with a base64
// body for binary content types. An application error answers its
// "error" field the same way.
//
// The invocation goes through the ordinary path: it is sealed here before
// it reaches the controller, its result opened here, its record filed in
// the owner's namespace, and it counts against the owner's throttles. The
// web annotations are honoured only when their MAC verifies (webtag.go).

const webPrefix = "/api/v1/web/"

// Web messages, OpenWhisk's wording.
const (
	msgWebAuthRequired = "The resource requires authentication, which was not supplied with the request."
	msgWebNotJSON      = "The request content was malformed: the body is not valid JSON."
	msgPropertyMissing = "Response does not include requested property."
	msgWebReserved     = "Request defines parameters that are not allowed (e.g., reserved properties)."
)

// The reserved parameters of a web request.
const (
	owMethod  = "__ow_method"
	owHeaders = "__ow_headers"
	owPath    = "__ow_path"
	owUser    = "__ow_user"
	owBody    = "__ow_body"
	owQuery   = "__ow_query"
)

var owReserved = map[string]bool{owMethod: true, owHeaders: true, owPath: true, owUser: true, owBody: true, owQuery: true}

// CORS of web actions (OpenWhisk's): OPTIONS is answered with these unless
// the action handles it (web-custom-options), Access-Control-Allow-Headers
// echoing the request's Access-Control-Request-Headers when it has one.
const webAllowMethods = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"

// webExtensions and the result field each one answers by default.
var webExtensions = map[string]string{"json": "", "html": "html", "svg": "svg", "text": "text", "http": ""}

// webPath is a parsed web action path.
type webPath struct {
	ns   string
	name string // "action" or "pkg/action"
	ext  string // json, html, svg, text or http
	rest string // what follows: __ow_path ("" or "/…")
}

// parseWebPath parses the path after /api/v1/web/: namespace, package
// ("default" for none), action with an optional extension, then anything.
func parseWebPath(p string) (webPath, bool) {
	parts := strings.SplitN(p, "/", 4)
	if len(parts) < 3 {
		return webPath{}, false
	}
	wp := webPath{ns: parts[0], ext: "http"}
	pkg, action := parts[1], parts[2]
	if i := strings.LastIndexByte(action, '.'); i > 0 {
		if _, ok := webExtensions[action[i+1:]]; ok {
			action, wp.ext = action[:i], action[i+1:]
		}
	}
	if len(parts) == 4 {
		wp.rest = "/" + parts[3]
	}
	if !validNamespace(wp.ns) || !validName(pkg) || !validName(action) {
		return webPath{}, false
	}
	wp.name = action
	if pkg != "default" {
		wp.name = pkg + "/" + action
	}
	return wp, true
}

// webAction serves /api/v1/web/….
func (g *Gateway) webAction(w http.ResponseWriter, r *http.Request) {
	wp, ok := parseWebPath(strings.TrimPrefix(r.URL.Path, webPrefix))
	if !ok {
		webCORS(w, r, false)
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	g.serveWeb(w, r, wp, nil)
}

// webExtra is what an API route adds to a web request (apimgmt.go): path
// parameters, and the path the action sees.
type webExtra struct {
	params map[string]string
}

// serveWeb answers a web request for wp.
func (g *Gateway) serveWeb(w http.ResponseWriter, r *http.Request, wp webPath, extra *webExtra) {
	ctx := r.Context()
	lctx, cancel := context.WithTimeout(ctx, busTimeout)
	// The web annotations decide everything below: read the entity from
	// the store, not from the cache (a removed web-export must stop the
	// next request).
	t, cerr := g.loadTarget(lctx, wp.ns, wp.ns, wp.name, nil)
	cancel()
	if cerr != nil {
		webCORS(w, r, false)
		if cerr.status == 0 && isNotFound(cerr.err) || cerr.status == http.StatusForbidden || cerr.status == http.StatusNotFound {
			g.fail(w, r, http.StatusNotFound, msgNotFound)
			return
		}
		g.answer(w, r, "web action", cerr)
		return
	}
	anns := t.action.Annotations
	if !g.webIntact(t.action) || !annotationTrue(anns, annWebExport) {
		if hasKey(anns, annWebExport) && !g.webIntact(t.action) {
			g.log.Warn("web annotations do not authenticate: not served", "tx", txID(r), "namespace", wp.ns, "action", wp.name)
		}
		webCORS(w, r, false)
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	custom := annotationTrue(anns, annCustomOptions)
	webCORS(w, r, custom)
	if r.Method == http.MethodOptions && !custom {
		w.WriteHeader(http.StatusOK)
		return
	}
	user, ok := g.webAuth(w, r, anns)
	if !ok {
		return
	}
	// The owner's throttles (a web action runs as its owner), before the
	// body is read.
	release, ok := g.limitInvocation(w, r, wp.ns)
	if !ok {
		return
	}
	defer release()
	body, ok := g.readBody(w, r, g.cfg.MaxPayloadBytes)
	if !ok {
		return
	}
	req := webInput{
		method: r.Method, header: r.Header, path: wp.rest, rawQuery: r.URL.RawQuery,
		body: body, raw: annotationTrue(anns, annRawHTTP), user: user,
	}
	if extra != nil {
		req.pathParams = extra.params
	}
	if user != "" && annotation(anns, annRequireAuth) == true {
		req.dropAuth = true // the caller's credential is not the function's business
	}
	params, status, msg := webParams(&req)
	if status != 0 {
		g.fail(w, r, status, "%s", msg)
		return
	}
	inv := &invocation{caller: wp.ns, target: t, lookup: &lookup{}, payload: params, blocking: true, tx: txID(r)}
	res, cerr := g.invoke(ctx, inv)
	if cerr != nil && isStale(cerr) {
		// Changed since it was read: read it again and check again.
		lctx, cancel := context.WithTimeout(ctx, busTimeout)
		t2, cerr2 := g.loadTarget(lctx, wp.ns, wp.ns, wp.name, nil)
		cancel()
		if cerr2 != nil || !g.webIntact(t2.action) || !annotationTrue(t2.action.Annotations, annWebExport) ||
			!sameWebAnnotations(t.action.Annotations, t2.action.Annotations) {
			g.fail(w, r, http.StatusServiceUnavailable, "The action changed while it was invoked; retry the request.")
			return
		}
		inv.target, inv.lookup = t2, &lookup{}
		res, cerr = g.invoke(ctx, inv)
	}
	if res != nil {
		w.Header().Set(headerActivationID, res.id)
	}
	if cerr != nil {
		g.answer(w, r, "web action", cerr)
		return
	}
	if res.act == nil {
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": res.id})
		return
	}
	view := g.openActivationWith(res.act, res.digest, wp.ns, openOptions{rs: res.rs, keys: res.keys, noLogs: true})
	g.writeWebResult(w, r, wp, view)
}

// sameWebAnnotations reports whether two annotation lists agree on the web
// annotations.
func sameWebAnnotations(a, b []wire.KeyValue) bool {
	for _, k := range webAnnotationKeys {
		x, _ := json.Marshal(annotation(a, k))
		y, _ := json.Marshal(annotation(b, k))
		if string(x) != string(y) {
			return false
		}
	}
	return true
}

// webAuth checks require-whisk-auth: true asks for a valid credential
// (the caller's namespace is returned, for __ow_user), a string or number
// for an X-Require-Whisk-Auth header of that value (compared in constant
// time). It answers 401 itself.
func (g *Gateway) webAuth(w http.ResponseWriter, r *http.Request, anns []wire.KeyValue) (user string, ok bool) {
	deny := func() (string, bool) {
		w.Header().Set("WWW-Authenticate", `Basic realm="clemmys"`)
		g.fail(w, r, http.StatusUnauthorized, msgWebAuthRequired)
		return "", false
	}
	var secret string
	switch v := annotation(anns, annRequireAuth).(type) {
	case nil:
		return "", true
	case bool:
		if !v {
			return "", true
		}
		u, k, found := r.BasicAuth()
		if !found {
			return deny()
		}
		ns, valid := g.CheckCredential(r.Context(), u, k)
		if !valid {
			return deny()
		}
		return ns, true
	case string:
		secret = v
	case float64:
		secret = strconv.FormatFloat(v, 'f', -1, 64)
	case uint64:
		secret = strconv.FormatUint(v, 10)
	case int64:
		secret = strconv.FormatInt(v, 10)
	default:
		return deny() // an annotation nobody can satisfy: closed
	}
	got := r.Header.Get("X-Require-Whisk-Auth")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1 {
		return deny()
	}
	return "", true
}

// webCORS sets the CORS headers of a web response, unless the action
// handles them (custom).
func webCORS(w http.ResponseWriter, r *http.Request, custom bool) {
	h := w.Header()
	if custom {
		h.Del("Access-Control-Allow-Origin")
		h.Del("Access-Control-Allow-Headers")
		h.Del("Access-Control-Allow-Methods")
		return
	}
	h.Set("Access-Control-Allow-Origin", corsAllowOrigin)
	h.Set("Access-Control-Allow-Methods", webAllowMethods)
	allow := corsAllowHeaders
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && len(req) <= 4096 {
		allow = req
	}
	h.Set("Access-Control-Allow-Headers", allow)
}

// Bounds of a web request's conversion.
const (
	maxWebHeaders    = 256 // distinct header names passed to the action
	maxWebQueryParts = 1000
)

// webInput is a web request, as webParams converts it.
type webInput struct {
	method     string
	header     http.Header
	path       string // __ow_path
	rawQuery   string
	body       []byte
	raw        bool   // raw-http
	user       string // authenticated namespace, for __ow_user
	dropAuth   bool   // leave the Authorization header out
	pathParams map[string]string
}

// webParams converts a web request into the action's parameters (a JSON
// object). On failure status is the HTTP status and msg what to answer.
func webParams(in *webInput) (params []byte, status int, msg string) {
	out := map[string]any{}
	bad := func(m string) ([]byte, int, string) { return nil, http.StatusBadRequest, m }
	set := func(k string, v any) bool {
		if owReserved[k] {
			return false
		}
		out[k] = v
		return true
	}
	// Path parameters of an API route, then the query, then the body:
	// later ones win.
	for k, v := range in.pathParams {
		if !set(k, v) {
			return bad(msgWebReserved)
		}
	}
	if !in.raw && in.rawQuery != "" {
		if strings.Count(in.rawQuery, "&") >= maxWebQueryParts {
			return bad("The request has too many query parameters.")
		}
		q, err := url.ParseQuery(in.rawQuery)
		if err != nil {
			return bad("The request's query string is malformed.")
		}
		for k, vs := range q {
			if !set(k, vs[len(vs)-1]) {
				return bad(msgWebReserved)
			}
		}
	}
	ctype := in.header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ctype)
	if in.raw {
		out[owQuery] = in.rawQuery
		if len(in.body) > 0 {
			out[owBody] = bodyString(mt, in.body)
		}
	} else if len(in.body) > 0 {
		switch {
		case isJSONType(mt):
			var v any
			if err := json.Unmarshal(in.body, &v); err != nil {
				return bad(msgWebNotJSON)
			}
			if obj, ok := v.(map[string]any); ok {
				for k, e := range obj {
					if !set(k, e) {
						return bad(msgWebReserved)
					}
				}
			} else {
				out[owBody] = v
			}
		case mt == "application/x-www-form-urlencoded":
			if strings.Count(string(in.body), "&") >= maxWebQueryParts {
				return bad("The request has too many form fields.")
			}
			f, err := url.ParseQuery(string(in.body))
			if err != nil {
				return bad("The request's form is malformed.")
			}
			for k, vs := range f {
				if !set(k, vs[len(vs)-1]) {
					return bad(msgWebReserved)
				}
			}
		default:
			out[owBody] = bodyString(mt, in.body)
		}
	}
	hdrs := make(map[string]string, len(in.header))
	for k, vs := range in.header {
		lk := strings.ToLower(k)
		if in.dropAuth && lk == "authorization" {
			continue
		}
		if len(hdrs) >= maxWebHeaders {
			break
		}
		hdrs[lk] = strings.Join(vs, ", ")
	}
	out[owMethod] = strings.ToLower(in.method)
	out[owHeaders] = hdrs
	out[owPath] = in.path
	if in.user != "" {
		out[owUser] = in.user
	}
	b, err := json.Marshal(out)
	if err != nil {
		return bad("The request could not be converted to parameters.")
	}
	return b, 0, ""
}

// isJSONType reports whether a media type is JSON.
func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// isTextType reports whether a media type is text (a body of it travels
// as a string; any other as base64).
func isTextType(mt string) bool {
	switch {
	case strings.HasPrefix(mt, "text/"), isJSONType(mt), strings.HasSuffix(mt, "+xml"),
		mt == "application/xml", mt == "application/javascript", mt == "application/x-www-form-urlencoded",
		mt == "application/graphql":
		return true
	}
	return false
}

// bodyString is a request body as __ow_body: the text for a text type, its
// base64 otherwise (a missing content type is binary, as in OpenWhisk).
func bodyString(mt string, body []byte) string {
	if isTextType(mt) {
		return string(body)
	}
	return base64.StdEncoding.EncodeToString(body)
}

// webResponse is what a web action answers.
type webResponse struct {
	status int
	header http.Header
	body   []byte
}

// maxWebResponseHeaders bounds the headers an .http result may set.
const maxWebResponseHeaders = 256

// renderWeb converts a result (a JSON object) into the response of
// extension ext, projecting it on the path (the fields named by the
// segments of path, for the extensions other than .http). status != 0 with
// a message is a failure to answer as {"error"}.
func renderWeb(ext string, result json.RawMessage, path string) (*webResponse, int, string) {
	var v any
	if err := json.Unmarshal(result, &v); err != nil {
		return nil, http.StatusBadGateway, "The action did not produce a valid JSON result."
	}
	if ext != "http" {
		var proj []string
		for _, s := range strings.Split(path, "/") {
			if s != "" {
				proj = append(proj, s)
			}
		}
		if len(proj) == 0 && webExtensions[ext] != "" {
			proj = []string{webExtensions[ext]}
		}
		for _, f := range proj {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, http.StatusNotFound, msgPropertyMissing
			}
			if v, ok = m[f]; !ok {
				return nil, http.StatusNotFound, msgPropertyMissing
			}
		}
	}
	resp := &webResponse{status: http.StatusOK, header: http.Header{}}
	text := func(ctype string) (*webResponse, int, string) {
		s, ok := v.(string)
		if !ok {
			return nil, http.StatusBadRequest, fmt.Sprintf("Response is not valid '%s'.", strings.SplitN(ctype, ";", 2)[0])
		}
		resp.header.Set("Content-Type", ctype)
		resp.body = []byte(s)
		return resp, 0, ""
	}
	switch ext {
	case "json":
		switch v.(type) {
		case map[string]any, []any:
		default:
			return nil, http.StatusBadRequest, "Response is not valid 'application/json'."
		}
		b, _ := json.Marshal(v)
		resp.header.Set("Content-Type", "application/json")
		resp.body = b
		return resp, 0, ""
	case "html":
		return text("text/html; charset=UTF-8")
	case "svg":
		return text("image/svg+xml")
	case "text":
		return text("text/plain; charset=UTF-8")
	}
	return renderHTTP(v)
}

// renderHTTP is the .http answer of result v: {statusCode, headers, body}.
func renderHTTP(v any) (*webResponse, int, string) {
	const invalid = "Response is not valid 'message/http'."
	m, ok := v.(map[string]any)
	if !ok {
		return nil, http.StatusBadRequest, invalid
	}
	resp := &webResponse{header: http.Header{}}
	if hv, ok := m["headers"]; ok && hv != nil {
		hm, ok := hv.(map[string]any)
		if !ok || len(hm) > maxWebResponseHeaders {
			return nil, http.StatusBadRequest, invalid
		}
		keys := make([]string, 0, len(hm))
		for k := range hm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !validHeaderName(k) {
				return nil, http.StatusBadRequest, invalid
			}
			vals := []any{hm[k]}
			if arr, ok := hm[k].([]any); ok {
				vals = arr
			}
			for _, e := range vals {
				s, ok := headerValue(e)
				if !ok {
					return nil, http.StatusBadRequest, invalid
				}
				resp.header.Add(k, s)
			}
		}
	}
	body, hasBody := m["body"]
	if body == nil {
		hasBody = false
	}
	resp.status = http.StatusOK
	if !hasBody {
		resp.status = http.StatusNoContent
	}
	if sc, ok := m["statusCode"]; ok && sc != nil {
		f, ok := sc.(float64)
		if !ok || f != float64(int(f)) || f < 100 || f > 599 {
			return nil, http.StatusBadRequest, "Invalid HTTP status code."
		}
		resp.status = int(f)
	}
	ctype := resp.header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ctype)
	switch b := body.(type) {
	case nil:
	case string:
		if ctype == "" {
			resp.header.Set("Content-Type", "text/html; charset=UTF-8")
			mt = "text/html"
		}
		if isTextType(mt) || mt == "" {
			resp.body = []byte(b)
			break
		}
		// A binary content type: the body is base64.
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
		if err != nil {
			dec, err = base64.RawStdEncoding.DecodeString(strings.TrimSpace(b))
		}
		if err != nil {
			return nil, http.StatusBadRequest, invalid
		}
		resp.body = dec
	case map[string]any, []any:
		if ctype == "" {
			resp.header.Set("Content-Type", "application/json")
		}
		resp.body, _ = json.Marshal(b)
	default:
		if ctype == "" {
			resp.header.Set("Content-Type", "text/html; charset=UTF-8")
		}
		s, _ := json.Marshal(b)
		resp.body = s
	}
	return resp, 0, ""
}

// validHeaderName is an HTTP token (RFC 9110).
func validHeaderName(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// headerValue is a header value of an .http result: a string, number or
// boolean, without control characters.
func headerValue(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	default:
		return "", false
	}
	if len(s) > 8<<10 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// writeWebResult answers an activation of a web action.
func (g *Gateway) writeWebResult(w http.ResponseWriter, r *http.Request, wp webPath, view *activationView) {
	result := view.result
	switch view.status {
	case wire.StatusSuccess:
	case wire.StatusApplicationError:
		// The error field is the response (OpenWhisk): an action can
		// answer {error: {statusCode: 400, body: …}}.
		var m map[string]json.RawMessage
		if json.Unmarshal(result, &m) != nil || !isJSONObject(m["error"]) {
			g.fail(w, r, http.StatusBadGateway, "%s", webErrorMessage(result))
			return
		}
		result = m["error"]
	default:
		g.fail(w, r, http.StatusBadGateway, "%s", webErrorMessage(result))
		return
	}
	resp, status, msg := renderWeb(wp.ext, result, wp.rest)
	if status != 0 {
		g.fail(w, r, status, "%s", msg)
		return
	}
	h := w.Header()
	for k, vs := range resp.header {
		if hopHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if h.Get("Content-Type") == "" && len(resp.body) > 0 {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.body)
	}
}

// hopHeaders are headers of the connection, which a result may not set.
var hopHeaders = map[string]bool{
	"Connection": true, "Content-Length": true, "Transfer-Encoding": true, "Upgrade": true,
	"Keep-Alive": true, "Proxy-Connection": true, "Trailer": true, "Te": true,
}

// webErrorMessage is the message of a failed activation's result.
func webErrorMessage(result json.RawMessage) string {
	var m struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(result, &m) == nil {
		if s, ok := m.Error.(string); ok && s != "" {
			return s
		}
	}
	return "The action did not produce a valid response."
}
