package invoker

import (
	"context"
	"slices"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Placement. A step's envelope designates the one runtime that may run it
// (envelope version 3), so before a gateway seals it asks, through the
// controller, where the step would run: this invoker answers with its
// runtime of the namespace, binding one (a spare, or a new process) if it
// has none. Its heartbeats list the runtimes it runs, so controllers can
// refuse a request for a runtime that is gone before anything is reserved.

func (iv *Invoker) handlePlace(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.InvokerPlace](data)
	if err != nil {
		return nil, err
	}
	if req.Namespace == "" || len(req.Namespace) > maxNamespaceLen {
		return nil, wire.Errorf(wire.CodeBadRequest, "invalid namespace")
	}
	p, err := iv.runtime(req.Namespace)
	if err != nil {
		iv.log.Error("place: start runtime", "namespace", req.Namespace, "err", err)
		return nil, wire.Errorf(wire.CodeUnavailable, "the enclave runtime could not be started")
	}
	return &wire.InvokerPlaced{Runtime: slices.Clone(p.id)}, nil
}

// maxNamespaceLen bounds a namespace from the bus.
const maxNamespaceLen = 256

// runtimeInfos lists the live runtimes bound to a namespace (at most
// wire.MaxHeartbeatRuntimes).
func (iv *Invoker) runtimeInfos() []wire.RuntimeInfo {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	out := make([]wire.RuntimeInfo, 0, len(iv.runtimes))
	for ns, p := range iv.runtimes {
		if len(out) == wire.MaxHeartbeatRuntimes {
			break
		}
		if p.alive() && p.id != nil {
			out = append(out, wire.RuntimeInfo{Namespace: ns, ID: p.id})
		}
	}
	return out
}
