package gateway

import (
	"context"
	"crypto/hpke"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// Resolving what an invocation runs: the entity (loadTarget), then the
// chain of function versions behind it (resolveVersions, resolveChain),
// each KMS-signed function record verified.
//
// Actions live at "/ns/name" or, in a package, "/ns/pkg/name"; on the wire
// the name is "pkg/name". An action in another namespace is reachable only
// through a public package (OpenWhisk's shared packages), possibly through a
// package binding in the caller's namespace.
//
// A package's Publish flag and binding carry the gateway's MAC
// (integrity.go packageTag); an action's "final" annotation is covered by
// its web tag (webtag.go), checked before parameters are merged.

// Messages (OpenWhisk's wording where it has one).
const (
	msgFinalParams = "Request defines parameters that are not allowed (e.g., reserved properties or already defined by the action)."
	msgBadParams   = "The entity's default parameters could not be authenticated."
	// msgAnnotationsTampered: also an action stored before annotations
	// were tagged; an update that sends its annotations tags them.
	msgAnnotationsTampered = "The action's annotations could not be authenticated; update the action with its annotations to store them again."
)

// target is a resolved action and the defaults it inherits from its
// package (and binding).
type target struct {
	action    *wire.Action
	inherited []wire.KeyValue
	// trigger: action is a trigger's stand-in (fire.go), which has no
	// annotations to authenticate.
	trigger bool
}

// splitAction splits an action name "name" or "pkg/name" into its package
// (empty if none) and simple name.
func splitAction(name string) (pkg, simple string, ok bool) {
	pkg, simple, found := strings.Cut(name, "/")
	if !found {
		return "", name, validName(name)
	}
	return pkg, simple, validName(pkg) && validName(simple)
}

// actionPath returns the namespace and the action name ("name" or
// "pkg/name") a request's path names: routes /actions/{name} and
// /actions/{pkg}/{name} (also {name} = "pkg%2Fname"). The namespace "_" is
// the caller's.
func actionPath(r *http.Request) (ns, name string, ok bool) {
	ns = targetNamespace(r)
	name = r.PathValue("name")
	if pkg := r.PathValue("pkg"); pkg != "" {
		name = pkg + "/" + name
	}
	if _, _, ok := splitAction(name); !ok || !validNamespace(ns) {
		return "", "", false
	}
	return ns, name, true
}

// busFailure wraps a failed bus call: the HTTP layer answers it with
// busError.
func busFailure(err error) *chainError { return &chainError{err: err} }

// answer writes the response for a failure of the invocation path.
func (g *Gateway) answer(w http.ResponseWriter, r *http.Request, what string, cerr *chainError) {
	if cerr.status == 0 {
		g.busError(w, r, what, cerr.err)
		return
	}
	if cerr.err != nil || cerr.status >= 500 {
		g.log.Error(what, "tx", txID(r), "status", cerr.status, "msg", cerr.msg, "err", cerr.err)
	}
	g.fail(w, r, cerr.status, "%s", cerr.msg)
}

func notAuthorized(what string) *chainError {
	return &chainError{status: http.StatusForbidden, msg: strings.Replace(msgNotAuthorized, "%s", what, 1)}
}

// loadPackage fetches package ns/name and opens its default parameters.
func (g *Gateway) loadPackage(ctx context.Context, ns, name string) (*wire.Package, []wire.KeyValue, *chainError) {
	var p wire.Package
	cctx, cancel := boundCall(ctx)
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectPackageGet, &wire.EntityRef{Namespace: ns, Name: name}, &p)
	cancel()
	if err != nil {
		return nil, nil, busFailure(err)
	}
	if p.Namespace != ns || p.Name != name {
		return nil, nil, &chainError{http.StatusBadGateway, "The controller answered with another package.", nil}
	}
	params, err := g.openParams(paramsPackage, ns, name, p.Parameters)
	if err != nil {
		return nil, nil, &chainError{http.StatusBadGateway, msgBadParams, err}
	}
	return &p, params, nil
}

// loadTarget loads action name ("name" or "pkg/name") of namespace ns for
// caller. Another namespace's action is reachable only in a public
// package; a package binding leads to the bound package, whose defaults
// the binding's override.
func (g *Gateway) loadTarget(ctx context.Context, caller, ns, name string, lk *lookup) (*target, *chainError) {
	pkg, simple, ok := splitAction(name)
	if !ok {
		return nil, &chainError{http.StatusNotFound, msgNotFound, nil}
	}
	t := &target{}
	actionNS, actionName := ns, name
	if pkg != "" {
		p, params, cerr := g.loadPackage(ctx, ns, pkg)
		if cerr != nil {
			if ns != caller && cerr.status == http.StatusNotFound {
				// A missing package of another namespace answers like a
				// private one: its names cannot be probed.
				return nil, notAuthorized("/" + ns + "/" + pkg)
			}
			return nil, cerr
		}
		if cerr := g.packageAuthentic(ctx, p); cerr != nil {
			return nil, cerr
		}
		if ns != caller && !p.Publish {
			return nil, notAuthorized("/" + ns + "/" + pkg)
		}
		t.inherited = params
		if b := p.Binding; b != nil {
			if !validNamespace(b.Namespace) || !validName(b.Name) {
				return nil, &chainError{http.StatusBadGateway, "The package binding is invalid.", nil}
			}
			bp, bparams, cerr := g.loadPackage(ctx, b.Namespace, b.Name)
			if cerr != nil {
				return nil, cerr
			}
			if cerr := g.packageAuthentic(ctx, bp); cerr != nil {
				return nil, cerr
			}
			if b.Namespace != ns && !bp.Publish {
				return nil, notAuthorized("/" + b.Namespace + "/" + b.Name)
			}
			if bp.Binding != nil {
				return nil, &chainError{http.StatusBadRequest, "A package binding may not refer to another binding.", nil}
			}
			t.inherited = mergeKV(bparams, params)
			actionNS, actionName = b.Namespace, b.Name+"/"+simple
		}
	} else if ns != caller {
		return nil, notAuthorized(ns)
	}
	a, cerr := g.readAction(ctx, actionNS, actionName, lk)
	if cerr != nil {
		return nil, cerr
	}
	// Its annotations and components are of its newest generation.
	if cerr := g.admitEntity(ctx, wire.EntityAction, actionNS, actionName, a.Generation); cerr != nil {
		return nil, cerr
	}
	t.action = a
	return t, nil
}

// readAction reads action entity ns/name, from the cache if lk allows
// (targets.go); a read from the store refreshes the cache.
func (g *Gateway) readAction(ctx context.Context, ns, name string, lk *lookup) (*wire.Action, *chainError) {
	if lk != nil && lk.cached {
		if a := g.targets.get(ns, name); a != nil {
			lk.hit = true
			return a, nil
		}
	}
	var a wire.Action
	cctx, cancel := boundCall(ctx)
	err := bus.Call(cctx, g.cfg.Conn, wire.SubjectActionGet, &wire.ActionRef{Namespace: ns, Name: name}, &a)
	cancel()
	if err != nil {
		if isNotFound(err) {
			g.targets.forget(ns, name)
		}
		return nil, busFailure(err)
	}
	if a.Namespace != ns || a.Name != name {
		return nil, &chainError{http.StatusBadGateway, "The controller answered with another action.", nil}
	}
	g.targets.put(&a)
	return &a, nil
}

// isNotFound reports whether err is the controller's not-found answer.
func isNotFound(err error) bool {
	we, ok := errors.AsType[*wire.Error](err)
	return ok && we.Code == wire.CodeNotFound
}

// step is one resolved step of a chain: the action and its verified
// function record.
type step struct {
	action *wire.Action
	record *wire.FunctionRecord
}

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

// plan is a resolved invocation: the chain's steps with their verified
// function records, what the header says of them, and, for a sequence, the
// controller's routes. Placement fills in each step's runtime.
type plan struct {
	ns      string // the functions' owner: the envelope's namespace
	steps   []step
	suite   envelope.Suite
	chain   []envelope.Step  // the header's steps
	pubs    []hpke.PublicKey // each step's function key
	routes  []wire.StepRoute // a sequence's steps for the controller; nil for an action
	limits  wire.Limits      // the header's: the largest of the steps', clamped
	timeout time.Duration    // the chain's: the sum of the steps'
}

// resolveVersions resolves inv's target into the chain of function
// versions it runs. The controller is untrusted: only records signed by
// the attested KMS for exactly these namespaces and actions name the keys
// the gateway seals to.
func (g *Gateway) resolveVersions(ctx context.Context, inv *invocation) (*plan, *chainError) {
	a := inv.target.action
	steps, cerr := g.resolveChain(withStageBound(ctx), a, 0, nil, inv.lookup)
	if cerr != nil {
		return nil, cerr
	}
	ns := steps[0].action.Namespace
	for _, st := range steps {
		if st.action.Namespace != ns {
			return nil, &chainError{http.StatusBadRequest, "The actions of a sequence must all belong to one namespace: clemmys seals a sequence for one namespace.", nil}
		}
	}
	suite := envelope.Suite(steps[0].record.Suite)
	kem, err := suite.KEM()
	if err != nil {
		return nil, &chainError{http.StatusBadGateway, "The action's function record names an unsupported suite.", err}
	}
	p := &plan{
		ns:     ns,
		steps:  steps,
		suite:  suite,
		chain:  make([]envelope.Step, len(steps)),
		pubs:   make([]hpke.PublicKey, len(steps)),
		limits: g.clampLimits(ns, maxLimits(steps)),
	}
	for j, st := range steps {
		if envelope.Suite(st.record.Suite) != suite {
			return nil, &chainError{http.StatusBadRequest, "The sequence mixes functions of different cipher suites.", nil}
		}
		pub, err := kem.NewPublicKey(st.record.PublicKey)
		if err != nil {
			return nil, &chainError{http.StatusBadGateway, "A function key is malformed.", err}
		}
		p.pubs[j] = pub
		p.chain[j] = envelope.Step{
			Name:       "/" + st.action.Namespace + "/" + st.action.Name,
			FunctionID: st.record.FunctionID,
			CodeDigest: st.record.CodeDigest,
			KeyVersion: st.record.KeyVersion,
		}
		t := time.Duration(g.clampLimits(ns, st.action.Limits).TimeoutMs) * time.Millisecond
		if t <= 0 {
			t = time.Minute
		}
		p.timeout += t
		if a.Kind == kindSequence {
			p.routes = append(p.routes, wire.StepRoute{
				Namespace: st.action.Namespace, Action: st.action.Name, Version: st.action.Version,
				FunctionID: st.record.FunctionID, Limits: st.action.Limits, Revision: st.action.Revision,
			})
		}
	}
	return p, nil
}
