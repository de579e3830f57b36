package gateway

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// Firing a trigger (POST .../triggers/{name}), as OpenWhisk does: the
// trigger's default parameters merged with the payload (payload wins) are
// the trigger activation's result and the input of the action of every
// active rule of the trigger, invoked non-blocking through the same path as
// POST .../actions/{name} (the action's own defaults and "final" apply).
// With at least one active rule the answer is 202 {"activationId"} of the
// trigger's own activation; without, 204 and no record.
//
// The trigger activation is a record the gateway makes itself and stores
// through wire.SubjectActivationPut. Its result (the merged parameters) and
// its logs (one JSON line per rule: the rule, the action and the activation
// id or the error) are user data, so they are sealed exactly like a
// function's: the gateway builds a one-step header for the request id with
// a virtual step "/ns/trigger" whose function id and code digest are zero
// (no KMS function has them, so no runtime ever accepts it), seals it to a
// throwaway key pair, opens it as that "function" and seals the output and
// logs for step 1. openActivation then opens the record like any other
// (request secret from the activation id, namespace auth key, header
// digest), and recognizes the zero function id to show the logs as raw
// JSON lines. Only a holder of the gateway secret can make such a record.

// triggerStepSize is a zero function id / code digest (isTriggerHeader).
var (
	zeroFunctionID = make([]byte, envelope.FunctionIDSize)
	zeroCodeDigest = make([]byte, envelope.CodeDigestSize)
	zeroRuntimeID  = make([]byte, envelope.RuntimeIDSize)
)

// isTriggerHeader reports whether an authenticated header is a trigger
// activation's (one virtual step with a zero function id).
func isTriggerHeader(h *envelope.Header) bool {
	return len(h.Chain) == 1 && bytes.Equal(h.Chain[0].FunctionID, zeroFunctionID)
}

// rawLines splits logs into lines, without timestamps.
func rawLines(logs []byte) []string {
	s := strings.TrimRight(string(logs), "\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

// sealTriggerRecord seals a trigger activation's result and logs for
// request id reqID (see above).
func (g *Gateway) sealTriggerRecord(ns, trigger string, reqID []byte, now time.Time, result []byte, logs []string) (resultEnv, sealedLogs []byte, err error) {
	kem, err := envelope.SuiteX25519.KEM()
	if err != nil {
		return nil, nil, err
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	h := envelope.Header{
		Version:   envelope.Version,
		Suite:     envelope.SuiteX25519,
		RequestID: reqID,
		Namespace: ns,
		Chain:     []envelope.Step{{Name: "/" + ns + "/" + trigger, FunctionID: zeroFunctionID, CodeDigest: zeroCodeDigest, Runtime: zeroRuntimeID}},
		Expiry:    now.Add(time.Minute).UnixMilli(),
	}
	ak := g.namespaceAuthKey(ns)
	in, err := envelope.Seal(h, envelope.RequestSecret(g.secret, reqID), ak, []hpke.PublicKey{priv.PublicKey()}, []byte("{}"))
	if err != nil {
		return nil, nil, err
	}
	opened, err := envelope.Open(in, &envelope.FunctionIdentity{
		FunctionID: zeroFunctionID, CodeDigest: zeroCodeDigest, PrivateKey: priv, AuthKey: ak, Runtime: zeroRuntimeID,
	}, now)
	if err != nil {
		return nil, nil, err
	}
	out, err := opened.SealOutput(result)
	if err != nil {
		return nil, nil, err
	}
	if resultEnv, err = out.Marshal(); err != nil {
		return nil, nil, err
	}
	if sealedLogs, err = opened.SealLogs([]byte(strings.Join(logs, "\n"))); err != nil {
		return nil, nil, err
	}
	return resultEnv, sealedLogs, nil
}

// ruleLog is OpenWhisk's log line of a trigger activation for one rule.
type ruleLog struct {
	StatusCode   int    `json:"statusCode"`
	Success      bool   `json:"success"`
	ActivationID string `json:"activationId,omitempty"`
	Rule         string `json:"rule"`
	Action       string `json:"action"`
	Error        string `json:"error,omitempty"`
}

// fireTrigger fires trigger {name} of the caller's namespace.
func (g *Gateway) fireTrigger(w http.ResponseWriter, r *http.Request) {
	ns, name := callerNamespace(r), r.PathValue("name")
	if !validName(name) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	if !g.limitFire(w, r, ns) { // before the body is read, as for invocations
		return
	}
	payload, ok := g.readPayload(w, r)
	if !ok {
		return
	}
	id, cerr := g.fire(r.Context(), ns, name, payload, txID(r))
	if cerr != nil {
		g.answer(w, r, "fire trigger", cerr)
		return
	}
	if id == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set(headerActivationID, id)
	writeJSON(w, http.StatusAccepted, map[string]string{"activationId": id})
}

// fire fires trigger name of namespace ns with payload (a JSON object)
// after the fire was admitted by the namespace's throttle: it invokes the
// action of every active rule and stores the trigger's activation. It
// returns the activation id, or "" when no rule is active (no record).
// Alarm feeds (feeds.go) fire through it too.
func (g *Gateway) fire(ctx context.Context, ns, name string, payload []byte, tx string) (string, *chainError) {
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	var trig wire.Trigger
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectTriggerGet, &wire.EntityRef{Namespace: ns, Name: name}, &trig); err != nil {
		return "", busFailure(err)
	}
	if trig.Namespace != ns || trig.Name != name {
		return "", &chainError{http.StatusBadGateway, "The controller answered with another trigger.", nil}
	}
	defaults, err := g.openParams(paramsTrigger, ns, name, trig.Parameters)
	if err != nil {
		return "", &chainError{http.StatusBadGateway, msgBadParams, err}
	}
	// The merged parameters: the trigger's result and every rule's input.
	fired, cerr := g.mergeParams(&target{action: &wire.Action{Namespace: ns, Name: name}, inherited: defaults, trigger: true}, payload)
	if cerr != nil {
		return "", cerr
	}

	self := "/" + ns + "/" + name
	var list wire.RuleList
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectRuleList, &wire.ListRequest{Namespace: ns, Name: self, Limit: maxListLimit}, &list); err != nil {
		return "", busFailure(err)
	}
	var active []wire.Rule
	for _, rule := range list.Rules {
		if rule.Namespace != ns || rule.Trigger != self {
			continue
		}
		// The rule's MAC covers its trigger, action and status, and its
		// generation must be current: the controller can neither rewrite,
		// (de)activate nor roll back a rule, nor resurrect a deleted one.
		// Never send the trigger's parameters where the owner did not.
		if cerr := g.ruleAuthentic(ctx, &rule); cerr != nil {
			g.log.Warn("rule refused", "tx", tx, "namespace", ns, "rule", rule.Name, "reason", cerr.msg)
			continue
		}
		if rule.Status == wire.RuleActive {
			active = append(active, rule)
		}
	}
	if len(active) == 0 {
		return "", nil
	}

	start := g.now()
	reqID := g.newRequestID(start, ns)
	id := hex.EncodeToString(reqID)
	logs := make([]string, 0, len(active))
	for _, rule := range active {
		line := g.fireRule(ctx, tx, ns, rule, fired)
		b, _ := json.Marshal(line)
		logs = append(logs, string(b))
	}

	end := g.now()
	result, sealedLogs, err := g.sealTriggerRecord(ns, name, reqID, end, fired, logs)
	if err != nil {
		return "", &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	rec := wire.Activation{
		ActivationID: id,
		Namespace:    ns,
		Name:         name,
		Version:      trig.Version,
		Subject:      ns,
		Start:        start.UnixMilli(),
		End:          max(end.UnixMilli(), start.UnixMilli()),
		Status:       wire.StatusSuccess,
		Result:       result,
		Logs:         sealedLogs,
	}
	var stored wire.Activation
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActivationPut, &rec, &stored); err != nil {
		// The rules have fired: answer with the id all the same (a retry
		// would fire them again); the trigger's record is missing.
		g.log.Error("store trigger activation", "tx", tx, "namespace", ns, "trigger", name, "activation", id, "err", err)
	}
	return id, nil
}

// fireRule invokes the action of an active rule, non-blocking, with the
// trigger's merged parameters, and returns the trigger's log line for it.
// The invocation counts against the namespace's throttles.
func (g *Gateway) fireRule(ctx context.Context, tx, ns string, rule wire.Rule, params []byte) ruleLog {
	line := ruleLog{Rule: ns + "/" + rule.Name, Action: strings.TrimPrefix(rule.Action, "/")}
	failed := func(status int, msg string) ruleLog {
		line.StatusCode = wire.StatusCode(wire.StatusApplicationError)
		if status >= 500 {
			line.StatusCode = wire.StatusCode(wire.StatusInternalError)
		}
		line.Error = msg
		return line
	}
	ans, aname, ok := ruleAction(rule.Action)
	if !ok {
		return failed(http.StatusBadRequest, "The rule's action name is not valid.")
	}
	release, t := g.limits.admitInvocation(ns)
	if t != nil {
		return failed(http.StatusTooManyRequests, "Too many requests: the action was not invoked.")
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	res, cerr := g.invokeNamed(ctx, ans, aname, &invocation{caller: ns, payload: params, tx: tx})
	if cerr != nil {
		status, msg := cerr.status, cerr.msg
		if status == 0 {
			status, msg = http.StatusInternalServerError, "The action could not be invoked."
			if isNotFound(cerr.err) {
				status, msg = http.StatusNotFound, msgNotFound
			}
		}
		g.log.Info("rule not fired", "tx", tx, "namespace", ns, "rule", rule.Name, "action", rule.Action, "status", status, "err", cerr.err)
		return failed(status, msg)
	}
	line.Success, line.ActivationID = true, res.id
	return line
}

// ruleAction parses a rule's action, "/ns/name" or "/ns/pkg/name", into
// the namespace and the action name ("name" or "pkg/name").
func ruleAction(p string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(p, "/")
	if !found {
		return "", "", false
	}
	ns, name, found = strings.Cut(rest, "/")
	if !found || !validNamespace(ns) {
		return "", "", false
	}
	if _, _, ok := splitAction(name); !ok {
		return "", "", false
	}
	return ns, name, true
}
