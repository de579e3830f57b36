package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Load is one measurement point: Conns concurrent HTTP/1.1 keep-alive
// clients, each on its own connection, sending the same request in a
// closed loop (the next as soon as the previous answer is read) for
// Duration, or until Requests answers, whichever comes first.
type Load struct {
	URL    string
	Method string // default POST
	Body   []byte
	Header http.Header
	// TLS is the client configuration for https URLs.
	TLS   *tls.Config
	Conns int
	// Duration bounds the measured window (default 10 s); Requests, if
	// > 0, bounds the number of requests instead (Duration still caps it).
	Duration time.Duration
	Requests int64
	// Check validates an answer; an answer it refuses is an error. nil
	// accepts status 200.
	Check func(status int, body []byte) error
	// Throttled hands 429 answers to Check like the others (the overload
	// scenario counts them); otherwise a 429 stops the load (a throttled
	// benchmark measures the throttle).
	Throttled bool
	// Done, if set, is incremented after every answer, for progress
	// displays.
	Done *atomic.Int64
}

// LoadResult is what a Load measured. Only answers that passed Check are
// in the histogram and the rate.
type LoadResult struct {
	Conns      int
	Requests   int64 // successful answers in the window
	Errors     int64
	FirstError string
	Elapsed    time.Duration
	Hist       Histogram
}

// RPS is successful requests per second.
func (r *LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// maxErrorFraction stops a point early when most answers are errors (a
// throttle, a broken deployment): its numbers would mean nothing.
const maxErrorFraction = 0.5

// RunLoad runs l. Every worker first opens its connection and sends one
// request outside the measured window (TLS handshake, connection set-up);
// a failure there fails the point. The window starts when all workers are
// connected.
func RunLoad(ctx context.Context, l Load) (*LoadResult, error) {
	if l.Conns <= 0 {
		return nil, errors.New("bench: load with no connections")
	}
	if l.Method == "" {
		l.Method = http.MethodPost
	}
	if l.Duration <= 0 {
		l.Duration = 10 * time.Second
	}
	check := l.Check
	if check == nil {
		check = func(status int, _ []byte) error {
			if status != http.StatusOK {
				return fmt.Errorf("status %d", status)
			}
			return nil
		}
	}
	type worker struct {
		client *http.Client
		hist   Histogram
		ok     int64
		errs   int64
		first  string
	}
	workers := make([]*worker, l.Conns)
	for i := range workers {
		tr := &http.Transport{
			TLSClientConfig:     l.TLS,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			// A non-nil empty map disables HTTP/2: the measurement is
			// HTTP/1.1 keep-alive, like wrk's.
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
			DialContext:  (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		}
		workers[i] = &worker{client: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	}
	defer func() {
		for _, w := range workers {
			w.client.CloseIdleConnections()
		}
	}()

	// one sends a request and reads the whole answer into buf.
	one := func(ctx context.Context, c *http.Client, buf *bytes.Buffer) (int, error) {
		req, err := http.NewRequestWithContext(ctx, l.Method, l.URL, bytes.NewReader(l.Body))
		if err != nil {
			return 0, err
		}
		for k, v := range l.Header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resp.StatusCode, err
		}
		if resp.StatusCode == http.StatusTooManyRequests && !l.Throttled {
			return resp.StatusCode, throttledError(buf.Bytes())
		}
		return resp.StatusCode, check(resp.StatusCode, buf.Bytes())
	}

	// Warm-up: one request per connection, all at once.
	var wg sync.WaitGroup
	warmErr := make([]error, l.Conns)
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			if _, err := one(ctx, w.client, &buf); err != nil {
				warmErr[i] = fmt.Errorf("%w (answer: %.200s)", err, buf.Bytes())
			}
		}()
	}
	wg.Wait()
	for _, err := range warmErr {
		if errors.Is(err, ErrThrottled) {
			return nil, err
		}
	}
	if err := errors.Join(warmErr...); err != nil {
		return nil, fmt.Errorf("bench: warm-up request to %s: %w", l.URL, err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		issued    atomic.Int64
		answers   atomic.Int64
		errs      atomic.Int64
		throttled atomic.Pointer[error]
	)
	start := time.Now()
	deadline := start.Add(l.Duration)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for runCtx.Err() == nil {
				if l.Requests > 0 && issued.Add(1) > l.Requests {
					return
				}
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				_, err := one(runCtx, w.client, &buf)
				d := time.Since(t0)
				if runCtx.Err() != nil {
					return // cut short: neither an answer nor an error
				}
				n := answers.Add(1)
				if l.Done != nil {
					l.Done.Add(1)
				}
				if errors.Is(err, ErrThrottled) {
					// The platform refuses the load: measuring on would
					// measure its throttle. Stop, and say so once.
					throttled.CompareAndSwap(nil, &err)
					cancel()
					return
				}
				if err != nil {
					w.errs++
					if w.first == "" {
						w.first = fmt.Sprintf("%v (answer: %.200s)", err, buf.Bytes())
					}
					if e := errs.Add(1); n >= 100 && float64(e) > maxErrorFraction*float64(n) {
						cancel()
					}
					continue
				}
				w.ok++
				w.hist.Record(d)
			}
		}()
	}
	// Stop at the deadline even if a request hangs.
	timer := time.AfterFunc(l.Duration+30*time.Second, cancel)
	wg.Wait()
	timer.Stop()
	// Workers send nothing after the deadline but finish the request in
	// flight: the window ends with the last answer.
	elapsed := time.Since(start)
	res := &LoadResult{Conns: l.Conns, Elapsed: elapsed}
	for _, w := range workers {
		res.Requests += w.ok
		res.Errors += w.errs
		if res.FirstError == "" {
			res.FirstError = w.first
		}
		res.Hist.Merge(&w.hist)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err := throttled.Load(); err != nil {
		return res, *err
	}
	if res.Requests+res.Errors >= 100 && float64(res.Errors) > maxErrorFraction*float64(res.Requests+res.Errors) {
		return res, fmt.Errorf("bench: %d of %d requests to %s failed, first: %s", res.Errors, res.Requests+res.Errors, l.URL, res.FirstError)
	}
	return res, nil
}

// drain reads and closes a body (for setup calls).
func drain(r io.ReadCloser) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, 16<<20))
	r.Close()
	return b
}

// ErrThrottled: the platform answered 429, its throttles refuse the load.
var ErrThrottled = errors.New("the platform throttles the benchmark's namespace (429)")

// throttledError says which throttle refused the load and what to do.
func throttledError(body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if e.Error == "" {
		e.Error = "Too many requests"
	}
	return fmt.Errorf("bench: %w: %q. Measurements under a throttle measure the throttle: "+
		"lift the namespace's limits (clemmys namespace limits NS --invocations-per-minute -1 --concurrent -1) "+
		"or start the platform with --invocations-per-minute 0 --concurrent-invocations 0, then run the bench again", ErrThrottled, e.Error)
}
