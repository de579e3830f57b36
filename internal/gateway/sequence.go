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

// chainError is a failure to resolve a chain, with what to answer.
type chainError struct {
	status int
	msg    string
	err    error // internal detail, logged
}

func (e *chainError) Error() string { return e.msg }
