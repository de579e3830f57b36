package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Activation retention: a sweeper deletes activation records older than
// their namespace's retention age (wire.NamespaceLimits.RetentionSeconds;
// default Config.Retention, 7 days) and beyond its retention count (none by
// default), so that the store does not grow forever. It deletes both of an
// activation's entries: the first one in the activations bucket (with
// a stream purge of its subject: KV streams deny deleting a message, and a
// stream purge, unlike a KV purge, leaves no marker) and the complete
// record in the records bucket (likewise).
//
// A sweep reads the namespaces' settings from store.BucketLimits (written
// by the gateways; the controller only reads it), then
//   - for each namespace with a count: counts its entries (the server's
//     subject index) and deletes the oldest beyond the count;
//   - for each namespace with an age of its own: deletes its entries from
//     the oldest on, up to the first one younger than the age;
//   - for the rest: reads the stream from its first entry (oldest first)
//     and deletes the entries older than the default age, up to the first
//     younger one.
//
// Each is bounded by what it deletes (plus, for the default age, the
// entries older than it of namespaces with a longer age of their own).
// A sweep stops at an activation still running (it is deleted once its
// complete record exists, or it is closed as lost past its deadline), so
// a namespace may hold more than its count while activations run.
// Every controller replica sweeps; deletions are idempotent.
const (
	// DefaultRetentionInterval is how often the sweeper runs.
	DefaultRetentionInterval = time.Minute
	// sweepBatch bounds the entries one sweep deletes per namespace, so
	// that a sweep of a huge backlog yields to the next one.
	sweepBatch = 50_000
)

// retention is one namespace's settings (0: none of its own).
type retention struct {
	age   time.Duration
	count int
}

// retentionSettings reads the namespaces' settings from the limits bucket
// (which may not exist yet: no settings).
func (c *Controller) retentionSettings(ctx context.Context) (map[string]retention, error) {
	out := map[string]retention{}
	kv, err := c.cfg.JS.KeyValue(ctx, store.BucketLimits)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("controller: limits bucket: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("controller: list limits: %w", err)
	}
	for k := range lister.Keys() {
		parts, err := store.SplitKey(k)
		if err != nil || len(parts) != 2 || parts[0] != "ns" {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var l wire.NamespaceLimits
		if bus.Unmarshal(e.Value(), &l) != nil || l.Namespace != parts[1] {
			continue
		}
		var r retention
		if l.RetentionSeconds != nil && *l.RetentionSeconds > 0 {
			r.age = time.Duration(*l.RetentionSeconds) * time.Second
		}
		if l.RetentionCount != nil && *l.RetentionCount > 0 {
			r.count = *l.RetentionCount
		}
		if r != (retention{}) {
			out[l.Namespace] = r
		}
	}
	return out, ctx.Err()
}

// runRetention sweeps every interval until ctx is done.
func (c *Controller) runRetention(ctx context.Context) {
	t := time.NewTicker(c.cfg.RetentionInterval)
	defer t.Stop()
	for {
		if _, err := c.Sweep(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("activation retention sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes the activation records past their namespaces' retention
// once, and returns how many it deleted.
func (c *Controller) Sweep(ctx context.Context) (int, error) {
	if c.cfg.Retention < 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*storeTimeout)
	defer cancel()
	settings, err := c.retentionSettings(ctx)
	if err != nil {
		return 0, err
	}
	acts, err := c.cfg.JS.Stream(ctx, activationsStream)
	if err != nil {
		return 0, fmt.Errorf("controller: activations stream: %w", err)
	}
	recs, err := c.cfg.JS.Stream(ctx, recordsStream)
	if err != nil {
		return 0, fmt.Errorf("controller: records stream: %w", err)
	}
	now := c.cfg.Now()
	deleted := 0
	for ns, r := range settings {
		filter := activationsSubject(store.Prefix(ns))
		if r.count > 0 {
			n, err := pendingSince(ctx, acts, scanConsumer(filter))
			if err != nil {
				return deleted, err
			}
			if over := n - r.count; over > 0 {
				d, err := c.sweepFrom(ctx, acts, recs, filter, min(over, sweepBatch), func(*wire.Activation) bool { return true })
				deleted += d
				if err != nil {
					return deleted, err
				}
			}
		}
		if r.age > 0 {
			cutoff := now.Add(-r.age).UnixMilli()
			d, err := c.sweepFrom(ctx, acts, recs, filter, sweepBatch, func(a *wire.Activation) bool { return a.Start < cutoff })
			deleted += d
			if err != nil {
				return deleted, err
			}
		}
	}
	// The default age, for the namespaces without an age of their own.
	cutoff := now.Add(-c.cfg.Retention).UnixMilli()
	d, err := c.sweepFrom(ctx, acts, recs, activationsSubject(">"), sweepBatch, func(a *wire.Activation) bool {
		return a.Start < cutoff
	}, settings)
	deleted += d
	if deleted > 0 {
		c.metrics.retentionDeleted.Add(float64(deleted))
		c.log.Debug("activation records past retention deleted", "count", deleted)
	}
	return deleted, err
}

// recordsStream is the stream behind the records KV bucket.
var recordsStream = "KV_" + store.BucketRecords

// sweepFrom reads the entries of filter oldest first and deletes them while
// old says so, at most limit of them; it stops at the first one old
// refuses. With own (the default-age sweep), entries of namespaces that
// have an age of their own are left to their own sweep (skipped, not a
// reason to stop).
func (c *Controller) sweepFrom(ctx context.Context, acts, recs jetstream.Stream, filter string, limit int,
	old func(*wire.Activation) bool, own ...map[string]retention) (int, error) {
	cons, err := acts.CreateConsumer(ctx, scanConsumer(filter))
	if err != nil {
		return 0, fmt.Errorf("controller: sweep activations: %w", err)
	}
	defer func() { _ = acts.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) }()
	left := int(cons.CachedInfo().NumPending)
	prefix := activationsSubject("")
	deleted := 0
	for left > 0 && deleted < limit {
		batch, err := cons.FetchNoWait(min(left, listFetch))
		if err != nil {
			return deleted, fmt.Errorf("controller: sweep activations: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			left--
			if m.Headers().Get("KV-Operation") != "" {
				continue
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			key, _ := strings.CutPrefix(m.Subject(), prefix)
			var a wire.Activation
			if err := bus.Unmarshal(m.Data(), &a); err != nil {
				continue // not ours to judge; the listing skips it too
			}
			if len(own) > 0 {
				if r, ok := own[0][a.Namespace]; ok && r.age > 0 {
					continue
				}
			}
			if !old(&a) || deleted >= limit {
				left = 0
				break
			}
			if a.End == 0 {
				// Started running: deleted once complete (or closed as
				// lost, which getActivation does past its deadline), so
				// that no complete record lands after its first one is
				// gone. Later entries are newer: the sweep stops here.
				if _, err := c.getActivation(ctx, key); errors.Is(err, errNotFound) {
					left = 0
					break
				} else if err != nil {
					return deleted, err
				}
			}
			// KV streams deny deleting a message, not purging a subject;
			// a stream purge (unlike a KV purge) leaves no marker.
			if err := acts.Purge(ctx, jetstream.WithPurgeSubject(m.Subject()), jetstream.WithPurgeSequence(md.Sequence.Stream+1)); err != nil {
				return deleted, fmt.Errorf("controller: delete activation entry: %w", err)
			}
			if err := recs.Purge(ctx, jetstream.WithPurgeSubject("$KV."+store.BucketRecords+"."+key)); err != nil {
				return deleted, fmt.Errorf("controller: delete activation record: %w", err)
			}
			deleted++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return deleted, fmt.Errorf("controller: sweep activations: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return deleted, nil
}
