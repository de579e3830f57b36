package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestSendDirect: how the warm path takes its invoker's answers. A
// refusal as misplaced or unavailable, and no responder at all (an invoker
// of a version without the warm path), mark the invocation misplaced and
// send the attempts after through the controller; an answer for another
// activation is a 502; the complete record is taken.
func TestSendDirect(t *testing.T) {
	ctx := context.Background()
	srv, err := bus.Start(ctx, bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("gateway")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inc, err := srv.Connect("invokers")
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	log := slog.New(slog.DiscardHandler)
	const id = "0123456789abcdef0123456789abcdef"
	serve := func(invoker string, answer func(*wire.DirectRequest) (any, error)) {
		stop, err := bus.Serve(ctx, inc, log, wire.SubjectInvokerDirect(invoker), "", 0, func(_ context.Context, data []byte) (any, error) {
			dr, err := bus.Decode[wire.DirectRequest](data)
			if err != nil {
				return nil, err
			}
			return answer(dr)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	serve("misplaced", func(*wire.DirectRequest) (any, error) {
		return nil, wire.Errorf(wire.CodeMisplaced, "runtime gone")
	})
	serve("stopping", func(*wire.DirectRequest) (any, error) {
		return nil, wire.Errorf(wire.CodeUnavailable, "stopping")
	})
	serve("other", func(dr *wire.DirectRequest) (any, error) {
		rec := dr.Record
		rec.ActivationID = "ffff" + id[4:]
		return &rec, nil
	})
	serve("answers", func(dr *wire.DirectRequest) (any, error) {
		if dr.Run.ActivationID != id || dr.Record.ActivationID != id || dr.Record.Namespace != "alice" {
			return nil, wire.Errorf(wire.CodeBadRequest, "not the request sent")
		}
		rec := dr.Record
		rec.Status, rec.End = wire.StatusSuccess, 1
		return &rec, nil
	})

	g := &Gateway{cfg: Config{Conn: nc, Now: time.Now}, log: log}
	for _, tc := range []struct {
		invoker    string
		misplaced  bool // and the next attempt goes through the controller
		status     int  // of the chainError; -1: none
		wantRecord bool
	}{
		{invoker: "old-version", misplaced: true, status: 0}, // no responder
		{invoker: "misplaced", misplaced: true, status: 0},
		{invoker: "stopping", misplaced: true, status: 0},
		{invoker: "other", status: http.StatusBadGateway},
		{invoker: "answers", status: -1, wantRecord: true},
	} {
		t.Run(tc.invoker, func(t *testing.T) {
			inv := &invocation{
				caller: "alice", blocking: true,
				target: &target{action: &wire.Action{Namespace: "alice", Name: "hello", Kind: kindWasm, Revision: 7}},
			}
			req := &wire.InvokeRequest{
				ActivationID: id, Namespace: "alice", Action: "hello", Subject: "alice", Blocking: true,
				Invoker: tc.invoker, Runtime: []byte("runtime"), FunctionID: []byte("fn"), Envelope: []byte("sealed"), Revision: 7,
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			res, cerr := g.sendDirect(ctx, cctx, inv, &invoked{id: id}, req)
			if res == nil {
				t.Fatal("no invoked")
			}
			switch {
			case tc.status < 0 && cerr != nil:
				t.Fatalf("error %v", cerr.err)
			case tc.status >= 0 && (cerr == nil || cerr.status != tc.status):
				t.Fatalf("error %+v, want status %d", cerr, tc.status)
			}
			if res.misplaced != tc.misplaced || inv.viaController != tc.misplaced {
				t.Fatalf("misplaced %v, via controller %v; want %v", res.misplaced, inv.viaController, tc.misplaced)
			}
			if tc.misplaced && g.direct(inv, req) {
				t.Fatal("the attempt after a refusal would take the warm path again")
			}
			if (res.act != nil) != tc.wantRecord || tc.wantRecord && res.act.Status != wire.StatusSuccess {
				t.Fatalf("record %+v", res.act)
			}
		})
	}
}
