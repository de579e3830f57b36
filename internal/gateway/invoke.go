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
	// The controller is untrusted: only a record signed by the attested KMS
	// for exactly this namespace and action names the key we seal to.
	rec, err := g.cfg.KMS.VerifyRecord(a.Function)
	if err != nil || rec.Namespace != ns || rec.Action != name {
		g.log.Error("function record refused", "tx", txID(r), "namespace", ns, "action", name, "err", err)
		g.fail(w, r, http.StatusBadGateway, "The action's function record could not be verified.")
		return
	}
	suite := envelope.Suite(rec.Suite)
	kem, err := suite.KEM()
	if err != nil {
		g.fail(w, r, http.StatusBadGateway, "The action's function record names an unsupported suite.")
		return
	}
	pub, err := kem.NewPublicKey(rec.PublicKey)
	if err != nil {
		g.fail(w, r, http.StatusBadGateway, "The action's function key is malformed.")
		return
	}

	timeout := time.Duration(a.Limits.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = time.Minute
	}
	now := g.now()
	reqID := newRequestID(now)
	h := envelope.Header{
		Version:   1,
		Suite:     suite,
		RequestID: reqID,
		Namespace: ns,
		Chain: []envelope.Step{{
			Name:       "/" + ns + "/" + name,
			FunctionID: rec.FunctionID,
			CodeDigest: rec.CodeDigest,
			KeyVersion: rec.KeyVersion,
		}},
		Expiry: now.Add(timeout + expirySlack).UnixMilli(),
		Limits: envelope.Limits{
			TimeoutMs: a.Limits.TimeoutMs,
			MemoryMB:  a.Limits.MemoryMB,
			LogsKB:    a.Limits.LogsMB << 10,
		},
	}
	digest, err := h.Digest()
	if err != nil {
		g.log.Error("header digest", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	env, err := envelope.Seal(h, envelope.RequestSecret(g.secret, reqID), []hpke.PublicKey{pub}, params)
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
		Limits:       a.Limits,
		FunctionID:   rec.FunctionID,
	}

	wait := busTimeout
	if blocking {
		wait = min(timeout+expirySlack, g.cfg.BlockingWait)
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
