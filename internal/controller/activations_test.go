package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestActivationList(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.putPackage("guest", "pkg")
	e.put(actionPut(t, "guest", "pkg/bye", "f2"))
	e.put(actionPut(t, "other", "hello", "f3"))
	e.startInvoker("inv0", succeed(e))

	// Activation ids are random (hex of the envelope's request id), so
	// their order says nothing about time: these are invoked in the order
	// listed, a second apart.
	type inv struct{ id, ns, name string }
	invs := []inv{
		{"f0" + strings.Repeat("0", 30), "guest", "hello"},
		{"10" + strings.Repeat("0", 30), "guest", "pkg/bye"},
		{"a0" + strings.Repeat("0", 30), "guest", "hello"},
		{"00" + strings.Repeat("0", 30), "other", "hello"},
		{"50" + strings.Repeat("0", 30), "guest", "pkg/bye"},
		{"30" + strings.Repeat("0", 30), "guest", "hello"},
	}
	for _, v := range invs {
		req := invokeReq(v.ns, v.name)
		req.ActivationID = v.id
		mustCall[wire.Activation](e, wire.SubjectInvoke, req)
		e.clock.Advance(time.Second)
	}
	ids := func(l *wire.ActivationList) string {
		var s []string
		for _, a := range l.Activations {
			s = append(s, a.ActivationID[:2])
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		req  wire.ListRequest
		want string
	}{
		{wire.ListRequest{Namespace: "guest"}, "30,50,a0,10,f0"},
		{wire.ListRequest{Namespace: "guest", Limit: 2}, "30,50"},
		{wire.ListRequest{Namespace: "guest", Skip: 2}, "a0,10,f0"},
		{wire.ListRequest{Namespace: "guest", Skip: 1, Limit: 2}, "50,a0"},
		{wire.ListRequest{Namespace: "guest", Skip: 5}, ""},
		{wire.ListRequest{Namespace: "guest", Name: "hello"}, "30,a0,f0"},
		{wire.ListRequest{Namespace: "guest", Name: "hello", Skip: 1, Limit: 1}, "a0"},
		{wire.ListRequest{Namespace: "guest", Name: "pkg/bye"}, "50,10"},
		{wire.ListRequest{Namespace: "guest", Name: "nope"}, ""},
		{wire.ListRequest{Namespace: "other"}, "00"},
		{wire.ListRequest{Namespace: "empty"}, ""},
	}
	for _, tc := range tests {
		l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, tc.req)
		if got := ids(l); got != tc.want {
			t.Errorf("list %+v = %q, want %q", tc.req, got, tc.want)
		}
		for _, a := range l.Activations {
			if a.End == 0 || a.Status != wire.StatusSuccess {
				t.Errorf("listed record %+v", a)
			}
		}
	}

	for _, req := range []wire.ListRequest{
		{},
		{Namespace: "gu*est"},
		{Namespace: "guest", Name: "a/b/c"},
		{Namespace: "guest", Skip: -1},
		{Namespace: "guest", Limit: -5},
	} {
		_, err := call[wire.ActivationList](e, wire.SubjectActivationList, req)
		wantCode(t, err, wire.CodeBadRequest)
	}
}

func TestActivationListLimit(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", succeed(e))
	const n = maxListLimit + 5
	for range n {
		mustCall[wire.Activation](e, wire.SubjectInvoke, invokeReq("guest", "hello"))
		e.clock.Advance(time.Millisecond)
	}
	for _, tc := range []struct{ limit, skip, want int }{
		{0, 0, maxListLimit},
		{maxListLimit + 1, 0, maxListLimit},
		{10, 0, 10},
		{0, 10, n - 10},
	} {
		l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Limit: tc.limit, Skip: tc.skip})
		if len(l.Activations) != tc.want {
			t.Errorf("limit %d skip %d: %d records, want %d", tc.limit, tc.skip, len(l.Activations), tc.want)
		}
		for i := 1; i < len(l.Activations); i++ {
			if l.Activations[i-1].Start <= l.Activations[i].Start {
				t.Fatalf("not newest first at %d", i)
			}
		}
	}
}

func TestActivationGet(t *testing.T) {
	e := newEnv(t)
	e.put(actionPut(t, "guest", "hello", "f1"))
	e.startInvoker("inv0", succeed(e))
	req := invokeReq("guest", "hello")
	mustCall[wire.Activation](e, wire.SubjectInvoke, req)

	if a := mustCall[wire.Activation](e, wire.SubjectActivationGet, wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID}); a.ActivationID != req.ActivationID {
		t.Fatalf("get %+v", a)
	}
	tests := []struct {
		ref  wire.ActivationRef
		code string
	}{
		{wire.ActivationRef{Namespace: "other", ActivationID: req.ActivationID}, wire.CodeNotFound},
		{wire.ActivationRef{Namespace: "guest", ActivationID: newID()}, wire.CodeNotFound},
		{wire.ActivationRef{Namespace: "guest"}, wire.CodeBadRequest},
		{wire.ActivationRef{Namespace: "guest", ActivationID: strings.ToUpper(req.ActivationID)}, wire.CodeBadRequest},
		{wire.ActivationRef{Namespace: "guest", ActivationID: req.ActivationID + "0"}, wire.CodeBadRequest},
		{wire.ActivationRef{ActivationID: req.ActivationID}, wire.CodeBadRequest},
		{wire.ActivationRef{Namespace: strings.Repeat("n", maxNameLen+1), ActivationID: req.ActivationID}, wire.CodeBadRequest},
	}
	for _, tc := range tests {
		_, err := call[wire.Activation](e, wire.SubjectActivationGet, tc.ref)
		wantCode(t, err, tc.code)
	}
}

// A running record whose controller died is closed as lost once it is past
// any deadline its controller could have had.
func TestActivationLost(t *testing.T) {
	e := newEnv(t)
	id := newID()
	running := wire.Activation{
		ActivationID: id, Namespace: "guest", Name: "hello",
		Start:       e.clock.Now().UnixMilli(),
		Annotations: []wire.KeyValue{{Key: "limits", Value: map[string]any{"timeout": uint32(1000)}}},
	}
	b, err := bus.Marshal(&running)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.activations.Create(testCtx(t), store.Key("guest", id), b); err != nil {
		t.Fatal(err)
	}
	ref := wire.ActivationRef{Namespace: "guest", ActivationID: id}
	deadline := time.Second + e.ctl.cfg.ColdStartGrace + staleMargin

	e.clock.Advance(deadline - time.Millisecond)
	_, err = call[wire.Activation](e, wire.SubjectActivationGet, ref)
	wantCode(t, err, wire.CodeNotFound)
	if l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest"}); len(l.Activations) != 0 {
		t.Fatalf("listed %+v", l.Activations)
	}

	e.clock.Advance(time.Millisecond)
	a := mustCall[wire.Activation](e, wire.SubjectActivationGet, ref)
	if a.End != e.clock.Now().UnixMilli() || a.Status != wire.StatusInternalError || a.ErrorCode != ErrLost || a.ErrorMessage != msgLost {
		t.Fatalf("lost record %+v", a)
	}
	if s := e.stored("guest", id); s.End != a.End || s.ErrorCode != ErrLost {
		t.Fatalf("stored %+v", s)
	}
	if l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest"}); len(l.Activations) != 1 {
		t.Fatalf("listed %+v", l.Activations)
	}
}

func TestTimeoutOf(t *testing.T) {
	tests := []struct {
		anns []wire.KeyValue
		want int64
	}{
		{nil, maxTimeoutMs},
		{[]wire.KeyValue{{Key: "limits", Value: map[string]any{"timeout": uint64(5)}}}, 5},
		{[]wire.KeyValue{{Key: "limits", Value: map[any]any{"timeout": uint64(7)}}}, 7},
		{[]wire.KeyValue{{Key: "limits", Value: map[any]any{"timeout": int64(-7)}}}, 0},
		{[]wire.KeyValue{{Key: "limits", Value: map[any]any{"timeout": uint64(1 << 60)}}}, maxTimeoutMs},
		{[]wire.KeyValue{{Key: "limits", Value: "junk"}}, maxTimeoutMs},
		{[]wire.KeyValue{{Key: "limits", Value: map[any]any{"timeout": "junk"}}}, maxTimeoutMs},
	}
	for _, tc := range tests {
		if got := timeoutOf(tc.anns); got != tc.want {
			t.Errorf("timeoutOf(%v) = %d, want %d", tc.anns, got, tc.want)
		}
	}
}

// putRecords stores n complete records of ns directly (as a gateway's
// trigger records are), starting at start, one millisecond apart, and
// returns their ids in order.
func putRecords(t testing.TB, kv jetstream.KeyValue, ns string, n int, start int64) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		id := newID()
		ids[i] = id
		b, err := bus.Marshal(&wire.Activation{ActivationID: id, Namespace: ns, Name: "tick",
			Start: start + int64(i), End: start + int64(i) + 1, Status: wire.StatusSuccess})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Create(context.Background(), store.Key(ns, id), b); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestActivationListCost: a listing of the newest N reads O(N) records,
// not all of the namespace's (a listing used to read every record: seconds
// at 100k), and a count reads none.
func TestActivationListCost(t *testing.T) {
	e := newEnv(t)
	const n = 3000
	start := e.clock.Now().UnixMilli()
	// Two namespaces interleaved in the store.
	var guest []string
	for i := range 6 {
		guest = append(guest, putRecords(t, e.ctl.activations, "guest", n/6, start+int64(i*n))...)
		putRecords(t, e.ctl.activations, "other", n/6, start+int64(i*n+n/6))
	}
	scanned := func() float64 { return gather(t, e)["clemmys_controller_activation_records_scanned_total"] }
	for _, tc := range []struct{ skip, limit, maxRead int }{
		{0, 10, 300}, // the window grows fourfold, and the newest 500 are the other namespace's
		{0, 200, 2000},
		{100, 10, 1000},
		{n - 5, 10, 2 * n},
	} {
		before := scanned()
		l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Skip: tc.skip, Limit: tc.limit})
		read := int(scanned() - before)
		var want []string
		for i := len(guest) - 1 - tc.skip; i >= 0 && len(want) < tc.limit; i-- {
			want = append(want, guest[i])
		}
		var got []string
		for _, a := range l.Activations {
			got = append(got, a.ActivationID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("skip %d limit %d: got %d records %v..., want %d", tc.skip, tc.limit, len(got), got[:min(len(got), 3)], len(want))
		}
		t.Logf("skip %d limit %d: %d entries read", tc.skip, tc.limit, read)
		if read > tc.maxRead {
			t.Errorf("skip %d limit %d: %d entries read of %d, want at most %d", tc.skip, tc.limit, read, 2*n, tc.maxRead)
		}
	}
	before := scanned()
	l := mustCall[wire.ActivationList](e, wire.SubjectActivationList, wire.ListRequest{Namespace: "guest", Count: true})
	if l.Count != n || scanned() != before {
		t.Errorf("count %d (read %v entries), want %d without reading any", l.Count, scanned()-before, n)
	}
}

// BenchmarkActivationList: the newest 30 (and a count) of a namespace
// with 100k records, another namespace's 100k interleaved.
//
//	go test -run '^$' -bench ActivationList -benchtime 50x ./internal/controller/
func BenchmarkActivationList(b *testing.B) {
	e := newEnv(b)
	start := e.clock.Now().UnixMilli()
	const n = 100_000
	js, err := jetstream.New(e.nc)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 1000 {
		for _, ns := range []string{"guest", "other"} {
			var futs []jetstream.PubAckFuture
			for j := range 1000 {
				id := newID()
				v, _ := bus.Marshal(&wire.Activation{ActivationID: id, Namespace: ns, Name: "tick",
					Start: start + int64(i+j), End: start + int64(i+j) + 1, Status: wire.StatusSuccess})
				f, err := js.PublishAsync(activationsSubject(store.Key(ns, id)), v)
				if err != nil {
					b.Fatal(err)
				}
				futs = append(futs, f)
			}
			for _, f := range futs {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
	}
	for _, bc := range []struct {
		name string
		req  wire.ListRequest
	}{
		{"newest30", wire.ListRequest{Namespace: "guest", Limit: 30}},
		{"skip1000", wire.ListRequest{Namespace: "guest", Skip: 1000, Limit: 30}},
		{"count", wire.ListRequest{Namespace: "guest", Count: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				mustCall[wire.ActivationList](e, wire.SubjectActivationList, bc.req)
			}
		})
	}
}
