package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

const (
	msgUnauthenticatedResult = "The activation result could not be authenticated."
	msgUnauthenticatedLogs   = "[clemmys: the activation logs could not be authenticated]"
	// logTimeFormat is OpenWhisk's log line timestamp.
	logTimeFormat = "2006-01-02T15:04:05.000000000Z"
)

// activationView is an activation record with its sealed parts opened.
type activationView struct {
	rec    *wire.Activation
	status string          // the record's status, or whisk internal error if its sealed parts do not open
	result json.RawMessage // a JSON object
	logs   []string
	// receipts are the signed receipts of the steps the record covers,
	// opened and checked (nil for records without a result, and for
	// triggers').
	receipts [][]byte
	// sealed holds the sealed parts of an end-to-end sealed request's
	// record, which only the owner opens (sealed.go).
	sealed *sealedParts
}

// openActivation opens the sealed result and logs of rec for namespace
// viewer. want is the digest of the request header if the caller has it
// (zero otherwise). Anything that does not open (tampered, swapped, or from
// another request) turns the activation into a whisk internal error: the
// gateway never shows the owner data it cannot authenticate. Only the
// namespace a request id was made for (the invoker, see newRequestID) may
// read its sealed parts.
func (g *Gateway) openActivation(rec *wire.Activation, want [32]byte, viewer string) *activationView {
	return g.openActivationWith(rec, want, viewer, openOptions{})
}

// openOptions are shortcuts of the invocation path: the request secret it
// derived already (for rec's own request id), and whether the logs are
// needed.
type openOptions struct {
	rs envelope.Key // zero: derive it
	// keys, when set, are the owner keys this gateway sealed the request
	// with (rs's, of the header whose digest is want): the result opens
	// under them and their header, which is not decoded and digested
	// again (envelope.OpenOutputOwned).
	keys   *envelope.OwnerKeys
	noLogs bool // the caller shows only the result
}

func (g *Gateway) openActivationWith(rec *wire.Activation, want [32]byte, viewer string, opt openOptions) *activationView {
	v := &activationView{rec: rec, status: rec.Status, logs: []string{}}
	bad := func(msg string) {
		v.status = wire.StatusInternalError
		v.result = errorResult(msg)
	}
	// A component activation of a sequence belongs to the sequence's
	// request: its Cause is the sequence's activation id.
	component := rec.Cause != ""
	reqHex := rec.ActivationID
	if component {
		reqHex = rec.Cause
		want = [32]byte{}
	}
	reqID, err := hex.DecodeString(reqHex)
	if err != nil || len(reqID) != envelope.RequestIDSize {
		bad(msgUnauthenticatedResult)
		return v
	}
	if g.sealedRequestFor(reqID, viewer) {
		return sealedView(v, rec)
	}
	if !g.requestFor(reqID, viewer) {
		bad(msgOtherSubject)
		return v
	}
	rs := opt.rs
	if rs.IsZero() || component {
		rs = envelope.RequestSecret(g.secret, reqID)
	}
	// header is the authenticated request header: from the result envelope
	// or, when the step was refused, from the request envelope.
	var header *envelope.Header
	var keys *envelope.OwnerKeys // header's, once derived
	var logsDigest []byte        // the logs' digest in the step's receipt, if checked
	// The header's namespace is the functions' owner, which may differ
	// from the record's (a public package's action, a sequence of another
	// namespace's actions): the binding of the id to the viewer is what
	// keeps records in their namespace.
	ours := func(e *envelope.Envelope) bool {
		return bytes.Equal(e.Header.RequestID, reqID)
	}
	switch {
	case len(rec.Result) > 0:
		e, err := envelope.Unmarshal(rec.Result)
		if err != nil || !ours(e) {
			bad(msgUnauthenticatedResult)
			return v
		}
		switch {
		case component && e.Step != rec.Step+1:
			// A component's output is the input of the next step.
			bad(msgUnauthenticatedResult)
			return v
		}
		var out []byte
		k := opt.keys
		if k != nil && !component {
			out, err = envelope.OpenOutputOwned(e, k)
		} else {
			out, k, err = envelope.OpenOutputKeys(e, rs, want)
		}
		if err != nil || !isJSONObject(out) {
			bad(msgUnauthenticatedResult)
			return v
		}
		h := k.Header() // authenticated: the result opened under its keys
		n := uint32(len(h.Chain))
		// The status is plaintext the controller could relabel; the
		// sealed result is not. An error result (OpenWhisk: an "error"
		// field) is never a success, and a success is never an error.
		failed := hasErrorField(out)
		switch {
		case failed && v.status == wire.StatusSuccess:
			v.status = wire.StatusApplicationError
		case !failed && v.status != wire.StatusSuccess && v.status != "":
			bad("The activation's status does not match its result.")
			return v
		case !component && !failed && e.Step != n:
			bad("The sequence did not run to its end.")
			return v
		}
		if !isTriggerHeader(h) {
			if e.Step == 0 {
				bad(msgUnauthenticatedResult)
				return v
			}
			first, last := uint32(0), e.Step-1
			if component {
				first = rec.Step
			}
			opened, msg := checkReceipts(rec, k, first, last, out)
			if msg != "" {
				bad(msg)
				return v
			}
			v.receipts = signedReceipts(opened)
			logsDigest = opened[len(opened)-1].receipt.LogsDigest
		}
		v.result = out
		header, keys = h, k
	default:
		msg := rec.ErrorMessage
		if msg == "" {
			msg = "The activation did not complete."
		}
		if rec.End == 0 {
			msg = "The activation is still running."
		}
		v.result = errorResult(msg)
		if rec.ErrorCode != "" {
			// The typed refusal code (a protocol code, never user data).
			v.result, _ = json.Marshal(map[string]string{"error": msg, "errorCode": rec.ErrorCode})
		}
		if v.status == "" || v.status == wire.StatusSuccess {
			v.status = wire.StatusInternalError
		}
		if len(rec.Envelope) > 0 {
			if e, err := envelope.Unmarshal(rec.Envelope); err == nil && ours(e) {
				header = &e.Header
			}
		}
	}
	if !component && len(rec.Components) > 0 {
		// A sequence's logs are its component activation ids (OpenWhisk).
		v.logs = append(v.logs, rec.Components...)
		return v
	}
	if opt.noLogs {
		return v
	}
	if len(rec.Logs) == 0 && logsDigest != nil && !bytes.Equal(logsDigest, wire.ReceiptLogsDigest(nil)) {
		// The runtime wrote logs the record does not have.
		v.logs = []string{msgWithheldLogs}
		return v
	}
	if len(rec.Logs) > 0 {
		var logs []byte
		if header != nil && keys == nil {
			keys, err = envelope.NewOwnerKeys(header, rs)
		}
		if keys != nil {
			logs, err = keys.OpenLogs(rec.Step, rec.Logs)
		}
		switch {
		case header == nil || err != nil,
			logsDigest != nil && !bytes.Equal(logsDigest, wire.ReceiptLogsDigest(logs)):
			v.logs = []string{msgUnauthenticatedLogs}
		case isTriggerHeader(header):
			v.logs = rawLines(logs) // a trigger's JSON lines, as OpenWhisk shows them
		default:
			v.logs = logLines(logs, time.UnixMilli(rec.End))
		}
	}
	return v
}

// hasErrorField reports whether a JSON object result has a top-level
// "error" field.
func hasErrorField(b []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m["error"]
	return ok
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

func errorResult(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

// logLines splits logs into OpenWhisk log lines "TIME stderr: line".
func logLines(logs []byte, t time.Time) []string {
	s := strings.TrimRight(string(logs), "\n")
	if s == "" {
		return []string{}
	}
	ts := t.UTC().Format(logTimeFormat)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if !stampedLogLine(l) { // the JavaScript engine stamps its own
			lines[i] = ts + " stderr: " + l
		}
	}
	return lines
}

// response is OpenWhisk's activation response object.
func (v *activationView) response() map[string]any {
	return map[string]any{
		"status":     v.status,
		"statusCode": wire.StatusCode(v.status),
		"success":    v.status == wire.StatusSuccess,
		"result":     v.result,
	}
}

// render is OpenWhisk's full activation record.
func (v *activationView) render() map[string]any {
	m := v.summary()
	m["response"] = v.response()
	m["logs"] = v.logs
	m["subject"] = v.rec.Subject
	if v.sealed != nil {
		m["sealed"] = v.sealed
	}
	if len(v.receipts) > 0 {
		// clemmys: the runtimes' signed receipts (base64 CBOR), which
		// OpenWhisk clients ignore; `clemmys activation verify` checks them.
		m["receipts"] = v.receipts
	}
	return m
}

// summary is the activation as listed without docs.
func (v *activationView) summary() map[string]any {
	rec := v.rec
	// An action in a package is recorded as "pkg/name"; OpenWhisk shows
	// the simple name (the "path" annotation has the rest).
	name := rec.Name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	m := map[string]any{
		"activationId": rec.ActivationID,
		"namespace":    rec.Namespace,
		"name":         name,
		"version":      rec.Version,
		"publish":      false,
		"start":        rec.Start,
		"end":          rec.End,
		"duration":     max(rec.End-rec.Start, 0),
		"statusCode":   wire.StatusCode(v.status),
		"annotations":  renderKVs(rec.Annotations),
	}
	if rec.End == 0 {
		m["duration"] = 0
	}
	// A sequence's duration is the sum of its components' (OpenWhisk).
	for _, kv := range rec.Annotations {
		if kv.Key == "duration" && len(rec.Components) > 0 {
			switch d := kv.Value.(type) {
			case uint64:
				m["duration"] = d
			case int64:
				m["duration"] = max(d, 0)
			}
		}
	}
	if rec.Cause != "" {
		m["cause"] = rec.Cause
	}
	return m
}

// Messages of the activation list.
const (
	msgCountAndDocs = "The query parameters 'count' and 'docs' cannot be used together."
	msgOtherSubject = "The activation was not invoked by this namespace: only its invoker may read its result and logs."
)

// listActivations lists the caller's activations, newest first. Query:
// name ("action" or "pkg/action"), skip, limit (default 30, at most 200,
// 0 = 200), since and upto (start time bounds, unix ms, inclusive),
// docs=true (full records, sealed parts opened), count=true (only
// {"activations": N}; not with docs). Without docs the records are
// summaries: the stored status is shown unchecked.
func (g *Gateway) listActivations(w http.ResponseWriter, r *http.Request) {
	skip, limit, ok := g.paging(w, r)
	if !ok {
		return
	}
	docs, err := queryBool(r.URL.Query(), "docs")
	var count bool
	if err == nil {
		count, err = queryBool(r.URL.Query(), "count")
	}
	var since, upto int64
	if err == nil {
		since, err = queryMillis(r, "since")
	}
	if err == nil {
		upto, err = queryMillis(r, "upto")
	}
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	if count && docs {
		g.fail(w, r, http.StatusBadRequest, msgCountAndDocs)
		return
	}
	name := r.URL.Query().Get("name")
	if name != "" {
		if _, _, ok := splitAction(name); !ok {
			g.fail(w, r, http.StatusBadRequest, "The name filter is not a valid action name.")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var list wire.ActivationList
	req := wire.ListRequest{Namespace: callerNamespace(r), Name: name, Skip: skip, Limit: limit, Since: since, Upto: upto, Count: count}
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActivationList, &req, &list); err != nil {
		g.busError(w, r, "list activations", err)
		return
	}
	if count {
		writeJSON(w, http.StatusOK, map[string]int{"activations": list.Count})
		return
	}
	out := make([]map[string]any, 0, len(list.Activations))
	for i := range list.Activations {
		rec := &list.Activations[i]
		if rec.Namespace != req.Namespace {
			continue // never show another namespace's record
		}
		if docs {
			out = append(out, g.openActivation(rec, [32]byte{}, req.Namespace).render())
		} else {
			out = append(out, (&activationView{rec: rec, status: rec.Status}).summary())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// queryMillis parses an optional time query parameter (unix ms, >= 0).
func queryMillis(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("query parameter " + name + " must be a time in milliseconds since the epoch")
	}
	return n, nil
}

// loadActivation fetches the activation named by the {id} path value; it
// answers the request itself and returns nil when there is none.
func (g *Gateway) loadActivation(w http.ResponseWriter, r *http.Request) *activationView {
	ns, id := callerNamespace(r), r.PathValue("id")
	if b, err := hex.DecodeString(id); err != nil || len(b) != envelope.RequestIDSize || hex.EncodeToString(b) != id {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var rec wire.Activation
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActivationGet, &wire.ActivationRef{Namespace: ns, ActivationID: id}, &rec); err != nil {
		g.busError(w, r, "get activation", err)
		return nil
	}
	// A running activation is not found yet, as in OpenWhisk; a record of
	// another id or namespace is the controller misbehaving.
	if rec.End == 0 || rec.ActivationID != id || rec.Namespace != ns {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return nil
	}
	return g.openActivation(&rec, [32]byte{}, ns)
}

func (g *Gateway) getActivation(w http.ResponseWriter, r *http.Request) {
	if v := g.loadActivation(w, r); v != nil {
		writeJSON(w, http.StatusOK, v.render())
	}
}

func (g *Gateway) getActivationResult(w http.ResponseWriter, r *http.Request) {
	if v := g.loadActivation(w, r); v != nil {
		resp := v.response()
		resp["size"] = len(v.result)
		writeJSON(w, http.StatusOK, resp)
	}
}

func (g *Gateway) getActivationLogs(w http.ResponseWriter, r *http.Request) {
	if v := g.loadActivation(w, r); v != nil {
		writeJSON(w, http.StatusOK, map[string]any{"logs": v.logs})
	}
}
