package gateway

import (
	"net/http"
	"strings"
)

// CORS, as OpenWhisk's controller does it: every response allows any
// origin, and preflight requests (OPTIONS) are answered 200 without
// authentication. Allowing any origin is safe here because the API is
// authenticated with an Authorization header, never with cookies: a page of
// another origin can call the API only with credentials it already holds.
const (
	corsAllowOrigin  = "*"
	corsAllowHeaders = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
	corsAllowMethods = "GET, DELETE, POST, PUT, HEAD, PATCH"
	// preflightRoute is the metrics label of preflight requests.
	preflightRoute = "OPTIONS /"
)

// cors sets the CORS headers on every response and answers preflights. It
// sits outside the mux, so that OPTIONS works on every path (and cannot
// conflict with the mux's patterns).
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ownCORS(r.URL.Path) {
			next.ServeHTTP(w, r) // web actions and API routes: web.go
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", corsAllowOrigin)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		if r.Method == http.MethodOptions {
			r.Pattern = preflightRoute // observe labels metrics with it
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownCORS reports whether a path is a web action's or an API route's,
// which set their CORS headers themselves, or the console's, which sets
// none (OpenWhisk's web action CORS;
// web-custom-options leaves them to the action).
func ownCORS(p string) bool {
	if p == "/console" || strings.HasPrefix(p, "/console/") {
		return true // the console is same-origin only (package console)
	}
	if strings.HasPrefix(p, apiMgmt) {
		return false // the management API is the REST API's
	}
	return strings.HasPrefix(p, webPrefix) || strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/api/v1/") && p != "/api/v1"
}
