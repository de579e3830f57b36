package controller

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// revisions mirrors the latest store revision of every action entity from
// a metadata-only watch of the actions bucket, so that checking a
// sequence's components against the revisions the gateway sealed for
// (checkStepRevisions) needs no store round trip per component.
//
// It only ever answers "known to be at this revision"; anything else
// (unknown key, other revision, a deletion, the watch not caught up or
// ended) sends the caller to the store. The watch lags the store by the
// time a push takes to arrive: an invocation racing a change may pass
// with the revision just replaced, as it could have had it arrived a
// moment earlier. That is a freshness hint for an honest controller, as
// the revision check itself is: the gateway checks everything it seals
// with, whatever the controller says is current.
type revisions struct {
	mu    sync.RWMutex
	ready bool // the watch delivered the bucket's state and still runs
	revs  map[string]revision
}

type revision struct {
	rev     uint64
	deleted bool
}

func newRevisions() *revisions { return &revisions{revs: map[string]revision{}} }

// watch starts mirroring kv until ctx ends or the returned stop is called.
func (r *revisions) watch(ctx context.Context, kv jetstream.KeyValue) (stop func(), err error) {
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("controller: watch action revisions: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil { // the initial state is complete
				r.mu.Lock()
				r.ready = true
				r.mu.Unlock()
				continue
			}
			r.observe(e.Key(), e.Revision(), e.Operation() != jetstream.KeyValuePut)
		}
		r.mu.Lock()
		r.ready = false
		r.mu.Unlock()
	}()
	return func() {
		_ = w.Stop()
		<-done
	}, nil
}

// observe records that key is at rev (deleted at rev if deleted), from the
// watch or from the controller's own writes (a deletion at the least
// revision its marker can have). Older revisions than the one known are
// ignored.
func (r *revisions) observe(key string, rev uint64, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.revs[key]; ok && old.rev >= rev {
		return
	}
	r.revs[key] = revision{rev: rev, deleted: deleted}
}

// current reports whether key is known to be at revision rev.
func (r *revisions) current(key string, rev uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	got, ok := r.revs[key]
	return r.ready && ok && !got.deleted && got.rev == rev
}

// latest returns the latest revision known for key, 0 if none or deleted.
func (r *revisions) latest(key string) uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if got := r.revs[key]; !got.deleted {
		return got.rev
	}
	return 0
}
