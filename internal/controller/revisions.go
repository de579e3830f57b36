package controller

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/wire"
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
//
// It also keeps the decoded entities of up to maxCachedActions actions,
// each with the revision it was read at (remember): an invocation of an
// action known to be at the revision the gateway sealed for uses the
// cached entity without reading the store. A new revision drops it.
type revisions struct {
	mu     sync.RWMutex
	ready  bool // the watch delivered the bucket's state and still runs
	revs   map[string]revision
	cached int // entries with an action
}

type revision struct {
	rev     uint64
	deleted bool
	action  *wire.Action // decoded at rev, or nil; read-only
}

// maxCachedActions bounds the decoded entities kept (each a few KiB);
// past it the cache starts over.
const maxCachedActions = 1024

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
// watch or from the controller's own writes. Older revisions than the one
// known are ignored.
func (r *revisions) observe(key string, rev uint64, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.revs[key]
	if ok && old.rev >= rev {
		return
	}
	if old.action != nil {
		r.cached--
	}
	r.revs[key] = revision{rev: rev, deleted: deleted}
}

// observeDeleted records the controller's own deletion of key, which was
// at revision rev: its deletion marker has a later revision.
func (r *revisions) observeDeleted(key string, rev uint64) { r.observe(key, rev+1, true) }

// remember keeps a, read from the store at revision rev of key, if that
// is the revision known to be current.
func (r *revisions) remember(key string, rev uint64, a *wire.Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, ok := r.revs[key]
	if !ok || got.deleted || got.rev != rev || got.action != nil {
		return
	}
	if r.cached >= maxCachedActions {
		for k, e := range r.revs {
			e.action = nil
			r.revs[k] = e
		}
		r.cached = 0
	}
	got.action = a
	r.revs[key] = got
	r.cached++
}

// action returns the cached entity of key if key is known to be at
// revision rev. The caller must not modify it.
func (r *revisions) action(key string, rev uint64) (*wire.Action, bool) {
	got, ok := r.at(key, rev)
	return got.action, ok && got.action != nil
}

// current reports whether key is known to be at revision rev.
func (r *revisions) current(key string, rev uint64) bool {
	_, ok := r.at(key, rev)
	return ok
}

// at returns what is known of key if key is known to be at revision rev.
func (r *revisions) at(key string, rev uint64) (revision, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	got, ok := r.revs[key]
	return got, r.ready && ok && !got.deleted && got.rev == rev
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
