package invoker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/clemmys/clemmys/internal/ipc"
)

// errRuntimeGone is returned for requests in flight when a runtime exits.
var errRuntimeGone = errors.New("invoker: enclave runtime exited")

// errNotSent marks a call that never reached the runtime (it had exited, or
// writing the request failed), so the request can safely be repeated on a
// fresh runtime.
var errNotSent = errors.New("invoker: request not delivered")

// maxStderrLine bounds one forwarded line of the runtime's diagnostics;
// longer lines are truncated.
const maxStderrLine = 4096

// runtimeProc is one enclave runtime child process and the requests in
// flight to it.
//
// Lock order: mu guards pending, nextID, err and loaded; wmu serialises
// writes to stdin. Never hold mu while writing.
type runtimeProc struct {
	namespace string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	log       *slog.Logger
	done      chan struct{} // closed when the process has exited
	errDone   chan struct{} // closed when stderr is drained

	wmu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *ipc.Frame
	err     error
	loaded  map[string]*loadState // by hex function id
	engines map[string]*loadState // JavaScript engines, by hex digest (engine.go)
	hello   *ipc.Hello
	id      []byte // envelope.RuntimeID of hello's key: what steps designate
	// manifest is the signed release manifest of the binary this runtime
	// was started from (set before the process is shared, then read-only).
	manifest []byte
}

type loadState struct {
	done chan struct{}
	err  error
}

// finished reports whether the load has ended, succeeded whether it ended
// well; both are false for a nil st (no load).
func (st *loadState) finished() bool {
	if st == nil {
		return false
	}
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

func (st *loadState) succeeded() bool { return st.finished() && st.err == nil }

func startRuntime(path string, args []string, namespace string, log *slog.Logger) (*runtimeProc, error) {
	cmd := exec.Command(path, args...)
	// Own process group: a Ctrl-C at the terminal reaches the invoker, which
	// then shuts its runtimes down in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("invoker: start enclave runtime: %w", err)
	}
	p := &runtimeProc{
		namespace: namespace,
		cmd:       cmd,
		stdin:     stdin,
		log:       log.With("runtime_pid", cmd.Process.Pid),
		done:      make(chan struct{}),
		errDone:   make(chan struct{}),
		pending:   map[uint64]chan *ipc.Frame{},
		loaded:    map[string]*loadState{},
	}
	go p.forwardStderr(stderr)
	go p.readLoop(stdout)
	return p, nil
}

// forwardStderr copies the runtime's own diagnostics (never payloads) into
// the invoker's log, line by line, truncating long lines. It drains stderr
// until the process closes it, so the runtime never blocks on a full pipe.
func (p *runtimeProc) forwardStderr(r io.Reader) {
	defer close(p.errDone)
	br := bufio.NewReaderSize(r, maxStderrLine)
	var line []byte
	truncated := false
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 && !truncated {
			n := min(len(chunk), maxStderrLine-len(line))
			line = append(line, chunk[:n]...)
			truncated = n < len(chunk)
		}
		if err != nil {
			if len(line) > 0 {
				p.log.Debug("enclave", "line", string(line))
			}
			if !errors.Is(err, io.EOF) {
				_, _ = io.Copy(io.Discard, r)
			}
			return
		}
		if !isPrefix {
			if truncated {
				p.log.Debug("enclave", "line", string(line), "truncated", true)
			} else {
				p.log.Debug("enclave", "line", string(line))
			}
			line, truncated = line[:0], false
		}
	}
}

func (p *runtimeProc) readLoop(stdout io.Reader) {
	br := bufio.NewReaderSize(stdout, 64<<10)
	var err error
	for {
		var f *ipc.Frame
		f, err = ipc.ReadFrame(br)
		if err != nil {
			break
		}
		p.mu.Lock()
		ch := p.pending[f.ID]
		delete(p.pending, f.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
	if !errors.Is(err, io.EOF) {
		// A runtime that sends garbage is broken; it may still be alive,
		// and waiting for it would hang its callers.
		_ = p.cmd.Process.Kill()
	} else {
		select {
		case <-p.errDone:
		case <-time.After(time.Second):
			// stdout closed, yet it lingers: a broken runtime.
			_ = p.cmd.Process.Kill()
		}
	}
	<-p.errDone
	waitErr := p.cmd.Wait()
	p.mu.Lock()
	p.err = errRuntimeGone
	for id, ch := range p.pending {
		close(ch)
		delete(p.pending, id)
	}
	p.mu.Unlock()
	if !errors.Is(err, io.EOF) || waitErr != nil {
		p.log.Warn("enclave runtime exited", "read_err", err, "wait_err", waitErr)
	}
	close(p.done)
}

// call sends one request and waits for its reply. The runtime stops work on
// a cancelled request only through the limits in the envelope; the reply is
// simply dropped.
func (p *runtimeProc) call(ctx context.Context, op string, req, resp any) error {
	body, err := ipc.Marshal(req)
	if err != nil {
		return fmt.Errorf("invoker: encode %s: %w", op, err)
	}
	ch := make(chan *ipc.Frame, 1)
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%w: %w", errNotSent, p.err)
	}
	p.nextID++
	id := p.nextID
	p.pending[id] = ch
	p.mu.Unlock()

	p.wmu.Lock()
	err = ipc.WriteFrame(p.stdin, &ipc.Frame{ID: id, Op: op, Body: body})
	p.wmu.Unlock()
	if err != nil {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		if errors.Is(err, ipc.ErrFrameTooLarge) {
			return fmt.Errorf("invoker: send %s: %w", op, err)
		}
		// The pipe is broken (the runtime exited) or a frame went out
		// partially: either way the runtime is unusable. Make sure it is
		// gone before reporting, so the caller starts a fresh one.
		p.log.Warn("writing to the enclave runtime failed; stopping it", "op", op, "err", err)
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%w: %w: send %s: %w", errNotSent, errRuntimeGone, op, err)
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return errRuntimeGone
		}
		if f.Err != nil {
			return f.Err
		}
		if resp == nil {
			return nil
		}
		if err := ipc.Unmarshal(f.Body, resp); err != nil {
			return fmt.Errorf("invoker: decode %s reply: %w", op, err)
		}
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return ctx.Err()
	}
}

// alive reports whether the runtime can take requests: it has not exited
// and its exit is not being processed.
func (p *runtimeProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err == nil
}

// stop closes stdin (the runtime exits at EOF) and kills it if it has not
// exited within grace.
func (p *runtimeProc) stop(grace time.Duration) {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
