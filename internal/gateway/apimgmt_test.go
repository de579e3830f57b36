package gateway

import (
	"strings"
	"testing"
)

func TestRoutePaths(t *testing.T) {
	for in, want := range map[string]string{"/a/b/": "/a/b", "a//b": "/a/b", "/": "/", "": "/", "/books/{id}": "/books/{id}"} {
		if got, ok := cleanPath(in); !ok || got != want {
			t.Errorf("cleanPath(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/a/../b", "/a/./b", "/a%2f", "/a b", strings.Repeat("a", maxRoutePath+1)} {
		if _, ok := cleanPath(in); ok {
			t.Errorf("cleanPath(%q) accepted", in)
		}
	}
	for _, tc := range []struct {
		route, path string
		ok          bool
		params      map[string]string
	}{
		{"/books/{id}", "books/7", true, map[string]string{"id": "7"}},
		{"/books/{id}/pages/{n}", "books/7/pages/3", true, map[string]string{"id": "7", "n": "3"}},
		{"/books", "books", true, map[string]string{}},
		{"/books", "books/7", false, nil},
		{"/books/{id}", "shelves/7", false, nil},
		{"/", "", true, map[string]string{}},
	} {
		var segs []string
		if tc.path != "" {
			segs = strings.Split(tc.path, "/")
		}
		params, ok := matchRoute(tc.route, segs)
		if ok != tc.ok || ok && compact(params) != compact(tc.params) {
			t.Errorf("matchRoute(%q, %q) = %v %v, want %v %v", tc.route, tc.path, params, ok, tc.params, tc.ok)
		}
	}
}

func FuzzRoutePaths(f *testing.F) {
	f.Add("/books/{id}", "/books/7")
	f.Add("/", "/a/b/c")
	f.Add("/{a}/{b}", "//x/y/")
	f.Fuzz(func(t *testing.T, route, path string) {
		r, ok := cleanPath(route)
		if !ok {
			return
		}
		if again, ok := cleanPath(r); !ok || again != r {
			t.Fatalf("cleanPath not idempotent: %q → %q → %q", route, r, again)
		}
		p, ok := cleanPath(path)
		if !ok {
			return
		}
		var segs []string
		if p != "/" {
			segs = strings.Split(strings.Trim(p, "/"), "/")
		}
		if params, ok := matchRoute(r, segs); ok && len(params) > len(segs) {
			t.Fatalf("more parameters than segments: %v", params)
		}
	})
}
