package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// The /whisk.system/alarms feeds (OpenWhisk's alarms package), served by
// the gateway itself: a feed action of OpenWhisk calls a provider service
// over the network with the caller's API key, which a clemmys function
// cannot do (no network) and should not (the key would pass through the
// function). So POST /namespaces/whisk.system/actions/alarms/{alarm,once,
// interval} is answered here, for the authenticated caller, with
// OpenWhisk's feed lifecycle (lifecycleEvent CREATE, READ, UPDATE, DELETE,
// PAUSE, UNPAUSE; triggerName "/ns/trigger" of the caller's namespace;
// authKey is ignored and never stored) and the alarms' parameters:
//
//	alarm     cron ("m h dom mon dow", or six fields with seconds first), trigger_payload, startDate, stopDate, maxTriggers
//	once      date, trigger_payload, deleteAfterFire (false, "rules" or true)
//	interval  minutes, trigger_payload, startDate, stopDate
//
// The answer is a blocking invocation's: an activation record (filed in
// the caller's namespace, made like a trigger's, fire.go) whose result is
// the feed's answer, or an application error (502) with its message.
// The catalog installs the package's entities (annotated feed), so that
// GET of the package lists the feeds; their code only answers that the
// feeds are served here (invoking them through a package binding is not
// supported).
//
// Schedules live in the JetStream KV bucket store.BucketFeeds (replicated
// like the other buckets), each entry MACed by the gateway (the store is
// untrusted) and its trigger_payload sealed like default parameters; so
// they survive restarts. Every gateway replica runs the schedules; before
// it fires a tick it creates the key (feed, tick time) in
// store.BucketFeedTicks, and only the replica whose create succeeds fires:
// two replicas never fire the same tick. Ticks missed while no gateway ran
// are not fired later (as OpenWhisk's provider), except a once alarm whose
// date passed, which fires once at start.

// feedActions are the feed actions served here.
var feedActions = map[string]bool{"alarm": true, "once": true, "interval": true}

// Feed limits.
const (
	maxFeedPayloadBytes = 64 << 10
	minIntervalMinutes  = 1
	feedTickTTL         = 24 * time.Hour
	feedKeyInfo         = "clemmys/v1 feed entry"
)

// alarmFeed is a stored alarm.
type alarmFeed struct {
	Namespace       string `cbor:"1,keyasint"`
	Trigger         string `cbor:"2,keyasint"`
	Kind            string `cbor:"3,keyasint"` // alarm, once or interval
	Cron            string `cbor:"4,keyasint,omitempty"`
	Minutes         int    `cbor:"5,keyasint,omitempty"`
	Date            int64  `cbor:"6,keyasint,omitempty"` // once: unix ms
	StartDate       int64  `cbor:"7,keyasint,omitempty"`
	StopDate        int64  `cbor:"8,keyasint,omitempty"`
	MaxTriggers     int    `cbor:"9,keyasint,omitempty"` // 0: unlimited
	DeleteAfterFire string `cbor:"10,keyasint,omitempty"`
	Payload         []byte `cbor:"11,keyasint,omitempty"` // sealed trigger_payload
	Paused          bool   `cbor:"12,keyasint,omitempty"`
	Fired           int    `cbor:"13,keyasint,omitempty"`
	Created         int64  `cbor:"14,keyasint"`
	Changed         int64  `cbor:"15,keyasint"`
	Tag             []byte `cbor:"16,keyasint,omitempty"`
}

func feedKey(ns, trigger string) string { return store.Key(ns, trigger) }

// feedTag is HMAC-SHA256(seqKey, label || CBOR of the entry without tag).
func (g *Gateway) feedTag(f *alarmFeed) []byte {
	c := *f
	c.Tag = nil
	b, _ := bus.Marshal(&c)
	m := g.seqMAC.get()
	m.Write([]byte(feedKeyInfo + "\x00"))
	m.Write(b)
	return g.seqMAC.sum(m)
}

// feedStore holds the feed buckets, opened on first use.
type feedStore struct {
	mu    sync.Mutex
	feeds jetstream.KeyValue
	ticks jetstream.KeyValue
	wake  chan struct{} // a feed changed: recompute the schedule
}

func (g *Gateway) feedBuckets(ctx context.Context) (feeds, ticks jetstream.KeyValue, err error) {
	s := &g.feedState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.feeds != nil {
		return s.feeds, s.ticks, nil
	}
	f, err := store.KV(ctx, g.cfg.JS, store.BucketFeeds, g.cfg.Replicas)
	if err != nil {
		return nil, nil, err
	}
	t, err := store.KVWithTTL(ctx, g.cfg.JS, store.BucketFeedTicks, g.cfg.Replicas, feedTickTTL)
	if err != nil {
		return nil, nil, err
	}
	s.feeds, s.ticks = f, t
	return f, t, nil
}

// serveFeed answers POST /namespaces/whisk.system/actions/alarms/{name}
// for the feed actions (invokeAction calls it first); it reports false for
// any other action.
func (g *Gateway) serveFeed(w http.ResponseWriter, r *http.Request) bool {
	name := r.PathValue("name")
	if targetNamespace(r) != feedNamespace || r.PathValue("pkg") != feedPackage || !feedActions[name] {
		return false
	}
	g.feed(w, r, name)
	return true
}

// The alarms package.
const (
	feedNamespace = "whisk.system"
	feedPackage   = "alarms"
)

func (g *Gateway) feed(w http.ResponseWriter, r *http.Request, name string) {
	caller := callerNamespace(r)
	resultOnly, err := queryBool(r.URL.Query(), "result")
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "%s", err.Error())
		return
	}
	release, ok := g.limitInvocation(w, r, caller) // before the body is read
	if !ok {
		return
	}
	defer release()
	payload, ok := g.readPayload(w, r)
	if !ok {
		return
	}
	start := g.now()
	result, ferr := g.feedLifecycle(r.Context(), caller, name, payload)
	status := wire.StatusSuccess
	if ferr != nil {
		var fe *feedError
		if !errors.As(ferr, &fe) {
			g.log.Error("alarm feed", "tx", txID(r), "namespace", caller, "feed", name, "err", ferr)
			ferr = &feedError{"The feed could not be served now; retry."}
		}
		result, _ = json.Marshal(map[string]string{"error": ferr.Error()})
		status = wire.StatusApplicationError
	}
	// The record of this "activation", sealed like a trigger's.
	reqID := g.newRequestID(start, caller)
	id := hex.EncodeToString(reqID)
	end := g.now()
	sealed, logs, err := g.sealTriggerRecord(caller, "alarms/"+name, reqID, end, result, nil)
	if err != nil {
		g.log.Error("seal feed activation", "tx", txID(r), "err", err)
		g.fail(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	rec := wire.Activation{
		ActivationID: id, Namespace: caller, Name: "alarms/" + name, Version: "0.0.1", Subject: caller,
		Start: start.UnixMilli(), End: max(end.UnixMilli(), start.UnixMilli()), Status: status, Result: sealed, Logs: logs,
		Annotations: []wire.KeyValue{{Key: "path", Value: "whisk.system/alarms/" + name}, {Key: "kind", Value: "feed"}},
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var stored wire.Activation
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActivationPut, &rec, &stored); err != nil {
		g.log.Warn("store feed activation", "tx", txID(r), "err", err)
	}
	w.Header().Set(headerActivationID, id)
	view := g.openActivation(&rec, [32]byte{}, caller)
	code := http.StatusOK
	if view.status != wire.StatusSuccess {
		code = http.StatusBadGateway
	}
	if resultOnly {
		writeJSON(w, code, view.result)
		return
	}
	writeJSON(w, code, view.render())
}

// feedError is a feed failure to show the caller.
type feedError struct{ msg string }

func (e *feedError) Error() string { return e.msg }

func feedErrorf(format string, args ...any) error { return &feedError{fmt.Sprintf(format, args...)} }

// feedParams are the parameters of a feed invocation.
type feedParams struct {
	LifecycleEvent  string          `json:"lifecycleEvent"`
	TriggerName     string          `json:"triggerName"`
	Cron            *string         `json:"cron"`
	Minutes         *json.Number    `json:"minutes"`
	Date            any             `json:"date"`
	StartDate       any             `json:"startDate"`
	StopDate        any             `json:"stopDate"`
	MaxTriggers     *json.Number    `json:"maxTriggers"`
	DeleteAfterFire any             `json:"deleteAfterFire"`
	TriggerPayload  json.RawMessage `json:"trigger_payload"`
	Timezone        string          `json:"timezone"`
}

// cronParser takes five fields or six with seconds first.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseFeedTime is a date parameter: unix ms, or an ISO 8601 string.
func parseFeedTime(v any) (int64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case float64:
		return int64(x), x >= 0
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil && n >= 0 {
			return n, true
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z", "2006-01-02T15:04:05Z", "2006-01-02"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t.UnixMilli(), true
			}
		}
	}
	return 0, false
}

// feedLifecycle serves one lifecycle event for caller.
func (g *Gateway) feedLifecycle(ctx context.Context, caller, kind string, payload []byte) (json.RawMessage, error) {
	var p feedParams
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, feedErrorf("The feed parameters are malformed.")
	}
	ns, trig, ok := ruleAction(p.TriggerName)
	if ns == "_" {
		ns = caller
	}
	if !ok || !validName(trig) || strings.Contains(trig, "/") {
		return nil, feedErrorf("triggerName must be a trigger's fully qualified name, /namespace/trigger.")
	}
	if ns != caller {
		return nil, feedErrorf("The trigger %s is not in the caller's namespace.", p.TriggerName)
	}
	feeds, _, err := g.feedBuckets(ctx)
	if err != nil {
		return nil, err
	}
	key := feedKey(ns, trig)
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	load := func() (*alarmFeed, uint64, error) {
		e, err := feeds.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0, feedErrorf("The trigger %s has no alarm.", p.TriggerName)
		}
		if err != nil {
			return nil, 0, err
		}
		var f alarmFeed
		if bus.Unmarshal(e.Value(), &f) != nil || !hmac.Equal(f.Tag, g.feedTag(&f)) || f.Namespace != ns || f.Trigger != trig {
			return nil, 0, feedErrorf("The trigger's alarm could not be authenticated.")
		}
		if f.Kind != kind {
			return nil, 0, feedErrorf("The trigger %s is fed by /whisk.system/alarms/%s, not %s.", p.TriggerName, f.Kind, kind)
		}
		return &f, e.Revision(), nil
	}
	put := func(f *alarmFeed, rev uint64) error {
		f.Changed = g.now().UnixMilli()
		f.Tag = g.feedTag(f)
		b, err := bus.Marshal(f)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = feeds.Create(ctx, key, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				return feedErrorf("The trigger %s has an alarm already.", p.TriggerName)
			}
		} else {
			_, err = feeds.Update(ctx, key, b, rev)
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return feedErrorf("The alarm changed meanwhile; retry.")
			}
		}
		g.wakeFeeds()
		return err
	}
	ok200 := func(v any) (json.RawMessage, error) { b, err := json.Marshal(v); return b, err }

	switch p.LifecycleEvent {
	case "CREATE":
		t, cerr := g.fetchTrigger(ctx, ns, trig)
		if cerr != nil {
			return nil, cerr
		}
		if t == nil {
			return nil, feedErrorf("The trigger %s does not exist.", p.TriggerName)
		}
		f := &alarmFeed{Namespace: ns, Trigger: trig, Kind: kind, Created: g.now().UnixMilli()}
		if err := g.applyFeedParams(f, &p, true); err != nil {
			return nil, err
		}
		if err := put(f, 0); err != nil {
			return nil, err
		}
		g.log.Info("alarm created", "namespace", ns, "trigger", trig, "kind", kind)
		return ok200(map[string]any{"status": "success", "triggerName": p.TriggerName})
	case "READ":
		f, _, err := load()
		if err != nil {
			return nil, err
		}
		return ok200(g.feedView(f))
	case "UPDATE":
		f, rev, err := load()
		if err != nil {
			return nil, err
		}
		if err := g.applyFeedParams(f, &p, false); err != nil {
			return nil, err
		}
		if err := put(f, rev); err != nil {
			return nil, err
		}
		return ok200(map[string]any{"status": "success", "triggerName": p.TriggerName})
	case "PAUSE", "UNPAUSE":
		f, rev, err := load()
		if err != nil {
			return nil, err
		}
		f.Paused = p.LifecycleEvent == "PAUSE"
		if err := put(f, rev); err != nil {
			return nil, err
		}
		return ok200(map[string]any{"status": "success", "triggerName": p.TriggerName})
	case "DELETE":
		if _, _, err := load(); err != nil {
			return nil, err
		}
		if err := feeds.Delete(ctx, key); err != nil {
			return nil, err
		}
		g.wakeFeeds()
		g.log.Info("alarm deleted", "namespace", ns, "trigger", trig)
		return ok200(map[string]any{"status": "success", "triggerName": p.TriggerName})
	}
	return nil, feedErrorf("lifecycleEvent must be CREATE, READ, UPDATE, DELETE, PAUSE or UNPAUSE.")
}

// applyFeedParams checks and sets the alarm's parameters: on create all
// the required ones, on update those given.
func (g *Gateway) applyFeedParams(f *alarmFeed, p *feedParams, create bool) error {
	if p.Timezone != "" && p.Timezone != "UTC" && p.Timezone != "Etc/UTC" {
		return feedErrorf("clemmys alarms run in UTC only.")
	}
	switch f.Kind {
	case "alarm":
		if p.Cron != nil {
			if _, err := cronParser.Parse(*p.Cron); err != nil || len(*p.Cron) > 256 {
				return feedErrorf("cron pattern '%s' is not valid: five fields (minute hour day month weekday), or six with seconds first.", firstLine(*p.Cron))
			}
			f.Cron = *p.Cron
		} else if create {
			return feedErrorf("alarms trigger feeds require a cron parameter.")
		}
		if p.MaxTriggers != nil {
			n, err := p.MaxTriggers.Int64()
			if err != nil || n < -1 || n > 1<<31 {
				return feedErrorf("maxTriggers must be an integer.")
			}
			f.MaxTriggers = int(max(n, 0))
		}
	case "interval":
		if p.Minutes != nil {
			n, err := p.Minutes.Int64()
			if err != nil || n < minIntervalMinutes || n > 525_600 {
				return feedErrorf("minutes must be an integer from %d to 525600.", minIntervalMinutes)
			}
			f.Minutes = int(n)
		} else if create {
			return feedErrorf("interval trigger feeds require a minutes parameter.")
		}
	case "once":
		if p.Date != nil {
			d, ok := parseFeedTime(p.Date)
			if !ok {
				return feedErrorf("date must be a date (ISO 8601 or unix ms).")
			}
			if d <= g.now().UnixMilli() {
				return feedErrorf("date must be in the future.")
			}
			f.Date, f.Fired = d, 0
		} else if create {
			return feedErrorf("once trigger feeds require a date parameter.")
		}
		switch v := p.DeleteAfterFire.(type) {
		case nil:
		case bool:
			f.DeleteAfterFire = map[bool]string{true: "true", false: ""}[v]
		case string:
			switch v {
			case "false", "":
				f.DeleteAfterFire = ""
			case "true", "rules":
				f.DeleteAfterFire = v
			default:
				return feedErrorf("deleteAfterFire must be false, true or \"rules\".")
			}
		}
	}
	if f.Kind != "once" {
		for _, d := range []struct {
			v   any
			dst *int64
			n   string
		}{{p.StartDate, &f.StartDate, "startDate"}, {p.StopDate, &f.StopDate, "stopDate"}} {
			if d.v != nil {
				t, ok := parseFeedTime(d.v)
				if !ok {
					return feedErrorf("%s must be a date (ISO 8601 or unix ms).", d.n)
				}
				*d.dst = t
			}
		}
		if f.StopDate != 0 && f.StopDate <= f.StartDate {
			return feedErrorf("stopDate must be after startDate.")
		}
	}
	if len(p.TriggerPayload) > 0 && string(p.TriggerPayload) != "null" {
		if len(p.TriggerPayload) > maxFeedPayloadBytes || !isJSONObject(p.TriggerPayload) {
			return feedErrorf("trigger_payload must be a JSON object of at most %d bytes.", maxFeedPayloadBytes)
		}
		sealed, err := g.sealFeedPayload(f.Namespace, f.Trigger, p.TriggerPayload)
		if err != nil {
			return err
		}
		f.Payload = sealed
	}
	return nil
}

// sealFeedPayload seals a trigger_payload like default parameters, bound
// to the feed.
func (g *Gateway) sealFeedPayload(ns, trigger string, payload []byte) ([]byte, error) {
	aead, err := g.paramsAEAD()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(payload)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, payload, paramsAAD("feed", ns, trigger)), nil
}

func (g *Gateway) openFeedPayload(f *alarmFeed) ([]byte, error) {
	if len(f.Payload) == 0 {
		return []byte("{}"), nil
	}
	aead, err := g.paramsAEAD()
	if err != nil {
		return nil, err
	}
	if len(f.Payload) < aead.NonceSize()+aead.Overhead() {
		return nil, errParams
	}
	pt, err := aead.Open(nil, f.Payload[:aead.NonceSize()], f.Payload[aead.NonceSize():], paramsAAD("feed", f.Namespace, f.Trigger))
	if err != nil {
		return nil, errParams
	}
	return pt, nil
}

// feedView is the READ answer, OpenWhisk's alarms provider's form.
func (g *Gateway) feedView(f *alarmFeed) map[string]any {
	cfg := map[string]any{"name": f.Trigger, "namespace": f.Namespace}
	switch f.Kind {
	case "alarm":
		cfg["cron"] = f.Cron
		if f.MaxTriggers > 0 {
			cfg["maxTriggers"] = f.MaxTriggers
		}
	case "interval":
		cfg["minutes"] = f.Minutes
	case "once":
		cfg["date"] = time.UnixMilli(f.Date).UTC().Format("2006-01-02T15:04:05.000Z")
		if f.DeleteAfterFire != "" {
			cfg["deleteAfterFire"] = f.DeleteAfterFire
		}
	}
	if f.StartDate != 0 {
		cfg["startDate"] = time.UnixMilli(f.StartDate).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if f.StopDate != 0 {
		cfg["stopDate"] = time.UnixMilli(f.StopDate).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if pl, err := g.openFeedPayload(f); err == nil {
		cfg["payload"] = json.RawMessage(pl)
	}
	active := !f.Paused && !g.feedDone(f)
	status := map[string]any{
		"active":         active,
		"dateChanged":    f.Changed,
		"dateChangedISO": time.UnixMilli(f.Changed).UTC().Format("2006-01-02T15:04:05.000Z"),
	}
	if !active {
		reason := "paused"
		if !f.Paused {
			reason = "finished"
		}
		status["reason"] = map[string]any{"kind": "AUTO", "message": reason}
	}
	return map[string]any{"config": cfg, "status": status}
}

// feedDone reports whether an alarm will never fire again.
func (g *Gateway) feedDone(f *alarmFeed) bool {
	switch {
	case f.Kind == "once":
		return f.Fired > 0
	case f.MaxTriggers > 0 && f.Fired >= f.MaxTriggers:
		return true
	case f.StopDate != 0 && g.now().UnixMilli() >= f.StopDate:
		return true
	}
	return false
}

// nextFire is when an alarm fires next after t (zero: never).
func nextFire(f *alarmFeed, t time.Time) time.Time {
	if f.Paused {
		return time.Time{}
	}
	var next time.Time
	switch f.Kind {
	case "alarm":
		sched, err := cronParser.Parse(f.Cron)
		if err != nil {
			return time.Time{}
		}
		from := t
		if f.StartDate != 0 && time.UnixMilli(f.StartDate).After(from) {
			from = time.UnixMilli(f.StartDate).Add(-time.Second)
		}
		next = sched.Next(from.UTC())
		if f.MaxTriggers > 0 && f.Fired >= f.MaxTriggers {
			return time.Time{}
		}
	case "interval":
		if f.Minutes <= 0 {
			return time.Time{}
		}
		base := time.UnixMilli(f.Created)
		if f.StartDate != 0 {
			base = time.UnixMilli(f.StartDate)
		}
		period := time.Duration(f.Minutes) * time.Minute
		if t.Before(base) {
			next = base
		} else {
			next = base.Add((t.Sub(base)/period + 1) * period)
		}
	case "once":
		if f.Fired > 0 {
			return time.Time{}
		}
		next = time.UnixMilli(f.Date)
		if next.Before(t) {
			next = t // missed while no gateway ran: fire now
		}
	}
	if f.StopDate != 0 && !next.Before(time.UnixMilli(f.StopDate)) {
		return time.Time{}
	}
	return next
}

// wakeFeeds asks the scheduler to read the feeds again.
func (g *Gateway) wakeFeeds() {
	select {
	case g.feedState.wake <- struct{}{}:
	default:
	}
}

// feedPoll bounds how long the scheduler waits before reading the feeds
// again (changes made through another gateway replica reach it so).
const feedPoll = 5 * time.Second

// runFeeds runs the alarms until ctx ends (started by Serve).
func (g *Gateway) runFeeds(ctx context.Context) {
	feeds, ticks, err := g.feedBuckets(ctx)
	if err != nil {
		g.log.Error("alarm feeds not running: their buckets do not open", "err", err)
		return
	}
	g.log.Debug("alarm feeds running")
	due := map[string]time.Time{} // feed key → next fire
	for ctx.Err() == nil {
		now := g.now()
		list, err := g.loadFeeds(ctx, feeds)
		if err != nil && ctx.Err() == nil {
			g.log.Warn("read alarm feeds", "err", err)
		}
		wait := feedPoll
		seen := map[string]bool{}
		for key, f := range list {
			seen[key] = true
			next, ok := due[key]
			if !ok || next.IsZero() {
				next = nextFire(f, now.Add(-time.Second))
			}
			if next.IsZero() {
				due[key] = next
				continue
			}
			if !next.After(now) {
				g.fireFeed(ctx, feeds, ticks, key, f, next)
				next = nextFire(f, next)
			}
			due[key] = next
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(now), 10*time.Millisecond))
			}
		}
		for k := range due {
			if !seen[k] {
				delete(due, k)
			}
		}
		select {
		case <-ctx.Done():
		case <-g.feedState.wake:
			clear(due)
		case <-time.After(wait):
		}
	}
}

// loadFeeds reads every authentic alarm.
func (g *Gateway) loadFeeds(ctx context.Context, feeds jetstream.KeyValue) (map[string]*alarmFeed, error) {
	lctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	keys, err := feeds.Keys(lctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]*alarmFeed, len(keys))
	for _, k := range keys {
		e, err := feeds.Get(lctx, k)
		if err != nil {
			continue
		}
		var f alarmFeed
		if bus.Unmarshal(e.Value(), &f) != nil || !hmac.Equal(f.Tag, g.feedTag(&f)) || feedKey(f.Namespace, f.Trigger) != k {
			g.log.Warn("alarm feed entry does not authenticate: ignored", "key", k)
			continue
		}
		out[k] = &f
	}
	return out, nil
}

// fireFeed fires tick at of alarm f, unless another replica did.
func (g *Gateway) fireFeed(ctx context.Context, feeds, ticks jetstream.KeyValue, key string, f *alarmFeed, at time.Time) {
	fctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	tickAt := at.Unix()
	if f.Kind == "once" {
		tickAt = f.Date / 1000 // the same tick on every replica, however late
	}
	tick := key + "." + strconv.FormatInt(tickAt, 10)
	if _, err := ticks.Create(fctx, tick, []byte{1}); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			g.log.Warn("alarm tick not claimed", "namespace", f.Namespace, "trigger", f.Trigger, "err", err)
		}
		return // another gateway fires it (or the store is down)
	}
	payload, err := g.openFeedPayload(f)
	if err != nil {
		g.log.Error("alarm payload does not open", "namespace", f.Namespace, "trigger", f.Trigger)
		return
	}
	tx := "alarm-" + strconv.FormatInt(at.Unix(), 10)
	if t := g.limits.admitFire(f.Namespace); t != nil {
		g.log.Info("alarm throttled", "namespace", f.Namespace, "trigger", f.Trigger)
	} else if id, cerr := g.fire(fctx, f.Namespace, f.Trigger, payload, tx); cerr != nil {
		if cerr.status == 0 && isNotFound(cerr.err) {
			// The trigger is gone without a DELETE: so is its alarm.
			g.log.Info("alarm's trigger deleted: removing the alarm", "namespace", f.Namespace, "trigger", f.Trigger)
			_ = feeds.Delete(fctx, key)
			return
		}
		g.log.Warn("alarm fire failed", "namespace", f.Namespace, "trigger", f.Trigger, "status", cerr.status, "err", cerr.err)
	} else {
		g.log.Debug("alarm fired", "namespace", f.Namespace, "trigger", f.Trigger, "activation", id)
	}
	// Count the fire (for maxTriggers and once alarms).
	if f.Kind == "once" || f.MaxTriggers > 0 {
		e, err := feeds.Get(fctx, key)
		if err != nil {
			return
		}
		var cur alarmFeed
		if bus.Unmarshal(e.Value(), &cur) != nil || !hmac.Equal(cur.Tag, g.feedTag(&cur)) {
			return
		}
		cur.Fired++
		f.Fired = cur.Fired
		if f.Kind == "once" && cur.DeleteAfterFire != "" {
			_ = feeds.Delete(fctx, key)
			g.deleteFedTrigger(fctx, &cur)
			return
		}
		cur.Changed = g.now().UnixMilli()
		cur.Tag = g.feedTag(&cur)
		if b, err := bus.Marshal(&cur); err == nil {
			_, _ = feeds.Update(fctx, key, b, e.Revision())
		}
	}
}

// deleteFedTrigger deletes a once alarm's trigger after it fired and,
// with deleteAfterFire "rules", the trigger's rules (OpenWhisk's
// deleteAfterFire).
func (g *Gateway) deleteFedTrigger(ctx context.Context, f *alarmFeed) {
	self := "/" + f.Namespace + "/" + f.Trigger
	var list wire.RuleList
	if f.DeleteAfterFire != "rules" {
		// only the trigger
	} else if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectRuleList, &wire.ListRequest{Namespace: f.Namespace, Name: self, Limit: maxListLimit}, &list); err == nil {
		for _, rl := range list.Rules {
			if rl.Namespace == f.Namespace && rl.Trigger == self {
				var out wire.Rule
				_ = bus.Call(ctx, g.cfg.Conn, wire.SubjectRuleDelete, &wire.EntityRef{Namespace: f.Namespace, Name: rl.Name}, &out)
			}
		}
	}
	var out wire.Trigger
	_ = bus.Call(ctx, g.cfg.Conn, wire.SubjectTriggerDelete, &wire.EntityRef{Namespace: f.Namespace, Name: f.Trigger}, &out)
}
