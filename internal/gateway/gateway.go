// Package gateway is clemmys' trusted front door: an HTTPS server speaking
// the OpenWhisk REST API (v1 subset). It authenticates callers, asks the KMS
// for a new function version when code is deployed and seals the module
// before it leaves the gateway, seals every invocation into an envelope
// (DESIGN §3.1–3.3) before handing it to the untrusted controller, and opens
// sealed results and logs for their owner. The controller, the bus and the
// storage see only routing metadata and ciphertext.
//
// The gateway runs attested (its measurement is in the KMS's list of
// accepted gateways): it holds the gateway secret from which every request
// secret is derived, and the key that authenticates stored credentials.
//
// Invocations are sealed from cached action entities (targets.go), whose
// store revisions the request names: the controller refuses a stale one
// and the gateway reads again. Every check runs on cached entities as on
// fresh ones.
//
// Concurrency: Gateway.mu guards srv and addr (set once by Serve). The
// credential cache, the verified-record cache, the action cache, the
// prewarm memory and the derived auth keys each have their own leaf lock.
package gateway

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// Defaults and hard limits.
const (
	// MaxCodeBytes is the largest wasm module accepted (decoded).
	MaxCodeBytes = 16 << 20
	// DefaultMaxBodyBytes bounds an action PUT body: base64 of
	// MaxCodeBytes plus room for the JSON around it.
	DefaultMaxBodyBytes = MaxCodeBytes/3*4 + 1<<20
	// DefaultMaxPayloadBytes bounds an invocation's parameters (OpenWhisk's
	// default payload limit is 1 MiB).
	DefaultMaxPayloadBytes = 1 << 20
	// DefaultBlockingWait is how long a blocking invoke waits before it is
	// answered 202 with the activation id (OpenWhisk: 60 s).
	DefaultBlockingWait = 60 * time.Second
	// DefaultExpirySlack is added to a chain's time limits to form the
	// envelope expiry: room for queueing and cold starts.
	DefaultExpirySlack = 2 * time.Minute
	// busTimeout bounds a non-invoke call to the controller.
	busTimeout = 30 * time.Second
)

// KMS is what the gateway needs from its attested KMS connection
// (implemented by kmsclient.Client).
type KMS interface {
	CreateFunction(ctx context.Context, req wire.CreateFunction) (*wire.FunctionRecord, wire.SignedRecord, envelope.Key, error)
	GatewaySecret(ctx context.Context) (envelope.Key, error)
	VerifyRecord(sr wire.SignedRecord) (*wire.FunctionRecord, error)
	SetPolicy(ctx context.Context, req wire.SetPolicy) (*wire.Policy, error)
	GetPolicy(ctx context.Context, namespace string) (*wire.Policy, error)
	// The version registry (freshness.go).
	CommitVersion(ctx context.Context, fid []byte) (*wire.LatestVersion, error)
	RetireAction(ctx context.Context, ns, action string, created int64) (*wire.LatestVersion, error)
	LatestVersion(ctx context.Context, ns, action string) (*wire.LatestVersion, error)
	// CommitEntity records an entity generation (entityversions.go);
	// RetireAction and LatestVersion take entity keys too.
	CommitEntity(ctx context.Context, ns, entity string, gen int64) (*wire.LatestVersion, error)
}

// Config configures a gateway.
type Config struct {
	Addr    string // HOST:PORT to listen on; port 0 picks one
	DataDir string // the self-signed certificate is kept here
	TLSCert string // optional PEM certificate and key files; both or neither
	TLSKey  string
	Conn    *nats.Conn
	JS      jetstream.JetStream
	KMS     KMS
	Log     *slog.Logger
	// Replicas is the replica count of the JetStream buckets this service
	// creates (store.KV): 0 or 1 on a single server, 3 on a cluster.
	Replicas int
	// TEE names the deployment's TEE platform for GET /api/v1 ("sim",
	// "sev-snp", "tdx"); "sim" is shown with a warning.
	TEE string
	// MaxBodyBytes bounds action PUT bodies; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// SkipModuleValidation deploys wasm modules without checking that the
	// enclave runtime can compile them (sandbox.Validate). Only tests set
	// it, to play a module that passed an older gateway's checks but that
	// the runtime refuses.
	SkipModuleValidation bool
	// StepPrewarmInterval is how long the gateway waits before asking
	// again for the same later sequence step to be prewarmed; default 10 s.
	StepPrewarmInterval time.Duration
	// MaxPayloadBytes bounds invoke bodies; default DefaultMaxPayloadBytes.
	MaxPayloadBytes int64
	// BlockingWait bounds a blocking invoke; default DefaultBlockingWait.
	BlockingWait time.Duration
	// ExpirySlack is added to the sum of a chain's time limits to form its
	// envelope's expiry (room for queueing and cold starts); default
	// DefaultExpirySlack. Tests shorten it to exercise expiry.
	ExpirySlack time.Duration
	// NoDirect sends every invocation through the controller, none
	// straight to the invoker of its warm runtime (direct.go).
	NoDirect bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Per-namespace throttles (ratelimit.go): invocations and trigger
	// fires per minute, invocations in flight. 0 means the default
	// (DefaultInvocationsPerMinute, DefaultFiresPerMinute,
	// DefaultConcurrentInvocations), a negative value no limit.
	InvocationsPerMinute  int
	FiresPerMinute        int
	ConcurrentInvocations int
	// JSEngine is the SHA-256 digest of the JavaScript engine module the
	// invokers' runtimes run JavaScript functions on (internal/jsengine):
	// deployed nodejs actions are bound to it (jskind.go). Empty: the
	// nodejs kinds are refused.
	JSEngine []byte
	// ExtraMetrics are served on /metrics with the gateway's own (in one
	// process, `clemmys up` adds the other services' registries).
	ExtraMetrics []prometheus.Gatherer
	// Attester, if set, is the gateway's own: the attestation API answers
	// with its evidence bound to the caller's nonce and the TLS key.
	Attester tee.Attester
	// SimRoot is the simulated TEE's root public key, shown by the
	// attestation API on sim (nil on real TEEs).
	SimRoot []byte
}

// Gateway serves the OpenWhisk REST API.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	auth    jetstream.KeyValue
	secret  envelope.Key // gateway secret: request secrets derive from it
	authMAC *keyedMAC    // MACs of stored credentials, under a key derived from secret
	seqMAC  *keyedMAC    // MACs of definitions and tags, under a key derived from secret
	fresh   *freshness   // newest function version seen per action
	records recordCache  // verified function records
	targets actionCache  // action entities for invocations (targets.go)
	// placements: where each action's steps run (place.go)
	placements placements
	// revs mirrors the action entities' store revisions: the warm path
	// seals only from entities known to be current (direct.go).
	revs *store.Revisions
	// stepPrewarms: when later sequence steps were last prewarmed
	stepPrewarms stepPrewarms
	keys         derivedKeys // keys derived once from secret
	creds        *credCache
	limits       *rateLimits // per-namespace throttles
	tlsCfg       *tls.Config
	certPEM      []byte
	tlsKey       []byte // SHA-256 of the TLS certificate's SubjectPublicKeyInfo
	// The AEAD of sealed invocations' tickets (sealed.go).
	ticketOnce   sync.Once
	ticketAEAD   cipher.AEAD
	ticketErr    error
	metrics      *metrics
	handler      http.Handler
	code         codeObjects   // the sealed code store, for GET with code (code.go)
	feedState    feedStore     // alarm feeds (feeds.go)
	routeState   routeStore    // API routes (apimgmt.go)
	nsLimitState nsLimitsStore // per-namespace limits (nslimits.go)

	// sessions holds the capsule sessions of this process (envelope format
	// 2): one HPKE encapsulation per function version and epoch, rotated
	// by time and count (envelope.DefaultSessionMaxAge, MaxUses).
	sessions *envelope.Sessions

	mu   sync.Mutex
	srv  *http.Server
	addr string
}

// New prepares a gateway: it opens the credential bucket, fetches the
// gateway secret from the KMS and loads or creates the TLS certificate.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Conn == nil || cfg.JS == nil || cfg.KMS == nil {
		return nil, errors.New("gateway: Conn, JS and KMS are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if cfg.BlockingWait <= 0 {
		cfg.BlockingWait = DefaultBlockingWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ExpirySlack <= 0 {
		cfg.ExpirySlack = DefaultExpirySlack
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:3233"
	}
	auth, err := store.KV(ctx, cfg.JS, store.BucketAuth, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	secret, err := cfg.KMS.GatewaySecret(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway: fetch gateway secret: %w", err)
	}
	authKey, err := hkdf.Key(sha256.New, secret.Bytes(), nil, authKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("gateway: derive credential key: %w", err)
	}
	seqKey, err := hkdf.Key(sha256.New, secret.Bytes(), nil, seqKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("gateway: derive sequence key: %w", err)
	}
	tlsCfg, certPEM, err := loadTLS(cfg.DataDir, cfg.TLSCert, cfg.TLSKey, cfg.Now)
	if err != nil {
		return nil, err
	}
	if cfg.StepPrewarmInterval <= 0 {
		cfg.StepPrewarmInterval = stepPrewarmInterval
	}
	g := &Gateway{
		cfg:     cfg,
		log:     cfg.Log,
		auth:    auth,
		secret:  secret,
		authMAC: newKeyedMAC(authKey),
		seqMAC:  newKeyedMAC(seqKey),
		fresh:   newFreshness(),
		creds:   newCredCache(cfg.Now),
		limits:  newRateLimits(cfg),
		revs:    store.NewRevisions(),
		tlsCfg:  tlsCfg,
		certPEM: certPEM,
		metrics: newMetrics(),
	}
	if g.tlsKey, err = tlsKeyDigest(certPEM); err != nil {
		return nil, fmt.Errorf("gateway: TLS certificate: %w", err)
	}
	g.sessions = envelope.NewSessions(envelope.SessionConfig{})
	g.feedState.wake = make(chan struct{}, 1)
	g.stepPrewarms.interval = cfg.StepPrewarmInterval
	g.handler = g.routes()
	if err := g.loadLimits(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// Handler returns the gateway's HTTP handler (for tests and embedding).
func (g *Gateway) Handler() http.Handler { return g.handler }

// CertPEM returns the PEM certificate the gateway serves.
func (g *Gateway) CertPEM() []byte { return append([]byte(nil), g.certPEM...) }

// Metrics returns the gateway's metrics registry.
func (g *Gateway) Metrics() *prometheus.Registry { return g.metrics.reg }

// Addr returns the address the gateway listens on, once Serve has signalled
// ready.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// Serve listens on Config.Addr and serves HTTPS until ctx is done, then
// shuts down gracefully. ready (optional) is closed once it listens.
func (g *Gateway) Serve(ctx context.Context, ready chan<- struct{}) error {
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           g.handler,
		TLSConfig:         g.tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	g.mu.Lock()
	g.srv = srv
	g.addr = ln.Addr().String()
	g.mu.Unlock()
	if ready != nil {
		close(ready)
	}
	g.log.Info("gateway listening", "addr", ln.Addr().String())

	// The alarm feeds run while the gateway serves (feeds.go).
	feedsDone := make(chan struct{})
	fctx, stopFeeds := context.WithCancel(ctx)
	go func() {
		defer close(feedsDone)
		g.runFeeds(fctx)
	}()
	defer func() { stopFeeds(); <-feedsDone }()
	// Every replica follows the namespaces' limits (nslimits.go).
	limitsDone := make(chan struct{})
	go func() {
		defer close(limitsDone)
		g.watchLimits(fctx)
	}()
	defer func() { stopFeeds(); <-limitsDone }()
	// And the action entities' revisions, for the warm path (direct.go).
	revsDone := make(chan struct{})
	go func() {
		defer close(revsDone)
		g.watchRevisions(fctx)
	}()
	defer func() { stopFeeds(); <-revsDone }()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: serve: %w", err)
	}
	return nil
}

func (g *Gateway) now() time.Time { return g.cfg.Now() }
