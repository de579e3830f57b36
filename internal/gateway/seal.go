package gateway

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

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

// sealing is a sealed invocation: the header, the bus request carrying
// its envelope, and what the gateway keeps to open the answer.
type sealing struct {
	res    *invoked
	header envelope.Header
	req    wire.InvokeRequest
}

// seal makes a request id for inv, builds the header of p's chain as
// placed (first: step 0's placement) and the bus request, and seals the
// envelope into it. For a sealed invocation's prepare step it seals
// nothing: the caller builds the header and the ticket (sealed.go).
func (g *Gateway) seal(inv *invocation, p *plan, first wire.Placement) (*sealing, *chainError) {
	a := inv.target.action
	now := g.now()
	reqID := g.newRequestID(now, inv.caller)
	if inv.prepare {
		reqID = g.newSealedRequestID(now, inv.caller)
	}
	s := &sealing{header: envelope.Header{
		Version:   envelope.Version,
		Suite:     p.suite,
		RequestID: reqID,
		Namespace: p.ns,
		Chain:     p.chain,
		Expiry:    now.Add(p.timeout + g.cfg.ExpirySlack).UnixMilli(),
		Limits: envelope.Limits{
			TimeoutMs: p.limits.TimeoutMs,
			MemoryMB:  p.limits.MemoryMB,
			LogsKB:    p.limits.LogsMB << 10,
		},
	}}
	s.res = &invoked{id: hex.EncodeToString(reqID)}
	s.req = wire.InvokeRequest{
		ActivationID: s.res.id,
		Namespace:    a.Namespace,
		Action:       a.Name,
		Version:      a.Version,
		Subject:      inv.caller,
		Blocking:     inv.blocking,
		Limits:       p.limits,
		Steps:        p.routes,
		Revision:     a.Revision,
	}
	if a.Kind != kindSequence {
		s.req.FunctionID = p.steps[0].record.FunctionID
		s.req.Invoker, s.req.Runtime = first.Invoker, first.Runtime
	}
	if a.Namespace != inv.caller {
		// Another namespace's public action: the records are the
		// caller's (OpenWhisk), and only the caller can open them (the
		// request id is bound to the caller's namespace).
		s.req.RecordNamespace = inv.caller
	}
	if inv.prepare {
		digest, err := s.header.Digest()
		if err != nil {
			return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
		}
		s.res.digest = digest
		return s, nil
	}
	// Capsules under this gateway's cached session per function version:
	// no public-key operation per request once the sessions exist. The
	// owner keys open the answer (openOptions.keys).
	s.res.rs = envelope.RequestSecret(g.secret, reqID)
	env, keys, err := g.sessions.SealOwned(s.header, s.res.rs, g.namespaceAuthKey(p.ns), p.pubs, inv.params)
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	s.res.digest, s.res.keys = keys.Digest(), keys
	if s.req.Envelope, err = env.Marshal(); err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	return s, nil
}
