package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// staleMargin is added to an activation's deadline (time limit plus cold
// start grace) before a running record nobody completed (its controller
// crashed) is closed as lost.
const staleMargin = time.Minute

// handleActivationGet returns a completed activation record
// (wire.ActivationRef → wire.Activation). Like OpenWhisk, an activation
// that is still running is not found yet.
func (c *Controller) handleActivationGet(ctx context.Context, data []byte) (any, error) {
	ref, err := bus.Decode[wire.ActivationRef](data)
	if err != nil {
		return nil, err
	}
	if err := checkNamespace(ref.Namespace); err != nil {
		return nil, err
	}
	if !validActivationID(ref.ActivationID) {
		return nil, badRequest("invalid activation id")
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	a, err := c.getActivation(ctx, store.Key(ref.Namespace, ref.ActivationID))
	if errors.Is(err, errNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// handleActivationList lists a namespace's completed activations, newest
// first (wire.ListRequest → wire.ActivationList), optionally only those of
// one entity (Name: an action, "pkg/action", or a trigger) and those that
// started from Since to Upto (unix ms, each 0 for no bound); Count counts
// them instead (after Skip, without Limit).
func (c *Controller) handleActivationList(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.ListRequest](data)
	if err != nil {
		return nil, err
	}
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	if req.Name != "" && !validPath(req.Name) {
		return nil, badRequest("invalid name")
	}
	if req.Since < 0 || req.Upto < 0 {
		return nil, badRequest("since or upto out of range")
	}
	skip, limit, err := page(req.Skip, req.Limit)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	keys, err := listKeys(ctx, c.activations, req.Namespace)
	if err != nil {
		return nil, err
	}
	// Activation ids are random (the hex of the envelope's request id), so
	// they say nothing about time: read every completed record of the
	// namespace, order them by start time, newest first, and load the page
	// again. Records carry sealed results and logs, so only a summary of
	// each is held until the page is known.
	type summary struct {
		start   int64
		id, key string
	}
	var found []summary
	for _, k := range keys {
		parts, err := store.SplitKey(k)
		if err != nil || len(parts) != 2 || parts[0] != req.Namespace || !validActivationID(parts[1]) {
			continue
		}
		a, err := c.getActivation(ctx, k)
		if errors.Is(err, errNotFound) {
			continue // running, or deleted since listed
		}
		if err != nil {
			return nil, err
		}
		if req.Name != "" && a.Name != req.Name {
			continue
		}
		if a.Start < req.Since || (req.Upto != 0 && a.Start > req.Upto) {
			continue
		}
		found = append(found, summary{a.Start, a.ActivationID, k})
	}
	if req.Count {
		return &wire.ActivationList{Activations: []wire.Activation{}, Count: max(len(found)-skip, 0)}, nil
	}
	slices.SortFunc(found, func(x, y summary) int {
		if c := cmp.Compare(y.start, x.start); c != 0 {
			return c
		}
		return strings.Compare(y.id, x.id)
	})
	found = found[min(skip, len(found)):]
	found = found[:min(limit, len(found))]
	out := make([]wire.Activation, 0, len(found))
	for _, f := range found {
		a, err := c.getActivation(ctx, f.key)
		if errors.Is(err, errNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return &wire.ActivationList{Activations: out}, nil
}

// getActivation loads the completed record at key. A running record is
// errNotFound, unless it is past any deadline its controller could have
// had: then it is closed as lost and returned.
func (c *Controller) getActivation(ctx context.Context, key string) (*wire.Activation, error) {
	a, err := c.loadActivation(ctx, key, true)
	return a, err
}

func (c *Controller) loadActivation(ctx context.Context, key string, retry bool) (*wire.Activation, error) {
	if a, ok := c.answered.Load(key); ok {
		return a.(*wire.Activation), nil // being written
	}
	e, err := c.activations.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("controller: load activation: %w", err)
	}
	var a wire.Activation
	if err := bus.Unmarshal(e.Value(), &a); err != nil {
		return nil, fmt.Errorf("controller: decode stored activation: %w", err)
	}
	if a.End != 0 {
		return &a, nil
	}
	now := c.now()
	deadline := time.UnixMilli(a.Start).Add(time.Duration(timeoutOf(a.Annotations))*time.Millisecond +
		c.cfg.ColdStartGrace + staleMargin)
	if d, ok := deadlineOf(a.Annotations); ok { // a sequence
		deadline = time.UnixMilli(d).Add(staleMargin)
	}
	if now.Before(deadline) {
		return nil, errNotFound
	}
	a.Annotations = slices.DeleteFunc(a.Annotations, func(kv wire.KeyValue) bool { return kv.Key == annDeadline })
	a.End = max(now.UnixMilli(), a.Start)
	a.Status = wire.StatusInternalError
	a.ErrorCode = ErrLost
	a.ErrorMessage = msgLost
	value, err := bus.Marshal(&a)
	if err != nil {
		return nil, fmt.Errorf("controller: encode record: %w", err)
	}
	if _, err := c.activations.Update(ctx, key, value, e.Revision()); err != nil {
		if retry && (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)) {
			return c.loadActivation(ctx, key, false) // completed meanwhile
		}
		return nil, fmt.Errorf("controller: close lost activation: %w", err)
	}
	c.log.Warn("activation lost", "activation", a.ActivationID, "namespace", a.Namespace, "action", a.Name)
	c.metrics.activations.WithLabelValues(a.Status).Inc()
	return &a, nil
}

// timeoutOf returns the "timeout" of the "limits" annotation of a record
// (ms), or the maximum time limit if it is missing.
func timeoutOf(anns []wire.KeyValue) int64 {
	for _, kv := range anns {
		if kv.Key != "limits" {
			continue
		}
		var v any
		switch m := kv.Value.(type) {
		case map[any]any:
			v = m["timeout"]
		case map[string]any:
			v = m["timeout"]
		}
		switch t := v.(type) {
		case uint64:
			return int64(min(t, maxTimeoutMs))
		case int64:
			return min(max(t, 0), maxTimeoutMs)
		}
	}
	return maxTimeoutMs
}

// deadlineOf returns the deadline annotation of a running sequence record
// (unix ms).
func deadlineOf(anns []wire.KeyValue) (int64, bool) {
	for _, kv := range anns {
		if kv.Key != annDeadline {
			continue
		}
		switch d := kv.Value.(type) {
		case uint64:
			return int64(min(d, math.MaxInt64)), true
		case int64:
			return d, true
		}
	}
	return 0, false
}
