package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestServesAssetsWithCSP(t *testing.T) {
	cases := []struct {
		path, ctype string
	}{
		{"/console/", "text/html"},
		{"/console/app.js", "text/javascript"},
		{"/console/style.css", "text/css"},
	}
	for _, c := range cases {
		w := get(t, http.MethodGet, c.path)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d", c.path, w.Code)
			continue
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		if got := w.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: CSP %q", c.path, got)
		}
		for _, hd := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
			if w.Header().Get(hd) == "" {
				t.Errorf("GET %s: no %s", c.path, hd)
			}
		}
	}
	for _, d := range []string{"script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP lacks %q", d)
		}
	}
	if strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", CSP)
	}
}

func TestRedirectsMethodsAndListings(t *testing.T) {
	if w := get(t, http.MethodGet, "/console"); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/console/" {
		t.Errorf("GET /console: %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := get(t, http.MethodPost, "/console/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d", w.Code)
	}
	if w := get(t, http.MethodGet, "/console/nope.js"); w.Code != http.StatusNotFound {
		t.Errorf("GET a missing asset: %d", w.Code)
	}
	if w := get(t, http.MethodGet, "/console/x/"); w.Code != http.StatusNotFound {
		t.Errorf("GET a directory: %d", w.Code)
	}
}

// The CSP forbids inline scripts and styles, and the console must not need
// them; nor may it build markup from strings (API data is shown as text).
func TestNoInlineCodeOrMarkupFromStrings(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=|<style`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|localStorage|document\.cookie`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		src := string(b)
		switch {
		case strings.HasSuffix(p, ".html"):
			if inlineScript.MatchString(src) {
				t.Errorf("%s has an inline script", p)
			}
			if styleAttr.MatchString(src) || handlerAttr.MatchString(src) {
				t.Errorf("%s has inline styles or event handlers", p)
			}
		case strings.HasSuffix(p, ".js"):
			if m := sinks.FindString(src); m != "" {
				t.Errorf("%s uses %s", p, m)
			}
			if strings.Contains(src, "setAttribute('style'") {
				t.Errorf("%s sets a style attribute", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
