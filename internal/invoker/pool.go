package invoker

import (
	"slices"
	"time"
)

// The pool of spare runtimes (DESIGN §4: pre-started, pre-attested
// runtimes). A spare is a started clemmys-enclave process that has answered
// its hello: its wazero engine is set up and its ephemeral key made. What
// cannot be done ahead is bound to a function: the evidence binds a KMS
// nonce the KMS issues for one key release, and the namespace is bound by
// the runtime when it loads its first function (enclave.Runtime.Load). So
// a spare serves any namespace, and runtime() hands it to the first
// namespace that needs one.

const (
	// poolCheckInterval is how often the filler looks for spares that died
	// while idle.
	poolCheckInterval = time.Second
	// poolRetryMin and poolRetryMax bound the back-off after a spare
	// failed to start (a missing or broken runtime binary).
	poolRetryMin = 100 * time.Millisecond
	poolRetryMax = 30 * time.Second
)

// fillPool keeps Config.PoolSize spares until Stop cancels runCtx.
func (iv *Invoker) fillPool() {
	defer iv.wg.Done()
	tick := time.NewTicker(poolCheckInterval)
	defer tick.Stop()
	failures := 0
	for {
		for iv.poolShort() {
			p, err := iv.startProc("")
			if err != nil {
				if iv.runCtx.Err() != nil {
					return
				}
				delay := min(poolRetryMin<<min(failures, 10), poolRetryMax)
				failures++
				iv.log.Error("starting a spare enclave runtime", "err", err, "retry_in", delay)
				select {
				case <-iv.runCtx.Done():
					return
				case <-time.After(delay):
				}
				continue
			}
			failures = 0
			if !iv.addSpare(p) {
				p.stop(time.Second)
				return
			}
			iv.precompile(p)
			iv.log.Debug("spare enclave runtime started", "runtime_pid", p.cmd.Process.Pid)
		}
		select {
		case <-iv.runCtx.Done():
			return
		case <-iv.poolWake:
		case <-tick.C:
		}
	}
}

// poolShort drops dead spares and reports whether the pool lacks some.
func (iv *Invoker) poolShort() bool {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.pool = slices.DeleteFunc(iv.pool, func(p *runtimeProc) bool { return !p.alive() })
	return !iv.closed && iv.runCtx.Err() == nil && len(iv.pool) < iv.cfg.PoolSize
}

// addSpare puts p into the pool; false if the invoker is stopping (the
// caller stops p).
func (iv *Invoker) addSpare(p *runtimeProc) bool {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.closed || iv.runCtx.Err() != nil {
		return false
	}
	iv.pool = append(iv.pool, p)
	return true
}

// takeSpareLocked removes the oldest live spare from the pool and returns
// it, or nil. iv.mu is held.
func (iv *Invoker) takeSpareLocked() *runtimeProc {
	for len(iv.pool) > 0 {
		p := iv.pool[0]
		iv.pool = slices.Delete(iv.pool, 0, 1)
		if p.alive() {
			return p
		}
	}
	return nil
}

// wakePool asks the filler to top the pool up.
func (iv *Invoker) wakePool() {
	select {
	case iv.poolWake <- struct{}{}:
	default:
	}
}
