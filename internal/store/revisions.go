package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Revisions mirrors the latest store revision of every entry of a KV
// bucket from a metadata-only watch (no values are delivered), so that a
// service can tell whether an entity it holds is still current without a
// store round trip: the controller for the entities a gateway sealed for,
// a gateway for the entities it seals from on the warm path.
//
// It only ever answers "known to be at this revision"; anything else
// (unknown key, other revision, a deletion, the watch not caught up or
// ended) sends the caller to the store. The watch lags the store by the
// time a push takes to arrive: a caller racing a change may pass with the
// revision just replaced, as it could have had it arrived a moment
// earlier. It is a freshness hint, never a security check.
type Revisions struct {
	mu    sync.RWMutex
	ready bool // the watch delivered the bucket's state and still runs
	revs  map[string]revision
}

type revision struct {
	rev     uint64
	deleted bool
}

// NewRevisions returns an empty mirror; Watch fills it.
func NewRevisions() *Revisions { return &Revisions{revs: map[string]revision{}} }

// Watch starts mirroring kv until ctx ends or the returned stop is called.
func (r *Revisions) Watch(ctx context.Context, kv jetstream.KeyValue) (stop func(), err error) {
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("store: watch revisions: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil { // the initial state is complete
				r.SetReady(true)
				continue
			}
			r.Observe(e.Key(), e.Revision(), e.Operation() != jetstream.KeyValuePut)
		}
		r.SetReady(false)
	}()
	return func() {
		_ = w.Stop()
		<-done
	}, nil
}

// SetReady says whether the mirror is caught up with the bucket: Watch
// sets it when the initial state is in and clears it when the watch ends
// (tests of its users set it by hand).
func (r *Revisions) SetReady(ready bool) {
	r.mu.Lock()
	r.ready = ready
	r.mu.Unlock()
}

// Observe records that key is at rev (deleted at rev if deleted), from the
// watch or from the caller's own writes. Older revisions than the one
// known are ignored.
func (r *Revisions) Observe(key string, rev uint64, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.revs[key]; ok && old.rev >= rev {
		return
	}
	r.revs[key] = revision{rev: rev, deleted: deleted}
}

// ObserveDeleted records the caller's own deletion of key, which was at
// revision rev: its deletion marker has a later revision.
func (r *Revisions) ObserveDeleted(key string, rev uint64) { r.Observe(key, rev+1, true) }

// Current reports whether key is known to be at revision rev.
func (r *Revisions) Current(key string, rev uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	got, ok := r.revs[key]
	return r.ready && ok && !got.deleted && got.rev == rev
}

// Known reports whether key was last seen at revision rev, not deleted,
// whether or not the watch is caught up.
func (r *Revisions) Known(key string, rev uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	got, ok := r.revs[key]
	return ok && !got.deleted && got.rev == rev
}

// Latest returns the latest revision known for key, 0 if none or deleted.
func (r *Revisions) Latest(key string) uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if got := r.revs[key]; !got.deleted {
		return got.rev
	}
	return 0
}
