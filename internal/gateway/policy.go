package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/clemmys/clemmys/internal/wire"
)

// policyBody is the JSON form of a namespace's key-release policy: the
// enclave runtime measurements (hex) of the simulated TEE that may receive
// the keys of its functions, and the typed rules for AMD SEV-SNP and Intel
// TDX runtimes. Upgrading the runtime binary changes its measurement; the
// owner adds the new one here (`clemmys policy allow`), see
// docs/operations.md.
type policyBody struct {
	Measurements       []string     `json:"measurements"`
	AllowDebug         bool         `json:"allowDebug"`
	MinSecurityVersion uint32       `json:"minSecurityVersion"`
	SNP                *snpBody     `json:"snp,omitempty"`
	TDX                *tdxBody     `json:"tdx,omitempty"`
	Signers            []signerBody `json:"signers,omitempty"`
}

// signerBody is a trusted runtime release signer.
type signerBody struct {
	PublicKey  string `json:"publicKey"` // ed25519, hex
	MinVersion uint32 `json:"minVersion"`
}

type snpTCBBody struct {
	BootLoader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

type snpBody struct {
	Measurements        []string   `json:"measurements"`
	MinTCB              snpTCBBody `json:"minTcb"`
	AllowSMT            bool       `json:"allowSmt"`
	AllowMigrationAgent bool       `json:"allowMigrationAgent"`
	HostData            string     `json:"hostData,omitempty"`
	IDKeyDigests        []string   `json:"idKeyDigests,omitempty"`
	MinGuestSVN         uint32     `json:"minGuestSvn,omitempty"`
}

type tdxBody struct {
	MRTDs        []string `json:"mrtd"`
	RTMR0        []string `json:"rtmr0,omitempty"`
	RTMR1        []string `json:"rtmr1,omitempty"`
	RTMR2        []string `json:"rtmr2,omitempty"`
	RTMR3        []string `json:"rtmr3,omitempty"`
	MinTEETCBSVN string   `json:"minTeeTcbSvn,omitempty"`
	TCBStatuses  []string `json:"tcbStatuses,omitempty"`
}

func hexList(l [][]byte) []string {
	out := []string{}
	for _, m := range l {
		out = append(out, hex.EncodeToString(m))
	}
	return out
}

func unhexList(what string, l []string) ([][]byte, error) {
	var out [][]byte
	for _, m := range l {
		b, err := hex.DecodeString(m)
		if err != nil {
			return nil, fmt.Errorf("%s must be hex strings", what)
		}
		out = append(out, b)
	}
	return out, nil
}

func renderPolicy(p *wire.Policy) policyBody {
	out := policyBody{Measurements: hexList(p.Measurements), AllowDebug: p.AllowDebug, MinSecurityVersion: p.MinSecurityVersion}
	for _, s := range p.Signers {
		out.Signers = append(out.Signers, signerBody{PublicKey: hex.EncodeToString(s.PublicKey), MinVersion: s.MinVersion})
	}
	if s := p.SNP; s != nil {
		out.SNP = &snpBody{
			Measurements: hexList(s.Measurements),
			MinTCB:       snpTCBBody{s.MinTCB.BootLoader, s.MinTCB.TEE, s.MinTCB.SNP, s.MinTCB.Microcode},
			AllowSMT:     s.AllowSMT, AllowMigrationAgent: s.AllowMigrationAgent,
			HostData: hex.EncodeToString(s.HostData), IDKeyDigests: hexList(s.IDKeyDigests), MinGuestSVN: s.MinGuestSVN,
		}
		if len(s.IDKeyDigests) == 0 {
			out.SNP.IDKeyDigests = nil
		}
	}
	if t := p.TDX; t != nil {
		out.TDX = &tdxBody{MRTDs: hexList(t.MRTDs), MinTEETCBSVN: hex.EncodeToString(t.MinTEETCBSVN), TCBStatuses: t.TCBStatuses}
		dst := []*[]string{&out.TDX.RTMR0, &out.TDX.RTMR1, &out.TDX.RTMR2, &out.TDX.RTMR3}
		for i, l := range [][][]byte{t.RTMR0, t.RTMR1, t.RTMR2, t.RTMR3} {
			if len(l) > 0 {
				*dst[i] = hexList(l)
			}
		}
	}
	return out
}

// parsePolicy converts the JSON form; the KMS validates sizes and values.
func parsePolicy(body *policyBody) (wire.Policy, error) {
	p := wire.Policy{AllowDebug: body.AllowDebug, MinSecurityVersion: body.MinSecurityVersion}
	var err error
	if p.Measurements, err = unhexList("measurements", body.Measurements); err != nil {
		return p, err
	}
	for _, s := range body.Signers {
		k, err := hex.DecodeString(s.PublicKey)
		if err != nil {
			return p, fmt.Errorf("signer public keys must be hex")
		}
		p.Signers = append(p.Signers, wire.ReleaseSigner{PublicKey: k, MinVersion: s.MinVersion})
	}
	if s := body.SNP; s != nil {
		sp := &wire.SNPPolicy{
			MinTCB:   wire.SNPTCB{BootLoader: s.MinTCB.BootLoader, TEE: s.MinTCB.TEE, SNP: s.MinTCB.SNP, Microcode: s.MinTCB.Microcode},
			AllowSMT: s.AllowSMT, AllowMigrationAgent: s.AllowMigrationAgent, MinGuestSVN: s.MinGuestSVN,
		}
		if sp.Measurements, err = unhexList("snp measurements", s.Measurements); err != nil {
			return p, err
		}
		if sp.IDKeyDigests, err = unhexList("snp ID key digests", s.IDKeyDigests); err != nil {
			return p, err
		}
		if sp.HostData, err = hex.DecodeString(s.HostData); err != nil {
			return p, fmt.Errorf("snp host data must be hex")
		}
		if len(sp.HostData) == 0 {
			sp.HostData = nil
		}
		p.SNP = sp
	}
	if t := body.TDX; t != nil {
		tp := &wire.TDXPolicy{TCBStatuses: t.TCBStatuses}
		for _, f := range []struct {
			what string
			in   []string
			out  *[][]byte
		}{{"tdx MRTDs", t.MRTDs, &tp.MRTDs}, {"tdx RTMR0", t.RTMR0, &tp.RTMR0}, {"tdx RTMR1", t.RTMR1, &tp.RTMR1},
			{"tdx RTMR2", t.RTMR2, &tp.RTMR2}, {"tdx RTMR3", t.RTMR3, &tp.RTMR3}} {
			if *f.out, err = unhexList(f.what, f.in); err != nil {
				return p, err
			}
		}
		if tp.MinTEETCBSVN, err = hex.DecodeString(t.MinTEETCBSVN); err != nil {
			return p, fmt.Errorf("tdx minTeeTcbSvn must be hex")
		}
		if len(tp.MinTEETCBSVN) == 0 {
			tp.MinTEETCBSVN = nil
		}
		p.TDX = tp
	}
	return p, nil
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
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the body must be a JSON policy.", jsonDetail(raw, err))
		return
	}
	p, err := parsePolicy(&body)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: "+err.Error()+".")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	stored, err := g.cfg.KMS.SetPolicy(ctx, wire.SetPolicy{Namespace: callerNamespace(r), Policy: p})
	if err != nil {
		g.busError(w, r, "set policy", err)
		return
	}
	g.log.Info("policy set", "namespace", callerNamespace(r), "measurements", len(stored.Measurements),
		"snp", stored.SNP != nil, "tdx", stored.TDX != nil)
	writeJSON(w, http.StatusOK, renderPolicy(stored))
}
