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
