package controller

import (
	"context"
	"testing"

	"github.com/clemmys/clemmys/internal/store"
)

func TestRevisionsObserve(t *testing.T) {
	r := newRevisions()
	if r.current("k", 0) || r.current("k", 1) {
		t.Fatal("an unknown key is current")
	}
	r.observe("k", 5, false)
	if r.current("k", 5) {
		t.Fatal("current before the watch caught up")
	}
	r.ready = true
	for _, tc := range []struct {
		name    string
		rev     uint64
		deleted bool
		current uint64 // the revision then current, 0 for none
	}{
		{"known", 5, false, 5},
		{"older ignored", 3, false, 5},
		{"newer", 7, false, 7},
		{"deleted", 8, true, 0},
		{"older than the deletion ignored", 7, false, 0},
		{"put again", 9, false, 9},
	} {
		r.observe("k", tc.rev, tc.deleted)
		if got := r.latest("k"); got != tc.current {
			t.Errorf("%s: latest %d, want %d", tc.name, got, tc.current)
		}
		for _, rev := range []uint64{3, 5, 7, 8, 9} {
			if got := r.current("k", rev); got != (rev == tc.current) {
				t.Errorf("%s: current(%d) = %v", tc.name, rev, got)
			}
		}
	}
}

// The controller's watch follows changes made behind its back and stops
// answering once it ends.
func TestRevisionsWatch(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	key := store.Key("guest", "hello")
	ctx := context.Background()
	raw, err := e.ctl.actions.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	first := raw.Revision()
	waitFor(t, "the stored action", func() bool { return e.ctl.ActionRevision("guest", "hello") == first })
	if !e.ctl.revs.current(key, first) {
		t.Fatal("the stored revision is not current")
	}
	rev, err := e.ctl.actions.Put(ctx, key, raw.Value())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rewritten action", func() bool { return e.ctl.ActionRevision("guest", "hello") == rev })
	if e.ctl.revs.current(key, first) {
		t.Fatal("the replaced revision is still current")
	}
	if err := e.ctl.actions.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return e.ctl.ActionRevision("guest", "hello") == 0 })
	if e.ctl.revs.current(key, rev) {
		t.Fatal("a deleted action is current")
	}

	rev, err = e.ctl.actions.Put(ctx, key, raw.Value())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the action stored again", func() bool { return e.ctl.revs.current(key, rev) })
	e.ctl.Stop()
	if e.ctl.revs.current(key, rev) {
		t.Fatal("current after the watch ended")
	}
}
