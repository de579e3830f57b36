// Package kms is clemmys' key management service, a trusted component that
// runs in a TEE and talks to the rest of the platform only over the bus.
//
// It owns the keys of every function version (an HPKE key pair, the function
// key, and a symmetric code key), the policies that say which enclave
// runtimes may receive them (accepted runtime measurements, debug, minimum
// security version), the gateway secret, and its own ed25519 identity key,
// whose public half its attestation evidence binds. It serves:
//
//   - wire.SubjectKMSIdentity: its identity and evidence;
//   - wire.SubjectKMSNonce: fresh single-use challenges;
//   - wire.SubjectKMSGatewayAt(replica): privileged calls of attested gateways (create
//     a function version, the gateway secret, set and get policies), answered
//     signed by the identity key and sealed to the caller's ephemeral key;
//   - wire.SubjectKMSReleaseAt(replica): key release to attested enclave runtimes whose
//     measurement the function's policy accepts, sealed to the runtime's
//     ephemeral key.
//
// Its state lives in the untrusted JetStream KV bucket store.BucketKMS,
// every value sealed under the storage key (see state.go). docs/protocol.md
// describes the messages and every check.
package kms

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

// Config configures a KMS. It is validated once by New.
type Config struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Verifiers holds the evidence platforms accepted. The caller adds
	// "sim" only when simulated TEEs are allowed; the KMS logs loudly if so.
	Verifiers *tee.Registry
	// Attester is the KMS's own, for its identity evidence.
	Attester tee.Attester
	// StorageKey seals all state at rest. It must come from the TEE (a
	// sealing key), never from the untrusted host.
	StorageKey [32]byte
	// DefaultPolicy is the policy of a namespace that has none yet: the
	// runtime measurements the platform trusts.
	DefaultPolicy wire.Policy
	// GatewayMeasurements are the gateway measurements accepted for
	// gateway calls.
	GatewayMeasurements [][]byte
	Log                 *slog.Logger
	// Replicas is the replica count of the JetStream buckets this service
	// creates (store.KV): 0 or 1 on a single server, 3 on a cluster.
	Replicas int
	// Now is the clock (optional, for tests).
	Now func() time.Time
	// MaxNonces bounds the consumed nonces remembered (0: 100 000).
	MaxNonces int
}

// KMS is a running key management service.
type KMS struct {
	cfg      Config
	log      *slog.Logger
	st       *state
	nonces   *nonces
	signKey  ed25519.PrivateKey
	identity wire.KMSIdentity
	secret   []byte // gateway secret
	metrics  *metrics

	mu    sync.Mutex // guards stops
	stops []func()
}

// New validates cfg and loads the KMS's state from the KV bucket
// store.BucketKMS, creating its identity key and gateway secret on first
// start.
func New(ctx context.Context, cfg Config) (*KMS, error) {
	switch {
	case cfg.Conn == nil || cfg.JS == nil:
		return nil, errors.New("kms: Conn and JS are required")
	case cfg.Verifiers == nil:
		return nil, errors.New("kms: Verifiers is required")
	case cfg.Attester == nil:
		return nil, errors.New("kms: Attester is required")
	case cfg.StorageKey == [32]byte{}:
		return nil, errors.New("kms: StorageKey is required")
	}
	if !policyEmpty(&cfg.DefaultPolicy) {
		if err := validatePolicy(&cfg.DefaultPolicy); err != nil {
			return nil, fmt.Errorf("kms: DefaultPolicy: %w", err)
		}
	}
	cfg.DefaultPolicy = clonePolicy(cfg.DefaultPolicy)
	cfg.GatewayMeasurements = slices.Clone(cfg.GatewayMeasurements)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sl, err := newSealer(cfg.StorageKey)
	if err != nil {
		return nil, fmt.Errorf("kms: storage key: %w", err)
	}
	ns, err := newNonces(cfg.StorageKey, cfg.Now, cfg.MaxNonces)
	if err != nil {
		return nil, fmt.Errorf("kms: nonce key: %w", err)
	}
	kv, err := store.KV(ctx, cfg.JS, store.BucketKMS, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	k := &KMS{cfg: cfg, log: cfg.Log, st: &state{kv: kv, s: sl}, nonces: ns, metrics: newMetrics()}

	id, created, err := loadOrCreate(ctx, k.st, keyIdentity, func() (*identityState, error) {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		return &identityState{Seed: priv.Seed()}, nil
	})
	if err != nil {
		return nil, err
	}
	if len(id.Seed) != ed25519.SeedSize {
		return nil, errors.New("kms: stored identity key is malformed")
	}
	k.signKey = ed25519.NewKeyFromSeed(id.Seed)
	clear(id.Seed)
	if created {
		k.log.Info("created the KMS identity key")
	}

	sec, created, err := loadOrCreate(ctx, k.st, keyGatewaySecret, func() (*secretState, error) {
		s := make([]byte, 32)
		_, err := rand.Read(s)
		return &secretState{Secret: s}, err
	})
	if err != nil {
		return nil, err
	}
	if len(sec.Secret) != 32 {
		return nil, errors.New("kms: stored gateway secret is malformed")
	}
	k.secret = sec.Secret
	if created {
		k.log.Info("created the gateway secret")
	}

	pub := k.signKey.Public().(ed25519.PublicKey)
	ev, err := cfg.Attester.Attest(wire.KMSIdentityReportData(pub))
	if err != nil {
		return nil, fmt.Errorf("kms: attest identity: %w", err)
	}
	k.identity = wire.KMSIdentity{SignKey: pub, Evidence: ev}
	return k, nil
}

// SignKey returns the KMS identity public key.
func (k *KMS) SignKey() ed25519.PublicKey { return slices.Clone(k.identity.SignKey) }

// Start serves the KMS subjects in queue group wire.QueueKMS until Stop.
func (k *KMS) Start(ctx context.Context) error {
	platforms := k.cfg.Verifiers.Platforms()
	if slices.Contains(platforms, sim.Platform) {
		k.log.Warn("INSECURE: the KMS accepts SIMULATED TEE evidence: anyone who can read the sim root key can obtain every function key; for development only")
	}
	if len(platforms) == 0 {
		k.log.Warn("the KMS accepts no TEE platform: every key release and gateway call will be refused")
	}
	if len(k.cfg.GatewayMeasurements) == 0 {
		k.log.Warn("no gateway measurement is accepted: every gateway call will be refused")
	}
	if policyEmpty(&k.cfg.DefaultPolicy) {
		k.log.Warn("no default policy: a namespace needs a policy before it can create functions")
	}
	handlers := []struct {
		subject string
		h       bus.Handler
	}{
		{wire.SubjectKMSIdentity, k.instrument("identity", k.handleIdentity)},
		{wire.SubjectKMSNonce, k.instrument("nonce", k.handleNonce)},
	}
	// Gateway calls and key releases, only at this replica (the one that
	// issued their nonce: nonce.go).
	perReplica := []struct {
		subject string
		h       bus.Handler
	}{
		{wire.SubjectKMSGatewayAt(k.nonces.hexID), k.instrument("gateway", k.handleGateway)},
		{wire.SubjectKMSReleaseAt(k.nonces.hexID), k.instrument("release", k.handleRelease)},
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, h := range handlers {
		stop, err := bus.Serve(ctx, k.cfg.Conn, k.log, h.subject, wire.QueueKMS, 0, h.h)
		if err != nil {
			k.stopLocked()
			return fmt.Errorf("kms: %w", err)
		}
		k.stops = append(k.stops, stop)
	}
	for _, h := range perReplica {
		stop, err := bus.Serve(ctx, k.cfg.Conn, k.log, h.subject, "", 0, h.h)
		if err != nil {
			k.stopLocked()
			return fmt.Errorf("kms: %w", err)
		}
		k.stops = append(k.stops, stop)
	}
	// Make sure the server has the subscriptions before Start returns, so a
	// request sent right after is served.
	if err := k.cfg.Conn.FlushTimeout(10 * time.Second); err != nil {
		k.stopLocked()
		return fmt.Errorf("kms: flush subscriptions: %w", err)
	}
	k.log.Info("kms serving", "sign_key", hex.EncodeToString(k.identity.SignKey), "platforms", platforms,
		"gateway_measurements", hexList(k.cfg.GatewayMeasurements),
		"default_policy", hexList(k.cfg.DefaultPolicy.Measurements))
	return nil
}

// Stop stops serving and waits for requests in progress.
func (k *KMS) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
}

func (k *KMS) stopLocked() {
	for _, stop := range k.stops {
		stop()
	}
	k.stops = nil
}

func (k *KMS) handleIdentity(context.Context, []byte) (any, error) {
	return &k.identity, nil
}

func (k *KMS) handleNonce(context.Context, []byte) (any, error) {
	return &wire.Nonce{Nonce: k.nonces.issue(), Replica: k.nonces.hexID}, nil
}

func hexList(list [][]byte) []string {
	out := make([]string, len(list))
	for i, b := range list {
		out[i] = hex.EncodeToString(b)
	}
	return out
}

// Replica returns this replica's id: the nonces it issues name it, and the
// requests they are for go to its subjects.
func (k *KMS) Replica() string { return k.nonces.hexID }
