package enclave

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/clemmys/clemmys/internal/ipc"
)

// Serve answers invoker requests read from in, writing replies to out, until
// in reaches EOF or ctx is cancelled. Requests run concurrently; replies are
// written whole, one at a time.
//
// Requests are handed to worker goroutines that stay for the next request
// rather than to a new goroutine each: a request runs deep (CBOR, the
// envelope, wazero), and growing a fresh goroutine's stack to that depth
// was a tenth of the runtime's CPU per warm activation. There are as many
// workers as requests have been in flight at once (the invoker bounds
// that); they end with Serve.
func (r *Runtime) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wmu  sync.Mutex
		wg   sync.WaitGroup
		jobs = make(chan *ipc.Frame) // unbuffered: taken by an idle worker
	)
	defer wg.Wait()
	defer close(jobs)
	in = bufio.NewReaderSize(in, 64<<10)
	reply := func(f *ipc.Frame) {
		wmu.Lock()
		defer wmu.Unlock()
		if err := ipc.WriteFrame(out, f); err != nil {
			r.cfg.Log.Error("write reply", "err", err)
			cancel()
		}
	}
	for {
		f, err := ipc.ReadFrame(in)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("enclave: read request: %w", err)
		}
		select {
		case jobs <- f:
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ; f != nil; f = <-jobs {
					reply(r.dispatch(ctx, f))
				}
			}()
		}
	}
}

func (r *Runtime) dispatch(ctx context.Context, f *ipc.Frame) *ipc.Frame {
	out := &ipc.Frame{ID: f.ID}
	var (
		body any
		err  error
	)
	switch f.Op {
	case ipc.OpHello:
		body = r.Hello()
	case ipc.OpAttest:
		var req ipc.AttestRequest
		if err = ipc.Unmarshal(f.Body, &req); err == nil {
			body, err = r.Attest(&req)
		}
	case ipc.OpLoad:
		var req ipc.LoadRequest
		if err = ipc.Unmarshal(f.Body, &req); err == nil {
			body, err = r.Load(ctx, &req)
		}
	case ipc.OpEngine:
		var req ipc.EngineRequest
		if err = ipc.Unmarshal(f.Body, &req); err == nil {
			body, err = r.LoadEngine(ctx, &req)
		}
	case ipc.OpRun:
		var req ipc.RunRequest
		if err = ipc.Unmarshal(f.Body, &req); err == nil {
			body = r.RunChain(ctx, &req)
		}
	default:
		err = &ipc.Error{Code: CodeBadRequest, Message: "unknown op"}
	}
	if err != nil {
		var ie *ipc.Error
		if !errors.As(err, &ie) {
			ie = &ipc.Error{Code: CodeBadRequest, Message: "malformed request"}
		}
		out.Err = ie
		return out
	}
	b, err := ipc.Marshal(body)
	if err != nil {
		out.Err = &ipc.Error{Code: CodeInternal, Message: "encoding reply failed"}
		return out
	}
	out.Body = b
	return out
}
