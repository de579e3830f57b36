package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// putTrigger stores the trigger ns/name.
func (e *env) putTrigger(ns, name string) *wire.Trigger {
	e.t.Helper()
	return mustCall[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: wire.Trigger{Namespace: ns, Name: name}})
}

func TestTriggerPutGetDelete(t *testing.T) {
	e := newEnv(t)
	tr := wire.Trigger{
		Namespace: "guest", Name: "tick", Publish: true,
		Annotations: []wire.KeyValue{{Key: "feed", Value: "/whisk.system/alarms/alarm"}},
		Parameters:  wire.SealedParams("sealed"),
	}
	got := mustCall[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: tr})
	want := tr
	want.Version, want.Updated = firstVersion, e.clock.Now().UnixMilli()
	checkEncoded(t, got, &want)
	ref := wire.EntityRef{Namespace: "guest", Name: "tick"}
	checkEncoded(t, mustCall[wire.Trigger](e, wire.SubjectTriggerGet, ref), &want)

	_, err := call[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: tr})
	wantCode(t, err, wire.CodeConflict)

	for _, s := range []struct{ version, want string }{{"", "0.0.2"}, {"", "0.0.3"}, {"1.0.0", "1.0.0"}, {"", "1.0.1"}} {
		e.clock.Advance(time.Second)
		u := tr
		u.Version, u.Parameters = s.version, nil
		got := mustCall[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: u, Overwrite: true})
		if got.Version != s.want || got.Parameters != nil || got.Updated != e.clock.Now().UnixMilli() {
			t.Fatalf("update to %q: %+v", s.version, got)
		}
	}

	d := mustCall[wire.Trigger](e, wire.SubjectTriggerDelete, ref)
	if d.Name != "tick" || d.Version != "1.0.1" {
		t.Fatalf("deleted %+v", d)
	}
	for _, subject := range []string{wire.SubjectTriggerGet, wire.SubjectTriggerDelete} {
		_, err := call[wire.Trigger](e, subject, ref)
		wantCode(t, err, wire.CodeNotFound)
	}
	if got := e.putTrigger("guest", "tick"); got.Version != firstVersion {
		t.Fatalf("recreated %+v", got)
	}
}

func TestTriggerInvalid(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("t", maxNameLen+1)
	tests := []struct {
		name   string
		mutate func(*wire.Trigger)
	}{
		{"no namespace", func(tr *wire.Trigger) { tr.Namespace = "" }},
		{"no name", func(tr *wire.Trigger) { tr.Name = "" }},
		{"packaged name", func(tr *wire.Trigger) { tr.Name = "pkg/t" }},
		{"namespace with two segments", func(tr *wire.Trigger) { tr.Namespace = "guest/pkg" }},
		{"name with space at end", func(tr *wire.Trigger) { tr.Name = "t " }},
		{"name too long", func(tr *wire.Trigger) { tr.Name = long }},
		{"version syntax", func(tr *wire.Trigger) { tr.Version = "v 1" }},
		{"too many annotations", func(tr *wire.Trigger) { tr.Annotations = tooManyAnnotations() }},
		{"empty annotation key", func(tr *wire.Trigger) { tr.Annotations = []wire.KeyValue{{Value: "v"}} }},
		{"annotations too large", func(tr *wire.Trigger) {
			tr.Annotations = []wire.KeyValue{{Key: "big", Value: strings.Repeat("v", maxAnnotationsBytes)}}
		}},
		{"parameters too large", func(tr *wire.Trigger) { tr.Parameters = make([]byte, maxSealedParamsLen+1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := wire.Trigger{Namespace: "guest", Name: "t"}
			tc.mutate(&tr)
			_, err := call[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: tr})
			wantCode(t, err, wire.CodeBadRequest)
		})
	}
	e.putTrigger("guest", "t")
	for _, tc := range []struct {
		ref  wire.EntityRef
		code string
	}{
		{wire.EntityRef{Namespace: "guest", Name: "nope"}, wire.CodeNotFound},
		{wire.EntityRef{Namespace: "other", Name: "t"}, wire.CodeNotFound},
		{wire.EntityRef{}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest", Name: "a/t"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "g>", Name: "t"}, wire.CodeBadRequest},
	} {
		for _, subject := range []string{wire.SubjectTriggerGet, wire.SubjectTriggerDelete} {
			_, err := call[wire.Trigger](e, subject, tc.ref)
			wantCode(t, err, tc.code)
		}
	}
}

func TestTriggerList(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"c", "a", "b"} {
		mustCall[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Trigger: wire.Trigger{
			Namespace: "guest", Name: name, Parameters: wire.SealedParams("p"),
		}})
		e.clock.Advance(time.Second)
	}
	mustCall[wire.Trigger](e, wire.SubjectTriggerPut, wire.TriggerPut{Overwrite: true, Trigger: wire.Trigger{Namespace: "guest", Name: "a"}})
	e.putTrigger("other", "x")
	e.putPackage("guest", "pkg") // not a trigger

	names := func(l *wire.TriggerList) string {
		var s []string
		for _, tr := range l.Triggers {
			if tr.Parameters != nil {
				t.Errorf("listed %+v", tr)
			}
			s = append(s, tr.Name)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req   wire.ListRequest
		want  string
		count int
	}{
		{wire.ListRequest{Namespace: "guest"}, "a,b,c", 0},
		{wire.ListRequest{Namespace: "guest", Skip: 1, Limit: 1}, "b", 0},
		{wire.ListRequest{Namespace: "guest", Limit: maxListLimit + 1}, "a,b,c", 0},
		{wire.ListRequest{Namespace: "guest", Name: "c"}, "c", 0},
		{wire.ListRequest{Namespace: "guest", Count: true}, "", 3},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 2}, "", 1},
		{wire.ListRequest{Namespace: "other"}, "x", 0},
		{wire.ListRequest{Namespace: "empty"}, "", 0},
	}
	for _, tc := range tests {
		l := mustCall[wire.TriggerList](e, wire.SubjectTriggerList, tc.req)
		if got := names(l); got != tc.want || l.Count != tc.count {
			t.Errorf("list %+v = %q count %d, want %q count %d", tc.req, got, l.Count, tc.want, tc.count)
		}
	}
	for _, req := range []wire.ListRequest{
		{},
		{Namespace: "guest/x"},
		{Namespace: "guest", Skip: -1},
		{Namespace: "guest", Limit: -1},
		{Namespace: "guest", Name: "/guest/c"},
	} {
		_, err := call[wire.TriggerList](e, wire.SubjectTriggerList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}
