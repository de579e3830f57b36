package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
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
// that is still running is not found yet, unless ref.Running asks for it
// (the gateway's check before it answers 202 for a blocking activation).
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
	key := store.Key(ref.Namespace, ref.ActivationID)
	a, err := c.getActivation(ctx, key)
	if errors.Is(err, errNotFound) && ref.Running {
		a, _, err = c.readRecord(ctx, c.activations, key)
	}
	if errors.Is(err, errNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	return a, nil
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
	if a, _, err := c.readRecord(ctx, c.records, key); !errors.Is(err, errNotFound) {
		return a, err
	}
	a, _, err := c.readRecord(ctx, c.activations, key)
	if err != nil || a.End != 0 {
		return a, err // complete from the start (a trigger's, or from before clemmys_records)
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
	value, err := bus.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("controller: encode record: %w", err)
	}
	if _, err := c.records.Create(ctx, key, value); err != nil {
		if retry && errors.Is(err, jetstream.ErrKeyExists) {
			return c.loadActivation(ctx, key, false) // completed meanwhile
		}
		return nil, fmt.Errorf("controller: close lost activation: %w", err)
	}
	c.log.Warn("activation lost", "activation", a.ActivationID, "namespace", a.Namespace, "action", a.Name)
	c.metrics.activations.WithLabelValues(a.Status).Inc()
	return a, nil
}

// readRecord reads and decodes the record at key in kv.
func (c *Controller) readRecord(ctx context.Context, kv jetstream.KeyValue, key string) (*wire.Activation, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("controller: load activation: %w", err)
	}
	var a wire.Activation
	if err := bus.Unmarshal(e.Value(), &a); err != nil {
		return nil, 0, fmt.Errorf("controller: decode stored activation: %w", err)
	}
	return &a, e.Revision(), nil
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
