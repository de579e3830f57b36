package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// Freshness: the untrusted store may serve an older version of an action
// (an older entity, still carrying a record the KMS signed) or one that
// was deleted. The gateway refuses a function record older than the newest
// version it knows of, or not newer than a deletion. It knows of versions
// from what it has seen, and from the KMS's version registry, which
// outlives gateway processes and is shared by every replica: a gateway
// commits a version there once the controller stored it, retires an action
// it deleted, and asks for an action's entry when it has none, or one
// older than latestTTL. So a gateway that restarts refuses a rolled-back
// version at once, and a replica that did not see a newer version deployed
// through another one refuses the rollback within latestTTL.

// latestTTL is how long the gateway uses an action's registry entry before
// it asks the KMS again.
const latestTTL = 30 * time.Second

// maxFreshEntries bounds the freshness memory; when full it forgets
// everything (and so asks the KMS again for each action).
const maxFreshEntries = 100_000

// freshness remembers, per action, the creation time of the newest function
// version known and up to which creation time versions were deleted.
type freshness struct {
	mu       sync.Mutex
	m        map[string]freshEntry
	inflight map[string]chan struct{} // registry reads in progress, by key
}

type freshEntry struct {
	newest  int64     // Created of the newest function record known, unix ms
	deleted int64     // versions created up to then were deleted, unix ms
	synced  time.Time // when the KMS's entry was last merged; zero: never
}

func newFreshness() *freshness {
	return &freshness{m: map[string]freshEntry{}, inflight: map[string]chan struct{}{}}
}

func freshKey(ns, name string) string { return ns + "\x00" + name }

// admit records rec as seen and reports whether it is not older than the
// newest version of its action known, nor older than its deletion.
func (f *freshness) admit(rec *wire.FunctionRecord) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := freshKey(rec.Namespace, rec.Action)
	e := f.m[k]
	if rec.Created < e.newest || rec.Created <= e.deleted {
		return false
	}
	if rec.Created > e.newest {
		f.setLocked(k, freshEntry{newest: rec.Created, deleted: e.deleted, synced: e.synced})
	}
	return true
}

func (f *freshness) setLocked(k string, e freshEntry) {
	if _, ok := f.m[k]; !ok && len(f.m) >= maxFreshEntries {
		clear(f.m)
	}
	f.m[k] = e
}

// merge folds a registry entry in (synced: it was read now).
func (f *freshness) merge(ns, name string, lv *wire.LatestVersion, synced time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := freshKey(ns, name)
	e := f.m[k]
	e.newest = max(e.newest, lv.Created)
	e.deleted = max(e.deleted, lv.Deleted)
	if !synced.IsZero() {
		e.synced = synced
	}
	f.setLocked(k, e)
}

// deleted records the deletion of an action whose newest function version
// was created at created (unix ms, the KMS's clock): that version and every
// older one are dead.
func (f *freshness) deleted(ns, name string, created int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := freshKey(ns, name)
	e := f.m[k]
	e.deleted = max(e.deleted, e.newest, created)
	f.setLocked(k, e)
}

// due reports whether the action's registry entry should be read from the
// KMS now; if another caller is reading it, wait for it first.
func (f *freshness) due(ns, name string, now time.Time) (read bool, done func()) {
	k := freshKey(ns, name)
	for {
		f.mu.Lock()
		e := f.m[k]
		if !e.synced.IsZero() && now.Sub(e.synced) < latestTTL {
			f.mu.Unlock()
			return false, nil
		}
		wait, busy := f.inflight[k]
		if !busy {
			ch := make(chan struct{})
			f.inflight[k] = ch
			f.mu.Unlock()
			return true, func() {
				f.mu.Lock()
				delete(f.inflight, k)
				f.mu.Unlock()
				close(ch)
			}
		}
		f.mu.Unlock()
		<-wait
	}
}

// synced reports whether the action's entry was ever merged from the KMS.
func (f *freshness) synced(ns, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.m[freshKey(ns, name)].synced.IsZero()
}

// admitFresh is admit after bringing the action's entry up to date with the
// KMS's version registry (at most once per latestTTL per action). If the
// KMS cannot be asked, an entry read before is used; an action never read
// is refused (fail closed) with 503.
func (g *Gateway) admitFresh(ctx context.Context, rec *wire.FunctionRecord) *chainError {
	if cerr := g.syncRegistry(ctx, rec.Namespace, rec.Action); cerr != nil {
		return cerr
	}
	if !g.fresh.admit(rec) {
		return &chainError{http.StatusBadGateway, "The controller served an outdated version of " + rec.Action + ".", nil}
	}
	return nil
}

// commitVersion records a stored version in the KMS's registry.
func (g *Gateway) commitVersion(ctx context.Context, rec *wire.FunctionRecord) {
	g.fresh.admit(rec)
	lv, err := g.cfg.KMS.CommitVersion(ctx, rec.FunctionID)
	if err != nil {
		// The version is stored and newer than anything committed: it is
		// admitted; only the protection of this version against a later
		// rollback is weaker until the next deploy.
		g.log.Warn("commit version", "namespace", rec.Namespace, "action", rec.Action, "err", err)
		return
	}
	g.fresh.merge(rec.Namespace, rec.Action, lv, time.Time{})
}

// retireAction records a deletion here and in the KMS's registry.
func (g *Gateway) retireAction(ctx context.Context, ns, name string, created int64) {
	g.fresh.deleted(ns, name, created)
	lv, err := g.cfg.KMS.RetireAction(ctx, ns, name, created)
	if err != nil {
		g.log.Warn("retire action", "namespace", ns, "action", name, "err", err)
		return
	}
	g.fresh.merge(ns, name, lv, time.Time{})
}
