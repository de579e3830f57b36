package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clemmys/clemmys/internal/console"
	"github.com/clemmys/clemmys/internal/wire"
)

// Messages safe to show; OpenWhisk's wording where it has one.
const (
	msgNotFound      = "The requested resource does not exist."
	msgUnauthorized  = "The supplied authentication is invalid."
	msgInternal      = "Internal server error."
	msgUnavailable   = "The service is temporarily unavailable."
	msgNotAuthorized = "The supplied authentication is not authorized to access '%s'."
	msgTooLarge      = "The request content was too large (the limit is %d bytes)."
	msgConflict      = "resource already exists"
)

// entityName is OpenWhisk's entity name rule.
var entityName = regexp.MustCompile(`^(?:\w|\w[\w@ .-]*[\w@.-])$`)

const maxEntityName = 256

func validNamespace(ns string) bool { return len(ns) <= maxEntityName && entityName.MatchString(ns) }
func validName(n string) bool       { return len(n) <= maxEntityName && entityName.MatchString(n) }

type ctxKey int

const (
	ctxTxID ctxKey = iota
	ctxNamespace
)

// txID is the per-request transaction id, returned in error bodies as
// "code" (as OpenWhisk does) and logged, so an operator can find the
// internal detail of an error the client saw only generically.
func txID(r *http.Request) string {
	id, _ := r.Context().Value(ctxTxID).(string)
	return id
}

// callerNamespace is the authenticated caller's namespace.
func callerNamespace(r *http.Request) string {
	ns, _ := r.Context().Value(ctxNamespace).(string)
	return ns
}

// routes builds the HTTP handler.
func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	api := "/api/v1/namespaces/{ns}"
	handle := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, g.authenticated(h))
	}
	mux.HandleFunc("GET /api/v1", g.info)
	mux.HandleFunc("GET /api/v1/{$}", g.info)
	handle("GET /api/v1/namespaces", g.listNamespaces)
	handle("GET /api/v1/namespaces/{$}", g.listNamespaces)
	handle("GET "+api+"/actions", g.listActions)
	handle("GET "+api+"/actions/{$}", g.listActions)
	handle("PUT "+api+"/actions/{name}", g.putAction)
	handle("GET "+api+"/actions/{name}", g.getAction)
	handle("DELETE "+api+"/actions/{name}", g.deleteAction)
	handle("POST "+api+"/actions/{name}", g.invokeAction)
	handle("GET "+api+"/actions/{pkg}/{$}", g.listActions) // actions in packages: name "pkg/name" on the wire
	handle("PUT "+api+"/actions/{pkg}/{name}", g.putAction)
	mux.Handle("GET "+api+"/actions/{pkg}/{name}", g.publicRead(g.getAction))
	handle("DELETE "+api+"/actions/{pkg}/{name}", g.deleteAction)
	mux.Handle("POST "+api+"/actions/{pkg}/{name}", g.publicRead(g.invokeAction))
	handle("GET "+api+"/activations", g.listActivations)
	handle("GET "+api+"/activations/{$}", g.listActivations)
	handle("GET "+api+"/activations/{id}", g.getActivation)
	handle("GET "+api+"/activations/{id}/result", g.getActivationResult)
	handle("GET "+api+"/activations/{id}/logs", g.getActivationLogs)
	handle("GET "+api+"/policy", g.getPolicy)
	handle("PUT "+api+"/policy", g.putPolicy)
	// Packages, triggers, rules, namespace (packages.go, triggers.go,
	// rules.go, namespaces.go).
	mux.Handle("GET "+api+"/packages", g.publicRead(g.listPackages)) // another namespace's: its public ones
	mux.Handle("GET "+api+"/packages/{$}", g.publicRead(g.listPackages))
	handle("PUT "+api+"/packages/{name}", g.putPackage)
	mux.Handle("GET "+api+"/packages/{name}", g.publicRead(g.getPackage))
	handle("DELETE "+api+"/packages/{name}", g.deletePackage)
	handle("GET "+api+"/triggers", g.listTriggers)
	handle("GET "+api+"/triggers/{$}", g.listTriggers)
	handle("PUT "+api+"/triggers/{name}", g.putTrigger)
	handle("GET "+api+"/triggers/{name}", g.getTrigger)
	handle("DELETE "+api+"/triggers/{name}", g.deleteTrigger)
	handle("POST "+api+"/triggers/{name}", g.fireTrigger)
	handle("GET "+api+"/rules", g.listRules)
	handle("GET "+api+"/rules/{$}", g.listRules)
	handle("PUT "+api+"/rules/{name}", g.putRule)
	handle("GET "+api+"/rules/{name}", g.getRule)
	handle("DELETE "+api+"/rules/{name}", g.deleteRule)
	handle("POST "+api+"/rules/{name}", g.setRuleStatus)
	handle("GET "+api+"/limits", g.getLimits)
	handle("GET /api/v1/clemmys/attestation", g.getAttestation)
	handle("GET "+api, g.getNamespace)
	// Web actions (web.go): no credentials, their own CORS.
	mux.HandleFunc(webPrefix, g.webAction)
	// API routes (apimgmt.go): managed with credentials, served without.
	handle("POST "+apiMgmt+"createApi", g.createAPI)
	handle("GET "+apiMgmt+"getApi", g.getAPI)
	handle("DELETE "+apiMgmt+"deleteApi", g.deleteAPI)
	mux.HandleFunc("/api/{ns}/{path...}", g.serveRoute)
	g.adminRoutes(mux)
	// The web console (package console): static assets only; it calls
	// the API above from the browser with the namespace's key.
	mux.Handle("/console", console.Handler())
	mux.Handle("/console/", console.Handler())
	gatherers := append(prometheus.Gatherers{g.metrics.reg}, g.cfg.ExtraMetrics...)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
	})
	return g.observe(cors(mux))
}

// observe assigns the transaction id, recovers panics and counts requests.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		r = r.WithContext(context.WithValue(r.Context(), ctxTxID, id))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				g.log.Error("handler panic", "tx", id, "method", r.Method, "panic", p)
				if !sw.wrote {
					g.fail(sw, r, http.StatusInternalServerError, msgInternal)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			g.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
			g.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// authenticated checks HTTP Basic credentials ("uuid:key") and resolves the
// {ns} path value: "_" is the caller's namespace, and any other namespace
// than the caller's is refused.
func (g *Gateway) authenticated(h http.HandlerFunc) http.Handler {
	return g.authenticate(h, false)
}

// publicRead is authenticated for the routes that reach public packages of
// other namespaces (GET .../packages/{name}; GET and POST
// .../actions/{pkg}/{name}): a valid foreign {ns} is let through, and the
// handler, which works on targetNamespace(r), must answer 403 unless the
// package is public. Every other route refuses a foreign {ns}.
func (g *Gateway) publicRead(h http.HandlerFunc) http.Handler {
	return g.authenticate(h, true)
}

// targetNamespace is the namespace a request addresses: the {ns} path value
// with "_" resolved to the caller's namespace. It differs from
// callerNamespace(r) only on publicRead routes.
func targetNamespace(r *http.Request) string {
	if p := r.PathValue("ns"); p != "" && p != "_" {
		return p
	}
	return callerNamespace(r)
}

func (g *Gateway) authenticate(h http.HandlerFunc, foreign bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, k, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="clemmys"`)
			g.fail(w, r, http.StatusUnauthorized, msgUnauthorized)
			return
		}
		ns, ok := g.CheckCredential(r.Context(), u, k)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="clemmys"`)
			g.fail(w, r, http.StatusUnauthorized, msgUnauthorized)
			return
		}
		if p := r.PathValue("ns"); p != "" && p != "_" && p != ns && !(foreign && validNamespace(p)) {
			shown := p
			if !validNamespace(p) {
				shown = "the namespace"
			}
			g.fail(w, r, http.StatusForbidden, msgNotAuthorized, shown)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxNamespace, ns)))
	})
}

func (g *Gateway) info(w http.ResponseWriter, r *http.Request) {
	info := map[string]any{
		"description": "clemmys confidential FaaS (OpenWhisk REST API v1)",
		"api_paths":   []string{"/api/v1"},
		"runtimes":    g.runtimes(),
	}
	if g.cfg.TEE != "" {
		info["tee"] = g.cfg.TEE
	}
	if g.cfg.TEE == "sim" {
		info["warning"] = "SIMULATED TEE: this deployment has no hardware protection; the host can read every function's code, data and keys. For development only."
	}
	writeJSON(w, http.StatusOK, info)
}

func (g *Gateway) listNamespaces(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{callerNamespace(r)})
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"Internal server error."}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail writes an OpenWhisk error body {"error": msg, "code": txid}. msg must
// be safe to show: never payloads, keys or internal detail.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, status int, msg string, args ...any) {
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	writeJSON(w, status, map[string]string{"error": msg, "code": txID(r)})
}

// busError answers a failed bus call: wire errors carry a message safe to
// show and a code mapped to an HTTP status; anything else is logged and
// answered generically.
func (g *Gateway) busError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		status := http.StatusInternalServerError
		msg := we.Message
		switch we.Code {
		case wire.CodeBadRequest:
			status = http.StatusBadRequest
		case wire.CodeNotFound:
			status, msg = http.StatusNotFound, msgNotFound
		case wire.CodeConflict:
			status = http.StatusConflict
		case wire.CodeForbidden, wire.CodePolicy, wire.CodeAttestation:
			status = http.StatusForbidden
		case wire.CodeTooLarge:
			status = http.StatusRequestEntityTooLarge
		case wire.CodeUnavailable:
			status, msg = http.StatusServiceUnavailable, msgUnavailable
		case wire.CodeTimeout:
			status = http.StatusGatewayTimeout
		default:
			msg = msgInternal
		}
		if status >= 500 {
			g.log.Error(what, "tx", txID(r), "code", we.Code, "err", we.Message)
		}
		g.fail(w, r, status, "%s", msg)
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		g.log.Error(what, "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusGatewayTimeout, "The request timed out.")
		return
	}
	g.log.Error(what, "tx", txID(r), "err", err)
	g.fail(w, r, http.StatusInternalServerError, msgInternal)
}

// readBody reads at most limit bytes of the request body; it answers 413
// and returns false when the body is larger.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		g.fail(w, r, http.StatusRequestEntityTooLarge, msgTooLarge, limit)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			g.fail(w, r, http.StatusRequestEntityTooLarge, msgTooLarge, limit)
			return nil, false
		}
		g.fail(w, r, http.StatusBadRequest, "The request body could not be read.")
		return nil, false
	}
	return b, true
}

// queryBool parses an optional boolean query parameter.
func queryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("query parameter " + name + " must be true or false")
	}
	return b, nil
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(q url.Values, name string, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("query parameter " + name + " must be a non-negative integer")
	}
	return n, nil
}

// metrics are the gateway's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// stepPrewarms counts prewarms asked for later sequence steps
	// (prewarm.go), counted when the gateway decides, before it publishes.
	stepPrewarms prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "gateway", Name: "requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clemmys", Subsystem: "gateway", Name: "request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"route"}),
		stepPrewarms: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "gateway", Name: "step_prewarms_total",
			Help: "Prewarms the gateway asked for the later steps of sequences (once per function and interval).",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.stepPrewarms)
	return m
}
