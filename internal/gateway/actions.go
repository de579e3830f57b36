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
	"strconv"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/sandbox"
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

// actionBody is the JSON body of PUT .../actions/{name}. Absent fields
// (nil) keep their stored values on an update (overwrite=true), as in
// OpenWhisk; version is ignored (the controller bumps the patch number).
type actionBody struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Exec        *execBody        `json:"exec"`
	Parameters  *[]wire.KeyValue `json:"parameters"`
	Annotations *[]wire.KeyValue `json:"annotations"`
	Limits      *limitsBody      `json:"limits"`
	Publish     *bool            `json:"publish"`
}

type execBody struct {
	Kind       string   `json:"kind"`
	Code       *string  `json:"code"`
	Binary     bool     `json:"binary"`
	Main       string   `json:"main"`
	Components []string `json:"components"`

	decoded *decodedExec // decodeCode's result (jskind.go)
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
// the controller. With overwrite=true an existing action is updated: what
// the body leaves out keeps its stored value, and without exec the stored
// function version and sealed code are kept (ActionPut.KeepCode).
func (g *Gateway) putAction(w http.ResponseWriter, r *http.Request) {
	caller := callerNamespace(r)
	ns, name, ok := actionPath(r)
	if !ok {
		g.fail(w, r, http.StatusBadRequest, "The action name is not valid.")
		return
	}
	if ns != caller {
		g.fail(w, r, http.StatusForbidden, msgNotAuthorized, ns)
		return
	}
	overwrite, err := queryBool(r.URL.Query(), "overwrite")
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
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the body must be a JSON action.", jsonDetail(raw, err))
		return
	}
	if body.Exec != nil && body.Exec.Kind != kindSequence {
		// Check the module before anything is fetched or created.
		if _, _, msg := g.decodeCode(body.Exec); msg != "" {
			g.failModule(w, r, msg)
			return
		}
	}
	if msg := checkMeta(&body); msg != "" {
		g.fail(w, r, http.StatusBadRequest, "%s", msg)
		return
	}
	if msg := g.checkCeilings(ns, body.Limits); msg != "" {
		g.fail(w, r, http.StatusBadRequest, "%s", msg)
		return
	}
	if body.Exec != nil && body.Exec.Kind != kindSequence {
		if code, kind, _ := g.decodeCode(body.Exec); kind == kindWasm && !g.validateModule(w, r, code) {
			return
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var prev *wire.Action
	if overwrite {
		var a wire.Action
		err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionGet, &wire.ActionRef{Namespace: ns, Name: name}, &a)
		switch {
		case err == nil && (a.Namespace != ns || a.Name != name):
			g.fail(w, r, http.StatusBadGateway, "The controller answered with another action.")
			return
		case err == nil:
			prev = &a
		case !isNotFound(err):
			g.busError(w, r, "load action", err)
			return
		}
	} else if !g.checkAbsent(ctx, w, r, ns, name) {
		return
	}
	if (body.Exec != nil && body.Exec.Kind == kindSequence) || (body.Exec == nil && prev != nil && prev.Kind == kindSequence) {
		g.putSequence(w, r, ns, name, overwrite, &body, prev)
		return
	}
	a, ok := g.mergeMeta(w, r, ns, name, &body, prev)
	if !ok {
		return
	}
	suite, explicit, msg := actionSuite(&a, prev)
	if msg != "" {
		g.fail(w, r, http.StatusBadRequest, msg)
		return
	}
	put := wire.ActionPut{Overwrite: overwrite}
	var rec *wire.FunctionRecord
	var codeBytes int
	if body.Exec == nil && prev != nil {
		// Keep the stored function version: only a record the KMS signed
		// for this very action, and not older than one seen, is kept.
		rec, err = g.cfg.KMS.VerifyRecord(prev.Function)
		if err != nil || rec.Namespace != ns || rec.Action != name {
			g.log.Error("stored function record", "tx", txID(r), "err", err)
			g.fail(w, r, http.StatusBadGateway, "The action's function record could not be verified.")
			return
		}
		if cerr := g.admitFresh(ctx, rec); cerr != nil {
			g.answer(w, r, "keep function version", cerr)
			return
		}
		if explicit && envelope.Suite(rec.Suite) != suite {
			g.fail(w, r, http.StatusBadRequest, "The action's keys are of suite %q: changing the suite makes new function keys, so send the code again with the new \"suite\" annotation.", suiteName(envelope.Suite(rec.Suite)))
			return
		}
		a.Function, a.CodeSize, a.Kind = prev.Function, prev.CodeSize, prev.Kind
		put.KeepCode = true
	} else {
		code, kind, msg := g.decodeCode(body.Exec)
		if msg != "" {
			g.failModule(w, r, msg)
			return
		}
		a.Kind = kind
		digest := sha256.Sum256(code)
		var signed wire.SignedRecord
		var codeKey envelope.Key
		rec, signed, codeKey, err = g.cfg.KMS.CreateFunction(ctx, wire.CreateFunction{
			Namespace: ns, Action: name, CodeDigest: digest[:], Suite: uint16(suite),
		})
		if err != nil {
			g.busError(w, r, "create function version", err)
			return
		}
		sealed, err := envelope.SealCode(codeKey, rec.FunctionID, digest[:], code)
		if err != nil {
			g.log.Error("seal code", "tx", txID(r), "err", err)
			g.fail(w, r, http.StatusInternalServerError, msgInternal)
			return
		}
		a.Function, a.CodeSize = signed, int64(len(code))
		put.SealedCode, codeBytes = sealed, len(code)
	}
	put.Action = a
	var stored wire.Action
	g.targets.forget(ns, name)
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionPut, &put, &stored); err != nil {
		g.busError(w, r, "store action", err)
		return
	}
	// Only a version that was stored is the newest: a put that lost a race
	// with a concurrent one (409) must not make the winner look outdated.
	g.commitVersion(ctx, rec)
	if stored.Generation == a.Generation {
		g.commitEntity(ctx, wire.EntityAction, ns, name, a.Generation)
	}
	g.log.Info("action deployed", "namespace", ns, "action", name, "version", stored.Version,
		"function", hex.EncodeToString(rec.FunctionID), "code_digest", hex.EncodeToString(rec.CodeDigest),
		"code_bytes", codeBytes, "kept_code", put.KeepCode)
	g.prewarm(ctx, ns, name, rec.FunctionID)
	g.writeOwnAction(w, r, &stored, nil)
}

// validateModule checks code the way the enclave runtime will before it
// compiles it (sandbox.Validate), so that a module the runtime would refuse
// is answered 400 at deploy, to its owner, with the reason: the runtime
// itself reports only a fixed category, because whatever it derives from
// the code travels in plaintext through the untrusted invoker and
// controller. It answers the request itself on failure.
func (g *Gateway) validateModule(w http.ResponseWriter, r *http.Request, code []byte) bool {
	if g.cfg.SkipModuleValidation {
		return true
	}
	err := sandbox.Validate(r.Context(), code)
	switch {
	case err == nil:
		return true
	case errors.Is(err, sandbox.ErrInvalidModule):
		// The detail names the module's imports and exports: it is for
		// the owner, who is the one deploying it.
		g.fail(w, r, http.StatusBadRequest, "The action code is not a valid WebAssembly function for clemmys: %s.", err.Error())
	default:
		g.log.Warn("validate module", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusServiceUnavailable, "The module could not be checked now; retry the deploy.")
	}
	return false
}

func (g *Gateway) failModule(w http.ResponseWriter, r *http.Request, msg string) {
	status := http.StatusBadRequest
	if msg == msgCodeTooLarge {
		status = http.StatusRequestEntityTooLarge
	}
	g.fail(w, r, status, "%s", msg)
}

const msgCodeTooLarge = "The action code is too large."

// checkMeta checks the metadata actions and sequences share (limits,
// annotations, parameters) and returns a message for the client if it is
// not valid.
func checkMeta(body *actionBody) string {
	if _, msg := checkLimits(body.Limits); msg != "" {
		return msg
	}
	if msg := checkKVs(body.Annotations, "annotations"); msg != "" {
		return msg
	}
	return checkKVs(body.Parameters, "parameters")
}

// mergeMeta returns the entity's metadata: the body's, over prev's where
// the body leaves a field out (an update). Default parameters are sealed
// (params.go). It answers the request itself on failure.
func (g *Gateway) mergeMeta(w http.ResponseWriter, r *http.Request, ns, name string, body *actionBody, prev *wire.Action) (wire.Action, bool) {
	a := wire.Action{Namespace: ns, Name: name}
	if prev != nil {
		a.Publish, a.Limits, a.Annotations, a.Parameters = prev.Publish, prev.Limits, prev.Annotations, prev.Parameters
	}
	if body.Publish != nil {
		a.Publish = *body.Publish
	}
	if body.Annotations != nil {
		a.Annotations = *body.Annotations
	}
	// A new generation (entityversions.go), covered by the tags below.
	var prevGen int64
	if prev != nil {
		prevGen = prev.Generation
	}
	gen, cerr := g.nextGeneration(r.Context(), wire.EntityAction, ns, name, prevGen)
	if cerr != nil {
		g.answer(w, r, "action generation", cerr)
		return a, false
	}
	a.Generation = gen
	// The web annotations' MAC (webtag.go): kept as stored when the
	// annotations are and their MAC does not verify, so that an update
	// never vouches for what the controller changed.
	if prev != nil && body.Annotations == nil && !g.webIntact(prev) {
		a.WebTag = prev.WebTag
	} else {
		g.tagWeb(&a)
	}
	if l := body.Limits; l != nil {
		given, _ := checkLimits(l) // checked by checkMeta
		if l.Timeout != nil {
			a.Limits.TimeoutMs = given.TimeoutMs
		}
		if l.Memory != nil {
			a.Limits.MemoryMB = given.MemoryMB
		}
		if l.Logs != nil {
			a.Limits.LogsMB = given.LogsMB
		}
		if l.Concurrency != nil {
			a.Limits.Concurrency = given.Concurrency
		}
	}
	if body.Parameters != nil {
		// Sealed params are bound to the entity, so stored ones are kept
		// as they are; new ones are sealed for this action.
		sealed, err := g.sealParams(paramsAction, ns, name, *body.Parameters)
		if err != nil {
			g.log.Info("seal parameters", "tx", txID(r), "err", err)
			g.fail(w, r, http.StatusRequestEntityTooLarge, "The default parameters are too large (the limit is %d bytes).", maxParamsBytes)
			return a, false
		}
		a.Parameters = sealed
	}
	return a, true
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

// getAction returns an action: the caller's own, or one in a public
// package (or a binding of one). Its default parameters (with those it
// inherits from its package) are shown opened to its owner only, and so is
// its code (exec.code, unless ?code=false; code.go).
func (g *Gateway) getAction(w http.ResponseWriter, r *http.Request) {
	caller := callerNamespace(r)
	ns, name, ok := actionPath(r)
	if !ok {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	withCode := true
	if r.URL.Query().Get("code") != "" {
		var err error
		if withCode, err = queryBool(r.URL.Query(), "code"); err != nil {
			g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	t, cerr := g.loadTarget(ctx, caller, ns, name, nil)
	if cerr != nil {
		g.answer(w, r, "get action", cerr)
		return
	}
	out, ok := g.ownAction(w, r, t.action, t.inherited)
	if !ok {
		return
	}
	if withCode && t.action.Namespace == caller && t.action.Kind != kindSequence {
		code, err := g.execCode(ctx, t.action)
		if err != nil {
			// The detail names no code: it is a KMS or store failure.
			g.log.Error("open action code", "tx", txID(r), "namespace", t.action.Namespace, "action", t.action.Name, "err", err)
			g.fail(w, r, http.StatusBadGateway, "The action's code could not be opened.")
			return
		}
		exec := out["exec"].(map[string]any)
		for k, v := range code {
			exec[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// writeOwnAction answers an action; its owner also sees its default
// parameters, over the inherited ones.
func (g *Gateway) writeOwnAction(w http.ResponseWriter, r *http.Request, a *wire.Action, inherited []wire.KeyValue) {
	if out, ok := g.ownAction(w, r, a, inherited); ok {
		writeJSON(w, http.StatusOK, out)
	}
}

// ownAction renders an action with the parameters the caller may see; it
// answers the request itself on failure.
func (g *Gateway) ownAction(w http.ResponseWriter, r *http.Request, a *wire.Action, inherited []wire.KeyValue) (map[string]any, bool) {
	var params []wire.KeyValue
	if a.Namespace == callerNamespace(r) {
		own, err := g.openParams(paramsAction, a.Namespace, a.Name, a.Parameters)
		if err != nil {
			g.log.Error("open action parameters", "tx", txID(r), "namespace", a.Namespace, "action", a.Name, "err", err)
			g.fail(w, r, http.StatusBadGateway, msgBadParams)
			return nil, false
		}
		params = mergeKV(inherited, own)
	}
	out := g.renderAction(a)
	out["parameters"] = renderKVs(params)
	return out, true
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
		g.retireAction(r.Context(), a.Namespace, a.Name, created)
	}
	g.retireEntity(r.Context(), wire.EntityAction, a.Namespace, a.Name, a.Generation)
	writeJSON(w, http.StatusOK, g.renderAction(a))
}

// actionRef sends the request's action reference (in the caller's
// namespace) to the controller subject and returns the action it answers,
// or answers the error itself and returns nil.
func (g *Gateway) actionRef(w http.ResponseWriter, r *http.Request, subject, what string) *wire.Action {
	ns, name, ok := actionPath(r)
	if !ok {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return nil
	}
	if ns != callerNamespace(r) {
		g.fail(w, r, http.StatusForbidden, msgNotAuthorized, ns)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if subject == wire.SubjectActionDelete {
		g.targets.forget(ns, name)
	}
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

// listActions lists the caller's actions, newest first (GET .../actions,
// or .../actions/{pkg}/ for one package's): skip, limit (default 30, at
// most 200, 0 = 200), count=true → {"actions": N}.
func (g *Gateway) listActions(w http.ResponseWriter, r *http.Request) {
	skip, limit, ok := g.paging(w, r)
	if !ok {
		return
	}
	count, err := queryBool(r.URL.Query(), "count")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	req := wire.ListRequest{Namespace: callerNamespace(r), Skip: skip, Limit: limit, Count: count}
	if pkg := r.PathValue("pkg"); pkg != "" {
		if !validName(pkg) {
			g.fail(w, r, http.StatusNotFound, msgNotFound)
			return
		}
		req.Name = pkg + "/"
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var list wire.ActionList
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionList, &req, &list); err != nil {
		g.busError(w, r, "list actions", err)
		return
	}
	if count {
		writeJSON(w, http.StatusOK, map[string]int{"actions": list.Count})
		return
	}
	out := make([]map[string]any, 0, len(list.Actions))
	pkgParams := map[string][]wire.KeyValue{} // package → its defaults
	for i := range list.Actions {
		if list.Actions[i].Namespace != req.Namespace {
			continue // never show another namespace's entity
		}
		// The owner sees the same parameters as with GET: the action's
		// own over those of its package.
		a := &list.Actions[i]
		item := g.renderAction(a)
		if a.Parameters == nil && list.ParamsOmitted {
			// Left out of the list to bound it: read this one.
			if full, cerr := g.readAction(ctx, a.Namespace, a.Name, nil); cerr == nil {
				a.Parameters = full.Parameters
			}
		}
		own, err := g.openParams(paramsAction, a.Namespace, a.Name, a.Parameters)
		if err != nil {
			g.log.Warn("open action parameters", "tx", txID(r), "namespace", a.Namespace, "action", a.Name, "err", err)
		}
		var inherited []wire.KeyValue
		if pkg, _, found := strings.Cut(a.Name, "/"); found {
			if _, seen := pkgParams[pkg]; !seen {
				if _, params, cerr := g.loadPackage(ctx, req.Namespace, pkg); cerr == nil {
					pkgParams[pkg] = params
				} else {
					pkgParams[pkg] = nil
				}
			}
			inherited = pkgParams[pkg]
		}
		item["parameters"] = renderKVs(mergeKV(inherited, own))
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, out)
}

// paging parses skip and limit (default 30, 0 = 200; OpenWhisk refuses a
// limit over 200, a negative skip and non-integers with 400; any skip
// goes).
func (g *Gateway) paging(w http.ResponseWriter, r *http.Request) (skip, limit int, ok bool) {
	collection := "the collection"
	if parts := strings.Split(r.URL.Path, "/"); len(parts) > 5 && parts[5] != "" {
		collection = parts[5] // /api/v1/namespaces/{ns}/{collection}
	}
	q := r.URL.Query()
	parse := func(name string, def int) (int, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			g.fail(w, r, http.StatusBadRequest, "The value '%s' of %s is not an integer for %s.", v, name, collection)
			return 0, false
		case n < 0 && name == "skip":
			g.fail(w, r, http.StatusBadRequest, "The value %d of %s is not greater than or equal to 0 for %s.", n, name, collection)
			return 0, false
		case name == "skip":
			// Any skip, as in OpenWhisk: past the end the page is empty.
		case n < 0 || n > maxListLimit:
			g.fail(w, r, http.StatusBadRequest, "The value %d of %s is not in the range of 0 to %d for %s.", n, name, maxListLimit, collection)
			return 0, false
		}
		return n, true
	}
	if skip, ok = parse("skip", 0); !ok {
		return 0, 0, false
	}
	if limit, ok = parse("limit", defListLimit); !ok {
		return 0, 0, false
	}
	if limit == 0 {
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
	// An action in a package is shown as OpenWhisk does: namespace
	// "ns/pkg", name "action".
	ns, name := a.Namespace, a.Name
	if pkg, simple, found := strings.Cut(a.Name, "/"); found {
		ns, name = a.Namespace+"/"+pkg, simple
	}
	return map[string]any{
		"namespace":   ns,
		"name":        name,
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
