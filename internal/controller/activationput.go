package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Bounds of an activation record made by the gateway.
const (
	// maxSealedPartLen bounds each sealed part (result, logs, envelope):
	// a result of 1 MiB plus a trigger's payload and default parameters.
	maxSealedPartLen = 4 << 20
	// maxRecordComponents bounds the activation ids a record lists (a
	// trigger's rule activations).
	maxRecordComponents = 1000
)

// handleActivationPut stores a complete activation record the gateway made
// itself, such as a trigger's (wire.Activation → wire.Activation). The id
// must be new: one already used, by a running activation too, is a
// conflict.
func (c *Controller) handleActivationPut(ctx context.Context, data []byte) (any, error) {
	a, err := bus.Decode[wire.Activation](data)
	if err != nil {
		return nil, err
	}
	if err := checkRecord(a); err != nil {
		return nil, err
	}
	value, err := bus.Marshal(a)
	if err != nil {
		return nil, badRequest("the record cannot be encoded")
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := c.activations.Create(ctx, store.Key(a.Namespace, a.ActivationID), value); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, wire.Errorf(wire.CodeConflict, "activation id already used")
		}
		return nil, fmt.Errorf("controller: store activation: %w", err)
	}
	c.metrics.activations.WithLabelValues(a.Status).Inc()
	c.log.Info("activation stored", "activation", a.ActivationID, "namespace", a.Namespace, "name", a.Name,
		"status", a.Status, "components", len(a.Components))
	return a, nil
}

// checkRecord checks a complete activation record from the gateway.
func checkRecord(a *wire.Activation) error {
	if !validActivationID(a.ActivationID) {
		return badRequest("invalid activation id")
	}
	if err := checkRef(a.Namespace, a.Name); err != nil {
		return err
	}
	if a.Start <= 0 || a.End <= 0 {
		return badRequest("the record is not complete")
	}
	if a.End < a.Start {
		return badRequest("the record ends before it starts")
	}
	switch a.Status {
	case wire.StatusSuccess, wire.StatusApplicationError, wire.StatusDeveloperError, wire.StatusInternalError:
	default:
		return badRequest("invalid status")
	}
	if a.Version != "" && (len(a.Version) > maxVersionLen || !versionRE.MatchString(a.Version)) {
		return badRequest("invalid version")
	}
	if len(a.Subject) > maxSubjectLen {
		return badRequest("subject too long")
	}
	if len(a.ErrorCode) > maxErrorFieldLen || len(a.ErrorMessage) > maxErrorFieldLen {
		return badRequest("error too long")
	}
	if len(a.Result) > maxSealedPartLen || len(a.Logs) > maxSealedPartLen || len(a.Envelope) > maxSealedPartLen {
		return badRequest("record too large")
	}
	if a.Cause != "" && !validActivationID(a.Cause) {
		return badRequest("invalid cause")
	}
	if len(a.Components) > maxRecordComponents {
		return badRequest("too many components")
	}
	for _, id := range a.Components {
		if !validActivationID(id) {
			return badRequest("invalid component activation id")
		}
	}
	return checkAnnotations(a.Annotations)
}
