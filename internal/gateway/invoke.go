package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// headerActivationID is set on every invoke response.
const headerActivationID = "x-openwhisk-activation-id"

// invokeAction seals the parameters into an envelope for the action's
// current function version and hands it to the controller. Query: blocking,
// result, timeout (ms, bounds a blocking wait; at most Config.BlockingWait).
func (g *Gateway) invokeAction(w http.ResponseWriter, r *http.Request) {
	if g.serveFeed(w, r) { // the /whisk.system/alarms feeds (feeds.go)
		return
	}
	q := r.URL.Query() // parsed once
	if mode := q.Get("sealed"); mode != "" {
		g.invokeSealed(w, r, mode) // end to end (sealed.go)
		return
	}
	caller := callerNamespace(r)
	ns, name, ok := actionPath(r)
	if !ok {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	blocking, err := queryBool(q, "blocking")
	var resultOnly bool
	if err == nil {
		resultOnly, err = queryBool(q, "result")
	}
	var timeoutMs int
	if err == nil {
		timeoutMs, err = queryInt(q, "timeout", 0)
	}
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	// The caller's throttles (429), before the body is read: a refused
	// request costs no payload buffer (load is shed before allocating).
	// The slot is held until the controller answers: the completed
	// activation when blocking, the acceptance otherwise (the gateway does
	// not follow non-blocking activations).
	release, ok := g.limitInvocation(w, r, caller)
	if !ok {
		return
	}
	defer release()
	payload, ok := g.readPayload(w, r)
	if !ok {
		return
	}
	res, cerr := g.invokeNamed(r.Context(), ns, name, &invocation{
		caller: caller, payload: payload, blocking: blocking,
		wait: time.Duration(timeoutMs) * time.Millisecond, tx: txID(r),
	})
	if res != nil {
		w.Header().Set(headerActivationID, res.id)
	}
	if cerr != nil {
		g.answer(w, r, "invoke", cerr)
		return
	}
	if res.act == nil {
		// Non-blocking, or the blocking wait ran out: the activation goes
		// on and the caller polls for it (OpenWhisk).
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": res.id})
		return
	}
	view := g.openActivationWith(res.act, res.digest, caller, openOptions{rs: res.rs, keys: res.keys, noLogs: resultOnly})
	status := http.StatusOK
	switch view.status {
	case wire.StatusSuccess:
	case wire.StatusApplicationError, wire.StatusDeveloperError:
		status = http.StatusBadGateway
	default:
		status = http.StatusInternalServerError
	}
	if resultOnly {
		writeJSON(w, status, view.result)
		return
	}
	writeJSON(w, status, view.render())
}

// readPayload reads an invocation's parameters: a JSON object (an empty
// body is {}); it answers the request itself when they are not.
func (g *Gateway) readPayload(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	params, ok := g.readBody(w, r, g.cfg.MaxPayloadBytes)
	if !ok {
		return nil, false
	}
	params = bytes.TrimSpace(params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	if params[0] != '{' || !json.Valid(params) {
		var v map[string]json.RawMessage
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the parameters must be a JSON object.", jsonDetail(params, json.Unmarshal(params, &v)))
		return nil, false
	}
	return params, true
}

// invocation is one invocation to seal and send: the action invocations
// of the REST API and those of rules when a trigger fires.
type invocation struct {
	caller   string // the authenticated caller's namespace: the subject
	target   *target
	lookup   *lookup // how target was read; components are read alike
	payload  []byte  // the request's parameters, a JSON object
	params   []byte  // payload merged with the default parameters (invoke)
	blocking bool
	wait     time.Duration // the caller's bound on a blocking wait; 0 = none
	tx       string        // transaction id, for logs
	// prepare: the first step of a sealed invocation (sealed.go): resolve,
	// place and build the header, seal nothing, send nothing.
	prepare bool
	// viaController: the warm path refused it (direct.go); the attempts
	// after go through the controller.
	viaController bool
}

// invoked is a sent invocation.
type invoked struct {
	id     string       // activation id = hex(request id)
	digest [32]byte     // of the sealed header
	rs     envelope.Key // the request secret
	// keys are the owner keys sealing made (nil for a sealed
	// invocation's prepare step): the answer opens under them.
	keys *envelope.OwnerKeys
	// act is the completed record of a blocking invocation; nil when
	// non-blocking or the blocking wait ran out.
	act *wire.Activation
	// misplaced: it was refused, or failed without running, because the
	// runtime it designates is gone (see place.go).
	misplaced bool
	// prepared is the answer of a sealed invocation's prepare step.
	prepared *preparedInvocation
}

// invokeNamed resolves action name of namespace ns for inv's caller and
// invokes it: first from cached entities, then, if that resolution failed
// before anything was sent or the controller answered that an entity had
// changed, once more from fresh reads.
func (g *Gateway) invokeNamed(ctx context.Context, ns, name string, inv *invocation) (*invoked, *chainError) {
	for _, cached := range []bool{true, false} {
		lk := &lookup{cached: cached}
		t, cerr := g.loadTarget(withStageBound(ctx), inv.caller, ns, name, lk)
		if cerr == nil {
			inv.target, inv.lookup = t, lk
			var res *invoked
			res, cerr = g.invoke(ctx, inv)
			if cerr == nil || !lk.hit || (res != nil && !isStale(cerr)) {
				return res, cerr
			}
		} else if !lk.hit {
			return nil, cerr
		}
		g.log.Debug("cached action entity outdated; resolving again", "namespace", ns, "action", name)
	}
	panic("unreachable")
}

// invoke runs one invocation of a loaded target (the entity, read by
// invokeNamed through loadTarget, resolve.go) through its stages, in one
// direction:
//
//	merge parameters  params.go    the request's over the entity's defaults
//	resolve versions  resolve.go   the chain of function versions, every KMS-signed record verified
//	place             place.go     the invoker and runtime of each step
//	seal              seal.go      request id, header, envelope, bus request
//	dispatch          dispatch.go  to the invoker (warm path, direct.go) or the controller
//
// The caller opens the answer (activations.go) and answers. The envelope's
// namespace is the functions' owner (their runtimes hold only that
// namespace's auth key), so the steps of a chain must all belong to one
// namespace: a sequence may consist of another namespace's public actions,
// but not mix them with its own (clemmys: one envelope, one auth key). The
// invoked entity's namespace is where the controller files the record; the
// caller is the subject, and the request id is bound to it. A non-nil
// *invoked comes back once the envelope is sealed, also with an error.
func (g *Gateway) invoke(ctx context.Context, inv *invocation) (*invoked, *chainError) {
	params, cerr := g.mergeParams(inv.target, inv.payload)
	if cerr != nil {
		return nil, cerr
	}
	inv.params = params
	if inv.prepare && !bytes.Equal(bytes.TrimSpace(params), bytes.TrimSpace(inv.payload)) {
		return nil, &chainError{http.StatusBadRequest, msgSealedDefaults, nil}
	}
	p, cerr := g.resolveVersions(ctx, inv)
	if cerr != nil {
		return nil, cerr
	}
	for attempt := 0; ; attempt++ {
		first, cerr := g.placeSteps(ctx, p, attempt > 0)
		if cerr != nil {
			return nil, cerr
		}
		s, cerr := g.seal(inv, p, first)
		if cerr != nil {
			return nil, cerr
		}
		if inv.prepare {
			return g.prepareSealed(s.res, &s.header, p.steps, &s.req, p.timeout) // sealed.go
		}
		res, cerr := g.dispatch(ctx, inv, s.res, &s.req, p.timeout)
		if attempt+1 < maxPlaceAttempts && res != nil && res.misplaced {
			// Nothing ran: place the steps again and seal anew, with a
			// new request id.
			g.log.Debug("invocation misplaced; placing it again", "tx", inv.tx, "activation", res.id)
			continue
		}
		g.logActivation(ctx, inv, p, res, cerr)
		return res, cerr
	}
}

// logActivation logs one line per activation, ids and outcome only (never
// data), at debug level; its arguments cost allocations, so only when it is
// logged.
func (g *Gateway) logActivation(ctx context.Context, inv *invocation, p *plan, res *invoked, cerr *chainError) {
	if res == nil || !g.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	status := "accepted"
	if res.act != nil {
		status = res.act.Status
	} else if cerr != nil {
		status = "refused"
	}
	a := inv.target.action
	g.log.Debug("activation", "tx", inv.tx, "activation", res.id, "namespace", p.ns, "caller", inv.caller,
		"action", a.Namespace+"/"+a.Name, "steps", len(p.steps), "blocking", inv.blocking, "status", status)
}
