package main

import (
	"container/heap"
	"math"
	"time"

	"github.com/dop251/goja"
)

// maxTimers bounds the timers pending at once.
const maxTimers = 100_000

// timer is one setTimeout, setInterval or setImmediate.
type timer struct {
	id       int64
	due      time.Time
	seq      uint64 // order among timers due at the same time
	fn       goja.Callable
	interval time.Duration
	repeat   bool
	index    int // in the heap; -1 when not scheduled
}

// timers is the engine's timer queue: a min-heap by due time, then order
// of scheduling. The engine runs it while it waits for an action's
// promise.
type timers struct {
	heap       timerHeap
	byID       map[int64]*timer
	nextID     int64
	seq        uint64
	activation int // activations started: for tests and diagnostics
}

// add schedules fn after ms milliseconds (Node's rules: below 1 or above
// 2^31-1 is 1; a negative ms from setImmediate is 0) and returns its id,
// or 0 if too many timers are pending.
func (ts *timers) add(now time.Time, fn goja.Callable, ms float64, repeat bool) int64 {
	if ts.byID == nil {
		ts.byID = map[int64]*timer{}
	}
	if len(ts.byID) >= maxTimers {
		return 0
	}
	var d time.Duration
	switch {
	case ms < 0: // setImmediate
	case ms < 1 || ms > math.MaxInt32 || math.IsNaN(ms):
		d = time.Millisecond
	default:
		d = time.Duration(ms * float64(time.Millisecond))
	}
	ts.nextID++
	t := &timer{id: ts.nextID, fn: fn, interval: d, repeat: repeat}
	ts.byID[t.id] = t
	ts.schedule(t, now)
	return t.id
}

func (ts *timers) schedule(t *timer, now time.Time) {
	ts.seq++
	t.due, t.seq = now.Add(t.interval), ts.seq
	heap.Push(&ts.heap, t)
}

// clear cancels a timer.
func (ts *timers) clear(id int64) {
	t := ts.byID[id]
	if t == nil {
		return
	}
	delete(ts.byID, id)
	if t.index >= 0 {
		heap.Remove(&ts.heap, t.index)
	}
}

// refresh restarts a timer's delay.
func (ts *timers) refresh(id int64, now time.Time) {
	t := ts.byID[id]
	if t == nil {
		return
	}
	if t.index >= 0 {
		heap.Remove(&ts.heap, t.index)
	}
	ts.schedule(t, now)
}

// next returns the timer due first, or nil.
func (ts *timers) next() *timer {
	if len(ts.heap) == 0 {
		return nil
	}
	return ts.heap[0]
}

// pending is the number of scheduled timers.
func (ts *timers) pending() int { return len(ts.heap) }

// fire runs the timer t (the first due) and reschedules it if it repeats.
// An exception it throws fails the activation, as an uncaught exception
// fails a Node.js action.
func (e *engine) fire(t *timer) error {
	ts := &e.timers
	heap.Remove(&ts.heap, t.index)
	if t.repeat {
		ts.schedule(t, e.now())
	} else {
		delete(ts.byID, t.id)
	}
	if _, err := t.fn(goja.Undefined()); err != nil {
		msg := e.errorMessage(err)
		return &applicationError{value: mustJSON(map[string]string{"error": "Uncaught exception in a timer callback: " + msg})}
	}
	return nil
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
