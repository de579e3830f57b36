package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Sequence limits and messages (OpenWhisk's wording where it has one).
const (
	// maxSequenceDepth bounds the nesting of sequences in sequences, which
	// also stops a cycle created by later updates.
	maxSequenceDepth = 8

	msgNoComponent     = "Sequence component does not exist."
	msgSelfReference   = "Sequence may not refer to itself."
	msgTooManySteps    = "Too many actions in the sequence."
	msgBadComponent    = "Sequence components must be fully qualified action names: /namespace/action."
	msgSequenceTooDeep = "The sequence nests sequences too deeply or refers to itself."
)

// componentRef parses a sequence component: "/ns/action" or
// "/ns/pkg/action", where "_" is the caller's namespace. It returns the
// namespace and the action name ("action" or "pkg/action").
func componentRef(c, caller string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(c, "/")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	if _, _, ok := splitAction(name); !ok {
		return "", "", false
	}
	if ns == "_" {
		ns = caller
	}
	return ns, name, validNamespace(ns)
}

// putSequence stores a sequence: its components must exist (in the
// caller's namespace), it may not name itself, and it has at most
// wire.MaxSequenceComponents components. Names are stored fully qualified.
// putAction has already checked the name, the metadata and, without
// overwrite, that the action does not exist; prev is the stored action on
// an update. An update without exec keeps the stored components (after
// checking their tag).
func (g *Gateway) putSequence(w http.ResponseWriter, r *http.Request, ns, name string, overwrite bool, body *actionBody, prev *wire.Action) {
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var qualified []string
	if body.Exec == nil {
		if !g.checkDefinition(prev) {
			g.fail(w, r, http.StatusBadGateway, "The sequence's definition could not be authenticated.")
			return
		}
		qualified = prev.Components
	} else {
		comps := body.Exec.Components
		if len(comps) == 0 {
			g.fail(w, r, http.StatusBadRequest, "A sequence needs at least one component.")
			return
		}
		if len(comps) > wire.MaxSequenceComponents {
			g.fail(w, r, http.StatusBadRequest, msgTooManySteps)
			return
		}
		if body.Exec.Code != nil && *body.Exec.Code != "" {
			g.fail(w, r, http.StatusBadRequest, "A sequence has components, not code.")
			return
		}
		qualified = make([]string, 0, len(comps))
		for _, c := range comps {
			cns, cname, ok := componentRef(c, ns)
			if !ok {
				g.fail(w, r, http.StatusBadRequest, msgBadComponent)
				return
			}
			if cns == ns && cname == name {
				g.fail(w, r, http.StatusBadRequest, msgSelfReference)
				return
			}
			// Another namespace's action is a component only in a
			// public package (loadTarget checks).
			if _, cerr := g.loadTarget(ctx, ns, cns, cname, nil); cerr != nil {
				if cerr.status == http.StatusForbidden || (cerr.status == 0 && isNotFound(cerr.err)) {
					g.fail(w, r, http.StatusBadRequest, msgNoComponent)
					return
				}
				g.answer(w, r, "check sequence component", cerr)
				return
			}
			qualified = append(qualified, "/"+cns+"/"+cname)
		}
	}
	a, ok := g.mergeMeta(w, r, ns, name, body, prev)
	if !ok {
		return
	}
	a.Kind = kindSequence
	a.Components = qualified
	// The controller stores the components; only this tag lets the gateway
	// trust them again at invocation time.
	a.DefinitionTag = g.definitionTag(ns, name, a.Generation, qualified)
	put := wire.ActionPut{Action: a, Overwrite: overwrite}
	var stored wire.Action
	g.targets.forget(ns, name)
	if err := bus.Call(ctx, g.cfg.Conn, wire.SubjectActionPut, &put, &stored); err != nil {
		g.busError(w, r, "store sequence", err)
		return
	}
	if stored.Generation == a.Generation {
		g.commitEntity(ctx, wire.EntityAction, ns, name, a.Generation)
	}
	g.log.Info("sequence deployed", "namespace", ns, "sequence", name, "version", stored.Version, "components", len(qualified))
	g.writeOwnAction(w, r, &stored, nil)
}

// step is one resolved step of a chain: the action and its verified
// function record.
type step struct {
	action *wire.Action
	record *wire.FunctionRecord
}

// chainError is a failure to resolve a chain, with what to answer.
type chainError struct {
	status int
	msg    string
	err    error // internal detail, logged
}

func (e *chainError) Error() string { return e.msg }

// resolveChain flattens an action (or a sequence, recursively) into the
// steps of a chain, fetching every component from the controller and
// verifying its KMS-signed function record against the namespace and name
// it was fetched for: the untrusted controller cannot substitute another
// function.
func (g *Gateway) resolveChain(ctx context.Context, a *wire.Action, depth int, out []step, lk *lookup) ([]step, *chainError) {
	if a.Kind != kindSequence {
		rec, err := g.verifyRecord(a.Function)
		if err != nil || rec.Namespace != a.Namespace || rec.Action != a.Name {
			return nil, &chainError{http.StatusBadGateway, "The action's function record could not be verified.", err}
		}
		if cerr := g.admitFresh(ctx, rec); cerr != nil {
			return nil, cerr
		}
		if len(out) >= wire.MaxSequenceComponents {
			return nil, &chainError{http.StatusBadRequest, msgTooManySteps, nil}
		}
		return append(out, step{action: a, record: rec}), nil
	}
	if !g.checkDefinition(a) {
		return nil, &chainError{http.StatusBadGateway, "The sequence's definition could not be authenticated.", nil}
	}
	if depth >= maxSequenceDepth {
		return nil, &chainError{http.StatusBadRequest, msgSequenceTooDeep, nil}
	}
	for _, c := range a.Components {
		cns, cname, ok := componentRef(c, a.Namespace)
		if !ok {
			return nil, &chainError{http.StatusBadGateway, "The sequence's stored components are invalid.", nil}
		}
		// Resolved with the rights of the sequence's owner: its own
		// actions, and other namespaces' public packages.
		t, cerr := g.loadTarget(ctx, a.Namespace, cns, cname, lk)
		if cerr != nil {
			switch {
			case cerr.status == 0 && isNotFound(cerr.err):
				return nil, &chainError{http.StatusBadRequest, msgNoComponent + " (" + c + ")", nil}
			case cerr.status == 0:
				return nil, &chainError{http.StatusBadGateway, "A sequence component could not be loaded.", cerr.err}
			}
			return nil, cerr
		}
		if out, cerr = g.resolveChain(ctx, t.action, depth+1, out, lk); cerr != nil {
			return nil, cerr
		}
	}
	return out, nil
}

// maxLimits is the header's limits for a chain: the largest of each
// component's (one set of authenticated limits covers the chain).
func maxLimits(steps []step) wire.Limits {
	var l wire.Limits
	for _, s := range steps {
		sl := s.action.Limits
		l.TimeoutMs = max(l.TimeoutMs, sl.TimeoutMs)
		l.MemoryMB = max(l.MemoryMB, sl.MemoryMB)
		l.LogsMB = max(l.LogsMB, sl.LogsMB)
		l.Concurrency = max(l.Concurrency, sl.Concurrency)
	}
	return l
}
