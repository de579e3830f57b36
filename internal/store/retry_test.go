package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flakyKV fails its first n calls with err.
type flakyKV struct {
	jetstream.KeyValue
	n     int
	err   error
	calls int
}

func (f *flakyKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	f.calls++
	if f.calls <= f.n {
		return 0, f.err
	}
	return 7, nil
}

func (f *flakyKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	f.calls++
	if f.calls <= f.n {
		<-ctx.Done() // a leader that died with the request
		return nil, ctx.Err()
	}
	return nil, jetstream.ErrKeyNotFound
}

// A read that got no answer is sent again; the caller's own deadline is
// not retried.
func TestRetryUnansweredRead(t *testing.T) {
	defer func(d time.Duration) { readAttempt = d }(readAttempt)
	readAttempt = 10 * time.Millisecond
	f := &flakyKV{n: 2}
	if _, err := (retryKV{f}).Get(context.Background(), "k"); !errors.Is(err, jetstream.ErrKeyNotFound) || f.calls != 3 {
		t.Fatalf("err %v after %d calls", err, f.calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	g := &flakyKV{n: 1 << 30}
	if _, err := (retryKV{g}).Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) || g.calls != 1 {
		t.Fatalf("err %v after %d calls", err, g.calls)
	}
	// Writes are not sent again after a timeout: one may have applied.
	h := &flakyKV{n: 1, err: context.DeadlineExceeded}
	if _, err := (retryKV{h}).Put(context.Background(), "k", nil); !errors.Is(err, context.DeadlineExceeded) || h.calls != 1 {
		t.Fatalf("err %v after %d calls", err, h.calls)
	}
}

func TestRetryNoResponders(t *testing.T) {
	ctx := context.Background()
	f := &flakyKV{n: 3, err: nats.ErrNoResponders}
	if rev, err := (retryKV{f}).Put(ctx, "k", nil); err != nil || rev != 7 || f.calls != 4 {
		t.Fatalf("rev %d err %v after %d calls", rev, err, f.calls)
	}
	// Other errors are not retried.
	other := &flakyKV{n: 1, err: jetstream.ErrKeyExists}
	if _, err := (retryKV{other}).Put(ctx, "k", nil); !errors.Is(err, jetstream.ErrKeyExists) || other.calls != 1 {
		t.Fatalf("err %v after %d calls", err, other.calls)
	}
	// Nor past the caller's context.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	always := &flakyKV{n: 1 << 30, err: nats.ErrNoResponders}
	if _, err := (retryKV{always}).Put(cctx, "k", nil); !errors.Is(err, nats.ErrNoResponders) || always.calls > 2 {
		t.Fatalf("err %v after %d calls", err, always.calls)
	}
	// Giving up after the last wait.
	retryWaits = []time.Duration{time.Millisecond, time.Millisecond}
	always.calls = 0
	if _, err := (retryKV{always}).Put(ctx, "k", nil); !errors.Is(err, nats.ErrNoResponders) || always.calls != 3 {
		t.Fatalf("err %v after %d calls", err, always.calls)
	}
}
