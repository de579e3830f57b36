package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/sandbox"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Per-namespace limits set by the operator (admin API, `clemmys namespace
// limits`): throttles, ceilings of the per-action limits and activation
// retention, stored in store.BucketLimits (wire.NamespaceLimits, MACed
// under seqKey). Every gateway replica watches the bucket and enforces the
// stored values from the next request on (the watch delivers a change in
// milliseconds; the gateway that stored it applies it at once). The
// throttles' counting stays per replica (ratelimit.go).
//
//	GET    /admin/v1/namespaces/{name}/limits  → the stored settings and the effective limits
//	PUT    /admin/v1/namespaces/{name}/limits  {field: N | null, ...} → the same (null resets a field)
//	DELETE /admin/v1/namespaces/{name}/limits  → back to the defaults

const (
	nsLimitsKeyInfo = "clemmys/v1 namespace limits"
	// maxRetentionCount bounds a namespace's retention count.
	maxRetentionCount = 10_000_000
	// maxRetentionSeconds is ten years.
	maxRetentionSeconds = 10 * 365 * 24 * 3600
	// minRetentionSeconds keeps at least a minute of records.
	minRetentionSeconds = 60
)

// nsLimitFields are the admin API's JSON fields, OpenWhisk's names where
// OpenWhisk has one (UserLimits).
var nsLimitFields = []string{
	"invocationsPerMinute", "concurrentInvocations", "firesPerMinute",
	"maxActionTimeout", "maxActionMemory", "maxActionLogs",
	"activationRetentionSeconds", "activationRetentionCount",
}

func nsLimitsKey(ns string) string { return store.Key("ns", ns) }

// nsLimitsTag is HMAC-SHA256(seqKey, label || CBOR of l without its tag).
func (g *Gateway) nsLimitsTag(l *wire.NamespaceLimits) []byte {
	c := *l
	c.Tag = nil
	b, _ := bus.Marshal(&c)
	m := g.seqMAC.get()
	m.Write([]byte(nsLimitsKeyInfo + "\x00"))
	m.Write(b)
	return g.seqMAC.sum(m)
}

// nsLimitsStore opens the limits bucket on first use.
type nsLimitsStore struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (g *Gateway) limitsKV(ctx context.Context) (jetstream.KeyValue, error) {
	s := &g.nsLimitState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := store.KV(ctx, g.cfg.JS, store.BucketLimits, g.cfg.Replicas)
	if err != nil {
		return nil, err
	}
	s.kv = kv
	return kv, nil
}

// applyLimitsEntry takes a stored entry (nil value: deleted) into the
// throttles.
func (g *Gateway) applyLimitsEntry(key string, value []byte) {
	parts, err := store.SplitKey(key)
	if err != nil || len(parts) != 2 || parts[0] != "ns" {
		return
	}
	ns := parts[1]
	if value == nil {
		g.limits.setNamespace(ns, nil)
		return
	}
	var l wire.NamespaceLimits
	if err := bus.Unmarshal(value, &l); err != nil || l.Namespace != ns || !hmac.Equal(l.Tag, g.nsLimitsTag(&l)) {
		g.log.Warn("namespace limits entry does not verify; enforcing the defaults", "namespace", ns)
		g.limits.setNamespace(ns, nil)
		return
	}
	g.limits.setNamespace(ns, &l)
}

// loadLimits reads every stored entry once (New), so that a gateway
// enforces them from its first request.
func (g *Gateway) loadLimits(ctx context.Context) error {
	kv, err := g.limitsKV(ctx)
	if err != nil {
		return err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("gateway: list namespace limits: %w", err)
	}
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		g.applyLimitsEntry(k, e.Value())
	}
	return ctx.Err()
}

// watchLimits follows the limits bucket until ctx is done, re-watching
// after an interruption.
func (g *Gateway) watchLimits(ctx context.Context) {
	for ctx.Err() == nil {
		kv, err := g.limitsKV(ctx)
		if err == nil {
			var w jetstream.KeyWatcher
			w, err = kv.WatchAll(ctx)
			if err == nil {
				for e := range w.Updates() {
					if e == nil {
						continue // the initial values are all delivered
					}
					if e.Operation() == jetstream.KeyValuePut {
						g.applyLimitsEntry(e.Key(), e.Value())
					} else {
						g.applyLimitsEntry(e.Key(), nil)
					}
				}
				_ = w.Stop()
			}
		}
		if err != nil {
			g.log.Warn("watch namespace limits", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// namespaceExists reports whether ns has a credential.
func (g *Gateway) namespaceExists(ctx context.Context, ns string) (bool, error) {
	_, err := g.auth.Get(ctx, nsKey(ns))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// storedLimits returns the verified stored entry of ns (nil: none) and its
// revision (0: none).
func (g *Gateway) storedLimits(ctx context.Context, ns string) (*wire.NamespaceLimits, uint64, error) {
	kv, err := g.limitsKV(ctx)
	if err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, nsLimitsKey(ns))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("gateway: load namespace limits: %w", err)
	}
	var l wire.NamespaceLimits
	if err := bus.Unmarshal(e.Value(), &l); err != nil || l.Namespace != ns || !hmac.Equal(l.Tag, g.nsLimitsTag(&l)) {
		return nil, e.Revision(), nil // replaced by the next write
	}
	return &l, e.Revision(), nil
}

// SetNamespaceLimits stores ns's limits (MACed) and applies them on this
// gateway at once; the others apply them from their watch.
func (g *Gateway) SetNamespaceLimits(ctx context.Context, l wire.NamespaceLimits, rev uint64) error {
	kv, err := g.limitsKV(ctx)
	if err != nil {
		return err
	}
	l.Updated = g.now().UnixMilli()
	l.Tag = g.nsLimitsTag(&l)
	v, err := bus.Marshal(&l)
	if err != nil {
		return fmt.Errorf("gateway: encode namespace limits: %w", err)
	}
	if rev == 0 {
		_, err = kv.Create(ctx, nsLimitsKey(l.Namespace), v)
		if errors.Is(err, jetstream.ErrKeyExists) {
			_, err = kv.Put(ctx, nsLimitsKey(l.Namespace), v)
		}
	} else {
		_, err = kv.Update(ctx, nsLimitsKey(l.Namespace), v, rev)
	}
	if err != nil {
		return fmt.Errorf("gateway: store namespace limits: %w", err)
	}
	g.limits.setNamespace(l.Namespace, &l)
	g.log.Info("namespace limits set", "namespace", l.Namespace)
	return nil
}

// deleteNamespaceLimits removes ns's entry (the defaults apply again).
func (g *Gateway) deleteNamespaceLimits(ctx context.Context, ns string) error {
	kv, err := g.limitsKV(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, nsLimitsKey(ns)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("gateway: delete namespace limits: %w", err)
	}
	g.limits.setNamespace(ns, nil)
	return nil
}

// renderNamespaceLimits is the admin API's view: the stored settings and
// what is enforced.
func (g *Gateway) renderNamespaceLimits(ns string, l *wire.NamespaceLimits) map[string]any {
	set := map[string]any{}
	if l != nil {
		for k, v := range map[string]*int{
			"invocationsPerMinute": l.InvocationsPerMinute, "concurrentInvocations": l.ConcurrentInvocations,
			"firesPerMinute": l.FiresPerMinute, "maxActionTimeout": l.MaxActionTimeoutMs,
			"maxActionMemory": l.MaxActionMemoryMB, "maxActionLogs": l.MaxActionLogsMB,
			"activationRetentionCount": l.RetentionCount,
		} {
			if v != nil {
				set[k] = *v
			}
		}
		if l.RetentionSeconds != nil {
			set["activationRetentionSeconds"] = *l.RetentionSeconds
		}
	}
	eff := g.limits.effective(ns)
	out := map[string]any{"namespace": ns, "set": set, "effective": g.userLimits(eff)}
	ret := map[string]any{"activationRetentionSeconds": int64(wire.DefaultRetentionSeconds)}
	if l != nil && l.RetentionSeconds != nil {
		ret["activationRetentionSeconds"] = *l.RetentionSeconds
	}
	if l != nil && l.RetentionCount != nil {
		ret["activationRetentionCount"] = *l.RetentionCount
	}
	out["retention"] = ret
	return out
}

// checkedInt decodes one admin field: null (reset) or an integer in
// [lo, hi].
func checkedInt(raw json.RawMessage, name string, lo, hi int64) (*int64, string) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, ""
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Sprintf("%s must be an integer or null.", name)
	}
	if n < lo || n > hi {
		return nil, fmt.Sprintf("%s must be between %d and %d.", name, lo, hi)
	}
	return &n, ""
}

func intPtr(p *int64) *int {
	if p == nil {
		return nil
	}
	n := int(*p)
	return &n
}

// mergeNamespaceLimits applies the admin body's fields to l.
func mergeNamespaceLimits(l *wire.NamespaceLimits, body map[string]json.RawMessage) string {
	known := map[string]bool{}
	for _, f := range nsLimitFields {
		known[f] = true
	}
	for k := range body {
		if !known[k] {
			return fmt.Sprintf("Unknown limit %q; the limits are %v.", k, nsLimitFields)
		}
	}
	type field struct {
		name   string
		lo, hi int64
		set    func(*int64)
	}
	for _, f := range []field{
		{"invocationsPerMinute", -1, 1 << 30, func(p *int64) { l.InvocationsPerMinute = intPtr(p) }},
		{"concurrentInvocations", -1, 1 << 30, func(p *int64) { l.ConcurrentInvocations = intPtr(p) }},
		{"firesPerMinute", -1, 1 << 30, func(p *int64) { l.FiresPerMinute = intPtr(p) }},
		{"maxActionTimeout", minTimeoutMs, maxTimeoutMs, func(p *int64) { l.MaxActionTimeoutMs = intPtr(p) }},
		{"maxActionMemory", minMemoryMB, maxMemoryMB, func(p *int64) { l.MaxActionMemoryMB = intPtr(p) }},
		{"maxActionLogs", 1, maxLogsMB, func(p *int64) { l.MaxActionLogsMB = intPtr(p) }},
		{"activationRetentionSeconds", minRetentionSeconds, maxRetentionSeconds, func(p *int64) { l.RetentionSeconds = p }},
		{"activationRetentionCount", 1, maxRetentionCount, func(p *int64) { l.RetentionCount = intPtr(p) }},
	} {
		raw, ok := body[f.name]
		if !ok {
			continue
		}
		p, msg := checkedInt(raw, f.name, f.lo, f.hi)
		if msg != "" {
			return msg
		}
		f.set(p)
	}
	return ""
}

func (g *Gateway) adminGetLimits(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if ok, err := g.namespaceExists(ctx, ns); err != nil || !ok {
		g.adminError(w, r, "get namespace limits", cmpErr(err, ErrNoNamespace))
		return
	}
	l, _, err := g.storedLimits(ctx, ns)
	if err != nil {
		g.adminError(w, r, "get namespace limits", err)
		return
	}
	writeJSON(w, http.StatusOK, g.renderNamespaceLimits(ns, l))
}

func (g *Gateway) adminPutLimits(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	raw, ok := g.readBody(w, r, 64<<10)
	if !ok {
		return
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s. The body is {\"invocationsPerMinute\": N, ...}.", jsonDetail(raw, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if ok, err := g.namespaceExists(ctx, ns); err != nil || !ok {
		g.adminError(w, r, "set namespace limits", cmpErr(err, ErrNoNamespace))
		return
	}
	for attempt := 0; ; attempt++ {
		prev, rev, err := g.storedLimits(ctx, ns)
		if err != nil {
			g.adminError(w, r, "set namespace limits", err)
			return
		}
		l := wire.NamespaceLimits{Namespace: ns}
		if prev != nil {
			l = *prev
		}
		if msg := mergeNamespaceLimits(&l, body); msg != "" {
			g.fail(w, r, http.StatusBadRequest, "%s", msg)
			return
		}
		err = g.SetNamespaceLimits(ctx, l, rev)
		if err != nil && attempt < 3 && errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed meanwhile: merge again
		}
		if err != nil {
			g.adminError(w, r, "set namespace limits", err)
			return
		}
		writeJSON(w, http.StatusOK, g.renderNamespaceLimits(ns, &l))
		return
	}
}

func (g *Gateway) adminDeleteLimits(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if err := g.deleteNamespaceLimits(ctx, ns); err != nil {
		g.adminError(w, r, "delete namespace limits", err)
		return
	}
	writeJSON(w, http.StatusOK, g.renderNamespaceLimits(ns, nil))
}

// cmpErr returns err, or def when err is nil.
func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// checkCeilings refuses action limits above the namespace's ceilings, with
// OpenWhisk's messages.
func (g *Gateway) checkCeilings(ns string, l *limitsBody) string {
	if l == nil {
		return ""
	}
	e := g.limits.effective(ns)
	const malformed = "The request content was malformed:\nrequirement failed: "
	if l.Timeout != nil && *l.Timeout > int64(e.maxTimeoutMs) {
		return fmt.Sprintf(malformed+"duration %d milliseconds exceeds allowed threshold of %d milliseconds", *l.Timeout, e.maxTimeoutMs)
	}
	if l.Memory != nil && *l.Memory > int64(e.maxMemoryMB) {
		return fmt.Sprintf(malformed+"memory %d MB exceeds allowed threshold of %d MB", *l.Memory, e.maxMemoryMB)
	}
	if l.Logs != nil && *l.Logs > int64(e.maxLogsMB) {
		return fmt.Sprintf(malformed+"log size %d MB exceeds allowed threshold of %d MB", *l.Logs, e.maxLogsMB)
	}
	return ""
}

// clampLimits lowers an invocation's limits (zero: the runtime's
// default) to the namespace's ceilings, so that a lowered ceiling holds
// for actions stored before it.
func (g *Gateway) clampLimits(ns string, l wire.Limits) wire.Limits {
	e := g.limits.effective(ns)
	clamp := func(v *uint32, def, ceiling int) {
		if ceiling <= 0 {
			return
		}
		cur := int(*v)
		if cur == 0 {
			cur = def
		}
		if cur > ceiling {
			*v = uint32(ceiling)
		}
	}
	clamp(&l.TimeoutMs, int(sandbox.DefaultTimeout/time.Millisecond), e.maxTimeoutMs)
	clamp(&l.MemoryMB, sandbox.DefaultMemoryBytes>>20, e.maxMemoryMB)
	clamp(&l.LogsMB, sandbox.DefaultMaxLogBytes>>20, e.maxLogsMB)
	return l
}
