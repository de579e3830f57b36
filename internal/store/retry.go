package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retryKV is a bucket handle whose reads and writes are tried again when
// JetStream had no responder for them: in a cluster, while a stream's
// leader is being elected (a node restarting, a busy machine), its API
// requests find nobody to answer and fail at once. Such a request reached
// no stream, so trying it again cannot apply it twice. Other errors, and
// the end of the caller's context, are returned as they are. Reads are
// also tried again when an attempt got no answer (retryRead).
type retryKV struct{ jetstream.KeyValue }

// retryWaits are the pauses between attempts (about 3 s in all).
var retryWaits = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

func retry[T any](ctx context.Context, op func() (T, error)) (T, error) {
	v, err := op()
	for _, wait := range retryWaits {
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, errUnanswered) {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		v, err = op()
	}
	return v, err
}

func (k retryKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return retryRead(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return k.KeyValue.Get(ctx, key) })
}

func (k retryKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	return retryRead(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return k.KeyValue.GetRevision(ctx, key, revision)
	})
}

// readAttempt bounds one attempt of a read. A read sent to a stream leader
// that then dies is never answered: without a bound it would wait out the
// caller's whole deadline, although the new leader (elected within
// seconds) would answer a second request at once.
var readAttempt = 2 * time.Second

// retryRead is retry for reads, which can be repeated safely: an attempt
// that got no answer within readAttempt is also tried again, while the
// caller's context lasts.
func retryRead[T any](ctx context.Context, op func(context.Context) (T, error)) (T, error) {
	attempt := func() (T, error) {
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= readAttempt {
			return op(ctx)
		}
		actx, cancel := context.WithTimeout(ctx, readAttempt)
		defer cancel()
		v, err := op(actx)
		if err != nil && ctx.Err() == nil && actx.Err() != nil {
			// The attempt, not the caller, ran out of time.
			err = fmt.Errorf("%w: %w", errUnanswered, err)
		}
		return v, err
	}
	return retry(ctx, attempt)
}

// errUnanswered marks a read attempt that got no answer in readAttempt.
var errUnanswered = errors.New("store: read unanswered")

func (k retryKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return retry(ctx, func() (uint64, error) { return k.KeyValue.Put(ctx, key, value) })
}

func (k retryKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	return retry(ctx, func() (uint64, error) { return k.KeyValue.Create(ctx, key, value, opts...) })
}

func (k retryKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return retry(ctx, func() (uint64, error) { return k.KeyValue.Update(ctx, key, value, revision) })
}

func (k retryKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	_, err := retry(ctx, func() (struct{}, error) { return struct{}{}, k.KeyValue.Delete(ctx, key, opts...) })
	return err
}
