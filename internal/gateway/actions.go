package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

const (
	kindWasm     = wire.KindWasm
	kindSequence = wire.KindSequence
)

// OpenWhisk's limit ranges.
const (
	minTimeoutMs = 100
	maxTimeoutMs = 300_000
	minMemoryMB  = 128
	maxMemoryMB  = 512
	maxLogsMB    = 10
	maxListLimit = 200
	defListLimit = 30
)

// wasmHeader is the magic number and version 1 every wasm binary starts with.
var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// actionBody is the JSON body of PUT .../actions/{name}.
type actionBody struct {
	Namespace   string          `json:"namespace"`
	Name        string          `json:"name"`
	Exec        *execBody       `json:"exec"`
	Parameters  []wire.KeyValue `json:"parameters"`
	Annotations []wire.KeyValue `json:"annotations"`
	Limits      *limitsBody     `json:"limits"`
	Publish     bool            `json:"publish"`
}

type execBody struct {
	Kind       string   `json:"kind"`
	Code       *string  `json:"code"`
	Binary     bool     `json:"binary"`
	Main       string   `json:"main"`
	Components []string `json:"components"`
}

type limitsBody struct {
	Timeout     *int64 `json:"timeout"`
	Memory      *int64 `json:"memory"`
	Logs        *int64 `json:"logs"`
	Concurrency *int64 `json:"concurrency"`
}

// putAction deploys an action: it checks the module, registers a new
// function version with the KMS, seals the module under the version's code
// key and stores the action (with the KMS-signed function record) through
// the controller.
func (g *Gateway) putAction(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusBadRequest, "The action name is not valid.")
		return
	}
	overwrite, err := queryBool(r, "overwrite")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	raw, ok := g.readBody(w, r, g.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	var body actionBody
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: the body must be a JSON action.")
		return
	}
	if body.Exec != nil && body.Exec.Kind == kindSequence {
		g.putSequence(w, r, name, overwrite, &body)
		return
	}
	code, msg := decodeModule(body.Exec)
	if msg != "" {
		status := http.StatusBadRequest
		if msg == msgCodeTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		g.fail(w, r, status, "%s", msg)
		return
	}
	limits, ok := g.checkCommon(w, r, &body)
	if !ok {
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if !overwrite && !g.checkAbsent(ctx, w, r, ns, name) {
		return
	}

	digest := sha256.Sum256(code)
	rec, signed, codeKey, err := g.cfg.KMS.CreateFunction(ctx, wire.CreateFunction{
		Namespace: ns, Action: name, CodeDigest: digest[:],
	})
	if err != nil {
		g.busError(w, r, "create function version", err)
		return
	}
	g.fresh.admit(rec)
	sealed, err := envelope.SealCode(codeKey, rec.FunctionID, digest[:], code)
	if err != nil {
		g.log.Error("seal code", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	put := wire.ActionPut{
		Action: wire.Action{
			Namespace:   ns,
			Name:        name,
			Publish:     body.Publish,
			Kind:        kindWasm,
			Limits:      limits,
			Annotations: body.Annotations,
			Function:    signed,
			CodeSize:    int64(len(code)),
		},
		SealedCode: sealed,
		Overwrite:  overwrite,
	}
	var stored wire.Action
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionPut, &put, &stored); err != nil {
		g.busError(w, r, "store action", err)
		return
	}
	g.log.Info("action deployed", "namespace", ns, "action", name, "version", stored.Version,
		"function", hex.EncodeToString(rec.FunctionID), "code_digest", hex.EncodeToString(digest[:]), "code_bytes", len(code))
	writeJSON(w, http.StatusOK, g.renderAction(&stored))
}

const msgCodeTooLarge = "The action code is too large."

// checkCommon checks what actions and sequences share (parameters, limits,
// annotations) and returns the limits, or answers the request itself.
func (g *Gateway) checkCommon(w http.ResponseWriter, r *http.Request, body *actionBody) (wire.Limits, bool) {
	if len(body.Parameters) > 0 {
		g.fail(w, r, http.StatusBadRequest, "Default parameters are not supported yet: pass them with each invocation.")
		return wire.Limits{}, false
	}
	limits, msg := checkLimits(body.Limits)
	if msg != "" {
		g.fail(w, r, http.StatusBadRequest, "%s", msg)
		return wire.Limits{}, false
	}
	if len(body.Annotations) > 256 {
		g.fail(w, r, http.StatusBadRequest, "Too many annotations.")
		return wire.Limits{}, false
	}
	return limits, true
}

// checkAbsent answers 409 and returns false if ns/name exists. Deploys
// without overwrite call it first, so that the KMS does not create a
// function version for nothing (the controller checks again atomically).
func (g *Gateway) checkAbsent(ctx context.Context, w http.ResponseWriter, r *http.Request, ns, name string) bool {
	var existing wire.Action
	err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionGet, &wire.ActionRef{Namespace: ns, Name: name}, &existing)
	if err == nil {
		g.fail(w, r, http.StatusConflict, msgConflict)
		return false
	}
	if we, ok := errors.AsType[*wire.Error](err); !ok || we.Code != wire.CodeNotFound {
		g.busError(w, r, "check existing action", err)
		return false
	}
	return true
}

// decodeModule returns the wasm module of an exec, or a message for the
// client saying what is wrong with it.
func decodeModule(e *execBody) ([]byte, string) {
	if e == nil {
		return nil, "The action must have an exec: {\"kind\": \"wasm\", \"code\": \"<base64 of the .wasm module>\"}."
	}
	switch e.Kind {
	case kindWasm:
	case "":
		return nil, "exec.kind is required; clemmys runs kind \"wasm\"."
	default:
		return nil, "Unsupported action kind; clemmys runs kind \"wasm\" (WebAssembly modules)."
	}
	if e.Code == nil || *e.Code == "" {
		return nil, "exec.code is required: the base64 of the WebAssembly module."
	}
	s := strings.TrimSpace(*e.Code)
	if base64.StdEncoding.DecodedLen(len(s)) > MaxCodeBytes+3 {
		return nil, msgCodeTooLarge
	}
	code, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		code, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, "exec.code is not valid base64: it must be the base64 of a WebAssembly module."
	}
	if len(code) > MaxCodeBytes {
		return nil, msgCodeTooLarge
	}
	if !bytes.HasPrefix(code, wasmHeader) {
		return nil, "The action code is not a WebAssembly module: a module starts with \\0asm and version 1. Build it with GOOS=wasip1 GOARCH=wasm go build."
	}
	return code, ""
}

// checkLimits validates OpenWhisk limits; zero fields mean the default.
func checkLimits(l *limitsBody) (wire.Limits, string) {
	var out wire.Limits
	if l == nil {
		return out, ""
	}
	if l.Timeout != nil {
		if *l.Timeout < minTimeoutMs || *l.Timeout > maxTimeoutMs {
			return out, "The timeout limit must be between 100 and 300000 milliseconds."
		}
		out.TimeoutMs = uint32(*l.Timeout)
	}
	if l.Memory != nil {
		if *l.Memory < minMemoryMB || *l.Memory > maxMemoryMB {
			return out, "The memory limit must be between 128 and 512 MB."
		}
		out.MemoryMB = uint32(*l.Memory)
	}
	if l.Logs != nil {
		if *l.Logs < 0 || *l.Logs > maxLogsMB {
			return out, "The logs limit must be between 0 and 10 MB."
		}
		out.LogsMB = uint32(*l.Logs)
	}
	if l.Concurrency != nil {
		if *l.Concurrency < 1 || *l.Concurrency > 500 {
			return out, "The concurrency limit must be between 1 and 500."
		}
		out.Concurrency = uint32(*l.Concurrency)
	}
	return out, ""
}

func (g *Gateway) getAction(w http.ResponseWriter, r *http.Request) {
	if a := g.actionRef(w, r, wire.SubjectActionGet, "get action"); a != nil {
		writeJSON(w, http.StatusOK, g.renderAction(a))
	}
}

func (g *Gateway) deleteAction(w http.ResponseWriter, r *http.Request) {
	a := g.actionRef(w, r, wire.SubjectActionDelete, "delete action")
	if a == nil {
		return
	}
	// Remember the deletion: a controller that later serves this entity
	// again (or an older one) is refused.
	var created int64
	if rec, err := g.cfg.KMS.VerifyRecord(a.Function); err == nil {
		created = rec.Created
	}
	if a.Kind != kindSequence {
		g.fresh.deleted(a.Namespace, a.Name, created)
	}
	writeJSON(w, http.StatusOK, g.renderAction(a))
}

// actionRef sends the request's action reference to the controller subject
// and returns the action it answers, or answers the error itself and
// returns nil.
func (g *Gateway) actionRef(w http.ResponseWriter, r *http.Request, subject, what string) *wire.Action {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var a wire.Action
	if err := bus.Call(ctx, g.cfg.Conn, subject, &wire.ActionRef{Namespace: ns, Name: name}, &a); err != nil {
		g.busError(w, r, what, err)
		return nil
	}
	if a.Namespace != ns || a.Name != name {
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another action.")
		return nil
	}
	return &a
}

func (g *Gateway) listActions(w http.ResponseWriter, r *http.Request) {
	skip, limit, ok := g.paging(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var list wire.ActionList
	req := wire.ListRequest{Namespace: callerNamespace(r), Skip: skip, Limit: limit}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionList, &req, &list); err != nil {
		g.busError(w, r, "list actions", err)
		return
	}
	out := make([]map[string]any, 0, len(list.Actions))
	for i := range list.Actions {
		out = append(out, g.renderAction(&list.Actions[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// paging parses skip and limit (default 30, at most 200, 0 = 200).
func (g *Gateway) paging(w http.ResponseWriter, r *http.Request) (skip, limit int, ok bool) {
	skip, err := queryInt(r, "skip", 0)
	if err == nil {
		limit, err = queryInt(r, "limit", defListLimit)
	}
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return 0, 0, false
	}
	if limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	return skip, limit, true
}

// renderAction is OpenWhisk's JSON of an action. The code is never returned:
// it is stored sealed and the gateway does not keep its key; exec carries
// its SHA-256 digest instead.
func (g *Gateway) renderAction(a *wire.Action) map[string]any {
	exec := map[string]any{"kind": a.Kind}
	if a.Kind == kindSequence {
		exec["components"] = append([]string{}, a.Components...)
	} else {
		exec["binary"] = true
		if rec, err := g.cfg.KMS.VerifyRecord(a.Function); err == nil {
			exec["digest"] = hex.EncodeToString(rec.CodeDigest)
		}
	}
	anns := renderKVs(a.Annotations)
	hasExec := false
	for _, kv := range a.Annotations {
		hasExec = hasExec || kv.Key == "exec"
	}
	if !hasExec {
		anns = append(anns, map[string]any{"key": "exec", "value": a.Kind})
	}
	return map[string]any{
		"namespace":   a.Namespace,
		"name":        a.Name,
		"version":     a.Version,
		"publish":     a.Publish,
		"exec":        exec,
		"annotations": anns,
		"parameters":  []any{},
		"limits": map[string]any{
			"timeout":     a.Limits.TimeoutMs,
			"memory":      a.Limits.MemoryMB,
			"logs":        a.Limits.LogsMB,
			"concurrency": a.Limits.Concurrency,
		},
		"updated": a.Updated,
	}
}

func renderKVs(kvs []wire.KeyValue) []map[string]any {
	out := make([]map[string]any, 0, len(kvs)+1)
	for _, kv := range kvs {
		out = append(out, map[string]any{"key": kv.Key, "value": jsonValue(kv.Value)})
	}
	return out
}

// jsonValue converts a CBOR-decoded value (maps with interface keys) into
// something encoding/json can marshal.
func jsonValue(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			if ks, ok := k.(string); ok {
				m[ks] = jsonValue(e)
			}
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	default:
		return v
	}
}
