package gateway

import (
	"bytes"
	"context"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// headerActivationID is set on every invoke response.
const headerActivationID = "x-openwhisk-activation-id"

// newRequestID returns a request id that is time-ordered like a UUIDv7:
// 48 bits of unix milliseconds, then 80 random bits. The activation id is
// its hex form, so the controller can list activations newest first from
// their ids; the id is not secret (the controller sees the time anyway) and
// 80 random bits keep it unique.
func newRequestID(now time.Time) []byte {
	id := make([]byte, envelope.RequestIDSize)
	binary.BigEndian.PutUint64(id, uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(id[6:])
	return id
}

// invokeAction seals the parameters into an envelope for the action's
// current function version and hands it to the controller.
func (g *Gateway) invokeAction(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	blocking, err := queryBool(r, "blocking")
	var resultOnly bool
	if err == nil {
		resultOnly, err = queryBool(r, "result")
	}
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	params, ok := g.readBody(w, r, g.cfg.MaxPayloadBytes)
	if !ok {
		return
	}
	params = bytes.TrimSpace(params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	if params[0] != '{' || !json.Valid(params) {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: the parameters must be a JSON object.")
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	var a wire.Action
	err = bus.Call(ctx, g.cfg.Conn, wire.SubjectActionGet, &wire.ActionRef{Namespace: ns, Name: name}, &a)
	cancel()
	if err != nil {
		g.busError(w, r, "load action", err)
		return
	}
	if a.Namespace != ns || a.Name != name {
		g.log.Error("controller answered with another action", "tx", txID(r))
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another action.")
		return
	}
	// The controller is untrusted: only records signed by the attested KMS
	// for exactly these namespaces and actions name the keys we seal to.
	ctx, cancel = context.WithTimeout(r.Context(), busTimeout)
	steps, cerr := g.resolveChain(ctx, &a, 0, nil)
	cancel()
	if cerr != nil {
		if cerr.err != nil || cerr.status >= 500 {
			g.log.Error("resolve chain", "tx", txID(r), "namespace", ns, "action", name, "err", cerr.err)
		}
		g.fail(w, r, cerr.status, "%s", cerr.msg)
		return
	}
	suite := envelope.Suite(steps[0].record.Suite)
	kem, err := suite.KEM()
	if err != nil {
		g.fail(w, r, http.StatusBadGateway, "The action's function record names an unsupported suite.")
		return
	}
	limits := maxLimits(steps)
	var (
		timeout time.Duration
		chain   = make([]envelope.Step, len(steps))
		pubs    = make([]hpke.PublicKey, len(steps))
		routes  []wire.StepRoute
	)
	for j, st := range steps {
		if envelope.Suite(st.record.Suite) != suite {
			g.fail(w, r, http.StatusBadRequest, "The sequence mixes functions of different cipher suites.")
			return
		}
		pub, err := kem.NewPublicKey(st.record.PublicKey)
		if err != nil {
			g.fail(w, r, http.StatusBadGateway, "A function key is malformed.")
			return
		}
		pubs[j] = pub
		chain[j] = envelope.Step{
			Name:       "/" + st.action.Namespace + "/" + st.action.Name,
			FunctionID: st.record.FunctionID,
			CodeDigest: st.record.CodeDigest,
			KeyVersion: st.record.KeyVersion,
		}
		t := time.Duration(st.action.Limits.TimeoutMs) * time.Millisecond
		if t <= 0 {
			t = time.Minute
		}
		timeout += t
		if a.Kind == kindSequence {
			routes = append(routes, wire.StepRoute{
				Namespace: st.action.Namespace, Action: st.action.Name, Version: st.action.Version,
				FunctionID: st.record.FunctionID, Limits: st.action.Limits,
			})
		}
	}

	now := g.now()
	reqID := newRequestID(now)
	h := envelope.Header{
		Version:   1,
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
		g.log.Error("header digest", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	env, err := envelope.Seal(h, envelope.RequestSecret(g.secret, reqID), envelope.AuthKey(g.secret, ns), pubs, params)
	if err != nil {
		g.log.Error("seal envelope", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	sealed, err := env.Marshal()
	if err != nil {
		g.log.Error("encode envelope", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	id := hex.EncodeToString(reqID)
	w.Header().Set(headerActivationID, id)
	req := wire.InvokeRequest{
		ActivationID: id,
		Namespace:    ns,
		Action:       name,
		Version:      a.Version,
		Subject:      ns,
		Envelope:     sealed,
		Blocking:     blocking,
		Limits:       limits,
		Steps:        routes,
	}
	if a.Kind != kindSequence {
		req.FunctionID = steps[0].record.FunctionID
	}

	wait := busTimeout
	if blocking {
		wait = min(timeout+g.cfg.ExpirySlack, g.cfg.BlockingWait)
	}
	ctx, cancel = context.WithTimeout(r.Context(), wait)
	defer cancel()
	var act wire.Activation
	err = bus.Call(ctx, g.cfg.Conn, wire.SubjectInvoke, &req, &act)
	if blocking && errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		// The activation goes on; the caller polls for it (OpenWhisk).
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": id})
		return
	}
	if err != nil {
		g.busError(w, r, "invoke", err)
		return
	}
	if !blocking {
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": id})
		return
	}
	if act.ActivationID != id || act.Namespace != ns {
		g.log.Error("controller answered with another activation", "tx", txID(r))
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another activation.")
		return
	}
	view := g.openActivation(&act, digest)
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
