package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRateLimitsDefaults(t *testing.T) {
	l := newRateLimits(Config{})
	if l.invokesPerMinute != DefaultInvocationsPerMinute || l.firesPerMinute != DefaultFiresPerMinute || l.concurrent != DefaultConcurrentInvocations {
		t.Fatalf("defaults %+v", l)
	}
	l = newRateLimits(Config{InvocationsPerMinute: -1, FiresPerMinute: 3, ConcurrentInvocations: -1})
	for i := 0; i < 10_000; i++ {
		if _, ok := l.acquireInvocation("guest"); !ok {
			t.Fatal("unlimited invocations refused")
		}
	}
	var nilLimits *rateLimits
	if release, ok := nilLimits.acquireInvocation("guest"); !ok || !nilLimits.fire("guest") {
		t.Fatal("nil limits refuse")
	} else {
		release()
	}
}

func TestInvocationsPerMinute(t *testing.T) {
	clock := &manualClock{t: time.Unix(1_700_000_000, 0)} // 20 s into a minute
	l := newRateLimits(Config{Now: clock.Now, InvocationsPerMinute: 3, ConcurrentInvocations: -1})
	for i := 0; i < 3; i++ {
		if _, th := l.admitInvocation("guest"); th != nil {
			t.Fatalf("invocation %d refused: %+v", i, th)
		}
	}
	_, th := l.admitInvocation("guest")
	if th == nil || th.msg != msgTooManyRequests || th.count != 4 || th.allowed != 3 || th.retry != 40*time.Second {
		t.Fatalf("4th: %+v", th)
	}
	if _, th := l.admitInvocation("alice"); th != nil {
		t.Fatal("another namespace is throttled")
	}
	// Refused requests count too; the next minute starts afresh.
	if _, th := l.admitInvocation("guest"); th == nil || th.count != 5 {
		t.Fatalf("5th: %+v", th)
	}
	clock.Advance(40 * time.Second)
	if _, th := l.admitInvocation("guest"); th != nil {
		t.Fatalf("new window: %+v", th)
	}
}

func TestConcurrentInvocations(t *testing.T) {
	l := newRateLimits(Config{ConcurrentInvocations: 2})
	r1, ok1 := l.acquireInvocation("guest")
	r2, ok2 := l.acquireInvocation("guest")
	if !ok1 || !ok2 || l.inFlight("guest") != 2 {
		t.Fatal("two slots")
	}
	_, th := l.admitInvocation("guest")
	if th == nil || th.msg != msgTooManyConcurrent || th.count != 2 || th.allowed != 2 || th.retry != 0 {
		t.Fatalf("third: %+v", th)
	}
	if _, ok := l.acquireInvocation("alice"); !ok {
		t.Fatal("another namespace is throttled")
	}
	r1()
	r1() // idempotent: frees one slot only
	if l.inFlight("guest") != 1 {
		t.Fatalf("in flight %d", l.inFlight("guest"))
	}
	r3, ok := l.acquireInvocation("guest")
	if !ok {
		t.Fatal("freed slot not reusable")
	}
	r2()
	r3()
	if l.inFlight("guest") != 0 || len(l.inflight) != 1 {
		t.Fatalf("in flight map %v", l.inflight)
	}

	// Concurrent acquire/release never exceeds the limit.
	l = newRateLimits(Config{ConcurrentInvocations: 5, InvocationsPerMinute: -1})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		cur  int
		peak int
	)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				release, ok := l.acquireInvocation("guest")
				if !ok {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				release()
			}
		}()
	}
	wg.Wait()
	if peak > 5 || l.inFlight("guest") != 0 {
		t.Fatalf("peak %d, in flight %d", peak, l.inFlight("guest"))
	}
}

func TestFiresPerMinute(t *testing.T) {
	clock := &manualClock{t: time.Unix(1_700_000_030, 0)} // 50 s into a minute
	l := newRateLimits(Config{Now: clock.Now, FiresPerMinute: 1})
	if !l.fire("guest") || l.fire("guest") || !l.fire("alice") {
		t.Fatal("fires per minute")
	}
	clock.Advance(20 * time.Second)
	if !l.fire("guest") {
		t.Fatal("new window")
	}
}

// The 429 answers: OpenWhisk's message and error body, Retry-After for the
// per-minute limits.
func TestThrottleAnswers(t *testing.T) {
	clock := &manualClock{t: time.Unix(1_700_000_000, 0)}
	g := &Gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		limits: newRateLimits(Config{Now: clock.Now, InvocationsPerMinute: 1, ConcurrentInvocations: 1, FiresPerMinute: 1})}
	call := func(f func(w http.ResponseWriter, r *http.Request) bool) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		if f(w, httptest.NewRequest("POST", "/", nil)) {
			w.WriteHeader(299)
		}
		return w
	}
	var release func()
	invoke := func(w http.ResponseWriter, r *http.Request) bool {
		rel, ok := g.limitInvocation(w, r, "guest")
		if ok {
			release = rel
		}
		return ok
	}
	if w := call(invoke); w.Code != 299 {
		t.Fatalf("first: %d", w.Code)
	}
	w := call(invoke)
	if w.Code != http.StatusTooManyRequests || w.Body.String() != `{"code":"","error":"Too many requests in the last minute (count: 2, allowed: 1)."}`+"\n" || w.Header().Get("Retry-After") != "40" {
		t.Fatalf("rate: %d %s %v", w.Code, w.Body, w.Header())
	}
	clock.Advance(time.Minute)
	w = call(invoke)
	if w.Code != http.StatusTooManyRequests || w.Body.String() != `{"code":"","error":"Too many concurrent requests in flight (count: 1, allowed: 1)."}`+"\n" || w.Header().Get("Retry-After") != "" {
		t.Fatalf("concurrency: %d %s", w.Code, w.Body)
	}
	release()
	fire := func(w http.ResponseWriter, r *http.Request) bool { return g.limitFire(w, r, "guest") }
	if w := call(fire); w.Code != 299 {
		t.Fatalf("first fire: %d", w.Code)
	}
	if w := call(fire); w.Code != http.StatusTooManyRequests {
		t.Fatalf("second fire: %d %s", w.Code, w.Body)
	}
}

// Through the API: trigger fires over the limit are 429 (fireTrigger
// consults g.limitFire before anything else).
func TestFireThrottledOverHTTP(t *testing.T) {
	e := newEntEnv(t, func(c *Config) { c.FiresPerMinute = 2 })
	e.must(200, e.guest, "PUT", trigPath+"t", nil)
	for i := 0; i < 2; i++ {
		if st, v, _ := e.do(e.guest, "POST", trigPath+"t", map[string]any{}); st >= 400 {
			t.Fatalf("fire %d: %d %v", i, st, v)
		}
	}
	st, v, res := e.do(e.guest, "POST", trigPath+"t", map[string]any{})
	m, _ := v.(map[string]any)
	if st != http.StatusTooManyRequests || m["error"] != "Too many requests in the last minute (count: 3, allowed: 2)." || m["code"] == "" {
		t.Fatalf("3rd fire: %d %v", st, v)
	}
	checkCORS(t, "429", res)
	// alice has her own budget.
	e.must(200, e.alice, "PUT", trigPath+"t", nil)
	if st, _, _ := e.do(e.alice, "POST", trigPath+"t", nil); st >= 400 {
		t.Fatalf("alice fire: %d", st)
	}
}
