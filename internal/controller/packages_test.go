package controller

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// putPackage stores the package ns/name.
func (e *env) putPackage(ns, name string) *wire.Package {
	e.t.Helper()
	return mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: wire.Package{Namespace: ns, Name: name}})
}

// putBinding stores the package ns/name bound to bns/bname.
func (e *env) putBinding(ns, name, bns, bname string) *wire.Package {
	e.t.Helper()
	return mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: wire.Package{
		Namespace: ns, Name: name, Binding: &wire.Binding{Namespace: bns, Name: bname},
	}})
}

// actionExists reports whether the action ns/name is stored.
func (e *env) actionExists(ns, name string) bool {
	e.t.Helper()
	_, err := call[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: ns, Name: name})
	if err == nil {
		return true
	}
	wantCode(e.t, err, wire.CodeNotFound)
	return false
}

// tooManyAnnotations returns maxAnnotations+1 annotations.
func tooManyAnnotations() []wire.KeyValue {
	anns := make([]wire.KeyValue, maxAnnotations+1)
	for i := range anns {
		anns[i].Key = "k"
	}
	return anns
}

func TestPackagePutGet(t *testing.T) {
	e := newEnv(t)
	p := wire.Package{
		Namespace: "guest", Name: "utils", Publish: true,
		Annotations: []wire.KeyValue{{Key: "description", Value: "tools"}},
		Parameters:  wire.SealedParams("sealed params"),
	}
	got := mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: p})
	want := p
	want.Version, want.Updated = firstVersion, e.clock.Now().UnixMilli()
	checkEncoded(t, got, &want)
	checkEncoded(t, mustCall[wire.Package](e, wire.SubjectPackageGet, wire.EntityRef{Namespace: "guest", Name: "utils"}), &want)

	// Without Overwrite an existing package is a conflict and nothing changes.
	changed := p
	changed.Publish = false
	_, err := call[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: changed})
	wantCode(t, err, wire.CodeConflict)
	checkEncoded(t, mustCall[wire.Package](e, wire.SubjectPackageGet, wire.EntityRef{Namespace: "guest", Name: "utils"}), &want)

	// Updates bump the patch version unless one is given.
	for _, s := range []struct{ version, want string }{
		{"", "0.0.2"},
		{"", "0.0.3"},
		{"2.0.0", "2.0.0"},
		{"", "2.0.1"},
	} {
		e.clock.Advance(time.Second)
		u := changed
		u.Version = s.version
		got := mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: u, Overwrite: true})
		if got.Version != s.want || got.Publish || got.Updated != e.clock.Now().UnixMilli() {
			t.Fatalf("update to %q: %+v", s.version, got)
		}
	}

	// Overwrite of a missing package creates it.
	if got := mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{
		Package: wire.Package{Namespace: "guest", Name: "fresh"}, Overwrite: true,
	}); got.Version != firstVersion {
		t.Fatalf("fresh %+v", got)
	}

	// A binding names another package (which need not be visible here: the
	// gateway checks that).
	b := e.putBinding("guest", "bound", "other", "lib")
	if b.Binding == nil || *b.Binding != (wire.Binding{Namespace: "other", Name: "lib"}) {
		t.Fatalf("binding %+v", b)
	}
	// A binding may become a plain package, not the other way round.
	_, err = call[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Overwrite: true, Package: wire.Package{
		Namespace: "guest", Name: "utils", Binding: &wire.Binding{Namespace: "other", Name: "lib"},
	}})
	wantCode(t, err, wire.CodeBadRequest)
	if got := mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{
		Package: wire.Package{Namespace: "guest", Name: "bound"}, Overwrite: true,
	}); got.Binding != nil || got.Version != "0.0.2" {
		t.Fatalf("unbound %+v", got)
	}
}

// checkEncoded compares the CBOR encodings of got and want.
func checkEncoded(t *testing.T, got, want any) {
	t.Helper()
	if g, w := encode(t, got), encode(t, want); !bytes.Equal(g, w) {
		t.Fatalf("\n got %+v\nwant %+v", got, want)
	}
}

func TestPackagePutInvalid(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", maxNameLen+1)
	tests := []struct {
		name   string
		mutate func(*wire.Package)
	}{
		{"no namespace", func(p *wire.Package) { p.Namespace = "" }},
		{"no name", func(p *wire.Package) { p.Name = "" }},
		{"namespace with two segments", func(p *wire.Package) { p.Namespace = "guest/pkg" }},
		{"name with two segments", func(p *wire.Package) { p.Name = "a/b" }},
		{"name with space at end", func(p *wire.Package) { p.Name = "pkg " }},
		{"name with NATS wildcard", func(p *wire.Package) { p.Name = "p>" }},
		{"name too long", func(p *wire.Package) { p.Name = long }},
		{"namespace too long", func(p *wire.Package) { p.Namespace = long }},
		{"version syntax", func(p *wire.Package) { p.Version = "1 0" }},
		{"version too long", func(p *wire.Package) { p.Version = strings.Repeat("1", maxVersionLen+1) }},
		{"too many annotations", func(p *wire.Package) { p.Annotations = tooManyAnnotations() }},
		{"empty annotation key", func(p *wire.Package) { p.Annotations = []wire.KeyValue{{Value: 1}} }},
		{"annotation key too long", func(p *wire.Package) {
			p.Annotations = []wire.KeyValue{{Key: strings.Repeat("k", maxAnnotationKey+1)}}
		}},
		{"annotations too large", func(p *wire.Package) {
			p.Annotations = []wire.KeyValue{{Key: "big", Value: strings.Repeat("v", maxAnnotationsBytes)}}
		}},
		{"parameters too large", func(p *wire.Package) { p.Parameters = make([]byte, maxSealedParamsLen+1) }},
		{"binding without namespace", func(p *wire.Package) { p.Binding = &wire.Binding{Name: "lib"} }},
		{"binding without name", func(p *wire.Package) { p.Binding = &wire.Binding{Namespace: "other"} }},
		{"binding to a packaged name", func(p *wire.Package) { p.Binding = &wire.Binding{Namespace: "other", Name: "a/b"} }},
		{"binding namespace invalid", func(p *wire.Package) { p.Binding = &wire.Binding{Namespace: "o/x", Name: "lib"} }},
		{"binding to itself", func(p *wire.Package) { p.Binding = &wire.Binding{Namespace: "guest", Name: "pkg"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := wire.Package{Namespace: "guest", Name: "pkg"}
			tc.mutate(&p)
			_, err := call[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: p})
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
	if l := mustCall[wire.PackageList](e, wire.SubjectPackageList, wire.ListRequest{Namespace: "guest"}); len(l.Packages) != 0 {
		t.Fatalf("refused puts stored %+v", l.Packages)
	}
	// At the limits.
	p := wire.Package{
		Namespace: strings.Repeat("n", maxNameLen), Name: strings.Repeat("p", maxNameLen),
		Parameters: make([]byte, maxSealedParamsLen), Version: strings.Repeat("1", maxVersionLen),
	}
	mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: p})
}

func TestPackageRefs(t *testing.T) {
	e := newEnv(t)
	e.putPackage("guest", "pkg")
	tests := []struct {
		ref  wire.EntityRef
		code string
	}{
		{wire.EntityRef{Namespace: "guest", Name: "nope"}, wire.CodeNotFound},
		{wire.EntityRef{Namespace: "other", Name: "pkg"}, wire.CodeNotFound},
		{wire.EntityRef{}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest"}, wire.CodeBadRequest},
		{wire.EntityRef{Name: "pkg"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest", Name: "pkg/a"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest/pkg", Name: "pkg"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest", Name: "*"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest", Name: strings.Repeat("a", maxNameLen+1)}, wire.CodeBadRequest},
	}
	for _, tc := range tests {
		for _, subject := range []string{wire.SubjectPackageGet, wire.SubjectPackageDelete} {
			_, err := call[wire.Package](e, subject, tc.ref)
			wantCode(t, err, tc.code)
		}
	}
	mustCall[wire.Package](e, wire.SubjectPackageGet, wire.EntityRef{Namespace: "guest", Name: "pkg"})
}

func TestPackageDelete(t *testing.T) {
	tests := []struct {
		name    string
		actions []string // in package "pkg" of guest
		force   bool
		code    string // "" = deleted
	}{
		{name: "empty"},
		{name: "empty forced", force: true},
		{name: "not empty", actions: []string{"a"}, code: wire.CodeConflict},
		{name: "forced", actions: []string{"a", "b", "seq"}, force: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.putPackage("guest", "pkg")
			e.putPackage("guest", "pkg2")
			e.putPackage("other", "pkg")
			// Bystanders: another package's action, an action named like
			// the package, and the same package name in another namespace.
			e.put(actionPut(t, "guest", "pkg2/a", "bystander 1"))
			e.put(actionPut(t, "guest", "pkg", "bystander 2"))
			e.put(actionPut(t, "other", "pkg/a", "bystander 3"))
			for _, a := range tc.actions {
				if a == "seq" {
					e.put(wire.ActionPut{Action: wire.Action{
						Namespace: "guest", Name: "pkg/seq", Kind: wire.KindSequence, Components: []string{"/guest/pkg/a"},
					}})
					continue
				}
				e.put(actionPut(t, "guest", "pkg/"+a, "in pkg "+a))
			}
			ref := wire.EntityRef{Namespace: "guest", Name: "pkg", Force: tc.force}
			p, err := call[wire.Package](e, wire.SubjectPackageDelete, ref)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				mustCall[wire.Package](e, wire.SubjectPackageGet, ref)
				for _, a := range tc.actions {
					if !e.actionExists("guest", "pkg/"+a) || e.code(fidOf("in pkg "+a)) == nil {
						t.Fatalf("refused delete removed action %s", a)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Namespace != "guest" || p.Name != "pkg" {
				t.Fatalf("deleted %+v", p)
			}
			_, err = call[wire.Package](e, wire.SubjectPackageGet, ref)
			wantCode(t, err, wire.CodeNotFound)
			for _, a := range tc.actions {
				if e.actionExists("guest", "pkg/"+a) {
					t.Fatalf("action %s survived its package", a)
				}
				if e.code(fidOf("in pkg "+a)) != nil {
					t.Fatalf("code of action %s survived its package", a)
				}
			}
			for i, a := range []wire.ActionRef{{Namespace: "guest", Name: "pkg2/a"}, {Namespace: "guest", Name: "pkg"}, {Namespace: "other", Name: "pkg/a"}} {
				if !e.actionExists(a.Namespace, a.Name) || e.code(fidOf("bystander "+itoa(i+1))) == nil {
					t.Fatalf("bystander %+v deleted", a)
				}
			}
			// The package is gone: its actions cannot come back, and the
			// name can be used again from 0.0.1.
			_, err = call[wire.Action](e, wire.SubjectActionPut, actionPut(t, "guest", "pkg/a", "again"))
			wantCode(t, err, wire.CodeBadRequest)
			if p := e.putPackage("guest", "pkg"); p.Version != firstVersion {
				t.Fatalf("recreated %+v", p)
			}
		})
	}
}

// Actions are stored in a package only if it exists in their namespace and
// is not a binding.
func TestActionPutPackage(t *testing.T) {
	e := newEnv(t)
	e.putPackage("guest", "pkg")
	e.putPackage("other", "theirs")
	e.putBinding("guest", "bound", "guest", "pkg")
	tests := []struct {
		ns, name string
		msg      string // "" = stored
	}{
		{"guest", "pkg/a", ""},
		{"guest", "pkg", ""}, // an action may be named like a package
		{"guest", "nope/a", msgNoPackage},
		{"guest", "theirs/a", msgNoPackage},
		{"other", "pkg/a", msgNoPackage},
		{"guest", "bound/a", msgActionInBinding},
	}
	for _, tc := range tests {
		for _, kind := range []string{wire.KindWasm, wire.KindSequence} {
			p := actionPut(t, tc.ns, tc.name, "f "+tc.ns+" "+tc.name)
			if kind == wire.KindSequence {
				p = wire.ActionPut{Overwrite: true, Action: wire.Action{
					Namespace: tc.ns, Name: tc.name, Kind: kind, Components: []string{"/guest/x"},
				}}
			}
			_, err := call[wire.Action](e, wire.SubjectActionPut, p)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("%s %s/%s: %v", kind, tc.ns, tc.name, err)
				}
				continue
			}
			wantCode(t, err, wire.CodeBadRequest)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%s %s/%s: %v, want %q", kind, tc.ns, tc.name, err, tc.msg)
			}
			if e.actionExists(tc.ns, tc.name) || e.code(fidOf("f "+tc.ns+" "+tc.name)) != nil {
				t.Fatalf("%s %s/%s: refused put stored something", kind, tc.ns, tc.name)
			}
		}
	}
}

func TestPackageList(t *testing.T) {
	e := newEnv(t)
	// Created in this order, a second apart: c, a, b; then a is updated.
	for _, name := range []string{"c", "a", "b"} {
		mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Package: wire.Package{
			Namespace: "guest", Name: name, Parameters: wire.SealedParams("params of " + name),
		}})
		e.clock.Advance(time.Second)
	}
	mustCall[wire.Package](e, wire.SubjectPackagePut, wire.PackagePut{Overwrite: true, Package: wire.Package{Namespace: "guest", Name: "a"}})
	e.putPackage("other", "x")
	e.put(actionPut(t, "guest", "c", "an action, not a package"))

	names := func(l *wire.PackageList) string {
		var s []string
		for _, p := range l.Packages {
			s = append(s, p.Name)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req   wire.ListRequest
		want  string
		count int
	}{
		{wire.ListRequest{Namespace: "guest"}, "a,b,c", 0},
		{wire.ListRequest{Namespace: "guest", Limit: 2}, "a,b", 0},
		{wire.ListRequest{Namespace: "guest", Skip: 1}, "b,c", 0},
		{wire.ListRequest{Namespace: "guest", Skip: 1, Limit: 1}, "b", 0},
		{wire.ListRequest{Namespace: "guest", Skip: 3}, "", 0},
		{wire.ListRequest{Namespace: "guest", Name: "b"}, "b", 0},
		{wire.ListRequest{Namespace: "guest", Count: true}, "", 3},
		{wire.ListRequest{Namespace: "guest", Count: true, Limit: 1}, "", 3},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 1}, "", 2},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 7}, "", 0},
		{wire.ListRequest{Namespace: "guest", Count: true, Name: "c"}, "", 1},
		{wire.ListRequest{Namespace: "other"}, "x", 0},
		{wire.ListRequest{Namespace: "empty"}, "", 0},
		{wire.ListRequest{Namespace: "empty", Count: true}, "", 0},
	}
	for _, tc := range tests {
		l := mustCall[wire.PackageList](e, wire.SubjectPackageList, tc.req)
		if got := names(l); got != tc.want || l.Count != tc.count {
			t.Errorf("list %+v = %q count %d, want %q count %d", tc.req, got, l.Count, tc.want, tc.count)
		}
		for _, p := range l.Packages {
			if p.Parameters != nil || p.Version == "" {
				t.Errorf("listed %+v", p)
			}
		}
	}
	// Get still returns the parameters.
	if p := mustCall[wire.Package](e, wire.SubjectPackageGet, wire.EntityRef{Namespace: "guest", Name: "c"}); string(p.Parameters) != "params of c" {
		t.Fatalf("get %+v", p)
	}
	for _, req := range []wire.ListRequest{
		{},
		{Namespace: "gu est "},
		{Namespace: "guest/pkg"},
		{Namespace: "guest", Skip: -1},
		{Namespace: "guest", Limit: -1},
		{Namespace: "guest", Name: "a/b"},
	} {
		_, err := call[wire.PackageList](e, wire.SubjectPackageList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}

func TestActionListPackage(t *testing.T) {
	e := newEnv(t)
	e.putPackage("guest", "pkg")
	e.putPackage("guest", "pkg2")
	for _, name := range []string{"pkg/a", "top", "pkg/b", "pkg2/c", "pkg"} {
		p := actionPut(t, "guest", name, name)
		p.Action.Parameters = wire.SealedParams("params")
		e.put(p)
		e.clock.Advance(time.Second)
	}
	names := func(l *wire.ActionList) string {
		var s []string
		for _, a := range l.Actions {
			if string(a.Parameters) != "params" || l.ParamsOmitted {
				t.Errorf("listed action %s without its sealed parameters", a.Name)
			}
			s = append(s, a.Name)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req   wire.ListRequest
		want  string
		count int
	}{
		{wire.ListRequest{Namespace: "guest"}, "pkg,pkg2/c,pkg/b,top,pkg/a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/"}, "pkg/b,pkg/a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/", Skip: 1}, "pkg/a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg2/"}, "pkg2/c", 0},
		{wire.ListRequest{Namespace: "guest", Name: "nope/"}, "", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg"}, "pkg", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/a"}, "pkg/a", 0},
		{wire.ListRequest{Namespace: "guest", Count: true}, "", 5},
		{wire.ListRequest{Namespace: "guest", Count: true, Limit: 2}, "", 5},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 2}, "", 3},
		{wire.ListRequest{Namespace: "guest", Count: true, Name: "pkg/"}, "", 2},
		{wire.ListRequest{Namespace: "guest", Count: true, Name: "nope/"}, "", 0},
	}
	for _, tc := range tests {
		l := mustCall[wire.ActionList](e, wire.SubjectActionList, tc.req)
		if got := names(l); got != tc.want || l.Count != tc.count {
			t.Errorf("list %+v = %q count %d, want %q count %d", tc.req, got, l.Count, tc.want, tc.count)
		}
	}
	if a := mustCall[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "pkg/a"}); string(a.Parameters) != "params" {
		t.Fatalf("get %+v", a)
	}
	for _, name := range []string{"/", "pkg//", "a/b/", " /", "p*/"} {
		_, err := call[wire.ActionList](e, wire.SubjectActionList, wire.ListRequest{Namespace: "guest", Name: name})
		wantCode(t, err, wire.CodeBadRequest)
	}
}

// Concurrent creates of one entity: exactly one wins, the others conflict.
func TestEntityPutRace(t *testing.T) {
	e := newEnv(t)
	e.putTrigger("guest", "tick")
	e.put(actionPut(t, "guest", "hello", "hello"))
	puts := map[string]func(i int) any{
		wire.SubjectPackagePut: func(i int) any {
			return wire.PackagePut{Package: wire.Package{Namespace: "guest", Name: "p" + itoa(i)}}
		},
		wire.SubjectTriggerPut: func(i int) any {
			return wire.TriggerPut{Trigger: wire.Trigger{Namespace: "guest", Name: "t" + itoa(i)}}
		},
		wire.SubjectRulePut: func(i int) any {
			return wire.RulePut{Rule: wire.Rule{Namespace: "guest", Name: "r" + itoa(i), Trigger: "/guest/tick", Action: "/guest/hello"}}
		},
	}
	for subject, req := range puts {
		for i := range 10 {
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for j := range errs {
				wg.Go(func() { _, errs[j] = call[struct{}](e, subject, req(i)) })
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
					continue
				}
				wantCode(t, err, wire.CodeConflict)
			}
			if ok != 1 {
				t.Fatalf("%s %d: %d puts succeeded", subject, i, ok)
			}
		}
	}
}
