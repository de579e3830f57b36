// Package actrec builds activation records (wire.Activation) the same way
// wherever a step is answered: in the controller, for the steps it
// dispatches, and in an invoker, for the steps a gateway sends it directly
// (wire.DirectRequest, the warm path). A record starts as a running record
// (End 0, no status: Running) and is completed from the step's answer
// (Complete) or from why there is none (Failed).
package actrec

import (
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/wire"
)

// MaxErrorFieldLen bounds a record's error code and message: they come
// from untrusted parties (invokers, runtimes).
const MaxErrorFieldLen = 1024

// Start is what a running record is made of.
type Start struct {
	ID        string
	Namespace string // where the record is filed (the caller's)
	PathNs    string // the namespace of the action run ("path"); "" = Namespace
	Name      string
	Version   string
	Subject   string
	Kind      string // "kind" annotation: wasm, a nodejs kind, sequence
	Limits    wire.Limits
	Time      time.Time
	Cause     string          // a component's sequence
	Step      uint32          // a component's chain step
	Extra     []wire.KeyValue // annotations after path, kind and limits
}

// Running returns the running record (End 0, no status) of s.
func (s *Start) Running() *wire.Activation {
	path := s.PathNs
	if path == "" {
		path = s.Namespace
	}
	anns := append(Annotations(path+"/"+s.Name, s.Kind, s.Limits), s.Extra...)
	return &wire.Activation{
		ActivationID: s.ID,
		Namespace:    s.Namespace,
		Name:         s.Name,
		Version:      s.Version,
		Subject:      s.Subject,
		Start:        s.Time.UnixMilli(),
		Annotations:  anns,
		Cause:        s.Cause,
		Step:         s.Step,
	}
}

// Annotations are a record's first annotations, as OpenWhisk writes them.
func Annotations(path, kind string, l wire.Limits) []wire.KeyValue {
	return []wire.KeyValue{
		{Key: "path", Value: path},
		{Key: "kind", Value: kind},
		{Key: "limits", Value: map[string]any{
			"timeout":     l.TimeoutMs,
			"memory":      l.MemoryMB,
			"logs":        l.LogsMB,
			"concurrency": l.Concurrency,
		}},
	}
}

// Complete turns the running record rec into the record of a step the
// invoker answered with res at end. input is the step's input envelope,
// kept on a record without a result so that its sealed parts can be
// reopened.
func Complete(rec *wire.Activation, end time.Time, res *wire.RunResult, input []byte) *wire.Activation {
	rec.End = max(end.UnixMilli(), rec.Start)
	rec.Status = res.Status
	switch res.Status {
	case wire.StatusSuccess, wire.StatusApplicationError, wire.StatusDeveloperError, wire.StatusInternalError:
	default:
		rec.Status = wire.StatusInternalError
	}
	rec.ErrorCode = Truncate(res.ErrorCode, MaxErrorFieldLen)
	rec.ErrorMessage = Truncate(res.ErrorMessage, MaxErrorFieldLen)
	rec.Result = res.Envelope
	rec.Logs = res.Logs
	if len(res.Receipt) > 0 {
		rec.Receipts = [][]byte{res.Receipt}
	}
	if len(rec.Result) == 0 {
		rec.Envelope = input
	}
	if res.Start > 0 {
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "waitTime", Value: max(res.Start-rec.Start, 0)})
	}
	if res.InitMs > 0 {
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "initTime", Value: res.InitMs})
	}
	if res.SealMicros > 0 {
		// The runtime's own timing, bounded by the step's duration.
		us := min(res.SealMicros, (rec.End-rec.Start)*1000+999)
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "sealTimeUs", Value: us})
	}
	return rec
}

// Failed turns the running record rec into the record of a step no
// invoker ran to completion, for the platform error code and its message
// (safe to show). A developer error is for a step that may have run (its
// invoker was lost), as OpenWhisk reports it.
func Failed(rec *wire.Activation, end time.Time, status, code, msg string, input []byte) *wire.Activation {
	rec.End = max(end.UnixMilli(), rec.Start)
	rec.Status = status
	rec.ErrorCode = code
	rec.ErrorMessage = msg
	rec.Envelope = input
	return rec
}

// Truncate cuts an untrusted string to at most n bytes of valid UTF-8.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Defaults of an action's limits (OpenWhisk's), for a limit it does not set.
const (
	DefaultTimeoutMs = 60_000
	DefaultMemoryMB  = 256
	DefaultLogsMB    = 10
)

// RunLimits are the limits a record shows for a step run with req's limits
// (the gateway's, clamped to the namespace's ceilings) of an action stored
// with action's: req's where set, else the action's, else the defaults;
// one activation per instance.
func RunLimits(req, action wire.Limits) wire.Limits {
	l := action
	if req.TimeoutMs != 0 {
		l.TimeoutMs = req.TimeoutMs
	}
	if req.MemoryMB != 0 {
		l.MemoryMB = req.MemoryMB
	}
	if req.LogsMB != 0 {
		l.LogsMB = req.LogsMB
	}
	l = WithDefaults(l)
	l.Concurrency = 1
	return l
}

// WithDefaults fills the limits l does not set with the defaults.
func WithDefaults(l wire.Limits) wire.Limits {
	if l.TimeoutMs == 0 {
		l.TimeoutMs = DefaultTimeoutMs
	}
	if l.MemoryMB == 0 {
		l.MemoryMB = DefaultMemoryMB
	}
	if l.LogsMB == 0 {
		l.LogsMB = DefaultLogsMB
	}
	if l.Concurrency == 0 {
		l.Concurrency = 1
	}
	return l
}

// Deferral is the running record of a blocking single action whose step
// was sent without it (wire.DeferReserveMs): reserve stores it if the step
// outlives DeferReserveMs. The controller and an invoker (the warm path)
// defer alike.
type Deferral struct {
	timer *time.Timer
	done  chan struct{} // closed when the reservation, once started, ended
	err   error         // its outcome; read after done
}

// Defer arms reserve, run once if the step is still running after
// wire.DeferReserveMs.
func Defer(reserve func() error) *Deferral {
	d := &Deferral{done: make(chan struct{})}
	d.timer = time.AfterFunc(wire.DeferReserveMs*time.Millisecond, func() {
		defer close(d.done)
		d.err = reserve()
	})
	return d
}

// Settle ends the deferral once the step has an answer: it reports whether
// the running record was stored or tried (and the outcome), or was never
// needed.
func (d *Deferral) Settle() (reserved bool, err error) {
	if d.timer.Stop() {
		return false, nil
	}
	<-d.done
	return true, d.err
}
