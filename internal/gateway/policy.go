package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/clemmys/clemmys/internal/wire"
)

// policyBody is the JSON form of a namespace's key-release policy: the
// enclave runtime measurements (hex) that may receive the keys of its
// functions. Upgrading the runtime binary changes its measurement; the
// owner adds the new one here (`clemmys policy allow`), see
// docs/operations.md.
type policyBody struct {
	Measurements       []string `json:"measurements"`
	AllowDebug         bool     `json:"allowDebug"`
	MinSecurityVersion uint32   `json:"minSecurityVersion"`
}

func renderPolicy(p *wire.Policy) policyBody {
	out := policyBody{Measurements: []string{}, AllowDebug: p.AllowDebug, MinSecurityVersion: p.MinSecurityVersion}
	for _, m := range p.Measurements {
		out.Measurements = append(out.Measurements, hex.EncodeToString(m))
	}
	return out
}

func (g *Gateway) getPolicy(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	p, err := g.cfg.KMS.GetPolicy(ctx, callerNamespace(r))
	if err != nil {
		g.busError(w, r, "get policy", err)
		return
	}
	writeJSON(w, http.StatusOK, renderPolicy(p))
}

func (g *Gateway) putPolicy(w http.ResponseWriter, r *http.Request) {
	raw, ok := g.readBody(w, r, 64<<10)
	if !ok {
		return
	}
	var body policyBody
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: the body must be a JSON policy.")
		return
	}
	p := wire.Policy{AllowDebug: body.AllowDebug, MinSecurityVersion: body.MinSecurityVersion}
	for _, m := range body.Measurements {
		b, err := hex.DecodeString(m)
		if err != nil {
			g.fail(w, r, http.StatusBadRequest, "Measurements must be hex strings.")
			return
		}
		p.Measurements = append(p.Measurements, b)
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	stored, err := g.cfg.KMS.SetPolicy(ctx, wire.SetPolicy{Namespace: callerNamespace(r), Policy: p})
	if err != nil {
		g.busError(w, r, "set policy", err)
		return
	}
	g.log.Info("policy set", "namespace", callerNamespace(r), "measurements", len(stored.Measurements))
	writeJSON(w, http.StatusOK, renderPolicy(stored))
}
