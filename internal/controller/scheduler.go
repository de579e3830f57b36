package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
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

// placedFor is how long a runtime this controller placed a namespace on
// counts as the invoker's before its heartbeats list it (a heartbeat may
// have been built before the placement).
const placedFor = 5 * time.Second

// errInvokerLost is the cause given to the calls in flight to an invoker
// that stopped heart-beating.
var errInvokerLost = errors.New("controller: invoker lost")

// invokerState is what the controller knows about one invoker.
type invokerState struct {
	capacity    int       // from its last heartbeat, ≥ 1
	inFlight    int       // from its last heartbeat
	outstanding int       // steps this controller sent it that have not returned
	lastSeen    time.Time // controller clock; zero: marked down
	lost        bool      // its calls were cancelled as lost (until it beats again)
	// runtimes are its runtimes by namespace, from its last heartbeat;
	// placed those this controller placed since (with when).
	runtimes map[string][]byte
	placed   map[string]placed
	calls    map[uint64]*stepCall // in flight, to cancel if it or its message is lost
	beat     chan struct{}        // made by waitBeat, closed at its next heartbeat
	// direct are its counts of direct activations (Heartbeat.Direct) as
	// of its last heartbeat.
	direct wire.DirectCounts
}

// stepCall is a step in flight to an invoker.
type stepCall struct {
	cancel     context.CancelCauseFunc
	activation string
	sent       time.Time // controller clock
	misses     int       // heartbeats in a row, past the grace, that did not hold it
}

// A call missing from missesLost heartbeats in a row that the invoker
// built at least the heartbeat timeout after it was sent was lost on the
// bus (its request, or its answer once the invoker let it go): the step
// ends then (errStepLost) rather than at its deadline.
const missesLost = 2

// errStepLost is the cause given to a call whose request or answer was
// lost on the bus.
var errStepLost = errors.New("controller: step lost on the bus")

type placed struct {
	id []byte
	at time.Time
}

func (s *invokerState) load() int { return max(s.inFlight, s.outstanding) }

// scheduler tracks invokers from their heartbeats. Each action has a home
// invoker (rendezvous hashing of namespace/action over the healthy ones,
// so a set that changes moves few actions) where its runtime and warm
// instances stay; when home is full the least loaded healthy invoker takes
// it. Placing happens before sealing (handlePlace): the envelope then
// designates the runtime, so a step is dispatched only to the invoker the
// gateway sealed for, and an invoker that stops answering loses the calls
// in flight to it (sweep).
type scheduler struct {
	now     func() time.Time
	timeout time.Duration

	mu       sync.Mutex
	invokers map[string]*invokerState
	nextCall uint64
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
	return waitClosed(ctx, up, d) || s.healthy() > 0
}

// waitClosed waits for ch to be closed, for at most d or until ctx ends,
// and reports whether it was.
func waitClosed(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// heartbeat records hb. It reports false if hb was refused.
func (s *scheduler) heartbeat(hb wire.Heartbeat) bool {
	if !validInvokerID(hb.InvokerID) || len(hb.Runtimes) > wire.MaxHeartbeatRuntimes {
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
	if st.beat != nil {
		close(st.beat)
		st.beat = nil
	}
	st.capacity = min(max(hb.Capacity, 1), maxReported)
	st.inFlight = min(max(hb.InFlight, 0), maxReported)
	st.lastSeen = now
	st.lost = false
	st.runtimes = make(map[string][]byte, len(hb.Runtimes))
	for _, r := range hb.Runtimes {
		if len(r.ID) == runtimeIDLen && len(r.Namespace) <= maxNameLen {
			st.runtimes[r.Namespace] = r.ID
		}
	}
	if hb.ReportsReceived && len(hb.Received) <= wire.MaxHeartbeatReceived {
		s.checkReceivedLocked(st, hb.Received, now)
	}
	if !wasHealthy {
		close(s.up)
		s.up = make(chan struct{})
	}
	return true
}

// checkReceivedLocked counts, for each call to st older than the
// heartbeat timeout, whether the invoker's heartbeat held it, and cancels
// with errStepLost those missing from missesLost heartbeats in a row. The
// grace covers a heartbeat built before the request arrived; two misses,
// a heartbeat interval apart, an answer on its way.
func (s *scheduler) checkReceivedLocked(st *invokerState, received []string, now time.Time) {
	if len(st.calls) == 0 {
		return
	}
	held := make(map[string]bool, len(received))
	for _, id := range received {
		held[id] = true
	}
	for n, c := range st.calls {
		if now.Sub(c.sent) < s.timeout {
			continue
		}
		if held[c.activation] {
			c.misses = 0
			continue
		}
		if c.misses++; c.misses >= missesLost {
			c.cancel(errStepLost)
			delete(st.calls, n)
			st.outstanding--
		}
	}
}

// waitBeat waits for the next heartbeat of invoker id, if it is healthy,
// for at most d or until ctx ends, and reports whether one came.
func (s *scheduler) waitBeat(ctx context.Context, id string, d time.Duration) bool {
	now := s.now()
	s.mu.Lock()
	st, ok := s.invokers[id]
	if !ok || !s.isHealthy(st, now) {
		s.mu.Unlock()
		return false
	}
	if st.beat == nil {
		st.beat = make(chan struct{})
	}
	beat := st.beat
	s.mu.Unlock()
	return waitClosed(ctx, beat, d)
}

// runtimeIDLen is the length of a runtime id (envelope.RuntimeIDSize).
const runtimeIDLen = 32

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

// home chooses the invoker for key (namespace/action) among the healthy
// ones: the one of highest rendezvous weight, or, when it is full, the
// least loaded relative to capacity (ties to the heavier weight). ok is
// false if none is healthy.
func (s *scheduler) home(key string) (id string, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	type cand struct {
		id string
		w  uint64
	}
	var cands []cand
	for id, st := range s.invokers {
		if s.isHealthy(st, now) {
			cands = append(cands, cand{id, homeWeight(id, key)})
		}
	}
	if len(cands) == 0 {
		return "", false
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if a.w != b.w {
			if a.w > b.w {
				return -1
			}
			return 1
		}
		return bytes.Compare([]byte(a.id), []byte(b.id))
	})
	best := cands[0].id
	if st := s.invokers[best]; st.load() >= st.capacity {
		for _, c := range cands[1:] {
			cs, bs := s.invokers[c.id], s.invokers[best]
			if cs.load()*bs.capacity < bs.load()*cs.capacity {
				best = c.id
			}
		}
	}
	return best, true
}

// homeWeight is invoker id's rendezvous weight for key: the same in every
// controller replica.
func homeWeight(id, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// noteRuntime records that invoker id placed namespace ns on runtime rid.
func (s *scheduler) noteRuntime(id, ns string, rid []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.invokers[id]
	if !ok {
		return
	}
	if st.placed == nil {
		st.placed = map[string]placed{}
	}
	if len(st.placed) >= wire.MaxHeartbeatRuntimes {
		clear(st.placed)
	}
	st.placed[ns] = placed{id: slices.Clone(rid), at: s.now()}
}

// runs reports whether invoker id is healthy and runs runtime rid for ns,
// as far as this controller knows.
func (s *scheduler) runs(id, ns string, rid []byte) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.invokers[id]
	if !ok || !s.isHealthy(st, now) || len(rid) != runtimeIDLen {
		return false
	}
	if bytes.Equal(st.runtimes[ns], rid) {
		return true
	}
	p, ok := st.placed[ns]
	return ok && now.Sub(p.at) < placedFor && bytes.Equal(p.id, rid)
}

// begin counts a step of activation sent to invoker id as outstanding and
// registers cancel, which sweep calls with errInvokerLost if the invoker
// stops heart-beating (and a heartbeat with errStepLost if the invoker
// does not hold it); the caller calls the returned done when the call
// returns. ok is false if id is not healthy.
func (s *scheduler) begin(id, activation string, cancel context.CancelCauseFunc) (done func(), ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, known := s.invokers[id]
	if !known || !s.isHealthy(st, now) {
		return nil, false
	}
	s.nextCall++
	n := s.nextCall
	if st.calls == nil {
		st.calls = map[uint64]*stepCall{}
	}
	st.calls[n] = &stepCall{cancel: cancel, activation: activation, sent: now}
	st.outstanding++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := st.calls[n]; ok {
			delete(st.calls, n)
			st.outstanding--
		}
	}, true
}

// sweep cancels, with errInvokerLost, the calls in flight to invokers that
// stopped heart-beating, and returns their ids.
func (s *scheduler) sweep() []string {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []string
	for id, st := range s.invokers {
		if st.lost || s.isHealthy(st, now) {
			continue
		}
		st.lost = true
		if len(st.calls) > 0 {
			lost = append(lost, id)
		}
		for n, c := range st.calls {
			c.cancel(errInvokerLost)
			delete(st.calls, n)
			st.outstanding--
		}
	}
	slices.Sort(lost)
	return lost
}

// markDown treats id as down until its next heartbeat.
func (s *scheduler) markDown(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.invokers[id]; ok {
		st.lastSeen = time.Time{}
	}
}

// directDelta returns how many direct activations invoker id answered
// since its previous heartbeat, given its counts now; an invoker that
// restarted (a count went down) counts from zero again.
func (s *scheduler) directDelta(id string, now wire.DirectCounts) wire.DirectCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.invokers[id]
	if !ok {
		return wire.DirectCounts{}
	}
	last := st.direct
	st.direct = now
	if now.Success < last.Success || now.ApplicationError < last.ApplicationError ||
		now.DeveloperError < last.DeveloperError || now.InternalError < last.InternalError {
		last = wire.DirectCounts{}
	}
	return wire.DirectCounts{
		Success: now.Success - last.Success, ApplicationError: now.ApplicationError - last.ApplicationError,
		DeveloperError: now.DeveloperError - last.DeveloperError, InternalError: now.InternalError - last.InternalError,
	}
}
