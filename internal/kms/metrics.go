package kms

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// metrics are the KMS's Prometheus metrics, in their own registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec // by op and outcome code
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "kms", Name: "requests_total",
			Help: "KMS requests by operation (identity, nonce, gateway, release) and outcome code (ok, or the refusal's).",
		}, []string{"op", "code"}),
	}
	m.reg.MustRegister(m.requests)
	return m
}

// Metrics returns the KMS's metrics registry.
func (k *KMS) Metrics() *prometheus.Registry { return k.metrics.reg }

// instrument counts the outcomes of h.
func (k *KMS) instrument(op string, h bus.Handler) bus.Handler {
	return func(ctx context.Context, data []byte) (any, error) {
		v, err := h(ctx, data)
		code := "ok"
		if err != nil {
			code = wire.CodeInternal
			if we, ok := errors.AsType[*wire.Error](err); ok {
				code = we.Code
			}
		}
		k.metrics.requests.WithLabelValues(op, code).Inc()
		return v, err
	}
}
