package controller

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestActionPutGet(t *testing.T) {
	e := newEnv(t)
	p := actionPut(t, "guest", "hello", "f1")
	p.Action.Annotations = []wire.KeyValue{{Key: "exec", Value: "wasm"}}
	got := e.put(p)
	want := wire.Action{
		Namespace: "guest", Name: "hello", Version: "0.0.1", Kind: "wasm",
		Limits:      wire.Limits{TimeoutMs: defaultTimeoutMs, MemoryMB: defaultMemoryMB, LogsMB: defaultLogsMB, Concurrency: 1},
		Annotations: p.Action.Annotations, Function: p.Action.Function, CodeSize: 1234,
		Updated: e.clock.Now().UnixMilli(),
	}
	checkAction(t, got, &want)
	checkAction(t, mustCall[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest", Name: "hello"}), &want)

	if c := e.code(fidOf("f1")); !bytes.Equal(c, p.SealedCode) {
		t.Fatalf("code object = %q, want %q", c, p.SealedCode)
	}

	// Packages: "pkg/action" names (of an existing package) and "ns/pkg"
	// namespaces are valid.
	e.putPackage("guest", "pkg")
	e.put(actionPut(t, "guest", "pkg/hello", "f2"))
	e.put(actionPut(t, "guest/pkg", "hello", "f3"))
	if a := mustCall[wire.Action](e, wire.SubjectActionGet, wire.ActionRef{Namespace: "guest/pkg", Name: "hello"}); a.Name != "hello" {
		t.Fatalf("get guest/pkg hello = %+v", a)
	}
}

// checkAction compares two actions but for the revision, which belongs to
// a read (TestInvokeRevision checks it).
func checkAction(t *testing.T, got, want *wire.Action) {
	t.Helper()
	gr := *got
	gr.Revision = want.Revision
	g, err := bus.Marshal(&gr)
	if err != nil {
		t.Fatal(err)
	}
	w, err := bus.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("action\n got %+v\nwant %+v", got, want)
	}
}

func TestActionPutOverwrite(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "v1"))

	// Without Overwrite an existing action is a conflict and nothing changes.
	_, err := call[wire.Action](e, wire.SubjectActionPut, actionPut(t, "guest", "hello", "v2"))
	wantCode(t, err, wire.CodeConflict)
	if e.code(fidOf("v2")) != nil {
		t.Fatal("refused put left its code object behind")
	}
	if e.code(fidOf("v1")) == nil {
		t.Fatal("refused put deleted the existing code")
	}

	steps := []struct {
		seed        string
		version     string // requested
		wantVersion string
	}{
		{"v2", "", "0.0.2"},
		{"v3", "", "0.0.3"},
		{"v3", "", "0.0.4"}, // same function id: code replaced in place
		{"v4", "1.2.3", "1.2.3"},
		{"v5", "", "1.2.4"},
	}
	prev := "v1"
	for _, s := range steps {
		e.clock.Advance(time.Second)
		p := actionPut(t, "guest", "hello", s.seed)
		p.Overwrite = true
		p.Action.Version = s.version
		p.SealedCode = []byte("code " + s.seed + " " + s.wantVersion)
		a := e.put(p)
		if a.Version != s.wantVersion {
			t.Fatalf("%s: version %q, want %q", s.seed, a.Version, s.wantVersion)
		}
		if a.Updated != e.clock.Now().UnixMilli() {
			t.Fatalf("%s: updated %d, want %d", s.seed, a.Updated, e.clock.Now().UnixMilli())
		}
		if c := e.code(fidOf(s.seed)); !bytes.Equal(c, p.SealedCode) {
			t.Fatalf("%s: code %q, want %q", s.seed, c, p.SealedCode)
		}
		if prev != s.seed && e.code(fidOf(prev)) != nil {
			t.Fatalf("%s: code of replaced version %s not deleted", s.seed, prev)
		}
		prev = s.seed
	}

	// Overwrite of a missing action creates it.
	p := actionPut(t, "guest", "fresh", "fresh")
	p.Overwrite = true
	if a := e.put(p); a.Version != firstVersion {
		t.Fatalf("version %q", a.Version)
	}
}

func TestActionDelete(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.put(actionPut(t, "guest", "other", "f2"))

	a := mustCall[wire.Action](e, wire.SubjectActionDelete, wire.ActionRef{Namespace: "guest", Name: "hello"})
	if a.Name != "hello" || a.Version != firstVersion {
		t.Fatalf("deleted %+v", a)
	}
	if e.code(fidOf("f1")) != nil {
		t.Fatal("code object not deleted with the action")
	}
	if e.code(fidOf("f2")) == nil {
		t.Fatal("another action's code was deleted")
	}
	for _, subject := range []string{wire.SubjectActionGet, wire.SubjectActionDelete} {
		_, err := call[wire.Action](e, subject, wire.ActionRef{Namespace: "guest", Name: "hello"})
		wantCode(t, err, wire.CodeNotFound)
	}
	l := mustCall[wire.ActionList](e, wire.SubjectActionList, wire.ListRequest{Namespace: "guest"})
	if len(l.Actions) != 1 || l.Actions[0].Name != "other" {
		t.Fatalf("list after delete: %+v", l.Actions)
	}
	// The name can be used again, from version 0.0.1.
	if a := e.put(actionPut(t, "guest", "hello", "f3")); a.Version != firstVersion {
		t.Fatalf("recreated version %q", a.Version)
	}
}

func TestActionNotFound(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	for _, ref := range []wire.ActionRef{
		{Namespace: "guest", Name: "nope"},
		{Namespace: "other", Name: "hello"},
		{Namespace: "guest", Name: "pkg/hello"},
	} {
		for _, subject := range []string{wire.SubjectActionGet, wire.SubjectActionDelete} {
			_, err := call[wire.Action](e, subject, ref)
			wantCode(t, err, wire.CodeNotFound)
		}
	}
}

func TestActionPutInvalid(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", maxNameLen+1)
	tests := []struct {
		name   string
		mutate func(*wire.ActionPut)
	}{
		{"no namespace", func(p *wire.ActionPut) { p.Action.Namespace = "" }},
		{"no name", func(p *wire.ActionPut) { p.Action.Name = "" }},
		{"name with space at end", func(p *wire.ActionPut) { p.Action.Name = "hello " }},
		{"name starting with dash", func(p *wire.ActionPut) { p.Action.Name = "-hello" }},
		{"name with dot segment", func(p *wire.ActionPut) { p.Action.Name = "a/../b" }},
		{"name with three segments", func(p *wire.ActionPut) { p.Action.Name = "a/b/c" }},
		{"name with empty segment", func(p *wire.ActionPut) { p.Action.Name = "a//b" }},
		{"name with trailing slash", func(p *wire.ActionPut) { p.Action.Name = "a/" }},
		{"name with NATS wildcard", func(p *wire.ActionPut) { p.Action.Name = "a>" }},
		{"non-ASCII name", func(p *wire.ActionPut) { p.Action.Name = "héllo" }},
		{"name too long", func(p *wire.ActionPut) { p.Action.Name = long }},
		{"namespace too long", func(p *wire.ActionPut) { p.Action.Namespace = long }},
		{"namespace with three segments", func(p *wire.ActionPut) { p.Action.Namespace = "a/b/c" }},
		{"no code", func(p *wire.ActionPut) { p.SealedCode = nil }},
		{"no function record", func(p *wire.ActionPut) { p.Action.Function = wire.SignedRecord{} }},
		{"malformed function record", func(p *wire.ActionPut) { p.Action.Function.Record = []byte{0xff, 0x00} }},
		{"function record too large", func(p *wire.ActionPut) {
			p.Action.Function.Record = make([]byte, maxRecordLen+1)
		}},
		{"function record signature too large", func(p *wire.ActionPut) {
			p.Action.Function.Sig = make([]byte, maxSigLen+1)
		}},
		{"no function id", func(p *wire.ActionPut) { p.Action.Function = signed(t, nil) }},
		{"function id too long", func(p *wire.ActionPut) {
			p.Action.Function = signed(t, make([]byte, maxFunctionIDLen+1))
		}},
		{"kind", func(p *wire.ActionPut) { p.Action.Kind = "python:3" }},
		{"timeout", func(p *wire.ActionPut) { p.Action.Limits.TimeoutMs = maxTimeoutMs + 1 }},
		{"memory", func(p *wire.ActionPut) { p.Action.Limits.MemoryMB = maxMemoryMB + 1 }},
		{"logs", func(p *wire.ActionPut) { p.Action.Limits.LogsMB = maxLogsMB + 1 }},
		{"concurrency", func(p *wire.ActionPut) { p.Action.Limits.Concurrency = maxConcurrency + 1 }},
		{"version syntax", func(p *wire.ActionPut) { p.Action.Version = "1.0 beta" }},
		{"version too long", func(p *wire.ActionPut) { p.Action.Version = strings.Repeat("1", maxVersionLen+1) }},
		{"code size", func(p *wire.ActionPut) { p.Action.CodeSize = -1 }},
		{"too many annotations", func(p *wire.ActionPut) {
			p.Action.Annotations = make([]wire.KeyValue, maxAnnotations+1)
			for i := range p.Action.Annotations {
				p.Action.Annotations[i].Key = "k"
			}
		}},
		{"empty annotation key", func(p *wire.ActionPut) { p.Action.Annotations = []wire.KeyValue{{Value: 1}} }},
		{"annotation key too long", func(p *wire.ActionPut) {
			p.Action.Annotations = []wire.KeyValue{{Key: strings.Repeat("k", maxAnnotationKey+1)}}
		}},
		{"annotations too large", func(p *wire.ActionPut) {
			p.Action.Annotations = []wire.KeyValue{{Key: "big", Value: strings.Repeat("v", maxAnnotationsBytes)}}
		}},
		{"parameters too large", func(p *wire.ActionPut) { p.Action.Parameters = make([]byte, maxSealedParamsLen+1) }},
		{"definition tag too large", func(p *wire.ActionPut) { p.Action.DefinitionTag = make([]byte, maxDefinitionTagLen+1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := actionPut(t, "guest", "hello", "seed "+tc.name)
			tc.mutate(&p)
			_, err := call[wire.Action](e, wire.SubjectActionPut, p)
			wantCode(t, err, wire.CodeBadRequest)
			if e.code(fidOf("seed "+tc.name)) != nil {
				t.Fatal("refused put stored code")
			}
		})
	}
	// Limits and names at the maximum are fine.
	p := actionPut(t, "guest", "max", "max")
	p.Action.Limits = wire.Limits{TimeoutMs: maxTimeoutMs, MemoryMB: maxMemoryMB, LogsMB: maxLogsMB, Concurrency: maxConcurrency}
	p.Action.Namespace = strings.Repeat("n", maxNameLen) + "/" + strings.Repeat("p", maxNameLen)
	p.Action.Name = strings.Repeat("a", maxNameLen)
	if a := e.put(p); a.Limits != p.Action.Limits {
		t.Fatalf("limits %+v", a.Limits)
	}
	p = actionPut(t, strings.Repeat("n", maxNameLen), strings.Repeat("p", maxNameLen)+"/"+strings.Repeat("a", maxNameLen), "max2")
	e.putPackage(p.Action.Namespace, strings.Repeat("p", maxNameLen))
	e.put(p)
}

func TestActionRefInvalid(t *testing.T) {
	e := newEnv(t)
	for _, ref := range []wire.ActionRef{
		{},
		{Namespace: "guest"},
		{Name: "hello"},
		{Namespace: "guest", Name: "*"},
		{Namespace: "gu.est>", Name: "hello"},
		{Namespace: "guest", Name: strings.Repeat("a", maxNameLen+1)},
	} {
		for _, subject := range []string{wire.SubjectActionGet, wire.SubjectActionDelete} {
			_, err := call[wire.Action](e, subject, ref)
			wantCode(t, err, wire.CodeBadRequest)
		}
	}
}

func TestActionList(t *testing.T) {
	e := newEnv(t)
	// Created in this order, a second apart: c, a, b; then a is updated.
	for _, name := range []string{"c", "a", "b"} {
		e.put(actionPut(t, "guest", name, name))
		e.clock.Advance(time.Second)
	}
	p := actionPut(t, "guest", "a", "a2")
	p.Overwrite = true
	e.put(p)
	// Same second as nothing else; other namespaces are not listed.
	e.put(actionPut(t, "other", "x", "x"))
	e.put(actionPut(t, "guest/pkg", "y", "y"))

	names := func(l *wire.ActionList) string {
		var s []string
		for _, a := range l.Actions {
			s = append(s, a.Name)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req  wire.ListRequest
		want string
	}{
		{wire.ListRequest{Namespace: "guest"}, "a,b,c"},
		{wire.ListRequest{Namespace: "guest", Limit: 2}, "a,b"},
		{wire.ListRequest{Namespace: "guest", Skip: 1}, "b,c"},
		{wire.ListRequest{Namespace: "guest", Skip: 1, Limit: 1}, "b"},
		{wire.ListRequest{Namespace: "guest", Skip: 3}, ""},
		{wire.ListRequest{Namespace: "guest", Skip: 100, Limit: 5}, ""},
		{wire.ListRequest{Namespace: "guest", Limit: maxListLimit + 100}, "a,b,c"},
		{wire.ListRequest{Namespace: "guest", Name: "b"}, "b"},
		{wire.ListRequest{Namespace: "other"}, "x"},
		{wire.ListRequest{Namespace: "guest/pkg"}, "y"},
		{wire.ListRequest{Namespace: "empty"}, ""},
	}
	for _, tc := range tests {
		l := mustCall[wire.ActionList](e, wire.SubjectActionList, tc.req)
		if got := names(l); got != tc.want {
			t.Errorf("list %+v = %q, want %q", tc.req, got, tc.want)
		}
	}

	// Ties on the update time are broken by name.
	e.clock.Advance(time.Second)
	for _, n := range []string{"t2", "t1"} {
		e.put(actionPut(t, "ties", n, n))
	}
	if got := names(mustCall[wire.ActionList](e, wire.SubjectActionList, wire.ListRequest{Namespace: "ties"})); got != "t1,t2" {
		t.Errorf("ties: %q", got)
	}

	for _, req := range []wire.ListRequest{
		{},
		{Namespace: "gu est "},
		{Namespace: "guest", Skip: -1},
		{Namespace: "guest", Limit: -1},
		{Namespace: "guest", Name: "a/b/c"},
	} {
		_, err := call[wire.ActionList](e, wire.SubjectActionList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}

func TestNextVersion(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.1":          "0.0.2",
		"1.2.9":          "1.2.10",
		"1.2":            firstVersion,
		"1.2.3-beta":     firstVersion,
		"a.b.c":          firstVersion,
		"":               firstVersion,
		"1.2.4294967295": "1.2.4294967296",
		"1.2.4294967296": firstVersion, // above uint32: restart
	} {
		if got := nextVersion(in); got != want {
			t.Errorf("nextVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// A retried put racing the original: whichever loses must not delete the
// code object of the winner when both carry the same function.
func TestActionPutRaceKeepsCode(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		name := fmt.Sprintf("race%d", i)
		p := actionPut(t, "guest", name, name)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for j := range errs {
			wg.Go(func() { _, errs[j] = call[wire.Action](e, wire.SubjectActionPut, p) })
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
			t.Fatalf("%s: %d puts succeeded", name, ok)
		}
		if e.code(fidOf(name)) == nil {
			t.Fatalf("%s: the stored action's code was deleted by a losing put", name)
		}
	}
}
