package controller

import (
	"context"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// maxInvokers bounds the invoker table (heartbeats come from the untrusted
// bus).
const maxInvokers = 4096

// maxReported caps the capacity and in-flight counts an invoker reports, so
// load comparisons cannot overflow.
const maxReported = 1 << 20

// forgetAfter is how many heartbeat timeouts an invoker stays in the table
// after its last heartbeat.
const forgetAfter = 10

// invokerState is what the controller knows about one invoker.
type invokerState struct {
	capacity    int       // from its last heartbeat, ≥ 1
	inFlight    int       // from its last heartbeat
	outstanding int       // steps this controller sent it that have not returned
	lastSeen    time.Time // controller clock; zero: marked down
}

func (s *invokerState) load() int { return max(s.inFlight, s.outstanding) }

// scheduler tracks invokers from their heartbeats and picks one per step.
// Each namespace has a "home" invoker (a hash of the namespace over the
// sorted healthy invokers) so its enclave runtime stays warm; when home is
// full the least loaded healthy invoker takes the step.
type scheduler struct {
	now     func() time.Time
	timeout time.Duration

	mu       sync.Mutex
	invokers map[string]*invokerState
	// up is closed (and replaced) when an invoker becomes healthy.
	up chan struct{}
	// waiting counts the activations in waitHealthy (for tests).
	waiting atomic.Int32
}

func newScheduler(now func() time.Time, timeout time.Duration) *scheduler {
	return &scheduler{now: now, timeout: timeout, invokers: map[string]*invokerState{}, up: make(chan struct{})}
}

// waitHealthy waits until an invoker becomes healthy (a heartbeat from one
// that was not), for at most d or until ctx ends, and reports whether one
// did. A controller that just started, or whose invokers all missed a
// heartbeat, waits this way instead of failing the activation at once.
func (s *scheduler) waitHealthy(ctx context.Context, d time.Duration) bool {
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if s.healthy() > 0 {
		return true
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-up:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return s.healthy() > 0
}

// heartbeat records hb. It reports false if hb was refused.
func (s *scheduler) heartbeat(hb wire.Heartbeat) bool {
	if !validInvokerID(hb.InvokerID) {
		return false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.invokers[hb.InvokerID]
	if !ok {
		if len(s.invokers) >= maxInvokers {
			s.forgetLocked(now)
			if len(s.invokers) >= maxInvokers {
				return false
			}
		}
		st = &invokerState{}
		s.invokers[hb.InvokerID] = st
	}
	wasHealthy := s.isHealthy(st, now)
	st.capacity = min(max(hb.Capacity, 1), maxReported)
	st.inFlight = min(max(hb.InFlight, 0), maxReported)
	st.lastSeen = now
	if !wasHealthy {
		close(s.up)
		s.up = make(chan struct{})
	}
	return true
}

// forgetLocked drops invokers silent for forgetAfter timeouts that have no
// outstanding steps.
func (s *scheduler) forgetLocked(now time.Time) {
	for id, st := range s.invokers {
		if st.outstanding == 0 && now.Sub(st.lastSeen) > forgetAfter*s.timeout {
			delete(s.invokers, id)
		}
	}
}

func (s *scheduler) isHealthy(st *invokerState, now time.Time) bool {
	return !st.lastSeen.IsZero() && now.Sub(st.lastSeen) <= s.timeout
}

// healthy returns the number of healthy invokers.
func (s *scheduler) healthy() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.invokers {
		if s.isHealthy(st, now) {
			n++
		}
	}
	return n
}

// pick chooses a healthy invoker for a step of namespace ns, skipping the
// ones in exclude, and counts the step as outstanding on it; the caller
// calls done when the step returns. ok is false if no invoker is healthy.
func (s *scheduler) pick(ns string, exclude map[string]bool) (id string, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.invokers))
	for id, st := range s.invokers {
		if !exclude[id] && s.isHealthy(st, now) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", false
	}
	slices.Sort(ids)
	h := fnv.New32a()
	h.Write([]byte(ns))
	home := int(h.Sum32() % uint32(len(ids)))
	best := ids[home]
	if st := s.invokers[best]; st.load() >= st.capacity {
		// Least loaded relative to capacity, scanning from home so ties
		// stay deterministic per namespace.
		for i := 1; i < len(ids); i++ {
			cand := ids[(home+i)%len(ids)]
			c, b := s.invokers[cand], s.invokers[best]
			if c.load()*b.capacity < b.load()*c.capacity {
				best = cand
			}
		}
	}
	s.invokers[best].outstanding++
	return best, true
}

// done records that a step sent to id returned.
func (s *scheduler) done(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.invokers[id]; ok && st.outstanding > 0 {
		st.outstanding--
	}
}

// markDown treats id as down until its next heartbeat.
func (s *scheduler) markDown(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.invokers[id]; ok {
		st.lastSeen = time.Time{}
	}
}
