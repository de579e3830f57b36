package invoker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the invoker's Prometheus metrics, in their own registry.
type metrics struct {
	reg      *prometheus.Registry
	steps    *prometheus.CounterVec // steps by status
	loads    *prometheus.CounterVec // function loads by result
	loadTime prometheus.Histogram
	waiting  prometheus.Gauge       // steps waiting for a slot
	direct   *prometheus.CounterVec // direct steps by outcome
}

func (iv *Invoker) newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "invoker", Name: "steps_total",
			Help: "Steps this invoker answered, by status (success, application error, developer error, whisk internal error).",
		}, []string{"status"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "invoker", Name: "loads_total",
			Help: "Function loads (key release, code fetch, compilation) by result (ok, failed).",
		}, []string{"result"}),
		loadTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clemmys", Subsystem: "invoker", Name: "load_seconds",
			Help:    "Time to load a function into a runtime.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		direct: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "invoker", Name: "direct_total",
			Help: "Steps gateways sent this invoker directly (the warm path), by outcome: recorded, unrecorded (the store refused the record), misplaced, replay, refused.",
		}, []string{"outcome"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clemmys", Subsystem: "invoker", Name: "queue_depth",
			Help: "Steps waiting for a free slot (the invoker runs at most its capacity at once).",
		}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "clemmys", Subsystem: "invoker", Name: "in_flight",
		Help: "Steps running now.",
	}, func() float64 { return float64(len(iv.sem)) })
	capacity := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "clemmys", Subsystem: "invoker", Name: "capacity",
		Help: "Steps this invoker runs at once.",
	}, func() float64 { return float64(cap(iv.sem)) })
	runtimes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "clemmys", Subsystem: "invoker", Name: "runtimes",
		Help: "Enclave runtime processes, bound to a namespace or spare.",
	}, func() float64 {
		iv.mu.Lock()
		defer iv.mu.Unlock()
		return float64(len(iv.runtimes) + len(iv.pool))
	})
	executions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "clemmys", Subsystem: "invoker", Name: "executions_total",
		Help: "Steps whose guest a runtime started (every envelope check passed).",
	}, func() float64 { return float64(iv.executions.Load()) })
	m.reg.MustRegister(m.steps, m.direct, m.loads, m.loadTime, m.waiting, inFlight, capacity, runtimes, executions)
	return m
}

// Metrics returns the invoker's metrics registry.
func (iv *Invoker) Metrics() *prometheus.Registry { return iv.metrics.reg }
