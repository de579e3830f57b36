package bus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
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
	}
}

func TestCallServe(t *testing.T) {
	srv, err := Start(context.Background(), Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
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
