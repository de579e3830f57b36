package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// putRule stores the rule ns/name from trigger to action.
func (e *env) putRule(ns, name, trigger, action string) *wire.Rule {
	e.t.Helper()
	return mustCall[wire.Rule](e, wire.SubjectRulePut, wire.RulePut{Rule: wire.Rule{
		Namespace: ns, Name: name, Trigger: trigger, Action: action,
	}})
}

// ruleWorld stores triggers and actions for rules to refer to.
func ruleWorld(t *testing.T, e *env) {
	e.putTrigger("guest", "tick")
	e.putTrigger("other", "theirs")
	e.put(actionPut(t, "guest", "hello", "hello"))
	e.putPackage("guest", "pkg")
	e.put(actionPut(t, "guest", "pkg/a", "pkg a"))
	e.put(actionPut(t, "other", "x", "other x"))
	e.putPackage("other", "lib")
	e.put(actionPut(t, "other", "lib/y", "other lib y"))
	e.putBinding("guest", "bound", "other", "lib")
	e.putBinding("guest", "dangling", "other", "nope")
}

func TestRulePut(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	tests := []struct {
		name    string
		trigger string
		action  string
		status  string
		code    string // "" = stored
	}{
		{"action", "/guest/tick", "/guest/hello", "", ""},
		{"inactive", "/guest/tick", "/guest/hello", wire.RuleInactive, ""},
		{"active", "/guest/tick", "/guest/hello", wire.RuleActive, ""},
		{"packaged action", "/guest/tick", "/guest/pkg/a", "", ""},
		{"other namespace's action", "/guest/tick", "/other/x", "", ""},
		{"other namespace's packaged action", "/guest/tick", "/other/lib/y", "", ""},
		{"action through a binding", "/guest/tick", "/guest/bound/y", "", ""},
		{"sequence", "/guest/tick", "/guest/seq", "", ""},

		{"unknown status", "/guest/tick", "/guest/hello", "paused", wire.CodeBadRequest},
		{"unqualified trigger", "tick", "/guest/hello", "", wire.CodeBadRequest},
		{"trigger without namespace", "/tick", "/guest/hello", "", wire.CodeBadRequest},
		{"packaged trigger", "/guest/pkg/tick", "/guest/hello", "", wire.CodeBadRequest},
		{"other namespace's trigger", "/other/theirs", "/guest/hello", "", wire.CodeBadRequest},
		{"no trigger", "", "/guest/hello", "", wire.CodeBadRequest},
		{"unqualified action", "/guest/tick", "hello", "", wire.CodeBadRequest},
		{"action path too deep", "/guest/tick", "/guest/a/b/c", "", wire.CodeBadRequest},
		{"action with empty segment", "/guest/tick", "/guest//a", "", wire.CodeBadRequest},
		{"no action", "/guest/tick", "", "", wire.CodeBadRequest},

		{"missing trigger", "/guest/nope", "/guest/hello", "", wire.CodeNotFound},
		{"missing action", "/guest/tick", "/guest/nope", "", wire.CodeNotFound},
		{"missing packaged action", "/guest/tick", "/guest/pkg/nope", "", wire.CodeNotFound},
		{"missing package", "/guest/tick", "/guest/nopkg/a", "", wire.CodeNotFound},
		{"action missing behind a binding", "/guest/tick", "/guest/bound/nope", "", wire.CodeNotFound},
		{"dangling binding", "/guest/tick", "/guest/dangling/y", "", wire.CodeNotFound},
		{"action in another namespace's package", "/guest/tick", "/other/pkg/a", "", wire.CodeNotFound},
	}
	e.put(wire.ActionPut{Action: wire.Action{Namespace: "guest", Name: "seq", Kind: wire.KindSequence, Components: []string{"/guest/hello"}}})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.Rule{Namespace: "guest", Name: "r" + itoa(i), Trigger: tc.trigger, Action: tc.action, Status: tc.status}
			got, err := call[wire.Rule](e, wire.SubjectRulePut, wire.RulePut{Rule: r})
			if tc.code != "" {
				wantCode(t, err, tc.code)
				_, err := call[wire.Rule](e, wire.SubjectRuleGet, wire.EntityRef{Namespace: "guest", Name: r.Name})
				wantCode(t, err, wire.CodeNotFound)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := r
			if want.Status == "" {
				want.Status = wire.RuleActive
			}
			want.Version, want.Updated = firstVersion, e.clock.Now().UnixMilli()
			checkEncoded(t, got, &want)
			checkEncoded(t, mustCall[wire.Rule](e, wire.SubjectRuleGet, wire.EntityRef{Namespace: "guest", Name: r.Name}), &want)
		})
	}
}

func TestRuleUpdate(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	e.putRule("guest", "r", "/guest/tick", "/guest/hello")
	// Without Overwrite an existing rule is a conflict.
	_, err := call[wire.Rule](e, wire.SubjectRulePut, wire.RulePut{Rule: wire.Rule{
		Namespace: "guest", Name: "r", Trigger: "/guest/tick", Action: "/other/x",
	}})
	wantCode(t, err, wire.CodeConflict)

	steps := []struct {
		action, status          string
		wantVersion, wantStatus string
	}{
		{"/other/x", "", "0.0.2", wire.RuleActive},
		{"/other/x", wire.RuleInactive, "0.0.3", wire.RuleInactive},
		{"/guest/pkg/a", "", "0.0.4", wire.RuleInactive}, // no status: kept
		{"/guest/hello", wire.RuleActive, "0.0.5", wire.RuleActive},
	}
	for _, s := range steps {
		e.clock.Advance(time.Second)
		got := mustCall[wire.Rule](e, wire.SubjectRulePut, wire.RulePut{Overwrite: true, Rule: wire.Rule{
			Namespace: "guest", Name: "r", Trigger: "/guest/tick", Action: s.action, Status: s.status,
		}})
		if got.Action != s.action || got.Version != s.wantVersion || got.Status != s.wantStatus || got.Updated != e.clock.Now().UnixMilli() {
			t.Fatalf("update %+v: %+v", s, got)
		}
	}
	// An update is checked like a create.
	_, err = call[wire.Rule](e, wire.SubjectRulePut, wire.RulePut{Overwrite: true, Rule: wire.Rule{
		Namespace: "guest", Name: "r", Trigger: "/guest/tick", Action: "/guest/nope",
	}})
	wantCode(t, err, wire.CodeNotFound)
}

func TestRuleStatus(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	created := e.putRule("guest", "r", "/guest/tick", "/guest/hello")
	ref := wire.EntityRef{Namespace: "guest", Name: "r"}
	steps := []struct {
		status  string
		changed bool
	}{
		{wire.RuleActive, false},
		{wire.RuleInactive, true},
		{wire.RuleInactive, false},
		{wire.RuleActive, true},
	}
	last := created.Updated
	for _, s := range steps {
		e.clock.Advance(time.Second)
		got := mustCall[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "r", Status: s.status})
		if got.Status != s.status || got.Version != created.Version {
			t.Fatalf("status %s: %+v", s.status, got)
		}
		if want := map[bool]int64{true: e.clock.Now().UnixMilli(), false: last}[s.changed]; got.Updated != want {
			t.Fatalf("status %s: updated %d, want %d", s.status, got.Updated, want)
		}
		last = got.Updated
		if stored := mustCall[wire.Rule](e, wire.SubjectRuleGet, ref); stored.Status != s.status {
			t.Fatalf("stored %+v", stored)
		}
	}
	for _, st := range []wire.RuleStatus{
		{Namespace: "guest", Name: "r", Status: ""},
		{Namespace: "guest", Name: "r", Status: "enabled"},
		{Namespace: "guest", Name: "", Status: wire.RuleActive},
		{Namespace: "", Name: "r", Status: wire.RuleActive},
		{Namespace: "guest", Name: "a/r", Status: wire.RuleActive},
	} {
		_, err := call[wire.Rule](e, wire.SubjectRuleStatus, st)
		wantCode(t, err, wire.CodeBadRequest)
	}
	_, err := call[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "nope", Status: wire.RuleActive})
	wantCode(t, err, wire.CodeNotFound)

	// A rule whose trigger or action is gone can be deactivated, not
	// activated.
	for _, gone := range []string{"trigger", "action"} {
		t.Run(gone, func(t *testing.T) {
			e := newEnv(t)
			ruleWorld(t, e)
			e.putRule("guest", "r", "/guest/tick", "/guest/hello")
			mustCall[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleInactive})
			if gone == "trigger" {
				mustCall[wire.Trigger](e, wire.SubjectTriggerDelete, wire.EntityRef{Namespace: "guest", Name: "tick"})
			} else {
				mustCall[wire.Action](e, wire.SubjectActionDelete, wire.ActionRef{Namespace: "guest", Name: "hello"})
			}
			_, err := call[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleActive})
			wantCode(t, err, wire.CodeNotFound)
			if r := mustCall[wire.Rule](e, wire.SubjectRuleGet, wire.EntityRef{Namespace: "guest", Name: "r"}); r.Status != wire.RuleInactive {
				t.Fatalf("rule %+v", r)
			}
		})
	}
}

// TestRuleStatusTag: a status change from the gateway carries the rule's
// new tag and generation, stored with it; one made against another
// generation than the stored one is a conflict and changes nothing.
func TestRuleStatusTag(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	e.putRule("guest", "r", "/guest/tick", "/guest/hello")
	ref := wire.EntityRef{Namespace: "guest", Name: "r"}
	st := wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleActive, Tag: []byte("tag-2"), Generation: 2}
	if got := mustCall[wire.Rule](e, wire.SubjectRuleStatus, st); got.Generation != 2 || string(got.Tag) != "tag-2" {
		t.Fatalf("same status, new tag: %+v", got)
	}
	stale := wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleInactive, Tag: []byte("tag-3"), Generation: 3, Prev: 1}
	_, err := call[wire.Rule](e, wire.SubjectRuleStatus, stale)
	wantCode(t, err, wire.CodeConflict)
	stale.Prev = 2
	if got := mustCall[wire.Rule](e, wire.SubjectRuleStatus, stale); got.Status != wire.RuleInactive || got.Generation != 3 || string(got.Tag) != "tag-3" {
		t.Fatalf("status change: %+v", got)
	}
	if r := mustCall[wire.Rule](e, wire.SubjectRuleGet, ref); r.Generation != 3 || string(r.Tag) != "tag-3" {
		t.Fatalf("stored %+v", r)
	}
	_, err = call[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "r", Status: wire.RuleActive, Tag: make([]byte, 2048), Generation: 4, Prev: 3})
	wantCode(t, err, wire.CodeBadRequest)
}

func TestRuleDelete(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	e.putRule("guest", "r", "/guest/tick", "/guest/hello")
	ref := wire.EntityRef{Namespace: "guest", Name: "r"}
	if r := mustCall[wire.Rule](e, wire.SubjectRuleDelete, ref); r.Name != "r" || r.Trigger != "/guest/tick" {
		t.Fatalf("deleted %+v", r)
	}
	for _, tc := range []struct {
		ref  wire.EntityRef
		code string
	}{
		{ref, wire.CodeNotFound},
		{wire.EntityRef{Namespace: "other", Name: "r"}, wire.CodeNotFound},
		{wire.EntityRef{Namespace: "guest"}, wire.CodeBadRequest},
		{wire.EntityRef{Namespace: "guest", Name: "p/r"}, wire.CodeBadRequest},
		{wire.EntityRef{Name: "r"}, wire.CodeBadRequest},
	} {
		for _, subject := range []string{wire.SubjectRuleGet, wire.SubjectRuleDelete} {
			_, err := call[wire.Rule](e, subject, tc.ref)
			wantCode(t, err, tc.code)
		}
	}
	// Deleting a trigger or an action leaves their rules.
	e.putRule("guest", "r", "/guest/tick", "/guest/hello")
	mustCall[wire.Trigger](e, wire.SubjectTriggerDelete, wire.EntityRef{Namespace: "guest", Name: "tick"})
	mustCall[wire.Action](e, wire.SubjectActionDelete, wire.ActionRef{Namespace: "guest", Name: "hello"})
	mustCall[wire.Rule](e, wire.SubjectRuleGet, ref)
}

func TestRuleList(t *testing.T) {
	e := newEnv(t)
	ruleWorld(t, e)
	e.putTrigger("guest", "tock")
	for _, r := range []struct{ name, trigger string }{
		{"c", "/guest/tick"}, {"a", "/guest/tock"}, {"b", "/guest/tick"}, {"d", "/guest/tick"},
	} {
		e.putRule("guest", r.name, r.trigger, "/guest/hello")
		e.clock.Advance(time.Second)
	}
	mustCall[wire.Rule](e, wire.SubjectRuleStatus, wire.RuleStatus{Namespace: "guest", Name: "b", Status: wire.RuleInactive})
	e.putRule("other", "x", "/other/theirs", "/guest/hello")

	names := func(l *wire.RuleList) string {
		var s []string
		for _, r := range l.Rules {
			s = append(s, r.Name+":"+r.Status[:1])
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req   wire.ListRequest
		want  string
		count int
	}{
		{wire.ListRequest{Namespace: "guest"}, "b:i,d:a,a:a,c:a", 0},
		{wire.ListRequest{Namespace: "guest", Skip: 1, Limit: 2}, "d:a,a:a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "/guest/tick"}, "b:i,d:a,c:a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "/guest/tock"}, "a:a", 0},
		{wire.ListRequest{Namespace: "guest", Name: "/guest/nope"}, "", 0},
		{wire.ListRequest{Namespace: "guest", Name: "/other/theirs"}, "", 0},
		{wire.ListRequest{Namespace: "guest", Count: true}, "", 4},
		{wire.ListRequest{Namespace: "guest", Count: true, Name: "/guest/tick"}, "", 3},
		{wire.ListRequest{Namespace: "other"}, "x:a", 0},
		{wire.ListRequest{Namespace: "empty"}, "", 0},
	}
	for _, tc := range tests {
		l := mustCall[wire.RuleList](e, wire.SubjectRuleList, tc.req)
		if got := names(l); got != tc.want || l.Count != tc.count {
			t.Errorf("list %+v = %q count %d, want %q count %d", tc.req, got, l.Count, tc.want, tc.count)
		}
	}
	for _, req := range []wire.ListRequest{
		{},
		{Namespace: "guest/x"},
		{Namespace: "guest", Skip: -1},
		{Namespace: "guest", Name: "tick"},
		{Namespace: "guest", Name: "/guest/pkg/tick"},
		{Namespace: "guest", Name: "/guest/"},
	} {
		_, err := call[wire.RuleList](e, wire.SubjectRuleList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}
