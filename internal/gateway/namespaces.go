package gateway

import (
	"context"
	"net/http"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Namespaces (OpenWhisk REST API v1): GET /namespaces (http.go) lists the
// caller's namespace;
//
//	GET /namespaces/{ns}         → {"actions", "packages", "triggers", "rules"} (first 200 of each)
//	GET /namespaces/{ns}/limits  → the namespace's limits
//
// answer only for the caller's own namespace.

// Action limit ranges clemmys enforces (checkLimits, actions.go), in
// OpenWhisk's units: ms and MB.
const (
	minLogsMB        = 0
	minConcurrency   = 1
	maxConcurrencyOW = 500
)

// getLimits answers OpenWhisk's UserLimits for the caller's namespace:
// the throttles (ratelimit.go) and the ranges of action limits, the
// namespace's own where the operator set them (nslimits.go). An unlimited
// throttle (< 0) is left out.
func (g *Gateway) getLimits(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, g.userLimits(g.limits.effective(callerNamespace(r))))
}

// userLimits renders effective limits as OpenWhisk's UserLimits.
func (g *Gateway) userLimits(l effectiveLimits) map[string]any {
	out := map[string]any{
		"minActionMemory":      minMemoryMB,
		"maxActionMemory":      l.maxMemoryMB,
		"minActionLogs":        minLogsMB,
		"maxActionLogs":        l.maxLogsMB,
		"minActionTimeout":     minTimeoutMs,
		"maxActionTimeout":     l.maxTimeoutMs,
		"minActionConcurrency": minConcurrency,
		"maxActionConcurrency": maxConcurrencyOW,
	}
	for k, v := range map[string]int{
		"concurrentInvocations": l.concurrent,
		"invocationsPerMinute":  l.invokesPerMinute,
		"firesPerMinute":        l.firesPerMinute,
	} {
		if v >= 0 {
			out[k] = v
		}
	}
	return out
}

// getNamespace lists the entities of the caller's namespace (the first 200
// of each kind), as OpenWhisk's GET /namespaces/{ns} did.
func (g *Gateway) getNamespace(w http.ResponseWriter, r *http.Request) {
	ns := callerNamespace(r)
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	req := wire.ListRequest{Namespace: ns, Limit: maxListLimit}
	var (
		actions  wire.ActionList
		packages wire.PackageList
		triggers wire.TriggerList
		rules    wire.RuleList
	)
	for _, c := range []struct {
		subject string
		resp    any
	}{
		{wire.SubjectActionList, &actions},
		{wire.SubjectPackageList, &packages},
		{wire.SubjectTriggerList, &triggers},
		{wire.SubjectRuleList, &rules},
	} {
		if err := bus.Call(ctx, g.cfg.Conn, c.subject, &req, c.resp); err != nil {
			g.busError(w, r, "list namespace", err)
			return
		}
	}
	out := map[string][]map[string]any{"actions": {}, "packages": {}, "triggers": {}, "rules": {}}
	for i := range actions.Actions {
		if a := &actions.Actions[i]; a.Namespace == ns {
			out["actions"] = append(out["actions"], g.renderAction(a))
		}
	}
	for i := range packages.Packages {
		if p := &packages.Packages[i]; p.Namespace == ns {
			out["packages"] = append(out["packages"], packageSummary(p))
		}
	}
	for i := range triggers.Triggers {
		if t := &triggers.Triggers[i]; t.Namespace == ns {
			out["triggers"] = append(out["triggers"], triggerSummary(t))
		}
	}
	for i := range rules.Rules {
		if rl := &rules.Rules[i]; rl.Namespace == ns {
			out["rules"] = append(out["rules"], renderRule(rl))
		}
	}
	writeJSON(w, http.StatusOK, out)
}
