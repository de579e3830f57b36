package controller

import (
	"sync"

	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// revisions mirrors the latest store revision of every action entity
// (store.Revisions, a metadata-only watch of the actions bucket), so that
// checking a sequence's components against the revisions the gateway
// sealed for (checkStepRevisions) needs no store round trip per component.
// The revision check is a freshness hint for an honest controller: the
// gateway checks everything it seals with, whatever the controller says
// is current.
//
// It also keeps the decoded entities of up to maxCachedActions actions,
// each with the revision it was read at (remember): an invocation of an
// action known to be at the revision the gateway sealed for uses the
// cached entity without reading the store. A new revision makes it stale.
type revisions struct {
	*store.Revisions
	mu      sync.Mutex
	actions map[string]cachedAction
}

type cachedAction struct {
	rev    uint64
	action *wire.Action // read-only
}

// maxCachedActions bounds the decoded entities kept (each a few KiB);
// past it the cache starts over.
const maxCachedActions = 1024

func newRevisions() *revisions {
	return &revisions{Revisions: store.NewRevisions(), actions: map[string]cachedAction{}}
}

// remember keeps a, read from the store at revision rev of key, if that
// is the revision known to be current.
func (r *revisions) remember(key string, rev uint64, a *wire.Action) {
	if !r.Known(key, rev) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.actions[key]; !ok && len(r.actions) >= maxCachedActions {
		clear(r.actions)
	}
	r.actions[key] = cachedAction{rev, a}
}

// action returns the cached entity of key if key is known to be at
// revision rev. The caller must not modify it.
func (r *revisions) action(key string, rev uint64) (*wire.Action, bool) {
	if !r.Current(key, rev) {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got, ok := r.actions[key]
	return got.action, ok && got.rev == rev
}

// cached is the number of entities kept (tests).
func (r *revisions) cached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.actions)
}
