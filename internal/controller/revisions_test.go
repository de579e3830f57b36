package controller

import (
	"context"
	"strconv"
	"testing"

	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestRevisionsObserve(t *testing.T) {
	r := newRevisions()
	if r.Current("k", 0) || r.Current("k", 1) {
		t.Fatal("an unknown key is current")
	}
	r.Observe("k", 5, false)
	if r.Current("k", 5) {
		t.Fatal("current before the watch caught up")
	}
	r.SetReady(true)
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
		r.Observe("k", tc.rev, tc.deleted)
		if got := r.Latest("k"); got != tc.current {
			t.Errorf("%s: latest %d, want %d", tc.name, got, tc.current)
		}
		for _, rev := range []uint64{3, 5, 7, 8, 9} {
			if got := r.Current("k", rev); got != (rev == tc.current) {
				t.Errorf("%s: current(%d) = %v", tc.name, rev, got)
			}
		}
	}
}

func TestRevisionsCachedAction(t *testing.T) {
	r := newRevisions()
	r.SetReady(true)
	a := &wire.Action{Name: "a"}
	r.remember("k", 5, a) // unknown key: not kept
	if _, ok := r.action("k", 5); ok {
		t.Fatal("kept an action of an unknown key")
	}
	r.Observe("k", 5, false)
	r.remember("k", 4, a) // not the current revision
	if _, ok := r.action("k", 4); ok {
		t.Fatal("kept an action at an old revision")
	}
	r.remember("k", 5, a)
	if got, ok := r.action("k", 5); !ok || got != a {
		t.Fatal("the current action is not kept")
	}
	if _, ok := r.action("k", 6); ok {
		t.Fatal("an action at another revision")
	}
	r.SetReady(false)
	if _, ok := r.action("k", 5); ok {
		t.Fatal("an action while the watch is not caught up")
	}
	r.SetReady(true)
	r.Observe("k", 6, false)
	if _, ok := r.action("k", 5); ok {
		t.Fatal("the action survived a new revision")
	}

	// The cache is bounded.
	for i := range maxCachedActions + 1 {
		k := string(rune('a'+i%26)) + strconv.Itoa(i)
		r.Observe(k, 1, false)
		r.remember(k, 1, a)
	}
	if n := r.cached(); n < 1 || n > maxCachedActions {
		t.Fatalf("%d cached actions", n)
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
	if !e.ctl.revs.Current(key, first) {
		t.Fatal("the stored revision is not current")
	}
	rev, err := e.ctl.actions.Put(ctx, key, raw.Value())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rewritten action", func() bool { return e.ctl.ActionRevision("guest", "hello") == rev })
	if e.ctl.revs.Current(key, first) {
		t.Fatal("the replaced revision is still current")
	}
	if err := e.ctl.actions.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return e.ctl.ActionRevision("guest", "hello") == 0 })
	if e.ctl.revs.Current(key, rev) {
		t.Fatal("a deleted action is current")
	}

	rev, err = e.ctl.actions.Put(ctx, key, raw.Value())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the action stored again", func() bool { return e.ctl.revs.Current(key, rev) })
	e.ctl.Stop()
	if e.ctl.revs.Current(key, rev) {
		t.Fatal("current after the watch ended")
	}
}
