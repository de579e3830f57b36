package invoker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/ipc"
	"github.com/clemmys/clemmys/internal/store"
)

// maxSealedCode bounds a sealed module read from the object store: it
// travels to the runtime in one frame, with the key bundle.
const maxSealedCode = ipc.MaxFrame - 1<<20

// errCodeTooLarge: the stored object is larger than any sealed module.
var errCodeTooLarge = errors.New("invoker: stored code object too large")

// fetchCode reads the sealed code object name, at most maxSealedCode
// bytes. It returns when ctx ends even if the store stops sending: the
// object store client notices a cancelled context only at the context's
// deadline or when a chunk arrives, and the chunks of an object deleted
// while it is read (a concurrent overwrite of the action) never do.
func fetchCode(ctx context.Context, objs jetstream.ObjectStore, name string) ([]byte, error) {
	res, err := objs.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, err
	}
	if info.Size > maxSealedCode {
		_ = res.Close()
		return nil, fmt.Errorf("%w: %d bytes", errCodeTooLarge, info.Size)
	}
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(res, maxSealedCode+1))
		done <- read{b, err}
	}()
	select {
	case r := <-done:
		_ = res.Close()
		if r.err == nil && len(r.b) > maxSealedCode {
			r.err = errCodeTooLarge
		}
		return r.b, r.err
	case <-ctx.Done():
		// The client holds the result's lock while it waits for a chunk,
		// until its deadline, so it cannot be closed now: the read ends
		// on its own by that deadline.
		go func() {
			<-done
			_ = res.Close()
		}()
		return nil, ctx.Err()
	}
}

// codeStore returns the object store of sealed code, opening it on first
// use: the controller creates it, and an invoker may start first (and may
// not be allowed to create it).
func (iv *Invoker) codeStore(ctx context.Context) (jetstream.ObjectStore, error) {
	iv.codeMu.Lock()
	defer iv.codeMu.Unlock()
	if iv.code != nil {
		return iv.code, nil
	}
	objs, err := store.OpenObjects(ctx, iv.cfg.JS, store.ObjectsCode)
	if err != nil {
		return nil, err
	}
	iv.code = objs
	return objs, nil
}
