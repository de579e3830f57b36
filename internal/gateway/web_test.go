package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestParseWebPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want webPath
	}{
		{"guest/default/hello", true, webPath{ns: "guest", name: "hello", ext: "http"}},
		{"guest/default/hello.json", true, webPath{ns: "guest", name: "hello", ext: "json"}},
		{"guest/demo/hello.html/a/b", true, webPath{ns: "guest", name: "demo/hello", ext: "html", rest: "/a/b"}},
		{"guest/default/hello.world", true, webPath{ns: "guest", name: "hello.world", ext: "http"}},
		{"guest/default/hello.world.svg", true, webPath{ns: "guest", name: "hello.world", ext: "svg"}},
		{"guest/default/hello.text/", true, webPath{ns: "guest", name: "hello", ext: "text", rest: "/"}},
		{"guest/default/hello.http/x.json", true, webPath{ns: "guest", name: "hello", ext: "http", rest: "/x.json"}},
		{"guest/default", false, webPath{}},
		{"guest//hello", false, webPath{}},
		{"_/default/.json", false, webPath{}},
		{"-bad/default/a", false, webPath{}},
	} {
		got, ok := parseWebPath(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseWebPath(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWebParams(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		in     webInput
		status int
		want   map[string]any // fields that must be there
		absent []string
	}{
		{"query and json body", webInput{method: "POST", header: hdr("Content-Type", "application/json", "X-A", "1"), rawQuery: "a=1&b=2", body: []byte(`{"b":"body","c":[1]}`), path: "/p"},
			0, map[string]any{"a": "1", "b": "body", "c": []any{1.0}, owMethod: "post", owPath: "/p", owHeaders: map[string]any{"content-type": "application/json", "x-a": "1"}}, []string{owBody, owQuery}},
		{"form", webInput{method: "POST", header: hdr("Content-Type", "application/x-www-form-urlencoded"), body: []byte("name=Jane+Doe&x=%3C")},
			0, map[string]any{"name": "Jane Doe", "x": "<"}, []string{owBody}},
		{"json array body", webInput{method: "PUT", header: hdr("Content-Type", "application/json"), body: []byte(`[1,2]`)},
			0, map[string]any{owBody: []any{1.0, 2.0}}, nil},
		{"text body", webInput{method: "POST", header: hdr("Content-Type", "text/plain"), body: []byte("hi there")},
			0, map[string]any{owBody: "hi there"}, nil},
		{"binary body", webInput{method: "POST", header: hdr("Content-Type", "image/png"), body: []byte{0x89, 'P', 0}},
			0, map[string]any{owBody: base64.StdEncoding.EncodeToString([]byte{0x89, 'P', 0})}, nil},
		{"raw-http", webInput{method: "POST", header: hdr("Content-Type", "application/json"), rawQuery: "a=1&a=2", body: []byte(`{"x":1}`), raw: true},
			0, map[string]any{owQuery: "a=1&a=2", owBody: `{"x":1}`}, []string{"a", "x"}},
		{"raw-http binary", webInput{method: "POST", header: hdr("Content-Type", "application/octet-stream"), body: []byte{1, 2, 3}, raw: true},
			0, map[string]any{owBody: "AQID", owQuery: ""}, nil},
		{"user and dropped credential", webInput{method: "GET", header: hdr("Authorization", "Basic eDp5"), user: "guest", dropAuth: true},
			0, map[string]any{owUser: "guest"}, nil},
		{"path params", webInput{method: "GET", header: hdr(), pathParams: map[string]string{"id": "7"}, rawQuery: "id=8"},
			0, map[string]any{"id": "8"}, nil},
		{"reserved in query", webInput{method: "GET", header: hdr(), rawQuery: "__ow_method=put"}, 400, nil, nil},
		{"reserved in body", webInput{method: "POST", header: hdr("Content-Type", "application/json"), body: []byte(`{"__ow_user":"admin"}`)}, 400, nil, nil},
		{"reserved in form", webInput{method: "POST", header: hdr("Content-Type", "application/x-www-form-urlencoded"), body: []byte(`__ow_headers=1`)}, 400, nil, nil},
		{"bad json", webInput{method: "POST", header: hdr("Content-Type", "application/json"), body: []byte(`{`)}, 400, nil, nil},
		{"bad query", webInput{method: "GET", header: hdr(), rawQuery: "a=%zz"}, 400, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, status, msg := webParams(&tc.in)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, msg, tc.status)
			}
			if status != 0 {
				return
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if k == owHeaders {
					gh, _ := got[k].(map[string]any)
					for hk, hv := range v.(map[string]any) {
						if gh[hk] != hv {
							t.Errorf("header %s = %v, want %v", hk, gh[hk], hv)
						}
					}
					continue
				}
				if compact(got[k]) != compact(v) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is set: %v", k, got[k])
				}
			}
			if tc.in.dropAuth {
				if _, ok := got[owHeaders].(map[string]any)["authorization"]; ok {
					t.Error("the Authorization header was passed on")
				}
			}
		})
	}
}

func TestRenderWeb(t *testing.T) {
	png := []byte{0x89, 'P', 'N', 'G', 0, 1, 2}
	for _, tc := range []struct {
		ext, result, path string
		status            int // of the response, or of the failure
		fail              bool
		ctype, body       string
		header            map[string]string
	}{
		{ext: "json", result: `{"a":1}`, status: 200, ctype: "application/json", body: `{"a":1}`},
		{ext: "json", result: `{"a":{"b":[1]}}`, path: "/a/b", status: 200, ctype: "application/json", body: `[1]`},
		{ext: "json", result: `{"a":"s"}`, path: "/a", status: 400, fail: true},
		{ext: "json", result: `{"a":1}`, path: "/zz", status: 404, fail: true},
		{ext: "html", result: `{"html":"<p>hi</p>"}`, status: 200, ctype: "text/html; charset=UTF-8", body: "<p>hi</p>"},
		{ext: "html", result: `{"body":{"page":"<b>x</b>"}}`, path: "/body/page", status: 200, ctype: "text/html; charset=UTF-8", body: "<b>x</b>"},
		{ext: "html", result: `{"html":5}`, status: 400, fail: true},
		{ext: "html", result: `{"other":"x"}`, status: 404, fail: true},
		{ext: "svg", result: `{"svg":"<svg/>"}`, status: 200, ctype: "image/svg+xml", body: "<svg/>"},
		{ext: "text", result: `{"text":"plain"}`, status: 200, ctype: "text/plain; charset=UTF-8", body: "plain"},
		{ext: "http", result: `{"body":"<h1>x</h1>"}`, status: 200, ctype: "text/html; charset=UTF-8", body: "<h1>x</h1>"},
		{ext: "http", result: `{}`, status: 204},
		{ext: "http", result: `{"statusCode":302,"headers":{"Location":"/x"}}`, status: 302, header: map[string]string{"Location": "/x"}},
		{ext: "http", result: `{"statusCode":201,"body":{"k":[1]}}`, status: 201, ctype: "application/json", body: `{"k":[1]}`},
		{ext: "http", result: `{"headers":{"Content-Type":"image/png"},"body":"` + base64.StdEncoding.EncodeToString(png) + `"}`, status: 200, ctype: "image/png", body: string(png)},
		{ext: "http", result: `{"headers":{"Content-Type":"image/png"},"body":"not base64!"}`, status: 400, fail: true},
		{ext: "http", result: `{"headers":{"Content-Type":"application/json"},"body":"{\"a\":1}"}`, status: 200, ctype: "application/json", body: `{"a":1}`},
		{ext: "http", result: `{"statusCode":99}`, status: 400, fail: true},
		{ext: "http", result: `{"statusCode":"200"}`, status: 400, fail: true},
		{ext: "http", result: `{"headers":{"Bad Header":"x"}}`, status: 400, fail: true},
		{ext: "http", result: `{"headers":{"X":"a\nb"}}`, status: 400, fail: true},
		{ext: "http", result: `{"headers":{"Set-Cookie":["a=1","b=2"],"X-N":3,"X-B":true},"body":"ok"}`, status: 200, ctype: "text/html; charset=UTF-8", body: "ok", header: map[string]string{"X-N": "3", "X-B": "true", "Set-Cookie": "a=1"}},
		{ext: "http", result: `{"headers":"x"}`, status: 400, fail: true},
	} {
		resp, status, msg := renderWeb(tc.ext, json.RawMessage(tc.result), tc.path)
		name := tc.ext + " " + tc.result + " " + tc.path
		if tc.fail {
			if status != tc.status || resp != nil {
				t.Errorf("%s: %v %d %q, want failure %d", name, resp, status, msg, tc.status)
			}
			continue
		}
		if status != 0 {
			t.Errorf("%s: failed %d %q", name, status, msg)
			continue
		}
		if resp.status != tc.status || string(resp.body) != tc.body || resp.header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: %d %q %q, want %d %q %q", name, resp.status, resp.header.Get("Content-Type"), resp.body, tc.status, tc.ctype, tc.body)
		}
		for k, v := range tc.header {
			if resp.header.Get(k) != v {
				t.Errorf("%s: header %s = %q, want %q", name, k, resp.header.Get(k), v)
			}
		}
	}
	resp, _, _ := renderWeb("http", json.RawMessage(`{"headers":{"Set-Cookie":["a=1","b=2"]}}`), "")
	if got := resp.header.Values("Set-Cookie"); len(got) != 2 {
		t.Errorf("Set-Cookie values %v, want two", got)
	}
}

func TestWebTag(t *testing.T) {
	g := &Gateway{seqMAC: newKeyedMAC(make([]byte, 32))}
	a := &wire.Action{Namespace: "ns", Name: "act", Annotations: []wire.KeyValue{
		{Key: "web-export", Value: true}, {Key: "require-whisk-auth", Value: float64(1234)}, {Key: "other", Value: "x"},
	}}
	g.tagWeb(a)
	if !g.webIntact(a) {
		t.Fatal("a freshly tagged action does not verify")
	}
	// What the store gives back (CBOR) verifies too.
	back := roundTrip(t, a)
	if !g.webIntact(back) {
		t.Fatal("the stored action does not verify")
	}
	for name, change := range map[string]func(*wire.Action){
		"web-export added": func(a *wire.Action) { a.Annotations = []wire.KeyValue{{Key: "web-export", Value: true}} },
		"auth removed":     func(a *wire.Action) { a.Annotations = a.Annotations[:1] },
		"renamed":          func(a *wire.Action) { a.Name = "other" },
		"raw-http added": func(a *wire.Action) {
			a.Annotations = append(a.Annotations, wire.KeyValue{Key: "raw-http", Value: true})
		},
		"final added": func(a *wire.Action) { a.Annotations = append(a.Annotations, wire.KeyValue{Key: "final", Value: true}) },
		"custom options set": func(a *wire.Action) {
			a.Annotations = append(a.Annotations, wire.KeyValue{Key: "web-custom-options", Value: true})
		},
		"no tag": func(a *wire.Action) { a.WebTag = nil },
	} {
		c := roundTrip(t, a)
		change(c)
		if g.webIntact(c) {
			t.Errorf("%s: still verifies", name)
		}
	}
	// Other annotations are not covered.
	c := roundTrip(t, a)
	c.Annotations[2].Value = "y"
	if !g.webIntact(c) {
		t.Error("a change of another annotation broke the tag")
	}
}

func roundTrip(t *testing.T, a *wire.Action) *wire.Action {
	t.Helper()
	b, err := bus.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var out wire.Action
	if err := bus.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func FuzzWebParams(f *testing.F) {
	f.Add("POST", "application/json", "a=1&b=2", []byte(`{"x":1}`), false, "/p")
	f.Add("GET", "", "", []byte{}, true, "")
	f.Add("PUT", "application/x-www-form-urlencoded", "__ow_x=1", []byte("a=b&c=%zz"), false, "/")
	f.Add("POST", "image/png", "q", []byte{0, 1, 2, 0xff}, true, "/a/b")
	f.Add("POST", "application/vnd.api+json", "", []byte(`[1,"x",{"y":null}]`), false, "")
	f.Fuzz(func(t *testing.T, method, ctype, query string, body []byte, raw bool, path string) {
		in := &webInput{method: method, header: http.Header{"Content-Type": {ctype}}, rawQuery: query, body: body, raw: raw, path: path}
		b, status, msg := webParams(in)
		if status != 0 {
			if status != http.StatusBadRequest || msg == "" || b != nil {
				t.Fatalf("failure %d %q %v", status, msg, b)
			}
			return
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not a JSON object: %v", err)
		}
		if m[owMethod] != strings.ToLower(method) {
			t.Fatalf("__ow_method %v", m[owMethod])
		}
		if raw && utf8.ValidString(query) && m[owQuery] != query {
			t.Fatalf("__ow_query %v, want %q", m[owQuery], query)
		}
	})
}

func FuzzRenderWeb(f *testing.F) {
	for _, s := range []string{`{}`, `{"html":"x"}`, `{"body":"aGk=","headers":{"content-type":"image/png"}}`,
		`{"statusCode":500,"body":[1]}`, `{"headers":{"a":[1,true,"x"]}}`, `{"a":{"b":{"c":"d"}}}`, `[`, `"s"`} {
		for _, ext := range []string{"json", "html", "svg", "text", "http"} {
			f.Add(ext, s, "/a/b")
		}
	}
	f.Fuzz(func(t *testing.T, ext, result, path string) {
		if _, ok := webExtensions[ext]; !ok {
			return
		}
		resp, status, msg := renderWeb(ext, json.RawMessage(result), path)
		if status != 0 {
			if resp != nil || msg == "" || status < 400 {
				t.Fatalf("failure %d %q %v", status, msg, resp)
			}
			return
		}
		if resp.status < 100 || resp.status > 599 {
			t.Fatalf("status %d", resp.status)
		}
		for k, vs := range resp.header {
			if !validHeaderName(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("header value %q", v)
				}
			}
		}
	})
}
