package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// headerActivationID is set on every invoke response.
const headerActivationID = "x-openwhisk-activation-id"

// Request ids. A request id is 6 bytes of unix milliseconds (time-ordered
// like a UUIDv7, so the controller lists activations newest first from
// their ids; the controller sees the time anyway), 4 random bytes, and 6
// bytes of a MAC under a key derived from the gateway secret over the first
// ten and the namespace of the invoker, the only namespace that may read
// the activation's sealed parts. The activation id is its hex form.
//
// The binding is what lets the owner of a record be another namespace than
// the function's: an action of a public package runs under its owner's
// namespace (header namespace, auth key, runtime) for another namespace's
// caller; a sequence may consist of another namespace's public actions.
// Whatever namespace the untrusted controller files a record under, the
// gateway opens it only for the namespace its id was made for, so the
// controller cannot show one namespace's results to another, and a package
// owner does not read its callers' data. (Records of ids made before this
// binding do not open.)
const (
	requestIDTimeBytes = 6
	requestIDRandBytes = 4
	requestIDMACBytes  = envelope.RequestIDSize - requestIDTimeBytes - requestIDRandBytes
	requestIDKeyInfo   = "clemmys/v1 gateway request id key"
	requestIDLabel     = "clemmys/v1 request id\x00"
)

// requestIDMAC is the MAC part of a request id with prefix for ns, under
// label (requestIDLabel, or sealedRequestIDLabel for sealed invocations).
func (g *Gateway) requestIDMAC(label string, prefix []byte, ns string) []byte {
	mac := g.derived().requestIDMAC
	m := mac.get()
	m.Write([]byte(label))
	m.Write(prefix)
	m.Write([]byte(ns))
	return mac.sum(m)[:requestIDMACBytes]
}

// newRequestID returns a request id for an invocation by namespace ns.
func (g *Gateway) newRequestID(now time.Time, ns string) []byte {
	return g.makeRequestID(requestIDLabel, now, ns)
}

func (g *Gateway) makeRequestID(label string, now time.Time, ns string) []byte {
	id := make([]byte, requestIDTimeBytes+requestIDRandBytes, envelope.RequestIDSize)
	binary.BigEndian.PutUint64(id[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(id[requestIDTimeBytes:])
	return append(id, g.requestIDMAC(label, id, ns)...)
}

// requestFor reports whether request id was made for namespace ns.
func (g *Gateway) requestFor(id []byte, ns string) bool {
	return g.requestIDFor(requestIDLabel, id, ns)
}

func (g *Gateway) requestIDFor(label string, id []byte, ns string) bool {
	if len(id) != envelope.RequestIDSize {
		return false
	}
	n := requestIDTimeBytes + requestIDRandBytes
	return hmac.Equal(id[n:], g.requestIDMAC(label, id[:n], ns))
}

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
	view := g.openActivationWith(res.act, res.digest, caller, openOptions{rs: res.rs, noLogs: resultOnly})
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
	// act is the completed record of a blocking invocation; nil when
	// non-blocking or the blocking wait ran out.
	act *wire.Activation
	// misplaced: it was refused, or failed without running, because the
	// runtime it designates is gone (see place.go).
	misplaced bool
	// prepared is the answer of a sealed invocation's prepare step.
	prepared *preparedInvocation
}

// invoke merges the parameters, resolves the chain (verifying every
// function record), seals one envelope and hands it to the controller. The
// envelope's namespace is the functions' owner (their runtimes hold only
// that namespace's auth key), so the steps of a chain must all belong to
// one namespace: a sequence may consist of another namespace's public
// actions, but not mix them with its own (clemmys: one envelope, one auth
// key). The invoked entity's namespace is where the controller files the
// record; the caller is the subject, and the request id is bound to it. A
// non-nil *invoked comes back once the envelope is sealed, also with an
// error.
func (g *Gateway) invoke(ctx context.Context, inv *invocation) (*invoked, *chainError) {
	a := inv.target.action
	params, cerr := g.mergeParams(inv.target, inv.payload)
	if cerr != nil {
		return nil, cerr
	}
	inv.params = params
	if inv.prepare && !bytes.Equal(bytes.TrimSpace(params), bytes.TrimSpace(inv.payload)) {
		return nil, &chainError{http.StatusBadRequest, msgSealedDefaults, nil}
	}
	// The controller is untrusted: only records signed by the attested KMS
	// for exactly these namespaces and actions name the keys we seal to.
	rctx, cancel := context.WithTimeout(ctx, busTimeout)
	steps, cerr := g.resolveChain(rctx, a, 0, nil, inv.lookup)
	cancel()
	if cerr != nil {
		return nil, cerr
	}
	ns := steps[0].action.Namespace
	for _, st := range steps {
		if st.action.Namespace != ns {
			return nil, &chainError{http.StatusBadRequest, "The actions of a sequence must all belong to one namespace: clemmys seals a sequence for one namespace.", nil}
		}
	}
	suite := envelope.Suite(steps[0].record.Suite)
	kem, err := suite.KEM()
	if err != nil {
		return nil, &chainError{http.StatusBadGateway, "The action's function record names an unsupported suite.", err}
	}
	limits := g.clampLimits(ns, maxLimits(steps))
	var (
		timeout time.Duration
		chain   = make([]envelope.Step, len(steps))
		pubs    = make([]hpke.PublicKey, len(steps))
		routes  []wire.StepRoute
	)
	for j, st := range steps {
		if envelope.Suite(st.record.Suite) != suite {
			return nil, &chainError{http.StatusBadRequest, "The sequence mixes functions of different cipher suites.", nil}
		}
		pub, err := kem.NewPublicKey(st.record.PublicKey)
		if err != nil {
			return nil, &chainError{http.StatusBadGateway, "A function key is malformed.", err}
		}
		pubs[j] = pub
		chain[j] = envelope.Step{
			Name:       "/" + st.action.Namespace + "/" + st.action.Name,
			FunctionID: st.record.FunctionID,
			CodeDigest: st.record.CodeDigest,
			KeyVersion: st.record.KeyVersion,
		}
		t := time.Duration(g.clampLimits(ns, st.action.Limits).TimeoutMs) * time.Millisecond
		if t <= 0 {
			t = time.Minute
		}
		timeout += t
		if a.Kind == kindSequence {
			routes = append(routes, wire.StepRoute{
				Namespace: st.action.Namespace, Action: st.action.Name, Version: st.action.Version,
				FunctionID: st.record.FunctionID, Limits: st.action.Limits, Revision: st.action.Revision,
			})
		}
	}

	var places []wire.Placement
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, busTimeout)
		places, cerr = g.place(pctx, steps, attempt > 0)
		cancel()
		if cerr != nil {
			return nil, cerr
		}
		for j := range chain {
			chain[j].Runtime = places[j].Runtime
		}
		for j := range routes {
			routes[j].Invoker, routes[j].Runtime = places[j].Invoker, places[j].Runtime
		}
		res, cerr := g.sealAndSend(ctx, inv, steps, chain, pubs, routes, places[0], suite, limits, timeout)
		if attempt+1 < maxPlaceAttempts && res != nil && res.misplaced {
			// Nothing ran: place the steps again and seal anew, with a
			// new request id.
			g.log.Debug("invocation misplaced; placing it again", "tx", inv.tx, "activation", res.id)
			continue
		}
		if res != nil && g.log.Enabled(ctx, slog.LevelDebug) {
			// One line per activation, ids and outcome only (never data);
			// its arguments cost allocations, so only when it is logged.
			status := "accepted"
			if res.act != nil {
				status = res.act.Status
			} else if cerr != nil {
				status = "refused"
			}
			g.log.Debug("activation", "tx", inv.tx, "activation", res.id, "namespace", ns, "caller", inv.caller,
				"action", a.Namespace+"/"+a.Name, "steps", len(steps), "blocking", inv.blocking, "status", status)
		}
		return res, cerr
	}
}

// sealAndSend seals one envelope for the placed chain and hands it to the
// controller (see invoke). For a sealed invocation's prepare step it only
// builds the header and the ticket (sealed.go).
func (g *Gateway) sealAndSend(ctx context.Context, inv *invocation, steps []step, chain []envelope.Step, pubs []hpke.PublicKey,
	routes []wire.StepRoute, first wire.Placement, suite envelope.Suite, limits wire.Limits, timeout time.Duration) (*invoked, *chainError) {
	a := inv.target.action
	ns := steps[0].action.Namespace
	now := g.now()
	reqID := g.newRequestID(now, inv.caller)
	if inv.prepare {
		reqID = g.newSealedRequestID(now, inv.caller)
	}
	h := envelope.Header{
		Version:   envelope.Version,
		Suite:     suite,
		RequestID: reqID,
		Namespace: ns,
		Chain:     chain,
		Expiry:    now.Add(timeout + g.cfg.ExpirySlack).UnixMilli(),
		Limits: envelope.Limits{
			TimeoutMs: limits.TimeoutMs,
			MemoryMB:  limits.MemoryMB,
			LogsKB:    limits.LogsMB << 10,
		},
	}
	digest, err := h.Digest()
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	res := &invoked{id: hex.EncodeToString(reqID), digest: digest}
	req := wire.InvokeRequest{
		ActivationID: res.id,
		Namespace:    a.Namespace,
		Action:       a.Name,
		Version:      a.Version,
		Subject:      inv.caller,
		Blocking:     inv.blocking,
		Limits:       limits,
		Steps:        routes,
		Revision:     a.Revision,
	}
	if a.Kind != kindSequence {
		req.FunctionID = steps[0].record.FunctionID
		req.Invoker, req.Runtime = first.Invoker, first.Runtime
	}
	if a.Namespace != inv.caller {
		// Another namespace's public action: the records are the
		// caller's (OpenWhisk), and only the caller can open them (the
		// request id is bound to the caller's namespace).
		req.RecordNamespace = inv.caller
	}
	if inv.prepare {
		return g.prepareSealed(res, &h, steps, &req, timeout)
	}
	// Capsules under this gateway's cached session per function version:
	// no public-key operation per request once the sessions exist.
	res.rs = envelope.RequestSecret(g.secret, reqID)
	env, err := g.sessions.Seal(h, res.rs, g.namespaceAuthKey(ns), pubs, inv.params)
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	if req.Envelope, err = env.Marshal(); err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	return g.send(ctx, inv, res, &req, timeout)
}

// confirmRecorded checks that the record of the blocking activation req,
// about to be answered 202, is in the store, running or complete.
func (g *Gateway) confirmRecorded(ctx context.Context, req *wire.InvokeRequest) *chainError {
	ns := req.RecordNamespace
	if ns == "" {
		ns = req.Namespace
	}
	cctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	var rec wire.Activation
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectActivationGet, &wire.ActivationRef{Namespace: ns, ActivationID: req.ActivationID, Running: true}, &rec)
	if err == nil && rec.ActivationID == req.ActivationID && rec.Namespace == ns {
		return nil
	}
	return &chainError{http.StatusBadGateway, "The activation did not answer in time and its record could not be confirmed: it may have been lost with its controller. Look for the activation id later, or invoke again.", err}
}

// send hands a sealed invocation to the controller and, when blocking,
// waits for its record.
func (g *Gateway) send(ctx context.Context, inv *invocation, res *invoked, req *wire.InvokeRequest, timeout time.Duration) (*invoked, *chainError) {
	wait := busTimeout
	if inv.blocking {
		wait = min(timeout+g.cfg.ExpirySlack, g.cfg.BlockingWait)
		if inv.wait > 0 {
			wait = min(wait, inv.wait)
		}
	}
	if inv.blocking {
		// The controller may defer the running record; this gateway
		// confirms the record is stored before it answers 202.
		req.WaitMs = uint32(min(wait/time.Millisecond, math.MaxUint32))
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if g.direct(inv, req) {
		return g.sendDirect(ctx, cctx, inv, res, req) // direct.go
	}
	g.prewarmSteps(req.Steps) // load steps 1.. while step 0 runs
	var act wire.Activation
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectInvoke, req, &act)
	if inv.blocking && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// Still running: 202, for an activation whose record is stored
		// (a controller that died before it stored one leaves none).
		if cerr := g.confirmRecorded(ctx, req); cerr != nil {
			return res, cerr
		}
		return res, nil
	}
	if err != nil {
		res.misplaced = misplaced(err, nil)
		return res, busFailure(err)
	}
	if !inv.blocking {
		return res, nil
	}
	if act.ActivationID != res.id || act.Namespace != inv.caller {
		return res, &chainError{http.StatusBadGateway, "The controller answered with another activation.", nil}
	}
	res.act = &act
	res.misplaced = misplaced(nil, &act)
	return res, nil
}
