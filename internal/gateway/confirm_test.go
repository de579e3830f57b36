package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// TestConfirmRecorded: before answering 202 for a blocking activation the
// gateway asks the controller for its record, running or complete, and
// answers 502 when there is none (a controller that deferred the running
// record died) or the answer is about another activation.
func TestConfirmRecorded(t *testing.T) {
	e := newEntEnv(t)
	type answerFunc = func(ref *wire.ActivationRef) (any, error)
	var answer atomic.Pointer[answerFunc]
	stop, err := bus.Serve(context.Background(), e.g.cfg.Conn, slog.New(slog.NewTextHandler(io.Discard, nil)),
		wire.SubjectActivationGet, wire.QueueController, 0, func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.ActivationRef](d)
			if err != nil {
				return nil, err
			}
			if !ref.Running {
				t.Error("the check did not ask for running records")
			}
			return (*answer.Load())(ref)
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	req := &wire.InvokeRequest{ActivationID: "0123456789abcdef0123456789abcdef", Namespace: "guest", RecordNamespace: "alice"}
	for _, tc := range []struct {
		name   string
		answer func(ref *wire.ActivationRef) (any, error)
		ok     bool
	}{
		{"running record", func(ref *wire.ActivationRef) (any, error) {
			return &wire.Activation{ActivationID: ref.ActivationID, Namespace: ref.Namespace, Start: 1}, nil
		}, true},
		{"not found", func(*wire.ActivationRef) (any, error) { return nil, wire.Errorf(wire.CodeNotFound, "not found") }, false},
		{"another activation", func(ref *wire.ActivationRef) (any, error) {
			return &wire.Activation{ActivationID: "ffffffffffffffffffffffffffffffff", Namespace: ref.Namespace}, nil
		}, false},
		{"another namespace", func(ref *wire.ActivationRef) (any, error) {
			return &wire.Activation{ActivationID: ref.ActivationID, Namespace: "guest"}, nil
		}, false},
	} {
		answer.Store(&tc.answer)
		cerr := e.g.confirmRecorded(context.Background(), req)
		if tc.ok && cerr != nil {
			t.Errorf("%s: %v", tc.name, cerr)
		}
		if !tc.ok && (cerr == nil || cerr.status != http.StatusBadGateway) {
			t.Errorf("%s: %+v, want 502", tc.name, cerr)
		}
	}
}
