package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Listing activations.
//
// Each activation's first record goes to the activations bucket when it
// starts (the running record the controller reserves its id with, or the
// complete record the gateway makes for a trigger) and is never rewritten;
// a complete record of a running one goes to the records bucket. So the
// activations bucket's stream holds a namespace's activations in start
// order, and a listing of the newest N reads the namespace's last entries
// there — a consumer filtered on the namespace's subjects, started at a
// stream sequence chosen so that at least N of them follow (the server
// counts them from its subject index, without sending anything) — and
// then reads the N complete records. When the window holds too few
// listable entries (running ones, another name), it grows fourfold. Its
// cost is O(skip + limit) entries, not O(all records), however fast they
// were written. A name filter keeps the entries of that name (a rare name
// costs up to a scan of the namespace's entries); since starts at that
// time; a count without filters is the server's count of the namespace's
// entries (it includes activations still running). Entries of two
// controllers whose clocks differ are ordered by start within a window,
// across windows by their order in the stream.
const (
	// listSlack is the clock skew allowed between the controller that
	// started an activation and the server that stored its entry.
	listSlack = time.Minute
	// listFetch is how many entries one fetch asks for.
	listFetch = 256
)

// recordSummary is what a listing holds of a record until its page is
// known: records carry sealed results and logs.
type recordSummary struct {
	start   int64
	seq     uint64 // of its entry in the stream: start order, within a millisecond too
	id, key string
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
	stream, err := c.cfg.JS.Stream(ctx, activationsStream)
	if err != nil {
		return nil, fmt.Errorf("controller: activations stream: %w", err)
	}
	filter := activationsSubject(store.Prefix(req.Namespace))
	if req.Count && req.Name == "" && req.Since == 0 && req.Upto == 0 {
		n, err := pendingSince(ctx, stream, scanConsumer(filter))
		if err != nil {
			return nil, err
		}
		return &wire.ActivationList{Activations: []wire.Activation{}, Count: max(n-skip, 0)}, nil
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("controller: activations stream: %w", err)
	}
	firstSeq, lastSeq := info.State.FirstSeq, info.State.LastSeq

	var found []recordSummary // entries are never rewritten: each appears once
	count := 0
	collect := func(s recordSummary) {
		if (req.Since != 0 && s.start < req.Since) || (req.Upto != 0 && s.start > req.Upto) {
			return
		}
		count++
		if !req.Count {
			found = append(found, s)
		}
	}
	if req.Since != 0 {
		// Everything from since on: entries are stored when they start.
		from := time.UnixMilli(req.Since).Add(-listSlack)
		if err := c.scanActivations(ctx, stream, req, scanFromTime(filter, from), 0, collect); err != nil {
			return nil, err
		}
	} else {
		// Windows [seq, end) back from the end of the stream.
		need := skip + limit
		end := lastSeq + 1
		span := uint64(2*need + 16) // sequences, of all namespaces
		for end > firstSeq {
			seq := firstSeq
			if end-firstSeq > span {
				seq = end - span
			}
			if err := c.scanActivations(ctx, stream, req, scanFromSeq(filter, seq), end, collect); err != nil {
				return nil, err
			}
			if !req.Count && len(found) >= need {
				break
			}
			end = seq
			span *= 4
		}
	}
	if req.Count {
		return &wire.ActivationList{Activations: []wire.Activation{}, Count: max(count-skip, 0)}, nil
	}
	list := found
	slices.SortFunc(list, func(x, y recordSummary) int {
		if c := cmp.Compare(y.start, x.start); c != 0 {
			return c
		}
		return cmp.Compare(y.seq, x.seq)
	})
	list = list[min(skip, len(list)):]
	list = list[:min(limit, len(list))]
	out := make([]wire.Activation, 0, len(list))
	for _, s := range list {
		a, err := c.getActivation(ctx, s.key)
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

// activationsStream is the stream behind the activations KV bucket.
var activationsStream = "KV_" + store.BucketActivations

// activationsSubject is the stream subject of a key (or key filter).
func activationsSubject(key string) string { return "$KV." + store.BucketActivations + "." + key }

// scanActivations calls f for each listable entry the consumer cfg
// delivers (of req's namespace and name, complete or being answered)
// before stream sequence end (0: up to what the stream holds now). It
// decodes each entry once, holding only its summary.
func (c *Controller) scanActivations(ctx context.Context, stream jetstream.Stream, req *wire.ListRequest, cfg jetstream.ConsumerConfig, end uint64, f func(recordSummary)) error {
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("controller: scan activations: %w", err)
	}
	defer func() {
		_ = stream.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name)
	}()
	left := int(cons.CachedInfo().NumPending) // what there is now; later entries are newer
	prefix := activationsSubject("")
	for left > 0 {
		batch, err := cons.FetchNoWait(min(left, listFetch))
		if err != nil {
			return fmt.Errorf("controller: scan activations: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			left--
			c.metrics.recordsScanned.Inc()
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if end != 0 && md.Sequence.Stream >= end {
				left = 0 // read by a later window
				break
			}
			if op := m.Headers().Get("KV-Operation"); op != "" {
				continue // a deletion or purge marker
			}
			key, ok := strings.CutPrefix(m.Subject(), prefix)
			if !ok {
				continue
			}
			var a wire.Activation
			if err := bus.Unmarshal(m.Data(), &a); err != nil {
				c.log.Warn("undecodable activation record", "size", len(m.Data()))
				continue
			}
			if parts, err := store.SplitKey(key); err != nil || len(parts) != 2 || parts[0] != req.Namespace || parts[1] != a.ActivationID || !validActivationID(parts[1]) {
				continue
			}
			if req.Name != "" && a.Name != req.Name {
				continue
			}
			if a.End == 0 {
				// Started running: listed once complete (or lost).
				if _, err := c.getActivation(ctx, key); errors.Is(err, errNotFound) {
					continue
				} else if err != nil {
					return err
				}
			}
			f(recordSummary{start: a.Start, seq: md.Sequence.Stream, id: a.ActivationID, key: key})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("controller: scan activations: %w", err)
		}
		if got == 0 {
			break // purged meanwhile
		}
	}
	return nil
}

// pendingSince counts the entries consumer cfg would deliver, from the
// server's subject index, without reading them.
func pendingSince(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig) (int, error) {
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("controller: count activations: %w", err)
	}
	_ = stream.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name)
	return int(cons.CachedInfo().NumPending), nil
}

// scanConsumer is an ephemeral, unacknowledged consumer of the filter's
// entries, kept in memory and removed by the server if the controller dies
// before deleting it.
func scanConsumer(filter string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	}
}

func scanFromSeq(filter string, seq uint64) jetstream.ConsumerConfig {
	cfg := scanConsumer(filter)
	if seq > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
	}
	return cfg
}

func scanFromTime(filter string, from time.Time) jetstream.ConsumerConfig {
	cfg := scanConsumer(filter)
	cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	return cfg
}
