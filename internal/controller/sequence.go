package controller

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// maxChainSteps is the longest chain an envelope header can carry
// (envelope.MaxChain; the controller does not parse envelopes).
const maxChainSteps = 64

// Error codes of sequences, plaintext like the others.
const (
	// ErrNoOutput: a step succeeded but returned no sealed output, so the
	// next step has no input (or the sequence no result).
	ErrNoOutput = "no_output"
	// ErrStoreFailed: the running record of a step could not be created,
	// so the records of the sequence are incomplete; its result is not
	// given.
	ErrStoreFailed = "store_failed"
)

const (
	msgNoOutput    = "the step returned no output"
	msgStoreFailed = "the controller could not record a step of the sequence"
)

// annDeadline is an annotation of a running sequence record only: when
// (unix ms) every step will have had its full time, after which the record
// can be closed as lost. A sequence runs far longer than one action.
const annDeadline = "deadline"

// sequence is an accepted invocation of a sequence.
type sequence struct {
	*activation
	req      *wire.InvokeRequest
	steps    []wire.Limits // normalized limits of each step
	deadline time.Time
}

// checkSteps checks the step routes of a sequence invocation.
func checkSteps(req *wire.InvokeRequest) error {
	if len(req.Steps) > maxChainSteps {
		return badRequest("a chain has at most %d steps", maxChainSteps)
	}
	if len(req.FunctionID) != 0 {
		return badRequest("a sequence has no function id")
	}
	for j, st := range req.Steps {
		if checkRef(st.Namespace, st.Action) != nil {
			return badRequest("invalid action of step %d", j)
		}
		if len(st.FunctionID) == 0 || len(st.FunctionID) > maxFunctionIDLen {
			return badRequest("invalid function id of step %d", j)
		}
		if len(st.Version) > maxVersionLen {
			return badRequest("invalid version of step %d", j)
		}
		if _, err := normalizeLimits(st.Limits); err != nil {
			return err
		}
	}
	return nil
}

// newSequence accepts the invocation req (checked) of the stored action act.
func (c *Controller) newSequence(req *wire.InvokeRequest, act *wire.Action, received time.Time) (*sequence, error) {
	if act.Kind != wire.KindSequence {
		return nil, badRequest("the action is not a sequence")
	}
	s := &sequence{
		activation: invoked(req, act, received, wire.KindSequence),
		req:        req,
		steps:      make([]wire.Limits, len(req.Steps)),
		deadline:   received,
	}
	s.extra = []wire.KeyValue{{Key: "topmost", Value: true}}
	for j, st := range req.Steps {
		s.steps[j] = mergeLimits(st.Limits, wire.Limits{})
		s.deadline = s.deadline.Add(time.Duration(s.steps[j].TimeoutMs)*time.Millisecond + c.cfg.ColdStartGrace)
	}
	return s, nil
}

// running is the running record of s.
func (s *sequence) running() *wire.Activation {
	rec := s.record()
	rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: annDeadline, Value: s.deadline.UnixMilli()})
	return rec
}

// executeSequence runs the steps of s in order, each on the previous one's
// sealed output, until one does not succeed; it stores a component record
// per step run and the sequence's complete record, and returns the latter.
// It runs under the controller's lifetime, not a request's.
func (c *Controller) executeSequence(s *sequence) *wire.Activation {
	req := s.req
	in := req.Envelope
	var (
		ids        []string
		last       *wire.Activation // record of the last step run
		receipts   [][]byte         // the sealed receipts of the steps run, in order
		firstStart int64            // start of the first component (unix ms)
		durationMs int64            // sum of the components' durations
		initMs     int64            // sum of the components' load times (cold steps)
		records    = c.newRecordWriter()
		// chained are the outcomes of later steps that came with an
		// earlier step's answer (wire.RunResult.More), in order.
		chained []wire.RunResult
	)
	for j, st := range req.Steps {
		start := c.now()
		var res *wire.RunResult
		fromChain := len(chained) > 0
		if fromChain {
			res = &chained[0]
			chained = chained[1:]
			start = chainTime(res.Start, s.start, start)
		}
		comp := &activation{
			id:       newActivationID(start),
			ns:       req.FiledIn(),
			runNs:    st.Namespace,
			name:     st.Action,
			version:  st.Version,
			subject:  req.Subject,
			start:    start,
			limits:   s.steps[j],
			kind:     kindWasm,
			envelope: in,
			cause:    req.ActivationID,
			step:     uint32(j),
			extra:    []wire.KeyValue{{Key: "causedBy", Value: "sequence"}},
		}
		comp.key = store.Key(comp.ns, comp.id)
		if !fromChain {
			// A chained step ran before its record could be reserved:
			// it gets its complete record only.
			records.reserve(comp.key, comp.record())
		}
		if len(ids) == 0 {
			firstStart = start.UnixMilli()
		}
		ids = append(ids, comp.id)

		var fail *stepError
		end := c.now()
		if !fromChain {
			run := &wire.RunRequest{
				ActivationID: comp.id,
				Namespace:    st.Namespace,
				Action:       st.Action,
				FunctionID:   st.FunctionID,
				Envelope:     in,
				TimeoutMs:    comp.limits.TimeoutMs,
				Then:         c.chainAfter(req, j),
				Runtime:      st.Runtime,
			}
			callLimits := comp.limits
			for k := range run.Then {
				run.TimeoutMs += s.steps[j+1+k].TimeoutMs
			}
			callLimits.TimeoutMs = run.TimeoutMs
			res, fail = c.dispatch(Dispatch{Request: req, Step: j, Run: run, Invoker: st.Invoker}, callLimits, start)
			end = c.now()
			if fail == nil && len(res.More) > 0 {
				chained = res.More[:min(len(res.More), len(run.Then))]
				res.More = nil
				end = chainTime(res.End, start, end)
			}
		} else {
			end = chainTime(res.End, start, end)
		}
		var rec *wire.Activation
		if fail != nil {
			rec = comp.failed(end, fail.code, fail.msg)
		} else {
			rec = comp.completed(end, res)
			initMs += res.InitMs
			if rec.Status == wire.StatusSuccess && len(rec.Result) == 0 {
				rec.Status = wire.StatusInternalError
				rec.ErrorCode = ErrNoOutput
				rec.ErrorMessage = msgNoOutput
			}
		}
		records.store(comp.key, rec)
		c.metrics.steps.WithLabelValues(rec.Status).Inc()
		if fromChain {
			c.metrics.chained.Inc()
		}
		if c.log.Enabled(c.runCtx, slog.LevelDebug) {
			c.log.Debug("sequence step", "activation", req.ActivationID, "step", j, "component", comp.id,
				"namespace", rec.Namespace, "action", rec.Name, "status", rec.Status, "error_code", rec.ErrorCode)
		}
		durationMs += rec.End - rec.Start
		last = rec
		receipts = append(receipts, rec.Receipts...)
		if rec.Status != wire.StatusSuccess {
			break
		}
		in = rec.Result
	}

	// The result depends on the running records' creations only; a
	// blocking caller is answered while the complete records are written.
	var storeFailed bool
	if req.Blocking {
		storeFailed = records.waitCreates()
	} else {
		storeFailed = records.wait()
	}
	rec := s.record()
	rec.Components = ids
	rec.Receipts = receipts

	switch {
	case storeFailed || last == nil:
		rec.End = max(c.now().UnixMilli(), rec.Start)
		rec.Status = wire.StatusInternalError
		rec.ErrorCode = ErrStoreFailed
		rec.ErrorMessage = msgStoreFailed
	default:
		rec.End = max(last.End, rec.Start)
		rec.Status = last.Status
		rec.ErrorCode = last.ErrorCode
		rec.ErrorMessage = last.ErrorMessage
		rec.Result = last.Result
	}
	if len(rec.Result) == 0 {
		rec.Envelope = req.Envelope
	}
	if len(ids) > 0 {
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "waitTime", Value: max(firstStart-rec.Start, 0)})
	}
	rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "duration", Value: durationMs})
	if initMs > 0 {
		// Some step was cold (its function was loaded for it): the
		// sequence's record says so, with the steps' load time in all,
		// rather than looking warm.
		rec.Annotations = append(rec.Annotations, wire.KeyValue{Key: "initTime", Value: initMs})
	}
	c.storeAnswered(req, s.key, rec, records)
	c.account(rec)
	return rec
}

// chainTime is a time the runtime reported for a chained step (unix ms),
// kept within [from, to]: the controller's own clock bounds what an
// invoker may claim.
func chainTime(ms int64, from, to time.Time) time.Time {
	t := time.UnixMilli(ms)
	switch {
	case t.Before(from):
		return from
	case t.After(to):
		return to
	}
	return t
}

// chainAfter returns the function ids of the steps after step j that the
// invoker may have the runtime run on its own, one after the other, with
// step j (wire.RunRequest.Then): the later steps designated to the same
// runtime (the runtime checks each designation itself). A
// controller with an Interceptor (the attack suite playing a malicious
// controller) sends every step alone, as a malicious controller can.
func (c *Controller) chainAfter(req *wire.InvokeRequest, j int) [][]byte {
	if c.cfg.Interceptor != nil {
		return nil
	}
	var then [][]byte
	for _, st := range req.Steps[j+1:] {
		if st.Namespace != req.Steps[j].Namespace || st.Invoker != req.Steps[j].Invoker || !bytes.Equal(st.Runtime, req.Steps[j].Runtime) {
			break
		}
		then = append(then, st.FunctionID)
	}
	return then
}

// newActivationID returns the id of a component activation: 32 lowercase
// hex characters, time-ordered like the gateway's request ids (48 bits of
// unix milliseconds, big-endian, then 80 random bits).
func newActivationID(now time.Time) string {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(id[6:])
	return hex.EncodeToString(id[:])
}
