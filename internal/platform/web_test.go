package platform_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wire"
)

// web makes an HTTP request to the gateway without credentials (unless
// hdr sets them) and returns the status, headers and body.
func (e *env) web(method, path string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.p.APIHost()+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "auth" {
			u, p, _ := strings.Cut(v, ":")
			req.SetBasicAuth(u, p)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// webJS is the web actions' code: one action answers every extension.
const webJS = `
function main(p) {
  if (p.fail) return Promise.reject({ statusCode: 418, headers: { 'X-Why': 'teapot' }, body: 'short and stout' });
  if (p.png) return { headers: { 'Content-Type': 'image/png' }, body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]).toString('base64') };
  return {
    html: '<p>hello ' + p.name + '</p>', text: 'hello ' + p.name, svg: '<svg><text>' + p.name + '</text></svg>',
    statusCode: 200, headers: { 'X-Clemmys': 'web' },
    body: { name: p.name, method: p.__ow_method, path: p.__ow_path, ctype: p.__ow_headers['content-type'] || '', user: p.__ow_user || '',
            hasAuth: 'authorization' in p.__ow_headers, query: p.__ow_query, raw: p.__ow_body, n: p.n },
  };
}`

func webAnns(kv ...any) map[string]any {
	return map[string]any{"annotations": kvs(kv...)}
}

// TestWebActions covers OpenWhisk's web action contract against a running
// platform: every extension, a binary response, raw-http, both forms of
// require-whisk-auth, final parameters, CORS, a non-exported action (404)
// and an application error answered as the response.
func TestWebActions(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	e.deployJS(g, "web", "nodejs:default", []byte(webJS), false, webAnns("web-export", true))
	e.deployJS(g, "webraw", "nodejs:default", []byte(webJS), false, webAnns("web-export", true, "raw-http", true))
	e.deployJS(g, "websecret", "nodejs:default", []byte(webJS), false, webAnns("web-export", true, "require-whisk-auth", "s3cret"))
	e.deployJS(g, "webauth", "nodejs:default", []byte(webJS), false, webAnns("web-export", true, "require-whisk-auth", true))
	e.deployJS(g, "webfinal", "nodejs:default", []byte(webJS), false, map[string]any{
		"annotations": kvs("web-export", true, "final", true), "parameters": kvs("name", "Fixed")})
	e.deployJS(g, "private", "nodejs:default", []byte(webJS), false, nil)
	var pkg map[string]any
	if st, _ := e.call(g, "PUT", "/api/v1/namespaces/_/packages/site", map[string]any{}, &pkg); st != 200 {
		t.Fatalf("put package: %d %v", st, pkg)
	}
	e.deployJS(g, "site/page", "nodejs:default", []byte(webJS), false, webAnns("web-export", true))

	base := "/api/v1/web/guest/default/"
	type check struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		ctype              string
		want               string // substring of the body
	}
	for _, c := range []check{
		{name: "json", method: "GET", path: base + "web.json?name=Ann", status: 200, ctype: "application/json", want: `"text":"hello Ann"`},
		{name: "json projection", method: "GET", path: base + "web.json/body/method?name=Ann", status: 400, want: "application/json"},
		{name: "json projection object", method: "GET", path: base + "web.json/headers", status: 200, ctype: "application/json", want: `{"X-Clemmys":"web"}`},
		{name: "html", method: "GET", path: base + "web.html?name=Ann", status: 200, ctype: "text/html; charset=UTF-8", want: "<p>hello Ann</p>"},
		{name: "svg", method: "GET", path: base + "web.svg?name=Ann", status: 200, ctype: "image/svg+xml", want: "<svg><text>Ann</text></svg>"},
		{name: "text", method: "GET", path: base + "web.text?name=Ann", status: 200, ctype: "text/plain; charset=UTF-8", want: "hello Ann"},
		{name: "http", method: "POST", path: base + "web.http/a/b?n=1", hdr: map[string]string{"Content-Type": "application/json"}, body: `{"name":"Bo"}`,
			status: 200, ctype: "application/json", want: `"method":"post","n":"1","name":"Bo","path":"/a/b"`},
		{name: "no extension is http", method: "PUT", path: base + "web", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Cy+D",
			status: 200, want: `"name":"Cy D"`},
		{name: "package", method: "GET", path: "/api/v1/web/guest/site/page.text?name=Pk", status: 200, want: "hello Pk"},
		{name: "raw-http", method: "POST", path: base + "webraw.json/body?a=1&a=2", hdr: map[string]string{"Content-Type": "application/json"}, body: `{"x":1}`,
			status: 200, want: `"query":"a=1\u0026a=2","raw":"{\"x\":1}"`},
		{name: "reserved parameter", method: "GET", path: base + "web.json?__ow_method=put", status: 400},
		{name: "not exported", method: "GET", path: base + "private.json", status: 404},
		{name: "missing", method: "GET", path: base + "nothing.json", status: 404},
		{name: "other namespace", method: "GET", path: "/api/v1/web/nobody/default/web.json", status: 404},
		{name: "secret missing", method: "GET", path: base + "websecret.json", status: 401},
		{name: "secret wrong", method: "GET", path: base + "websecret.json", hdr: map[string]string{"X-Require-Whisk-Auth": "s3cre"}, status: 401},
		{name: "secret", method: "GET", path: base + "websecret.text?name=S", hdr: map[string]string{"X-Require-Whisk-Auth": "s3cret"}, status: 200, want: "hello S"},
		{name: "auth missing", method: "GET", path: base + "webauth.json", status: 401},
		{name: "auth bad", method: "GET", path: base + "webauth.json", hdr: map[string]string{"auth": "nobody:nothing"}, status: 401},
		{name: "auth", method: "GET", path: base + "webauth.json/body", hdr: map[string]string{"auth": g}, status: 200, want: `"hasAuth":false`},
		{name: "auth user", method: "GET", path: base + "webauth.json/body", hdr: map[string]string{"auth": g}, status: 200, want: `"user":"guest"`},
		{name: "final default", method: "GET", path: base + "webfinal.text", status: 200, want: "hello Fixed"},
		{name: "final refused", method: "GET", path: base + "webfinal.text?name=Mallory", status: 400},
		{name: "application error as response", method: "GET", path: base + "web.http?fail=1", status: 418, want: "short and stout"},
	} {
		st, h, b := e.web(c.method, c.path, c.hdr, []byte(c.body))
		if st != c.status || !strings.Contains(string(b), c.want) || (c.ctype != "" && h.Get("Content-Type") != c.ctype) {
			t.Errorf("%s: %s %s: %d %q %q; want %d %q containing %q", c.name, c.method, c.path, st, h.Get("Content-Type"), b, c.status, c.ctype, c.want)
		}
		if h.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header: %v", c.name, h)
		}
	}

	// A binary response: the base64 body is decoded.
	st, h, b := e.web("GET", base+"web?png=1", nil, nil)
	if want := []byte{0x89, 0x50, 0x4e, 0x47, 0, 255}; st != 200 || h.Get("Content-Type") != "image/png" || !bytes.Equal(b, want) {
		t.Errorf("binary: %d %q %x, want 200 image/png %x", st, h.Get("Content-Type"), b, want)
	}
	// A binary request body reaches a raw-http action as base64.
	st, _, b = e.web("POST", base+"webraw.json/body", map[string]string{"Content-Type": "application/octet-stream"}, []byte{1, 2, 3})
	if want := base64.StdEncoding.EncodeToString([]byte{1, 2, 3}); st != 200 || !strings.Contains(string(b), want) {
		t.Errorf("binary request: %d %s, want %s", st, b, want)
	}
	// The .http headers reach the client.
	_, h, _ = e.web("GET", base+"web.http", nil, nil)
	if h.Get("X-Clemmys") != "web" || h.Get("x-openwhisk-activation-id") == "" {
		t.Errorf("http headers: %v", h)
	}
	// The activation is the owner's, like any other.
	var act map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations/"+h.Get("x-openwhisk-activation-id"), nil, &act); st != 200 || act["name"] != "web" {
		t.Errorf("web activation record: %d %v", st, act)
	}

	// CORS preflight, as OpenWhisk answers it.
	st, h, _ = e.web("OPTIONS", base+"web.json", map[string]string{"Access-Control-Request-Headers": "X-Custom"}, nil)
	if st != 200 || h.Get("Access-Control-Allow-Methods") != "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH" || h.Get("Access-Control-Allow-Headers") != "X-Custom" {
		t.Errorf("preflight: %d %v", st, h)
	}
	// web-custom-options: the action answers OPTIONS itself, without the
	// automatic headers.
	e.deployJS(g, "webopts", "nodejs:default", []byte(`function main(p) { return { headers: { 'Allow': 'GET' }, body: p.__ow_method } }`), false,
		webAnns("web-export", true, "web-custom-options", true))
	st, h, b = e.web("OPTIONS", base+"webopts", nil, nil)
	if st != 200 || string(b) != "options" || h.Get("Allow") != "GET" || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("custom options: %d %q %v", st, b, h)
	}

	// Removing web-export stops it at once.
	e.deployJS(g, "web", "nodejs:default", []byte(webJS), false, webAnns("web-export", false))
	if st, _, _ := e.web("GET", base+"web.json", nil, nil); st != 404 {
		t.Errorf("after web-export false: %d, want 404", st)
	}

	// A controller that adds web-export to a private action does not
	// expose it: the web annotations carry the gateway's MAC.
	restore := e.tamperEntity(t, "private", func(a *wire.Action) {
		a.Annotations = append(a.Annotations, wire.KeyValue{Key: "web-export", Value: true})
	})
	defer restore()
	if st, _, b := e.web("GET", base+"private.json", nil, nil); st != 404 {
		t.Errorf("tampered web-export: %d %s, want 404", st, b)
	}
}

// TestAPIRoutes: the openwhisk client's routes API (apimgmt createApi,
// getApi, deleteApi) maps a base path, a path and a verb to a web action,
// served without credentials at /api/{namespace}/{basepath}/{path}.
func TestAPIRoutes(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	e.deployJS(g, "book", "nodejs:default", []byte(`function main(p) { return { id: p.id, method: p.__ow_method, q: p.q } }`), false, webAnns("web-export", true))
	e.deployJS(g, "plain", "nodejs:default", []byte(`function main() { return {} }`), false, nil)
	create := func(action, base, path, verb, resp string) (int, map[string]any) {
		var out map[string]any
		body := map[string]any{"apidoc": map[string]any{"namespace": "_", "gatewayBasePath": base, "gatewayPath": path, "gatewayMethod": verb,
			"apiName": "books", "action": map[string]any{"name": action, "namespace": "guest", "backendMethod": "GET"}}}
		q := ""
		if resp != "" {
			q = "?responsetype=" + resp
		}
		st, _ := e.call(g, "POST", "/api/v1/web/whisk.system/apimgmt/createApi"+q, body, &out)
		return st, out
	}
	if st, out := create("book", "/library", "/books/{id}", "get", ""); st != 200 || !strings.Contains(compactJSON(out), `"gwApiUrl":"https://`) {
		t.Fatalf("create: %d %v", st, out)
	}
	if st, out := create("book", "/library", "/books", "POST", "json"); st != 200 {
		t.Fatalf("create post: %d %v", st, out)
	}
	if st, _ := create("plain", "/library", "/plain", "get", ""); st != 400 {
		t.Errorf("a route to an action that is not a web action: %d", st)
	}
	if st, _ := e.call("", "POST", "/api/v1/web/whisk.system/apimgmt/createApi", map[string]any{}, nil); st != 401 {
		t.Errorf("create without credentials: %d", st)
	}
	st, _, b := e.web("GET", "/api/guest/library/books/42?q=x", nil, nil)
	if st != 200 || !strings.Contains(string(b), `"id":"42"`) || !strings.Contains(string(b), `"q":"x"`) {
		t.Errorf("GET route: %d %s", st, b)
	}
	st, _, b = e.web("POST", "/api/guest/library/books", map[string]string{"Content-Type": "application/json"}, []byte(`{"id":"new"}`))
	if st != 200 || !strings.Contains(string(b), `"method":"post"`) {
		t.Errorf("POST route: %d %s", st, b)
	}
	if st, _, _ := e.web("DELETE", "/api/guest/library/books/42", nil, nil); st != 404 {
		t.Errorf("a verb without a route: %d", st)
	}
	var got map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/web/whisk.system/apimgmt/getApi?basepath=/library", nil, &got); st != 200 || !strings.Contains(compactJSON(got), `"/books/{id}"`) {
		t.Errorf("getApi: %d %v", st, got)
	}
	if st, _ := e.call(g, "DELETE", "/api/v1/web/whisk.system/apimgmt/deleteApi?basepath=/library&relpath=/books/{id}&operation=GET&force=true", nil, nil); st != 200 {
		t.Errorf("deleteApi: %d", st)
	}
	if st, _, _ := e.web("GET", "/api/guest/library/books/42", nil, nil); st != 404 {
		t.Errorf("deleted route: %d", st)
	}
	if st, _, _ := e.web("POST", "/api/guest/library/books", map[string]string{"Content-Type": "application/json"}, []byte(`{}`)); st != 200 {
		t.Errorf("the other route: %d", st)
	}
}

func compactJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
