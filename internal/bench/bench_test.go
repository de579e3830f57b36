package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/srctree"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	var all []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		// log-uniform between 50 µs and 500 ms
		d := time.Duration(50e3 * float64(uint64(1)<<uint(rng.IntN(14))) * (1 + rng.Float64()))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[max(int(q*float64(len(all)))-1, 0)]
		got := h.Quantile(q)
		if rel := float64(got-exact) / float64(exact); rel > 0.01 || rel < -0.01 {
			t.Errorf("q%.3f: got %v, exact %v (%.2f%% off)", q, got, exact, 100*rel)
		}
	}
	if h.Count() != uint64(len(all)) || h.Max() != all[len(all)-1] {
		t.Errorf("count %d max %v, want %d %v", h.Count(), h.Max(), len(all), all[len(all)-1])
	}
	var a, b Histogram
	for i, d := range all {
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a.Quantile(0.5) != h.Quantile(0.5) || a.Count() != h.Count() || a.Mean() != h.Mean() {
		t.Errorf("merged histogram differs")
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		i := bucket(v)
		if lo := bucketValue(i); float64(lo) < float64(v)*0.99 || float64(lo) > float64(v)*1.01+1 {
			t.Fatalf("bucket %d of %d has value %d", i, v, lo)
		}
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram")
	}
}

// The load generator keeps exactly Conns connections, counts answers and
// refuses answers its check refuses.
func TestLoadConnectionsAndErrors(t *testing.T) {
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Equal(b, []byte(`{"name":"bench"}`)) || r.ProtoMajor != 1 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"greeting": "Hello bench!"}`)
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c] = true
			mu.Unlock()
		}
	}
	srv.StartTLS()
	defer srv.Close()
	tc := srv.Client().Transport.(*http.Transport).TLSClientConfig

	res, err := RunLoad(context.Background(), Load{
		URL: srv.URL, Body: helloParams, TLS: tc, Conns: 4, Duration: 300 * time.Millisecond,
		Check: checkResult(helloResult),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 10 || res.Errors != 0 || res.Hist.Count() != uint64(res.Requests) || res.RPS() <= 0 {
		t.Fatalf("result: %+v", res)
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 4 {
		t.Errorf("%d connections, want 4", n)
	}

	res, err = RunLoad(context.Background(), Load{
		URL: srv.URL, Body: helloParams, TLS: tc, Conns: 2, Duration: 5 * time.Second, Requests: 50,
		Check: checkResult(helloResult),
	})
	if err != nil || res.Requests != 50 {
		t.Fatalf("fixed count: %+v, %v", res, err)
	}

	res, err = RunLoad(context.Background(), Load{
		URL: srv.URL, Body: helloParams, TLS: tc, Conns: 1, Duration: 300 * time.Millisecond,
		Check: checkResult([]byte(`{"greeting":"Hello other!"}`)),
	})
	if err == nil {
		t.Fatalf("a wrong answer passed the check: %+v", res)
	}
}

// TestSmoke runs `clemmys bench` in miniature: the warm scenario, 1 s per
// point, against an in-process platform.
func TestSmoke(t *testing.T) {
	root := srctree.Root(context.Background())
	if root == "" {
		t.Fatal("not in the clemmys source tree")
	}
	work := t.TempDir()
	enc := filepath.Join(work, "clemmys-enclave")
	cmd := exec.Command("go", "build", "-trimpath", "-o", enc, "./cmd/clemmys-enclave")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build enclave runtime: %v\n%s", err, out)
	}
	var progress, logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Duration: time.Second, Conns: []int{1, 4}, Scenarios: []string{ScenarioWarm},
		EnclavePath: enc, SourceRoot: root, WorkDir: work, Progress: &progress,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s\nplatform log (errors and warnings):\n%s", err, progress.String(), grepLog(logs.String()))
	}
	if len(rep.Points) != 2 {
		t.Fatalf("points: %+v", rep.Points)
	}
	for _, p := range rep.Points {
		if p.Scenario != ScenarioWarm || p.Requests == 0 || p.Errors != 0 || p.RPS <= 0 || p.P50Ms <= 0 || p.P99Ms < p.P50Ms {
			t.Errorf("point: %+v", p)
		}
	}
	if !strings.Contains(progress.String(), "warm clemmys c=4") {
		t.Errorf("progress: %q", progress.String())
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "(a) warm invoke") {
		t.Errorf("text report:\n%s", text.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Points) != 2 {
		t.Fatalf("JSON round trip: %v", err)
	}
	t.Logf("\n%s", text.String())
}

// syncBuffer is a buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// grepLog keeps the error and warning lines of a log.
func grepLog(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A platform that throttles the load: the run stops at the first 429 and
// says once what to do, whether the warm-up or the load meets it.
func TestLoadStopsWhenThrottled(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1) > 8 {
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"Too many requests in the last minute (count: 9, allowed: 8).","code":"x"}`)
			return
		}
		io.WriteString(w, `{"greeting": "Hello bench!"}`)
	}))
	defer srv.Close()
	tc := srv.Client().Transport.(*http.Transport).TLSClientConfig
	for _, conns := range []int{2, 16} {
		n.Store(0)
		_, err := RunLoad(context.Background(), Load{
			URL: srv.URL, Body: helloParams, TLS: tc, Conns: conns, Duration: time.Minute,
			Check: checkResult(helloResult),
		})
		if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "allowed: 8") || !strings.Contains(err.Error(), "clemmys namespace limits") {
			t.Fatalf("%d connections: %v", conns, err)
		}
		if got := n.Load(); got > 8+int64(conns) {
			t.Errorf("%d connections: %d requests sent; the load should stop at the first 429", conns, got)
		}
	}
}
