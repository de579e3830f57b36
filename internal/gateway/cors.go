package gateway

import "net/http"

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
