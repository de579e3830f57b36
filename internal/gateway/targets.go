package gateway

import (
	"errors"

	"github.com/clemmys/clemmys/internal/wire"
)

// Cached invocation targets.
//
// An invocation needs the action entity (and, for a sequence, each
// component's) before it can seal: reading it from the controller is a bus
// round trip and a store read per entity, a tenth of a warm invoke and
// most of a sequence's set-up. The gateway therefore seals from entities
// it read before, and names each entity's store revision in the request
// (wire.InvokeRequest.Revision, wire.StepRoute.Revision); the controller,
// which reads the invoked entity anyway, refuses a request sealed for a
// revision that is no longer the stored one (wire.CodeStale), and the
// gateway then resolves and seals again from fresh reads. An update or
// delete through any gateway, or a direct change of the store, is thus seen
// by the next invocation, as without the cache.
//
// Nothing here is trusted more than a fresh read: a cached entity went
// through the same checks when it was read (the KMS signature of its
// function record, the sequence definition MAC, the freshness memory) and
// goes through them again on every invocation. Only the read-only
// invocation path uses the cache; API reads (GET, updates that merge) read
// the store.

// maxCachedActions bounds the cache; when full it starts over.
const maxCachedActions = 4096

// actionCache holds action entities by namespace and name. The entities
// are shared: never modify one.
type actionCache struct {
	m boundedMap[string, *wire.Action]
}

func actionCacheKey(ns, name string) string { return ns + "\x00" + name }

func (c *actionCache) get(ns, name string) *wire.Action {
	a, _ := c.m.get(actionCacheKey(ns, name))
	return a
}

func (c *actionCache) put(a *wire.Action) {
	if a.Revision == 0 {
		return // the controller could not check it: not cacheable
	}
	c.m.put(actionCacheKey(a.Namespace, a.Name), a, maxCachedActions)
}

func (c *actionCache) forget(ns, name string) { c.m.delete(actionCacheKey(ns, name)) }

// lookup is how one resolution reads action entities: from the cache when
// cached is set (hit records that it served one), from the store
// otherwise. A nil *lookup reads the store.
type lookup struct {
	cached bool
	hit    bool
}

// isStale reports whether the controller refused an invocation because an
// entity changed since it was read.
func isStale(cerr *chainError) bool {
	we, ok := errors.AsType[*wire.Error](cerr.err)
	return ok && we.Code == wire.CodeStale
}
