package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"
)

// ScenarioOverload floods a child platform, whose namespace has
// OpenWhisk's default throttles, with many connections and reports what
// its memory does (docs/performance.md): a platform under overload must
// refuse what it cannot take, not grow.
const ScenarioOverload = "overload"

// OverloadConns is how many connections the overload scenario opens.
const OverloadConns = 200

// The overload namespace's throttles: OpenWhisk's defaults.
const (
	overloadPerMinute  = 600
	overloadConcurrent = 100
)

// Overload is the overload scenario's measurement.
type Overload struct {
	Conns     int     `json:"connections"`
	Seconds   float64 `json:"seconds"`
	OK        int64   `json:"ok"`        // 200 answers
	Throttled int64   `json:"throttled"` // 429 answers
	Errors    int64   `json:"errors"`    // anything else
	// Resident memory (MiB) of the child platform's process and of its
	// tree (with its enclave runtimes): after the warm-up, and the peak
	// during the flood; Growth = PeakRSSMB / IdleRSSMB.
	IdleRSSMB     float64 `json:"idle_rss_mib"`
	IdleTreeRSSMB float64 `json:"idle_tree_rss_mib"`
	PeakRSSMB     float64 `json:"peak_rss_mib"`
	PeakTreeRSSMB float64 `json:"peak_tree_rss_mib"`
	Growth        float64 `json:"growth"`
}

// overload runs the overload scenario on a child platform built from the
// source tree (so that its memory is its own, not the load generator's).
func (r *runner) overload(ctx context.Context) error {
	root := r.opts.SourceRoot
	if root == "" {
		r.skip(ScenarioOverload, "needs the clemmys source tree to build the platform it floods")
		return nil
	}
	dir := filepath.Join(r.work, "overload")
	bin, enc := filepath.Join(dir, "clemmys"), filepath.Join(dir, "clemmys-enclave")
	r.prog.status("building clemmys for the overload child")
	if err := goBuild(ctx, root, bin, "./cmd/clemmys", ""); err != nil {
		return err
	}
	if err := goBuild(ctx, root, enc, "./cmd/clemmys-enclave", ""); err != nil {
		return err
	}
	r.prog.status("starting the overload platform (child process)")
	t, _, err := startChild(ctx, "overload child", bin, enc, filepath.Join(dir, "data"), filepath.Join(dir, "platform.log"), nil)
	if err != nil {
		return err
	}
	defer t.stop()
	if r.rep.Platform == "" {
		r.rep.Platform = "a child process (`clemmys bench serve`)"
	}
	auth, err := t.createNamespace(ctx, "overload")
	if err != nil {
		return err
	}
	limits := map[string]any{"invocationsPerMinute": overloadPerMinute, "concurrentInvocations": overloadConcurrent}
	if st, b, err := t.call(ctx, t.admin, http.MethodPut, "/admin/v1/namespaces/overload/limits", limits); err != nil || st != http.StatusOK {
		return fmt.Errorf("bench: set the overload namespace's limits: %d %s %v", st, b, err)
	}
	// The gateway applies limits from its watch of the limits bucket.
	deadline := time.Now().Add(time.Minute)
	for {
		st, b, err := t.call(ctx, auth, http.MethodGet, "/api/v1/namespaces/_/limits", nil)
		if err == nil && st == http.StatusOK && bytes.Contains(b, fmt.Appendf(nil, `"concurrentInvocations":%d`, overloadConcurrent)) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("bench: the overload namespace's limits were not applied within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := t.deploy(ctx, auth, "hello", r.hello); err != nil {
		return err
	}
	if err := t.invoke(ctx, auth, "hello", helloParams, helloResult); err != nil {
		return err
	}
	pid := t.pid
	idle := sampleRSS(pid, rssInterval)()
	var throttled, other atomic.Int64
	ok := checkResult(helloResult)
	l := t.load(auth, "hello", helloParams, helloResult)
	l.Conns, l.Throttled = OverloadConns, true
	l.Check = func(status int, body []byte) error {
		if status == http.StatusTooManyRequests {
			throttled.Add(1)
			return nil
		}
		if err := ok(status, body); err != nil {
			other.Add(1)
			return err
		}
		return nil
	}
	stop := sampleRSS(pid, rssInterval)
	res, err := r.measure(ctx, pointLabel(ScenarioOverload, "clemmys", "hello", OverloadConns), l, r.opts.Duration)
	peak := stop()
	if err != nil {
		return err
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	o := &Overload{
		Conns: OverloadConns, Seconds: res.Elapsed.Seconds(),
		OK: res.Requests - throttled.Load(), Throttled: throttled.Load(), Errors: res.Errors,
		IdleRSSMB: mib(idle.root), IdleTreeRSSMB: mib(idle.tree), PeakRSSMB: mib(peak.root), PeakTreeRSSMB: mib(peak.tree),
	}
	if o.IdleRSSMB > 0 {
		o.Growth = o.PeakRSSMB / o.IdleRSSMB
	}
	r.rep.Overload = o
	r.prog.finish(fmt.Sprintf("%-36s %d ok, %d throttled, %d errors; RSS %.0f → peak %.0f MiB (%.2f×)",
		pointLabel(ScenarioOverload, "clemmys", "hello", OverloadConns), o.OK, o.Throttled, o.Errors, o.IdleRSSMB, o.PeakRSSMB, o.Growth))
	return nil
}
