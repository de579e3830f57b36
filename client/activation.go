package client

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// MaxReceipts bounds the receipts of one record (a sequence's steps).
const MaxReceipts = 64

// logTimeFormat is OpenWhisk's log line time stamp, as the gateway writes
// it in front of a runtime's log lines.
const logTimeFormat = "2006-01-02T15:04:05.000000000Z"

// Activation is the part of an OpenWhisk activation record (GET
// .../activations/ID) that VerifyActivation checks.
type Activation struct {
	ActivationID string `json:"activationId"`
	Cause        string `json:"cause"` // a component's: the sequence's id
	End          int64  `json:"end"`
	Response     struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	} `json:"response"`
	Logs        []string     `json:"logs"`
	Annotations []Annotation `json:"annotations"`
	// Receipts are the runtimes' signed receipts (CBOR wire.SignedReceipt).
	Receipts [][]byte `json:"receipts"`
}

// Annotation is an OpenWhisk {"key", "value"} pair.
type Annotation struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// StepReport is one verified receipt.
type StepReport struct {
	Step        uint32 `json:"step"`
	Steps       uint32 `json:"steps"`
	Namespace   string `json:"namespace"`
	Action      string `json:"action"`
	FunctionID  string `json:"functionId"`
	CodeDigest  string `json:"codeDigest"`
	KeyVersion  uint32 `json:"keyVersion"`
	Status      string `json:"status"`
	Start       int64  `json:"start"`
	End         int64  `json:"end"`
	RuntimeID   string `json:"runtimeId"`
	Runtime     TEEClaims
	InputDigest string `json:"inputDigest"`
}

// ActivationReport is the outcome of VerifyActivation.
type ActivationReport struct {
	ActivationID string       `json:"activationId"`
	Steps        []StepReport `json:"steps"`
	Problems     []string     `json:"problems"`
}

// OK reports whether the record verified.
func (r *ActivationReport) OK() bool { return len(r.Problems) == 0 && len(r.Steps) > 0 }

func (r *ActivationReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// VerifyActivation checks an activation record against its receipts:
// each signed by a runtime whose receipt key the KMS (kmsKey, from a
// verified attestation) certified for the record's namespace, for this
// request, one per step in chain order, all successful but the last; the
// record's status is the last receipt's, its result the output the last
// receipt names, and — for a single action or a component — its logs the
// logs the runtime wrote. pinned, if not empty, are the runtime
// measurements the owner accepts.
func VerifyActivation(act *Activation, kmsKey ed25519.PublicKey, pinned []string) *ActivationReport {
	r := &ActivationReport{ActivationID: act.ActivationID, Steps: []StepReport{}, Problems: []string{}}
	if len(act.Receipts) == 0 {
		r.problem("the record has no receipt: nothing vouches for it (a record of a step that did not run, or one whose receipt was withheld)")
		return r
	}
	if len(act.Receipts) > MaxReceipts {
		r.problem("the record has %d receipts, more than a sequence has steps", len(act.Receipts))
		return r
	}
	reqID := act.ActivationID
	component := act.Cause != ""
	if component {
		reqID = act.Cause
		if len(act.Receipts) != 1 {
			r.problem("a component record has %d receipts, want 1", len(act.Receipts))
			return r
		}
	}
	receipts := make([]*wire.Receipt, len(act.Receipts))
	for i, raw := range act.Receipts {
		rc, claims, err := verifyReceipt(raw, kmsKey)
		if err != nil {
			r.problem("receipt %d: %v", i, err)
			return r
		}
		receipts[i] = rc
		if len(pinned) > 0 && !containsFold(pinned, claims.Measurement) {
			r.problem("receipt %d: step %d ran in a runtime of measurement %s, which is not pinned", i, rc.Step, short(claims.Measurement))
		}
		if claims.Debug {
			r.problem("receipt %d: step %d ran in a debug-mode TEE", i, rc.Step)
		}
		r.Steps = append(r.Steps, StepReport{Step: rc.Step, Steps: rc.Steps, Namespace: rc.Namespace, Action: rc.Action,
			FunctionID: hex.EncodeToString(rc.FunctionID), CodeDigest: hex.EncodeToString(rc.CodeDigest), KeyVersion: rc.KeyVersion,
			Status: rc.Status, Start: rc.Start, End: rc.End, RuntimeID: hex.EncodeToString(rc.RuntimeID), Runtime: *claims,
			InputDigest: hex.EncodeToString(rc.InputDigest)})
	}
	first := receipts[0]
	for i, rc := range receipts {
		switch {
		case hex.EncodeToString(rc.RequestID) != strings.ToLower(reqID):
			r.problem("receipt %d is of another request", i)
		case i > 0 && (rc.Steps != first.Steps || !bytes.Equal(rc.HeaderDigest, first.HeaderDigest)):
			r.problem("receipt %d is of another chain", i)
		case !component && rc.Step != uint32(i):
			r.problem("receipt %d is of step %d: the steps are not in chain order (skipped, reordered or duplicated)", i, rc.Step)
		case i > 0 && !bytes.Equal(rc.InputDigest, receipts[i-1].OutputDigest):
			r.problem("step %d's input is not step %d's output", rc.Step, receipts[i-1].Step)
		case i < len(receipts)-1 && rc.Status != wire.StatusSuccess:
			r.problem("the sequence went on after step %d failed (%s)", rc.Step, rc.Status)
		}
	}
	if len(r.Problems) > 0 {
		return r
	}
	last := receipts[len(receipts)-1]
	if act.Response.Status != last.Status {
		r.problem("the record's status %q is not the runtime's %q", act.Response.Status, last.Status)
	}
	if !component && last.Status == wire.StatusSuccess && last.Step+1 != last.Steps {
		r.problem("the sequence stopped after step %d of %d although every step succeeded", last.Step+1, last.Steps)
	}
	if !bytes.Equal(wire.ReceiptOutputDigest(act.Response.Result), last.OutputDigest) {
		r.problem("the record's result is not the output the runtime produced")
	}
	switch {
	case !component && act.IsSequence():
		// A sequence's logs are its components' ids, one per step run:
		// verify each component record too (`clemmys activation verify`
		// does) to check their logs.
		if len(act.Logs) != len(receipts) {
			r.problem("the sequence's record lists %d components for %d steps run", len(act.Logs), len(receipts))
		}
		for _, id := range act.Logs {
			if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
				r.problem("the sequence's record lists a component %q that is not an activation id", id)
				break
			}
		}
	default:
		logs := recoverLogs(act.Logs, act.End)
		if !bytes.Equal(wire.ReceiptLogsDigest([]byte(logs)), last.LogsDigest) {
			r.problem("the record's logs are not the logs the runtime wrote (dropped, altered or withheld)")
		}
	}
	return r
}

// IsSequence reports whether the record is a sequence's (annotation kind
// "sequence"): its logs are its components' activation ids.
func (a *Activation) IsSequence() bool {
	for _, kv := range a.Annotations {
		if kv.Key == "kind" {
			return kv.Value == "sequence"
		}
	}
	return false
}

// verifyReceipt checks a signed receipt's signature chain: its
// certificate signed by the KMS, the receipt by the certified key, for the
// certified runtime and namespace.
func verifyReceipt(raw []byte, kmsKey ed25519.PublicKey) (*wire.Receipt, *TEEClaims, error) {
	if len(raw) > wire.MaxSignedReceipt {
		return nil, nil, errors.New("oversize receipt")
	}
	var sr wire.SignedReceipt
	if err := bus.Unmarshal(raw, &sr); err != nil {
		return nil, nil, errors.New("malformed receipt")
	}
	c, err := verifyCert(sr.Cert, kmsKey)
	if err != nil {
		return nil, nil, err
	}
	if !wire.ReceiptSigned(c.ReceiptKey, &sr) {
		return nil, nil, errors.New("the receipt is not signed by the certified runtime")
	}
	var rc wire.Receipt
	if err := bus.Unmarshal(sr.Receipt, &rc); err != nil {
		return nil, nil, errors.New("malformed receipt")
	}
	switch {
	case rc.Version != wire.ReceiptVersion:
		return nil, nil, fmt.Errorf("receipt version %d", rc.Version)
	case !bytes.Equal(rc.RuntimeID, c.RuntimeID):
		return nil, nil, errors.New("the receipt names another runtime than its certificate")
	case rc.Namespace != c.Namespace:
		return nil, nil, errors.New("the runtime was not certified for the function's namespace")
	case rc.Steps == 0 || rc.Step >= rc.Steps:
		return nil, nil, errors.New("malformed receipt: step out of its chain")
	}
	return &rc, &TEEClaims{Platform: c.Platform, Measurement: hex.EncodeToString(c.Measurement),
		SecurityVersion: c.SecurityVersion, Debug: c.Debug}, nil
}

// recoverLogs takes the gateway's time stamps off the record's log lines
// ("TIME stderr: " with the record's end time; lines the JavaScript engine
// stamped itself are as the runtime wrote them) and joins them as the
// runtime wrote them.
func recoverLogs(lines []string, end int64) string {
	prefix := time.UnixMilli(end).UTC().Format(logTimeFormat) + " stderr: "
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimPrefix(l, prefix)
	}
	return strings.Join(out, "\n")
}
