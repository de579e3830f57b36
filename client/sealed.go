package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/wire"
)

// End-to-end sealed invocations (docs/protocol.md §15): the parameters
// are sealed here, under a request secret that never leaves this process,
// to the function keys the attested KMS signed; the gateway tags the
// envelope without seeing inside, and the result, logs and receipts come
// back sealed under the same secret.

// MaxSealedAnswer bounds the gateway's answers in a sealed invocation.
const MaxSealedAnswer = envelope.MaxEnvelopeSize*2 + 1<<20

// SealedResult is a sealed invocation's outcome, opened and verified.
type SealedResult struct {
	ActivationID string
	Status       string          // the runtime's, from its receipt
	Result       json.RawMessage // nil if the activation has no result yet (non-blocking, or still running)
	Logs         string          // the last step's logs, as the runtime wrote them
	Report       *ActivationReport

	// What Wait needs to open the record later: the header and the
	// request secret (which never leaves this process) and the params.
	header *envelope.Header
	rs     envelope.Key
	params []byte
}

// SealedInvoker invokes actions sealed end to end through one gateway.
type SealedInvoker struct {
	HTTP    *http.Client
	APIHost string // https://HOST:PORT
	Auth    string // "uuid:key"
	// KMSKey is the verified KMS signing key (AttestationReport.KMSKey):
	// the function records and the receipts must chain up to it.
	KMSKey ed25519.PublicKey
	// Pinned are runtime measurements the owner accepts (empty: any the
	// KMS certified).
	Pinned []string
}

type preparedAnswer struct {
	ActivationID string   `json:"activationId"`
	Header       []byte   `json:"header"`
	Records      [][]byte `json:"records"`
	Ticket       []byte   `json:"ticket"`
}

// Invoke runs action ("name", "pkg/name" or "/ns/pkg/name") on params (a
// JSON object) sealed end to end and, when blocking, returns its opened
// and verified result.
func (s *SealedInvoker) Invoke(ctx context.Context, action string, params []byte, blocking bool) (*SealedResult, error) {
	if !json.Valid(params) || !bytes.HasPrefix(bytes.TrimSpace(params), []byte("{")) {
		return nil, errors.New("client: the parameters must be a JSON object")
	}
	path, err := actionURL(action)
	if err != nil {
		return nil, err
	}
	var p preparedAnswer
	if err := s.post(ctx, path+"?sealed=prepare", nil, &p); err != nil {
		return nil, err
	}
	var h envelope.Header
	if err := bus.Unmarshal(p.Header, &h); err != nil {
		return nil, fmt.Errorf("client: the prepared header is malformed: %w", err)
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("client: the prepared header is not valid: %w", err)
	}
	if hex.EncodeToString(h.RequestID) != p.ActivationID {
		return nil, errors.New("client: the prepared header is of another activation")
	}
	pubs, err := s.checkChain(&h, p.Records, action)
	if err != nil {
		return nil, err
	}
	rs := envelope.NewKey()
	env, err := envelope.SealUntagged(h, rs, pubs, params)
	if err != nil {
		return nil, fmt.Errorf("client: seal: %w", err)
	}
	eb, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	q := "?sealed=invoke"
	if blocking {
		q += "&blocking=true"
	}
	var rec sealedRecord
	if err := s.post(ctx, path+q, map[string][]byte{"envelope": eb, "ticket": p.Ticket}, &rec); err != nil {
		return nil, err
	}
	out := &SealedResult{ActivationID: p.ActivationID, header: &h, rs: rs, params: params}
	if rec.Sealed == nil {
		return out, nil // accepted: Wait for it
	}
	if rec.ActivationID != p.ActivationID {
		return nil, errors.New("client: the gateway answered with another activation")
	}
	return s.open(out, &h, rs, params, &rec)
}

// sealedRecord is a sealed request's record as the gateway shows it.
type sealedRecord struct {
	ActivationID string `json:"activationId"`
	Response     struct {
		Status string `json:"status"`
	} `json:"response"`
	Logs        []string     `json:"logs"`
	Annotations []Annotation `json:"annotations"`
	Sealed      *struct {
		Result   []byte   `json:"result"`
		Logs     []byte   `json:"logs"`
		Receipts [][]byte `json:"receipts"`
		Step     uint32   `json:"step"`
	} `json:"sealed"`
}

// Wait polls for the record of a sealed invocation Invoke did not wait
// for (non-blocking, or still running) and opens and verifies it.
func (s *SealedInvoker) Wait(ctx context.Context, pending *SealedResult) (*SealedResult, error) {
	if pending.header == nil {
		return nil, errors.New("client: not a pending sealed invocation of this process")
	}
	for {
		var rec sealedRecord
		err := s.get(ctx, "/api/v1/namespaces/_/activations/"+pending.ActivationID, &rec)
		if err == nil && rec.Sealed != nil {
			if rec.ActivationID != pending.ActivationID {
				return nil, errors.New("client: the gateway answered with another activation")
			}
			return s.open(pending, pending.header, pending.rs, pending.params, &rec)
		}
		if err != nil && !errors.Is(err, errNotFound) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// open opens and verifies a sealed record with the request secret.
func (s *SealedInvoker) open(out *SealedResult, h *envelope.Header, rs envelope.Key, params []byte, rec *sealedRecord) (*SealedResult, error) {
	sp := rec.Sealed
	if len(sp.Result) == 0 {
		return nil, fmt.Errorf("client: the activation has no result (status %q as the controller reports it: nothing ran, or its result was withheld)", rec.Response.Status)
	}
	d, err := h.Digest()
	if err != nil {
		return nil, err
	}
	e, err := envelope.Unmarshal(sp.Result)
	if err != nil || !bytes.Equal(e.Header.RequestID, h.RequestID) {
		return nil, errors.New("client: the result envelope is not of this request")
	}
	result, keys, err := envelope.OpenOutputKeys(e, rs, d)
	if err != nil {
		return nil, fmt.Errorf("client: the result does not open: %w", err)
	}
	if len(sp.Receipts) == 0 || len(sp.Receipts) > MaxReceipts {
		return nil, errors.New("client: the record has no receipts")
	}
	act := &Activation{ActivationID: out.ActivationID, Response: struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}{Status: rec.Response.Status, Result: result}, Logs: rec.Logs}
	for i, sealed := range sp.Receipts {
		signed, err := keys.OpenReceipt(uint32(i), sealed)
		if err != nil {
			return nil, fmt.Errorf("client: receipt %d does not open", i)
		}
		act.Receipts = append(act.Receipts, signed)
	}
	last := uint32(len(sp.Receipts) - 1)
	var logs []byte
	if len(sp.Logs) > 0 {
		if logs, err = keys.OpenLogs(last, sp.Logs); err != nil {
			return nil, errors.New("client: the logs do not open")
		}
	}
	// The logs of a sequence's last step are in its component's record;
	// here the record of a single action carries them. Verify as the
	// runtime wrote them.
	act.Logs = strings.Split(strings.TrimRight(string(logs), "\n"), "\n")
	if len(logs) == 0 {
		act.Logs = nil
	}
	if len(h.Chain) > 1 {
		act.Annotations = append(act.Annotations, Annotation{"kind", "sequence"})
		act.Logs = rec.Logs
	}
	out.Report = VerifyActivation(act, s.KMSKey, s.Pinned)
	if out.Report.OK() {
		in := sha256.Sum256(params)
		if first := out.Report.Steps[0]; first.InputDigest != hex.EncodeToString(in[:]) {
			out.Report.problem("the first step ran on other parameters than the ones sealed here")
		}
	}
	if !out.Report.OK() {
		return out, fmt.Errorf("client: the activation does not verify: %s", strings.Join(out.Report.Problems, "; "))
	}
	out.Status, out.Result, out.Logs = act.Response.Status, result, string(logs)
	return out, nil
}

// checkChain checks the prepared header against the KMS-signed function
// records and returns the function keys to seal to.
func (s *SealedInvoker) checkChain(h *envelope.Header, records [][]byte, action string) ([]hpke.PublicKey, error) {
	if len(records) != len(h.Chain) {
		return nil, errors.New("client: the prepared header and records disagree on the chain's length")
	}
	kem, err := h.Suite.KEM()
	if err != nil {
		return nil, err
	}
	pubs := make([]hpke.PublicKey, len(records))
	for j, raw := range records {
		var sr wire.SignedRecord
		if err := bus.Unmarshal(raw, &sr); err != nil {
			return nil, fmt.Errorf("client: function record %d is malformed", j)
		}
		rec, err := kmsclient.VerifyRecord(s.KMSKey, sr)
		if err != nil {
			return nil, fmt.Errorf("client: function record %d: %w", j, err)
		}
		st := h.Chain[j]
		if !bytes.Equal(rec.FunctionID, st.FunctionID) || !bytes.Equal(rec.CodeDigest, st.CodeDigest) || rec.KeyVersion != st.KeyVersion ||
			rec.Namespace != h.Namespace || envelope.Suite(rec.Suite) != h.Suite {
			return nil, fmt.Errorf("client: step %d of the prepared header is not the function the KMS signed", j)
		}
		if pubs[j], err = kem.NewPublicKey(rec.PublicKey); err != nil {
			return nil, fmt.Errorf("client: function key %d: %w", j, err)
		}
	}
	if len(h.Chain) == 1 {
		// A single action: the chain must be the action asked for.
		_, name := splitAction(action)
		if got := h.Chain[0].Name; !strings.HasSuffix(got, "/"+name) {
			return nil, fmt.Errorf("client: the prepared header runs %s, not %s", got, action)
		}
	}
	return pubs, nil
}

// splitAction splits "/ns/pkg/name" or "pkg/name" into namespace ("_"
// for the caller's) and name.
func splitAction(a string) (ns, name string) {
	if strings.HasPrefix(a, "/") {
		ns, name, _ = strings.Cut(strings.TrimPrefix(a, "/"), "/")
		return ns, name
	}
	return "_", a
}

// actionURL is the REST path of an action.
func actionURL(action string) (string, error) {
	a := action
	ns := "_"
	if strings.HasPrefix(a, "/") {
		parts := strings.SplitN(strings.TrimPrefix(a, "/"), "/", 2)
		if len(parts) != 2 {
			return "", fmt.Errorf("client: %q is not an action name", action)
		}
		ns, a = parts[0], parts[1]
	}
	if a == "" || strings.Count(a, "/") > 1 {
		return "", fmt.Errorf("client: %q is not an action name", action)
	}
	segs := strings.Split(a, "/")
	for i := range segs {
		segs[i] = url.PathEscape(segs[i])
	}
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/actions/" + strings.Join(segs, "/"), nil
}

var errNotFound = errors.New("client: not found")

func (s *SealedInvoker) get(ctx context.Context, path string, out any) error {
	return s.do(ctx, http.MethodGet, path, nil, out)
}

func (s *SealedInvoker) post(ctx context.Context, path string, in, out any) error {
	return s.do(ctx, http.MethodPost, path, in, out)
}

func (s *SealedInvoker) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(s.APIHost, "/")+path, body)
	if err != nil {
		return err
	}
	u, k, _ := strings.Cut(s.Auth, ":")
	req.SetBasicAuth(u, k)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxSealedAnswer+1))
	if err != nil {
		return err
	}
	if len(raw) > MaxSealedAnswer {
		return errors.New("client: the gateway's answer is too large")
	}
	if resp.StatusCode == http.StatusNotFound && method == http.MethodGet {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("client: %s: %s", resp.Status, e.Error)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("client: decode the gateway's answer: %w", err)
	}
	return nil
}
