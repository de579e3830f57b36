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

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets.
const (
	BucketActions     = "clemmys_actions"     // controller: action entities
	BucketActivations = "clemmys_activations" // controller: activations as they start (running records, or complete ones made whole)
	BucketRecords     = "clemmys_records"     // controller: complete records of activations that started running
	BucketAuth        = "clemmys_auth"        // gateway: credentials (hashed, MACed)
	BucketKMS         = "clemmys_kms"         // kms: sealed state
	ObjectsCode       = "clemmys_code"        // controller: sealed wasm modules
)

// KV opens (creating if needed) the KV bucket named bucket.
func KV(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  bucket,
		History: 1,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Objects opens (creating if needed) the object store named bucket.
func Objects(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.ObjectStore, error) {
	os, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		os, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:  bucket,
			Storage: jetstream.FileStorage,
		})
	}
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
