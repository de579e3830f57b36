package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// triggerRecord is a complete record of a trigger activation, as the
// gateway makes them.
func triggerRecord(e *env, ns, name string) wire.Activation {
	start := e.clock.Now().UnixMilli()
	return wire.Activation{
		ActivationID: newID(), Namespace: ns, Name: name, Version: firstVersion, Subject: "alice",
		Start: start, End: start + 3, Status: wire.StatusSuccess,
		Result: []byte("sealed result"), Logs: []byte("sealed logs"),
		Annotations: []wire.KeyValue{{Key: "kind", Value: "trigger"}},
		Components:  []string{newID(), newID()},
	}
}

func TestActivationPut(t *testing.T) {
	e := newEnv(t)
	rec := triggerRecord(e, "guest", "tick")
	got := mustCall[wire.Activation](e, wire.SubjectActivationPut, rec)
	checkEncoded(t, got, &rec)
	ref := wire.ActivationRef{Namespace: "guest", ActivationID: rec.ActivationID}
	checkEncoded(t, mustCall[wire.Activation](e, wire.SubjectActivationGet, ref), &rec)
	l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Name: "tick"})
	if len(l.Activations) != 1 || l.Activations[0].ActivationID != rec.ActivationID {
		t.Fatalf("list %+v", l.Activations)
	}

	// An id is used once, in its namespace: by a stored record or a
	// running activation.
	again := triggerRecord(e, "guest", "other")
	again.ActivationID = rec.ActivationID
	_, err := call[wire.Activation](e, wire.SubjectActivationPut, again)
	wantCode(t, err, wire.CodeConflict)
	checkEncoded(t, mustCall[wire.Activation](e, wire.SubjectActivationGet, ref), &rec)

	e.put(actionPut(t, "guest", "hello", "f1"))
	g := newGate()
	e.startInvoker("inv0", g.run)
	inv := invokeReq("guest", "hello")
	inv.Blocking = false
	mustCall[wire.Activation](e, wire.SubjectInvoke, inv)
	g.waitStarted(t)
	running := triggerRecord(e, "guest", "tick")
	running.ActivationID = inv.ActivationID
	_, err = call[wire.Activation](e, wire.SubjectActivationPut, running)
	wantCode(t, err, wire.CodeConflict)
	close(g.release)
	if a := e.waitDone("guest", inv.ActivationID); a.Name != "hello" {
		t.Fatalf("invocation record %+v", a)
	}

	// A gateway's invocation cannot reuse a stored record's id either.
	reuse := invokeReq("guest", "hello")
	reuse.ActivationID = rec.ActivationID
	_, err = call[wire.Activation](e, wire.SubjectInvoke, reuse)
	wantCode(t, err, wire.CodeConflict)

	// The same id in another namespace is another record.
	other := triggerRecord(e, "other", "tick")
	other.ActivationID = rec.ActivationID
	mustCall[wire.Activation](e, wire.SubjectActivationPut, other)
}

func TestActivationPutInvalid(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		mutate func(*wire.Activation)
	}{
		{"no id", func(a *wire.Activation) { a.ActivationID = "" }},
		{"short id", func(a *wire.Activation) { a.ActivationID = a.ActivationID[1:] }},
		{"uppercase id", func(a *wire.Activation) { a.ActivationID = strings.ToUpper(a.ActivationID) }},
		{"non-hex id", func(a *wire.Activation) { a.ActivationID = strings.Repeat("g", activationIDLen) }},
		{"no namespace", func(a *wire.Activation) { a.Namespace = "" }},
		{"invalid namespace", func(a *wire.Activation) { a.Namespace = "gu*st" }},
		{"no name", func(a *wire.Activation) { a.Name = "" }},
		{"name too deep", func(a *wire.Activation) { a.Name = "a/b/c" }},
		{"name too long", func(a *wire.Activation) { a.Name = strings.Repeat("n", maxNameLen+1) }},
		{"not started", func(a *wire.Activation) { a.Start = 0 }},
		{"negative start", func(a *wire.Activation) { a.Start = -5 }},
		{"running", func(a *wire.Activation) { a.End = 0 }},
		{"ends before it starts", func(a *wire.Activation) { a.End = a.Start - 1 }},
		{"no status", func(a *wire.Activation) { a.Status = "" }},
		{"unknown status", func(a *wire.Activation) { a.Status = "fine" }},
		{"version syntax", func(a *wire.Activation) { a.Version = "1 0" }},
		{"version too long", func(a *wire.Activation) { a.Version = strings.Repeat("1", maxVersionLen+1) }},
		{"subject too long", func(a *wire.Activation) { a.Subject = strings.Repeat("s", maxSubjectLen+1) }},
		{"error code too long", func(a *wire.Activation) { a.ErrorCode = strings.Repeat("e", maxErrorFieldLen+1) }},
		{"error message too long", func(a *wire.Activation) { a.ErrorMessage = strings.Repeat("e", maxErrorFieldLen+1) }},
		{"result too large", func(a *wire.Activation) { a.Result = make([]byte, maxSealedPartLen+1) }},
		{"logs too large", func(a *wire.Activation) { a.Logs = make([]byte, maxSealedPartLen+1) }},
		{"envelope too large", func(a *wire.Activation) { a.Envelope = make([]byte, maxSealedPartLen+1) }},
		{"invalid cause", func(a *wire.Activation) { a.Cause = "cause" }},
		{"invalid component", func(a *wire.Activation) { a.Components = []string{newID(), "x"} }},
		{"too many components", func(a *wire.Activation) {
			a.Components = make([]string, maxRecordComponents+1)
			for i := range a.Components {
				a.Components[i] = newID()
			}
		}},
		{"too many annotations", func(a *wire.Activation) { a.Annotations = tooManyAnnotations() }},
		{"empty annotation key", func(a *wire.Activation) { a.Annotations = []wire.KeyValue{{Value: 1}} }},
		{"annotations too large", func(a *wire.Activation) {
			a.Annotations = []wire.KeyValue{{Key: "big", Value: strings.Repeat("v", maxAnnotationsBytes)}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := triggerRecord(e, "guest", "tick")
			id := rec.ActivationID
			tc.mutate(&rec)
			_, err := call[wire.Activation](e, wire.SubjectActivationPut, rec)
			wantCode(t, err, wire.CodeBadRequest)
			if e.stored("guest", id) != nil {
				t.Fatal("refused record stored")
			}
		})
	}
	// At the limits, and a record of a packaged action with a cause.
	rec := triggerRecord(e, "guest", "pkg/a")
	rec.End = rec.Start
	rec.Cause = newID()
	rec.Result = make([]byte, maxSealedPartLen)
	rec.Components = nil
	rec.Status = wire.StatusDeveloperError
	rec.ErrorCode = strings.Repeat("e", maxErrorFieldLen)
	mustCall[wire.Activation](e, wire.SubjectActivationPut, rec)
}

func TestActivationListRange(t *testing.T) {
	e := newEnv(t)
	e.putPackage("guest", "pkg")
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.put(actionPut(t, "guest", "pkg/hello", "f2"))
	e.startInvoker("inv0", succeed(e))
	// One record a second: invocations of hello, pkg/hello and trigger
	// records of tick, in turn, at t0, t0+1s, … t0+5s.
	t0 := e.clock.Now().UnixMilli()
	var ids []string
	for i := range 6 {
		switch i % 3 {
		case 0:
			ids = append(ids, mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello")).ActivationID)
		case 1:
			ids = append(ids, mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "pkg/hello")).ActivationID)
		case 2:
			ids = append(ids, mustCall[wire.Activation](e, wire.SubjectActivationPut, triggerRecord(e, "guest", "tick")).ActivationID)
		}
		e.clock.Advance(time.Second)
	}
	at := func(i int) int64 { return t0 + int64(i)*1000 }
	list := func(l *wire.ActivationList) string {
		var s []string
		for _, a := range l.Activations {
			for i, id := range ids {
				if id == a.ActivationID {
					s = append(s, itoa(i))
				}
			}
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req   wire.ListRequest
		want  string
		count int
	}{
		{wire.ListRequest{Namespace: "guest"}, "5,4,3,2,1,0", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(2)}, "5,4,3,2", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(2) + 1}, "5,4,3", 0},
		{wire.ListRequest{Namespace: "guest", Upto: at(2)}, "2,1,0", 0},
		{wire.ListRequest{Namespace: "guest", Upto: at(2) - 1}, "1,0", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(1), Upto: at(4)}, "4,3,2,1", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(1), Upto: at(4), Skip: 1, Limit: 2}, "3,2", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(3), Upto: at(2)}, "", 0},
		{wire.ListRequest{Namespace: "guest", Since: at(9)}, "", 0},
		{wire.ListRequest{Namespace: "guest", Name: "hello"}, "3,0", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/hello"}, "4,1", 0},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/hello", Since: at(2)}, "4", 0},
		{wire.ListRequest{Namespace: "guest", Name: "tick", Upto: at(4)}, "2", 0},
		{wire.ListRequest{Namespace: "guest", Count: true}, "", 6},
		{wire.ListRequest{Namespace: "guest", Count: true, Limit: 1}, "", 6},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 4}, "", 2},
		{wire.ListRequest{Namespace: "guest", Count: true, Skip: 40}, "", 0},
		{wire.ListRequest{Namespace: "guest", Count: true, Since: at(1), Upto: at(4)}, "", 4},
		{wire.ListRequest{Namespace: "guest", Count: true, Name: "pkg/hello"}, "", 2},
		{wire.ListRequest{Namespace: "empty", Count: true}, "", 0},
	}
	for _, tc := range tests {
		l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, tc.req)
		if got := list(l); got != tc.want || l.Count != tc.count {
			t.Errorf("list %+v = %q count %d, want %q count %d", tc.req, got, l.Count, tc.want, tc.count)
		}
	}
	for _, req := range []wire.ListRequest{
		{Namespace: "guest", Since: -1},
		{Namespace: "guest", Upto: -1},
	} {
		_, err := call[wire.ActivationList](e, wire.SubjectActivationList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}
