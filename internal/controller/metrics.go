package controller

import "github.com/prometheus/client_golang/prometheus"

// metrics are the controller's Prometheus metrics, in their own registry so
// several controllers (tests, one process) do not collide.
type metrics struct {
	reg         *prometheus.Registry
	activations *prometheus.CounterVec // by status (single actions and sequences)
	// direct counts the activations invokers ran on the warm path, by
	// status, from their heartbeats.
	direct     *prometheus.CounterVec
	steps      *prometheus.CounterVec // component activations of sequences by status
	chained    prometheus.Counter     // of those, run by the runtime right after the previous step
	dispatch   *prometheus.CounterVec // invoker call outcomes by result
	scheduling prometheus.Histogram   // receipt → step start on the invoker
	duration   prometheus.Histogram   // receipt → record complete
	requests   *prometheus.CounterVec // bus requests by op and outcome code
	healthyFn  prometheus.GaugeFunc   // healthy invokers
	// recordsScanned counts activation records read by listings.
	recordsScanned prometheus.Counter
	// retentionDeleted counts activations deleted by the retention sweeper.
	retentionDeleted prometheus.Counter
	// lostInvokers counts steps abandoned because their invoker stopped
	// heart-beating while they ran.
	lostInvokers prometheus.Counter
}

func newMetrics(healthy func() int) *metrics {
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "activations_total",
			Help: "Completed activations (single actions and sequences) by status.",
		}, []string{"status"}),
		direct: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "direct_activations_total",
			Help: "Activations gateways sent invokers directly (the warm path), by status, as the invokers' heartbeats report them: every controller replica counts them all. activations_total counts the others.",
		}, []string{"status"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "sequence_steps_total",
			Help: "Completed component activations of sequences by status.",
		}, []string{"status"}),
		chained: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "chained_steps_total",
			Help: "Component activations the runtime ran right after the previous step, within one run request.",
		}),
		dispatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "dispatch_total",
			Help: "Calls to invokers by result (ok, no_invoker, unavailable, lost, failed).",
		}, []string{"result"}),
		scheduling: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "scheduling_latency_seconds",
			Help:    "Time from the controller receiving an invocation to its step starting on an invoker.",
			Buckets: buckets,
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "activation_duration_seconds",
			Help:    "Time from the controller receiving an invocation to its record being complete.",
			Buckets: buckets,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "requests_total",
			Help: "Controller requests by operation and outcome code.",
		}, []string{"op", "code"}),
		healthyFn: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "healthy_invokers",
			Help: "Invokers whose last heartbeat is within the heartbeat timeout.",
		}, func() float64 { return float64(healthy()) }),
		lostInvokers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "lost_invoker_steps_total",
			Help: "Steps abandoned (finished as invoker_lost) because their invoker stopped heart-beating while they ran.",
		}),
		recordsScanned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "activation_records_scanned_total",
			Help: "Activation records read from the store to answer activation listings.",
		}),
		retentionDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clemmys", Subsystem: "controller", Name: "retention_deleted_total",
			Help: "Activations whose records the retention sweeper deleted (past their namespace's age or count).",
		}),
	}
	m.reg.MustRegister(m.activations, m.direct, m.steps, m.chained, m.dispatch, m.scheduling, m.duration, m.requests, m.healthyFn, m.recordsScanned, m.lostInvokers, m.retentionDeleted)
	return m
}
