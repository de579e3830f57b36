// Package store names clemmys' JetStream buckets and opens them. All state
// lives in JetStream (KV buckets, object store); the store is untrusted, so
// every confidential value in it is sealed by its owner before it gets here.
package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets.
const (
	BucketActions     = "clemmys_actions"     // controller: action entities
	BucketActivations = "clemmys_activations" // controller: activations as they start (running records, or complete ones made whole)
	BucketRecords     = "clemmys_records"     // controller: complete records of activations that started running
	BucketPackages    = "clemmys_packages"    // controller: package entities
	BucketTriggers    = "clemmys_triggers"    // controller: trigger entities
	BucketRules       = "clemmys_rules"       // controller: rule entities
	BucketAuth        = "clemmys_auth"        // gateway: credentials (hashed, MACed)
	BucketKMS         = "clemmys_kms"         // kms: sealed state
	ObjectsCode       = "clemmys_code"        // controller: sealed wasm modules
	BucketFeeds       = "clemmys_feeds"       // gateway: alarm feeds (MACed, payloads sealed)
	BucketFeedTicks   = "clemmys_feed_ticks"  // gateway: claimed alarm ticks (entries expire)
	BucketRoutes      = "clemmys_routes"      // gateway: API routes (MACed)
	BucketLimits      = "clemmys_limits"      // gateway: per-namespace limits and retention (MACed); controller: reads retention
)

// KV opens the KV bucket named bucket, creating it if needed with the given
// number of replicas (0 is 1: a single server; a JetStream cluster of 3
// or more nodes takes 3, so that the bucket survives the loss of a node).
// A bucket that exists is used as it is (its replica count is the one it
// was created with: `nats stream edit` changes it).
//
// Services of a cluster start at once and open the same buckets: an
// existing bucket is looked up rather than updated, a creation that lost
// the race is looked up again, and each attempt is bounded (a clustered
// JetStream API request that loses such a race may never be answered).
func KV(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	return retrying(open(ctx, js, bucket, "KV_"+bucket, replicas,
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, bucket) },
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) }))
}

// KVWithTTL is KV for a bucket whose entries expire ttl after they are
// written.
func KVWithTTL(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, ttl time.Duration) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	return retrying(open(ctx, js, bucket, "KV_"+bucket, replicas,
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, bucket) },
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) }))
}

// Objects opens the object store named bucket, creating it if needed with
// the given number of replicas (see KV).
func Objects(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.ObjectStore, error) {
	cfg := jetstream.ObjectStoreConfig{Bucket: bucket, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	return open(ctx, js, bucket, "OBJ_"+bucket, replicas,
		func(ctx context.Context) (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, bucket) },
		func(ctx context.Context) (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, cfg) })
}

// retrying wraps an opened bucket in retryKV.
func retrying(kv jetstream.KeyValue, err error) (jetstream.KeyValue, error) {
	if err != nil {
		return nil, err
	}
	return retryKV{kv}, nil
}

// attemptTimeout bounds one JetStream API request of open.
const attemptTimeout = 10 * time.Second

// Reads of a replicated bucket. nats.go creates KV and object-store
// streams with direct gets allowed, which any replica answers, including a
// follower that has not applied the latest write yet: a service would not
// read what it, or another service, has just written and been acknowledged
// (a namespace created through one gateway and not found by the next
// request). open turns direct gets off on a replicated bucket's stream, so
// that reads are answered by its leader (NATS's documented way to read
// one's writes; a leader change can still answer from a replica that
// lagged), and hands out a bucket handle that reads that way. A service
// that may not update the stream (one that only reads the bucket) waits
// for the bucket's owner to have done it, then uses the bucket as it is.

func open[T any](ctx context.Context, js jetstream.JetStream, bucket, stream string, replicas int, lookup, create func(context.Context) (T, error)) (T, error) {
	var zero T
	var last error
	for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		b, err := lookup(actx)
		if err != nil && (errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) {
			b, err = create(actx)
		}
		if err == nil {
			changed, lerr := leaderReads(actx, js, stream)
			if lerr == nil && changed {
				if nb, err := lookup(actx); err == nil {
					b = nb // a handle that sees the new configuration
				} else {
					lerr = err
				}
			}
			if lerr == nil || attempt == 5 {
				// The last attempt takes the bucket as it is if only its
				// configuration could not be changed.
				cancel()
				return b, nil
			}
			err = lerr
		}
		cancel()
		last = err
		// Created by another service meanwhile, or a request lost in a
		// race: look it up again.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return zero, fmt.Errorf("store: open %s (%d replicas): %w", bucket, max(replicas, 1), last)
}

// leaderReads turns direct gets off on stream if it is replicated. changed
// reports that it did (a bucket handle opened before reads directly).
func leaderReads(ctx context.Context, js jetstream.JetStream, stream string) (changed bool, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("stream info: %w", err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Replicas <= 1 || !cfg.AllowDirect {
		return false, nil
	}
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return false, fmt.Errorf("turn direct gets off: %w", err)
	}
	return true, nil
}

// OpenObjects opens the existing object store named bucket, for a service
// that only reads it (and may not create it).
func OpenObjects(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.ObjectStore, error) {
	os, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("store: open object store %s: %w", bucket, err)
	}
	return os, nil
}

// Key builds a KV key from parts. Each part is base64url-encoded (KV keys
// allow only [-/_=.a-zA-Z0-9]), joined with '.', so a prefix of parts can
// be listed with a '.>' wildcard.
func Key(parts ...string) string {
	enc := make([]string, len(parts))
	for i, p := range parts {
		enc[i] = base64.RawURLEncoding.EncodeToString([]byte(p))
	}
	return strings.Join(enc, ".")
}

// SplitKey inverts Key.
func SplitKey(key string) ([]string, error) {
	raw := strings.Split(key, ".")
	out := make([]string, len(raw))
	for i, r := range raw {
		b, err := base64.RawURLEncoding.DecodeString(r)
		if err != nil {
			return nil, fmt.Errorf("store: malformed key %q: %w", key, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// Prefix returns the wildcard filter matching every key that starts with
// the given parts.
func Prefix(parts ...string) string { return Key(parts...) + ".>" }

// OpenKV opens the existing KV bucket named bucket, for a service that
// writes entries of it but does not own it (and may not create it).
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("store: open bucket %s: %w", bucket, err)
	}
	return retryKV{kv}, nil
}
