package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// Per-namespace throttles, OpenWhisk's: invocations per minute, trigger
// fires per minute and concurrent invocations. Their values are the
// gateway's configuration, or the namespace's own (nslimits.go: stored on
// the bus, the same on every replica). They are counted by each gateway
// process on its own (a namespace served by n gateway replicas gets up to
// n times the limits); the counters are in memory only.
//
// The per-minute limits use a fixed window aligned on the minute of the
// gateway's clock. As in OpenWhisk, a refused request counts too, so the
// "count" of the answer is how many requests the namespace made in this
// minute.

// Default throttles (OpenWhisk's defaults are 60/60/30 per namespace; clemmys
// serves a few tenants per gateway and sets them higher).
const (
	DefaultInvocationsPerMinute  = 600
	DefaultFiresPerMinute        = 600
	DefaultConcurrentInvocations = 100
)

// Throttle messages, OpenWhisk's wording.
const (
	msgTooManyRequests   = "Too many requests in the last minute (count: %d, allowed: %d)."
	msgTooManyConcurrent = "Too many concurrent requests in flight (count: %d, allowed: %d)."
)

// throttle is a refusal: which limit and the numbers to show.
type throttle struct {
	msg     string
	count   int
	allowed int
	retry   time.Duration // until the window ends (0 for concurrency)
}

// rateLimits counts, per namespace, the invocations and fires of the
// current minute and the invocations in flight. A limit < 0 is unlimited.
// A nil *rateLimits admits everything.
//
// Concurrency: mu guards every field below it; it is a leaf lock.
type rateLimits struct {
	now              func() time.Time
	invokesPerMinute int
	firesPerMinute   int
	concurrent       int

	mu       sync.Mutex
	ns       map[string]*wire.NamespaceLimits // the namespaces' own settings (verified)
	window   int64                            // the current minute, unix minutes
	invokes  map[string]int                   // namespace → invocations in window
	fires    map[string]int                   // namespace → fires in window
	inflight map[string]int                   // namespace → invocations in flight (entries > 0 only)
}

// newRateLimits applies the defaults: 0 means the default, < 0 unlimited.
func newRateLimits(cfg Config) *rateLimits {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &rateLimits{
		now:              now,
		invokesPerMinute: def(cfg.InvocationsPerMinute, DefaultInvocationsPerMinute),
		firesPerMinute:   def(cfg.FiresPerMinute, DefaultFiresPerMinute),
		concurrent:       def(cfg.ConcurrentInvocations, DefaultConcurrentInvocations),
		ns:               map[string]*wire.NamespaceLimits{},
		invokes:          map[string]int{},
		fires:            map[string]int{},
		inflight:         map[string]int{},
	}
}

// roll starts a new window if the minute changed; it returns the time left
// in the window. l.mu is held.
func (l *rateLimits) roll() time.Duration {
	now := l.now()
	m := now.Unix() / 60
	if m != l.window {
		l.window = m
		clear(l.invokes)
		clear(l.fires)
	}
	return time.Unix((m+1)*60, 0).Sub(now)
}

// admitInvocation counts an invocation of ns and takes a concurrency slot.
// It returns the function releasing the slot (idempotent: call it once the
// activation is over) or the throttle that refused it.
func (l *rateLimits) admitInvocation(ns string) (func(), *throttle) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	left := l.roll()
	lim := l.effectiveLocked(ns)
	if lim.invokesPerMinute >= 0 {
		n := l.invokes[ns] + 1
		l.invokes[ns] = n
		if n > lim.invokesPerMinute {
			return nil, &throttle{msg: msgTooManyRequests, count: n, allowed: lim.invokesPerMinute, retry: left}
		}
	}
	if lim.concurrent >= 0 {
		if n := l.inflight[ns]; n >= lim.concurrent {
			return nil, &throttle{msg: msgTooManyConcurrent, count: n, allowed: lim.concurrent}
		}
	}
	l.inflight[ns]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.inflight[ns] <= 1 {
				delete(l.inflight, ns)
			} else {
				l.inflight[ns]--
			}
		})
	}, nil
}

// admitFire counts a trigger fire of ns.
func (l *rateLimits) admitFire(ns string) *throttle {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	left := l.roll()
	lim := l.effectiveLocked(ns)
	if lim.firesPerMinute < 0 {
		return nil
	}
	n := l.fires[ns] + 1
	l.fires[ns] = n
	if n > lim.firesPerMinute {
		return &throttle{msg: msgTooManyRequests, count: n, allowed: lim.firesPerMinute, retry: left}
	}
	return nil
}

// effectiveLimits are what is enforced for one namespace: the throttles
// (< 0 unlimited) and the ceilings of the action limits.
type effectiveLimits struct {
	invokesPerMinute, concurrent, firesPerMinute int
	maxTimeoutMs, maxMemoryMB, maxLogsMB         int
}

// setNamespace records ns's own settings (nil: the defaults again).
func (l *rateLimits) setNamespace(ns string, nl *wire.NamespaceLimits) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if nl == nil {
		delete(l.ns, ns)
		return
	}
	l.ns[ns] = nl
}

// effective returns the limits enforced for ns.
func (l *rateLimits) effective(ns string) effectiveLimits {
	if l == nil {
		return effectiveLimits{-1, -1, -1, maxTimeoutMs, maxMemoryMB, maxLogsMB}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.effectiveLocked(ns)
}

// effectiveLocked is effective; l.mu is held.
func (l *rateLimits) effectiveLocked(ns string) effectiveLimits {
	e := effectiveLimits{l.invokesPerMinute, l.concurrent, l.firesPerMinute, maxTimeoutMs, maxMemoryMB, maxLogsMB}
	nl := l.ns[ns]
	if nl == nil {
		return e
	}
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&e.invokesPerMinute, nl.InvocationsPerMinute)
	set(&e.concurrent, nl.ConcurrentInvocations)
	set(&e.firesPerMinute, nl.FiresPerMinute)
	set(&e.maxTimeoutMs, nl.MaxActionTimeoutMs)
	set(&e.maxMemoryMB, nl.MaxActionMemoryMB)
	set(&e.maxLogsMB, nl.MaxActionLogsMB)
	return e
}

// acquireInvocation admits an invocation (blocking or not) of namespace ns:
// ok is false when the namespace made too many invocations in the last
// minute or has too many in flight. On success, release (idempotent) must be
// called when the activation is over.
func (l *rateLimits) acquireInvocation(ns string) (release func(), ok bool) {
	release, t := l.admitInvocation(ns)
	return release, t == nil
}

// fire admits a trigger fire of namespace ns; false when the namespace fired
// too many triggers in the last minute.
func (l *rateLimits) fire(ns string) bool { return l.admitFire(ns) == nil }

// inFlight returns the invocations of ns in flight (for tests and metrics).
func (l *rateLimits) inFlight(ns string) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight[ns]
}

// tooMany answers 429 with OpenWhisk's throttle message.
func (g *Gateway) tooMany(w http.ResponseWriter, r *http.Request, t *throttle) {
	if t.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((t.retry+time.Second-1)/time.Second)))
	}
	g.log.Debug("throttled", "tx", txID(r), "namespace", callerNamespace(r), "count", t.count, "allowed", t.allowed)
	g.fail(w, r, http.StatusTooManyRequests, t.msg, t.count, t.allowed)
}

// limitInvocation is acquireInvocation for a handler: it answers 429 itself
// when the invocation is refused. On success the caller must call release
// once the activation is over.
func (g *Gateway) limitInvocation(w http.ResponseWriter, r *http.Request, ns string) (release func(), ok bool) {
	release, t := g.limits.admitInvocation(ns)
	if t != nil {
		g.tooMany(w, r, t)
		return nil, false
	}
	return release, true
}

// limitFire is fire for a handler: it answers 429 itself when the fire is
// refused.
func (g *Gateway) limitFire(w http.ResponseWriter, r *http.Request, ns string) bool {
	if t := g.limits.admitFire(ns); t != nil {
		g.tooMany(w, r, t)
		return false
	}
	return true
}
