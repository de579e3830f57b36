package gateway

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// End-to-end sealed invocations (docs/protocol.md §15). The owner seals
// the parameters on its own machine, under a request secret only it knows,
// so the gateway and everything after it see only ciphertext; the result,
// logs and receipts come back sealed under the same secret. Two calls:
//
//  1. POST .../actions/NAME?sealed=prepare: the gateway resolves the
//     action and its chain (every check of an ordinary invocation),
//     places the steps and answers the authenticated header, the
//     KMS-signed function records of the steps and a ticket: the
//     invocation to send, sealed under a key only gateways hold.
//  2. POST .../actions/NAME?sealed=invoke[&blocking=true] with {envelope,
//     ticket}: the owner's untagged step-0 envelope for that header. The
//     gateway checks it is for the ticket's header, tags it with the
//     namespace's authentication key (over the header digest and the
//     capsules: it needs no plaintext) and hands it to the controller.
//
// Records of sealed requests (their ids carry a MAC with another label)
// are shown with their sealed parts as they are: only the owner opens
// them (package client).

const (
	sealedRequestIDLabel = "clemmys/v1 sealed request id\x00"
	sealedTicketKeyInfo  = "clemmys/v1 gateway sealed ticket key"
	sealedTicketLabel    = "clemmys/v1 sealed ticket\x00"
	// maxSealedBody bounds a sealed invoke's body: the envelope (at most
	// MaxEnvelopeSize) and the ticket, base64 in JSON.
	maxSealedBody = envelope.MaxEnvelopeSize*4/3 + 64<<10

	msgSealedDefaults = "The action has default parameters, which the gateway merges in plaintext: a sealed invocation cannot take them. Pass them in the sealed parameters, or invoke without sealing."
	msgSealedTicket   = "The sealed invocation's ticket is not valid (expired, of another namespace or another gateway deployment): prepare it again."
	msgSealedEnvelope = "The sealed envelope is not for the prepared header: seal the parameters for the header the prepare step returned."
	msgSealedMode     = "The query parameter 'sealed' must be 'prepare' or 'invoke'."
)

// newSealedRequestID is newRequestID for a sealed invocation.
func (g *Gateway) newSealedRequestID(now time.Time, ns string) []byte {
	return g.makeRequestID(sealedRequestIDLabel, now, ns)
}

// sealedRequestFor reports whether id is a sealed request id made for ns.
func (g *Gateway) sealedRequestFor(id []byte, ns string) bool {
	return g.requestIDFor(sealedRequestIDLabel, id, ns)
}

// preparedInvocation is the prepare step's answer.
type preparedInvocation struct {
	ActivationID string   `json:"activationId"`
	Header       []byte   `json:"header"`  // base64 CBOR envelope.Header
	Records      [][]byte `json:"records"` // base64 CBOR wire.SignedRecord, one per step
	Ticket       []byte   `json:"ticket"`
}

// sealedTicket is what the prepare step decided, for the invoke step.
type sealedTicket struct {
	Digest    []byte             `cbor:"1,keyasint"`
	Request   wire.InvokeRequest `cbor:"2,keyasint"` // without its envelope
	TimeoutMs int64              `cbor:"3,keyasint"`
	Expiry    int64              `cbor:"4,keyasint"` // the header's
}

// ticketCipher is the AEAD of tickets, derived from the gateway secret:
// every replica opens another's tickets.
func (g *Gateway) ticketCipher() (cipher.AEAD, error) {
	g.ticketOnce.Do(func() {
		key, err := hkdf.Key(sha256.New, g.secret.Bytes(), nil, sealedTicketKeyInfo, 32)
		if err != nil {
			g.ticketErr = err
			return
		}
		defer clear(key)
		block, err := aes.NewCipher(key)
		if err != nil {
			g.ticketErr = err
			return
		}
		g.ticketAEAD, g.ticketErr = cipher.NewGCM(block)
	})
	return g.ticketAEAD, g.ticketErr
}

func ticketAAD(caller string) []byte { return append([]byte(sealedTicketLabel), caller...) }

// prepareSealed answers the prepare step (called by invoke, after seal).
func (g *Gateway) prepareSealed(res *invoked, h *envelope.Header, steps []step, req *wire.InvokeRequest, timeout time.Duration) (*invoked, *chainError) {
	hb, err := bus.Marshal(h)
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	p := &preparedInvocation{ActivationID: res.id, Header: hb}
	for _, st := range steps {
		rb, err := bus.Marshal(&st.action.Function)
		if err != nil {
			return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
		}
		p.Records = append(p.Records, rb)
	}
	tb, err := bus.Marshal(&sealedTicket{Digest: res.digest[:], Request: *req, TimeoutMs: timeout.Milliseconds(), Expiry: h.Expiry})
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	aead, err := g.ticketCipher()
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(tb)+aead.Overhead())
	_, _ = rand.Read(nonce)
	p.Ticket = aead.Seal(nonce, nonce, tb, ticketAAD(req.Subject))
	res.prepared = p
	return res, nil
}

// openTicket opens a ticket made for caller.
func (g *Gateway) openTicket(raw []byte, caller string) (*sealedTicket, error) {
	aead, err := g.ticketCipher()
	if err != nil {
		return nil, err
	}
	if len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("short ticket")
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], ticketAAD(caller))
	if err != nil {
		return nil, err
	}
	var t sealedTicket
	if err := bus.Unmarshal(pt, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// invokeSealed serves POST .../actions/NAME?sealed=prepare|invoke.
func (g *Gateway) invokeSealed(w http.ResponseWriter, r *http.Request, mode string) {
	caller := callerNamespace(r)
	ns, name, ok := actionPath(r)
	if !ok {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	switch mode {
	case "prepare":
		release, ok := g.limitInvocation(w, r, caller)
		if !ok {
			return
		}
		defer release()
		res, cerr := g.invokeNamed(r.Context(), ns, name, &invocation{
			caller: caller, payload: []byte("{}"), prepare: true, tx: txID(r),
		})
		if cerr != nil {
			g.answer(w, r, "prepare a sealed invocation", cerr)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, res.prepared)
	case "invoke":
		g.submitSealed(w, r, caller)
	default:
		g.fail(w, r, http.StatusBadRequest, msgSealedMode)
	}
}

func (g *Gateway) submitSealed(w http.ResponseWriter, r *http.Request, caller string) {
	blocking, err := queryBool(r.URL.Query(), "blocking")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	release, ok := g.limitInvocation(w, r, caller) // before the body is read
	if !ok {
		return
	}
	defer release()
	raw, ok := g.readBody(w, r, maxSealedBody)
	if !ok {
		return
	}
	var body struct {
		Envelope []byte `json:"envelope"`
		Ticket   []byte `json:"ticket"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: the body must be {\"envelope\": base64, \"ticket\": base64}.")
		return
	}
	t, err := g.openTicket(body.Ticket, caller)
	if err != nil || g.now().UnixMilli() >= t.Expiry || t.Request.Subject != caller {
		g.fail(w, r, http.StatusBadRequest, msgSealedTicket)
		return
	}
	env, err := envelope.Unmarshal(body.Envelope)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, msgSealedEnvelope)
		return
	}
	d, err := env.Header.Digest()
	if err != nil || !bytes.Equal(d[:], t.Digest) || env.Step != 0 {
		g.fail(w, r, http.StatusBadRequest, msgSealedEnvelope)
		return
	}
	if err := env.Tag(g.namespaceAuthKey(env.Header.Namespace)); err != nil {
		g.fail(w, r, http.StatusBadRequest, msgSealedEnvelope)
		return
	}
	req := t.Request
	req.Blocking = blocking
	if req.Envelope, err = env.Marshal(); err != nil {
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	inv := &invocation{caller: caller, blocking: blocking, tx: txID(r)}
	res := &invoked{id: req.ActivationID, digest: d}
	res, cerr := g.dispatch(r.Context(), inv, res, &req, time.Duration(t.TimeoutMs)*time.Millisecond)
	w.Header().Set(headerActivationID, res.id)
	if cerr != nil {
		if res.misplaced {
			cerr.msg += " Prepare the sealed invocation again."
		}
		g.answer(w, r, "invoke", cerr)
		return
	}
	if res.act == nil {
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": res.id})
		return
	}
	v := g.openActivation(res.act, d, caller)
	writeJSON(w, http.StatusOK, v.render())
}

// sealedView is the view of a sealed request's record: its sealed parts
// as stored, for the owner to open; the status is the controller's, which
// the owner checks against the receipts.
func sealedView(v *activationView, rec *wire.Activation) *activationView {
	v.result = json.RawMessage(`{}`)
	v.sealed = &sealedParts{Result: rec.Result, Envelope: rec.Envelope, Logs: rec.Logs, Receipts: rec.Receipts, Step: rec.Step}
	if rec.Cause == "" && len(rec.Components) > 0 {
		v.logs = append(v.logs, rec.Components...) // a sequence's: its components' ids
	}
	if rec.End == 0 {
		v.status = wire.StatusInternalError
	}
	return v
}

// sealedParts are a sealed record's parts (docs/protocol.md §15).
type sealedParts struct {
	Result   []byte   `json:"result,omitempty"`   // CBOR result envelope
	Envelope []byte   `json:"envelope,omitempty"` // the request envelope, for records without a result
	Logs     []byte   `json:"logs,omitempty"`     // sealed logs of Step
	Receipts [][]byte `json:"receipts,omitempty"` // sealed receipts
	Step     uint32   `json:"step"`
}
