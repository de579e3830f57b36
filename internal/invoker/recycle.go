package invoker

import (
	"errors"
	"time"
)

// errRecycled marks a runtime retired at its own request.
var errRecycled = errors.New("invoker: enclave runtime retired at its request")

// recycle retires a runtime that asked to be replaced (ipc.RunReply.Recycle:
// it halted a guest that did not stop, which may keep a CPU and its Go
// scheduler busy). Later steps find it dead and start a fresh runtime, as
// after a crash; requests already sent to it are answered or fail when it
// exits. It is stopped in the background, killed after a short grace.
func (iv *Invoker) recycle(p *runtimeProc) {
	p.mu.Lock()
	first := p.err == nil
	if first {
		p.err = errRecycled
	}
	p.mu.Unlock()
	if !first {
		return
	}
	iv.log.Warn("enclave runtime could not stop a guest; replacing it", "namespace", p.namespace)
	go p.stop(time.Second)
}
