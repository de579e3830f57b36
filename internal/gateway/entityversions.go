package gateway

import (
	"context"
	"encoding/binary"
	"net/http"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// Entity generations: rules, packages and action entities (sequence
// definitions, annotations) have no function record whose creation time
// orders their versions, so the gateway gives each stored version a
// generation (unix ms of the gateway's clock, or one more than the newest
// known, whichever is larger) and MACs it with the entity (ruleTag,
// packageTag, definitionTag, webTag). It commits every stored generation
// to the KMS's version registry (kms/versions.go, entry
// wire.EntityKey(kind, name)) and retires the entity there when it deletes
// it. An entity is honoured only if its MAC verifies and its generation is
// not older than the newest committed one, nor at or before a deletion:
// the controller cannot serve an older version of a rule, package or
// sequence (still carrying a valid MAC) or resurrect a deleted one. The
// registry entries are cached like those of function versions
// (freshness.go, latestTTL).
//
// Entities stored by gateways before generations existed carry a MAC in
// the first format and generation 0. They are honoured while the registry
// knows nothing of the entity (never rewritten or deleted by a gateway of
// this version), with the first format's coverage; once rewritten they
// carry a generation, and the registry refuses the old value.

// entityKey is the freshness memory's key of an entity.
func entityKey(kind, name string) string { return wire.EntityKey(kind, name) }

// syncRegistry brings the registry entry of name (an action, or an entity
// key) of ns up to date (at most once per latestTTL). If the KMS cannot be
// asked, an entry read before is used; one never read fails closed (503).
func (g *Gateway) syncRegistry(ctx context.Context, ns, name string) *chainError {
	read, done := g.fresh.due(ns, name, g.now())
	if !read {
		return nil
	}
	cctx, cancel := boundCall(ctx)
	lv, err := g.cfg.KMS.LatestVersion(cctx, ns, name)
	cancel()
	if err == nil {
		g.fresh.merge(ns, name, lv, g.now())
	}
	done()
	if err != nil {
		g.log.Warn("version registry", "namespace", ns, "entity", name, "err", err)
		if !g.fresh.synced(ns, name) {
			return &chainError{http.StatusServiceUnavailable, "The key management service cannot confirm that this is the current version; retry shortly.", nil}
		}
	}
	return nil
}

// admitEntity reports (nil) whether generation gen of entity name of kind
// is not outdated nor deleted.
func (g *Gateway) admitEntity(ctx context.Context, kind, ns, name string, gen int64) *chainError {
	key := entityKey(kind, name)
	if cerr := g.syncRegistry(ctx, ns, key); cerr != nil {
		return cerr
	}
	if !g.fresh.admitGeneration(ns, key, gen) {
		return &chainError{http.StatusBadGateway, "The controller served an outdated or deleted version of the " + kind + " " + name + ".", nil}
	}
	return nil
}

// nextGeneration returns the generation for a new version of an entity:
// newer than any known (prev: the stored one's) and than its deletions.
func (g *Gateway) nextGeneration(ctx context.Context, kind, ns, name string, prev int64) (int64, *chainError) {
	key := entityKey(kind, name)
	if cerr := g.syncRegistry(ctx, ns, key); cerr != nil {
		return 0, cerr
	}
	e := g.fresh.get(ns, key)
	return max(g.now().UnixMilli(), e.newest+1, e.deleted+1, prev+1), nil
}

// commitEntity records a stored generation here and in the registry.
func (g *Gateway) commitEntity(ctx context.Context, kind, ns, name string, gen int64) {
	key := entityKey(kind, name)
	g.fresh.admitGeneration(ns, key, gen)
	lv, err := g.cfg.KMS.CommitEntity(ctx, ns, key, gen)
	if err != nil {
		// Stored and newer than anything committed, it is admitted; only
		// its protection against a later rollback is weaker until the
		// next update.
		g.log.Warn("commit entity", "namespace", ns, "entity", key, "err", err)
		return
	}
	g.fresh.merge(ns, key, lv, time.Time{})
}

// retireEntity records a deletion here and in the registry: generation gen
// and every older one are dead (also legacy, generation 0, values).
func (g *Gateway) retireEntity(ctx context.Context, kind, ns, name string, gen int64) {
	key := entityKey(kind, name)
	gen = max(gen, 1)
	g.fresh.deleted(ns, key, gen)
	lv, err := g.cfg.KMS.RetireAction(ctx, ns, key, gen)
	if err != nil {
		g.log.Warn("retire entity", "namespace", ns, "entity", key, "err", err)
		return
	}
	g.fresh.merge(ns, key, lv, time.Time{})
}

// admitGeneration records generation gen of entity key as seen and
// reports whether it is not older than the newest known nor at or before
// a deletion. Generation 0 (legacy) passes only while nothing is known.
func (f *freshness) admitGeneration(ns, key string, gen int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := freshKey(ns, key)
	e := f.m[k]
	if gen < e.newest || (e.deleted > 0 && gen <= e.deleted) {
		return false
	}
	if gen > e.newest {
		f.setLocked(k, freshEntry{newest: gen, deleted: e.deleted, synced: e.synced})
	}
	return true
}

// get returns the entry of name of ns.
func (f *freshness) get(ns, name string) freshEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[freshKey(ns, name)]
}

// tagMAC is HMAC-SHA256(seqKey, label || lp(part)...).
func (g *Gateway) tagMAC(label string, parts ...[]byte) []byte {
	m := g.seqMAC.get()
	m.Write([]byte(label))
	for _, p := range parts {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(p)))
		m.Write(l[:])
		m.Write(p)
	}
	return g.seqMAC.sum(m)
}

// genBytes encodes a generation for a MAC (8 bytes, big endian).
func genBytes(gen int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(gen)) }
