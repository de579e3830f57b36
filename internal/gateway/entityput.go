package gateway

import (
	"context"
	"net/http"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// putBody is the JSON body of a PUT of a package, trigger or rule.
type putBody interface {
	// kvLists returns its key-value lists (parameters, annotations) with
	// their names, as decoded.
	kvLists() []kvList
}

type kvList struct {
	kvs  *[]wire.KeyValue
	what string
}

func (b *packageBody) kvLists() []kvList {
	return []kvList{{b.Parameters, "parameters"}, {b.Annotations, "annotations"}}
}

func (b *triggerBody) kvLists() []kvList {
	return []kvList{{b.Parameters, "parameters"}, {b.Annotations, "annotations"}}
}

func (b *ruleBody) kvLists() []kvList { return []kvList{{b.Annotations, "annotations"}} }

// entityPut is what a PUT of a package, trigger or rule starts from
// (startPut): the entity named by the path, the overwrite flag, the entity
// it replaces (nil if none) and a context bounded by busTimeout.
type entityPut[T any] struct {
	ctx       context.Context
	ns, name  string
	overwrite bool
	existing  *T
}

// startPut decodes the body of a PUT of an entity of kind (beginPut),
// checks its key-value lists, loads the entity it would replace with fetch
// and refuses (409) to replace one without overwrite. When it reports
// false it has answered the request. The caller calls cancel.
func startPut[T any](g *Gateway, w http.ResponseWriter, r *http.Request, kind string, body putBody,
	fetch func(ctx context.Context, ns, name string) (*T, *chainError)) (p entityPut[T], cancel context.CancelFunc, ok bool) {
	cancel = func() {}
	ns, name, overwrite, ok := g.beginPut(w, r, kind, body)
	if !ok {
		return p, cancel, false
	}
	for _, l := range body.kvLists() {
		if msg := checkKVs(l.kvs, l.what); msg != "" {
			g.fail(w, r, http.StatusBadRequest, "%s", msg)
			return p, cancel, false
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	existing, cerr := fetch(ctx, ns, name)
	if cerr != nil {
		g.answer(w, r, "load "+kind, cerr)
		return p, cancel, false
	}
	if existing != nil && !overwrite {
		g.fail(w, r, http.StatusConflict, msgConflict)
		return p, cancel, false
	}
	return entityPut[T]{ctx: ctx, ns: ns, name: name, overwrite: overwrite, existing: existing}, cancel, true
}

// store sends put to the controller subject and returns the entity it
// stored, which must be the one put (ref gives its namespace and name).
// When it reports false it has answered the request.
func (p *entityPut[T]) store(g *Gateway, w http.ResponseWriter, r *http.Request, kind, subject string, put any,
	ref func(*T) (ns, name string)) (*T, bool) {
	var stored T
	if err := bus.Call(p.ctx, g.cfg.Conn, subject, put, &stored); err != nil {
		g.busError(w, r, "store "+kind, err)
		return nil, false
	}
	if ns, name := ref(&stored); ns != p.ns || name != p.name {
		g.fail(w, r, http.StatusBadGateway, "The controller answered with another %s.", kind)
		return nil, false
	}
	return &stored, true
}
