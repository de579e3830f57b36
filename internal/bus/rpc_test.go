package bus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/wire"
)

// The head Serve writes before a body is what encoding the whole frame
// gives, so Call's shortcut and the general decoding read the same bytes.
func TestBodyHeadIsTheFrame(t *testing.T) {
	for _, body := range []any{
		map[string]any{"a": 1},
		&wire.Activation{ActivationID: "x", Namespace: "ns"},
		[]byte("raw"),
		"",
		0,
	} {
		b, err := Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		frame, err := Marshal(&reply{Body: b})
		if err != nil {
			t.Fatal(err)
		}
		got, err := bodyFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame, got) {
			t.Errorf("%#v: frame %x, head+body %x", body, frame, got)
		}
		// A body the handler encoded itself is the same frame.
		if got, err := bodyFrame(Encoded(b)); err != nil || !bytes.Equal(frame, got) {
			t.Errorf("%#v encoded: frame %x, got %x (%v)", body, frame, got, err)
		}
	}
	if _, err := bodyFrame(Encoded(nil)); err == nil {
		t.Error("an empty encoded body made a frame")
	}
}

func TestCallServe(t *testing.T) {
	nc, log := startTest(t)
	type echo struct {
		S string `cbor:"1,keyasint"`
	}
	stop, err := Serve(context.Background(), nc, log, "t.echo", "", 0, func(ctx context.Context, data []byte) (any, error) {
		in, err := Decode[echo](data)
		if err != nil {
			return nil, err
		}
		switch in.S {
		case "fail":
			return nil, &wire.Error{Code: wire.CodeNotFound, Message: "no such thing"}
		case "secret":
			return nil, errors.New("internal detail")
		case "none":
			return nil, nil
		case "encoded":
			b, err := Marshal(&echo{S: "stored"})
			return Encoded(b), err
		case "empty":
			return Encoded(nil), nil
		}
		return &echo{S: in.S + "!"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var out echo
	if err := Call(ctx, nc, "t.echo", &echo{S: "hi"}, &out); err != nil || out.S != "hi!" {
		t.Fatalf("echo: %+v %v", out, err)
	}
	if err := Call(ctx, nc, "t.echo", &echo{S: "hi"}, nil); err != nil {
		t.Fatalf("echo without a response value: %v", err)
	}
	var we *wire.Error
	if err := Call(ctx, nc, "t.echo", &echo{S: "fail"}, &out); !errors.As(err, &we) || we.Code != wire.CodeNotFound {
		t.Fatalf("wire error: %v", err)
	}
	if err := Call(ctx, nc, "t.echo", &echo{S: "secret"}, &out); !errors.As(err, &we) || we.Code != wire.CodeInternal || we.Message != "internal error" {
		t.Fatalf("internal error: %v", err)
	}
	if err := Call(ctx, nc, "t.echo", &echo{S: "none"}, nil); err != nil {
		t.Fatalf("empty reply: %v", err)
	}
	if err := Call(ctx, nc, "t.echo", &echo{S: "encoded"}, &out); err != nil || out.S != "stored" {
		t.Fatalf("encoded reply: %+v %v", out, err)
	}
	if err := Call(ctx, nc, "t.echo", &echo{S: "empty"}, &out); !errors.As(err, &we) || we.Code != wire.CodeInternal {
		t.Fatalf("empty encoded reply: %v", err)
	}
	// A body followed by anything is refused, as a frame would be.
	sub, err := nc.Subscribe("t.trailing", func(m *nats.Msg) {
		b, _ := Marshal(&echo{S: "x"})
		_ = m.Respond(append(append(bodyHead[:], b...), 0x00))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := Call(ctx, nc, "t.trailing", &echo{S: "x"}, &out); err == nil {
		t.Fatal("a reply with trailing bytes was accepted")
	}
}

// TestServeWorkers: workers are reused, never more than limit run at once,
// a handler's panic leaves its worker serving, and stop cancels and waits
// for the running handlers.
func TestServeWorkers(t *testing.T) {
	nc, log := startTest(t)
	type req struct {
		S string `cbor:"1,keyasint"`
	}
	const limit = 2
	var (
		mu            sync.Mutex
		running, peak int
		release       = make(chan struct{})
		entered       = make(chan struct{}, 16)
		stopped       = make(chan struct{})
		handlerDone   = make(chan struct{})
		holding       = make(chan struct{})
	)
	stop, err := Serve(context.Background(), nc, log, "t.work", "", limit, func(ctx context.Context, data []byte) (any, error) {
		in, err := Decode[req](data)
		if err != nil {
			return nil, err
		}
		switch in.S {
		case "panic":
			panic("handler bug")
		case "hold":
			close(holding)
			<-ctx.Done() // until stop
			select {
			case <-stopped:
				t.Error("stop returned before its running handler")
			default:
			}
			close(handlerDone)
			return nil, ctx.Err()
		}
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		entered <- struct{}{}
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return &req{S: "ok"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const calls = 6
	errs := make(chan error, calls)
	for range calls {
		go func() {
			var out req
			err := Call(ctx, nc, "t.work", &req{S: "wait"}, &out)
			if err == nil && out.S != "ok" {
				err = errors.New("wrong answer " + out.S)
			}
			errs <- err
		}()
	}
	for range limit {
		<-entered // limit handlers are running; the others wait for a worker
	}
	close(release)
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if peak > limit {
		t.Fatalf("%d handlers ran at once, limit %d", peak, limit)
	}
	var we *wire.Error
	if err := Call(ctx, nc, "t.work", &req{S: "panic"}, nil); !errors.As(err, &we) || we.Code != wire.CodeInternal {
		t.Fatalf("panicking handler: %v", err)
	}
	for range 2 * limit { // the workers still serve after the panic
		if err := Call(ctx, nc, "t.work", &req{S: "again"}, nil); err != nil {
			t.Fatalf("after a panic: %v", err)
		}
	}
	held := make(chan error, 1)
	go func() { held <- Call(ctx, nc, "t.work", &req{S: "hold"}, nil) }()
	<-holding
	stop()
	close(stopped)
	select {
	case <-handlerDone:
	default:
		t.Fatal("stop returned with a handler running")
	}
	<-held
}

// startTest starts the package's own server for t and connects to it.
func startTest(t *testing.T) (*nats.Conn, *slog.Logger) {
	srv, err := Start(context.Background(), Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, slog.New(slog.NewTextHandler(io.Discard, nil))
}
