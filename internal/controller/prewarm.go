package controller

import (
	"context"
	"errors"
	"time"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// prewarmTimeout bounds forwarding a prewarm to an invoker, which answers
// as soon as it has accepted it (the load runs in the background there).
const prewarmTimeout = 5 * time.Second

// handlePrewarm forwards a prewarm (wire.Prewarm → wire.PrewarmReply) to
// the action's home invoker, where handlePlace places it, so that
// the function's first invocation finds it loaded there. It is best effort
// and carries only routing metadata; unlike a step it is not offered to a
// second invoker, not counted as outstanding and does not pass through
// Config.Interceptor (it carries no envelope and runs nothing).
func (c *Controller) handlePrewarm(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.Prewarm](data)
	if err != nil {
		return nil, err
	}
	if err := checkRef(req.Namespace, req.Action); err != nil {
		return nil, err
	}
	if len(req.FunctionID) == 0 || len(req.FunctionID) > maxFunctionIDLen {
		return nil, badRequest("invalid function id")
	}
	id, ok := c.sched.home(homeKey(req.Namespace, req.Action))
	if !ok {
		return nil, wire.Errorf(wire.CodeUnavailable, "no invoker is available")
	}
	cctx, cancel := context.WithTimeout(ctx, prewarmTimeout)
	defer cancel()
	var rep wire.PrewarmReply
	if err := bus.Call(cctx, c.cfg.Conn, wire.SubjectInvokerPrewarm(id), req, &rep); err != nil {
		c.log.Warn("prewarm", "invoker", id, "namespace", req.Namespace, "action", req.Action, "err", err)
		if we, ok := errors.AsType[*wire.Error](err); ok {
			return nil, we
		}
		return nil, wire.Errorf(wire.CodeUnavailable, "the invoker did not take the prewarm")
	}
	c.log.Debug("prewarm", "invoker", id, "namespace", req.Namespace, "action", req.Action, "loaded", rep.Loaded)
	return &wire.PrewarmReply{InvokerID: id, Loaded: rep.Loaded}, nil
}
