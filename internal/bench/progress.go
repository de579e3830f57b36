package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress shows what the bench is doing on one updating line of a
// terminal ("\r" and erase-line), or, when the output is not a terminal, a
// line per finished step.
type progress struct {
	w   io.Writer // nil: silent
	tty bool

	mu    sync.Mutex
	width int // of the line shown; 0 when none
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

// status shows a step that is not a load (builds, deploys, cold starts).
func (p *progress) status(format string, args ...any) {
	if p.w == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(fmt.Sprintf(format, args...))
}

// line rewrites the current line; p.mu is held.
func (p *progress) line(s string) {
	fmt.Fprintf(p.w, "\r\x1b[K%s", s)
	p.width = len(s)
}

// load shows a running load point until the returned function is called:
// scenario, elapsed time, requests so far and the rate over the last half
// second.
func (p *progress) load(label string, window time.Duration, done *atomic.Int64) func() {
	if p.w == nil || !p.tty {
		return func() {}
	}
	stop, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		type sample struct {
			t time.Time
			n int64
		}
		hist := []sample{{start, done.Load()}}
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				n := done.Load()
				hist = append(hist, sample{now, n})
				if len(hist) > 3 {
					hist = hist[len(hist)-3:]
				}
				old := hist[0]
				rate := 0.0
				if dt := now.Sub(old.t).Seconds(); dt > 0 {
					rate = float64(n-old.n) / dt
				}
				el := min(now.Sub(start), window)
				p.mu.Lock()
				p.line(fmt.Sprintf("%-36s %5.1fs/%.0fs %9d req %8.0f req/s", label, el.Seconds(), window.Seconds(), n, rate))
				p.mu.Unlock()
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
	}
}

// finish reports a finished step: on a terminal it clears the line, else
// it prints summary (if any) on a line of its own.
func (p *progress) finish(summary string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.width = 0
		return
	}
	if summary = strings.TrimSpace(summary); summary != "" {
		fmt.Fprintln(p.w, summary)
	}
}

// note prints a message on its own line (a skipped scenario, a warning).
func (p *progress) note(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.width > 0 {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.width = 0
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}
