// Package platform assembles a whole clemmys deployment in one process: an
// embedded NATS server with JetStream, the KMS, the controller, the gateway
// and one invoker with its enclave runtimes. `clemmys up` and the
// integration tests use it. Each service gets its own bus connection and
// they talk only over the bus, exactly as they would in separate processes.
package platform

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/catalog"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/gateway"
	"github.com/clemmys/clemmys/internal/invoker"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/wire"
)

// GuestNamespace is the namespace created on first start.
const GuestNamespace = "guest"

// Config configures a platform.
type Config struct {
	DataDir     string // everything persistent lives here
	Addr        string // gateway HOST:PORT; port 0 picks one
	EnclavePath string // clemmys-enclave binary
	TLSCert     string // optional certificate/key pair for the gateway
	TLSKey      string
	// NATSListen optionally exposes the bus on TCP (HOST:PORT) for services
	// in other processes. Empty: in-process only.
	NATSListen string
	// NATS, when it names servers, runs the platform against that existing
	// NATS cluster instead of an embedded server (NATSListen is then
	// ignored).
	NATS bus.DialOptions
	// Replicas is the replica count of the JetStream buckets (0 or 1 on
	// the embedded server; 3 on a cluster of at least three nodes).
	Replicas        int
	InvokerCapacity int
	// Invokers is how many invokers run in the process (invoker0, ...);
	// 0 is 1.
	Invokers int
	// InvokerPoolSize is the invoker's number of spare enclave runtimes
	// (invoker.Config.PoolSize): 0 is its default, negative none.
	InvokerPoolSize int
	Log             *slog.Logger
	// ControllerInterceptor plays a malicious controller in the attack
	// tests (see controller.Interceptor); nil in production.
	ControllerInterceptor controller.Interceptor
	// NoDirect sends every invocation through the controller (the
	// gateway's warm path off, gateway.Config.NoDirect). The attack tests'
	// malicious controller implies it: it must see every step.
	NoDirect bool
	// ExpirySlack overrides the gateway's envelope expiry slack (tests).
	ExpirySlack time.Duration
	// Retention is how long activation records are kept in namespaces
	// that set no retention of their own (controller.Config.Retention):
	// 0 is 7 days, negative forever.
	Retention time.Duration
	// SkipCatalog skips installing the whisk.system catalog (package
	// catalog) on start; tests that do not need it set it.
	SkipCatalog bool
	// InvocationsPerMinute, ConcurrentInvocations and FiresPerMinute are
	// the gateway's per-namespace throttles (gateway.Config): 0 is the
	// default, < 0 no limit. `clemmys bench` turns them off.
	InvocationsPerMinute  int
	ConcurrentInvocations int
	FiresPerMinute        int
	// SkipDeployValidation deploys wasm modules without the gateway's
	// check that the runtime can compile them (gateway.Config); tests only.
	SkipDeployValidation bool
	// StepPrewarmInterval is the gateway's (gateway.Config); 0: default.
	StepPrewarmInterval time.Duration
	// JSEngines are JavaScript engine modules (internal/jsengine built for
	// wasip1): the first is the one new nodejs actions are deployed on,
	// the others are kept for actions deployed on earlier builds. None:
	// the nodejs kinds are refused.
	JSEngines []string
	// PrecompileJSEngine has every spare enclave runtime compile the
	// first engine ahead (invoker.Config.PrecompileEngine), for fast
	// JavaScript cold starts, at the cost of seconds of CPU per runtime.
	PrecompileJSEngine bool

	// TEE is the platform: "" or "sim" (the simulated TEE, development
	// only), "sev-snp" or "tdx" (the whole platform runs in one
	// confidential VM; Start fails with ErrNoTEE elsewhere).
	TEE string
	// ReleaseSigner, if set, is the default policy of new namespaces: trust
	// the runtime releases this key signs (wire.ReleaseSigner), instead of
	// the measurement of whatever runtime binary the operator starts.
	ReleaseSigner *wire.ReleaseSigner
}

// Platform is a running deployment.
type Platform struct {
	cfg Config
	log *slog.Logger

	Bus        *bus.Server
	KMS        *kms.KMS
	Controller *controller.Controller
	Gateway    *gateway.Gateway
	Invoker    *invoker.Invoker   // the first of Invokers
	Invokers   []*invoker.Invoker // invoker0, invoker1, ...

	// TEE is the platform's TEE: "sim", "sev-snp" or "tdx".
	TEE string
	// EnclaveMeasurement is the measurement of the runtime binary the KMS
	// trusts by default (sim only; nil on real TEEs, where a runtime's
	// measurement is its confidential VM's and owners pin it).
	EnclaveMeasurement []byte
	// Credential of the guest namespace, "uuid:key".
	GuestAuth string
	// AdminAuth is the admin credential, "admin:key" (see AdminCredentialPath).
	AdminAuth string

	buses    *Bus
	cancel   context.CancelFunc
	serveErr chan error
	stopOnce sync.Once
}

// Start starts every service. Stop shuts them down.
func Start(ctx context.Context, cfg Config) (p *Platform, err error) {
	if cfg.DataDir == "" || cfg.EnclavePath == "" {
		return nil, errors.New("platform: DataDir and EnclavePath are required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:3233"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("platform: data dir: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p = &Platform{cfg: cfg, log: cfg.Log, cancel: cancel, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()

	if cfg.NATS.Enabled() {
		p.buses = ClusterBus(cfg.NATS)
	} else {
		p.Bus, err = bus.Start(ctx, bus.Options{StoreDir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen})
		if err != nil {
			return p, err
		}
		p.buses = EmbeddedBus(p.Bus)
	}

	tr, err := cfg.trust()
	if err != nil {
		return p, err
	}
	p.TEE = tr.Name
	p.EnclaveMeasurement = tr.Runtime
	defaultPolicy := tr.DefaultPolicy
	if cfg.ReleaseSigner != nil {
		defaultPolicy = wire.Policy{Signers: []wire.ReleaseSigner{*cfg.ReleaseSigner}}
	}
	// In one process the KMS and the gateway are the same binary: each
	// accepts the other's measurement, the digest of this executable.
	p.KMS, err = StartKMS(ctx, runCtx, tr, p.buses, KMSOptions{
		DefaultPolicy: defaultPolicy,
		Replicas:      cfg.Replicas,
		Log:           p.log.With("service", "kms"),
	})
	if err != nil {
		return p, err
	}
	p.Controller, err = StartController(ctx, runCtx, p.buses, controller.Config{
		Log:         p.log.With("service", "controller"),
		Interceptor: cfg.ControllerInterceptor,
		Replicas:    cfg.Replicas,
		Retention:   cfg.Retention,
	})
	if err != nil {
		return p, err
	}
	var jsEngine []byte
	if len(cfg.JSEngines) > 0 {
		if jsEngine, err = digestFile(cfg.JSEngines[0]); err != nil {
			return p, fmt.Errorf("platform: JavaScript engine: %w", err)
		}
	}
	for i := range max(cfg.Invokers, 1) {
		id := fmt.Sprintf("invoker%d", i)
		iv, err := StartInvoker(ctx, runCtx, tr, p.buses, p.KMS.SignKey(), invoker.Config{
			ID:          id,
			EnclavePath: cfg.EnclavePath,
			Capacity:    cfg.InvokerCapacity,
			PoolSize:    cfg.InvokerPoolSize,
			Engines:     cfg.JSEngines,

			PrecompileEngine: cfg.PrecompileJSEngine,
			Log:              p.log.With("service", "invoker"),
		})
		if err != nil {
			return p, err
		}
		p.Invokers = append(p.Invokers, iv)
	}
	p.Invoker = p.Invokers[0]
	var kc *kmsclient.Client
	// The gateway's /metrics serves every service of the process; the
	// invokers' only when there is one (several would collide on names).
	extra := []prometheus.Gatherer{p.Controller.Metrics(), p.KMS.Metrics()}
	if len(p.Invokers) == 1 {
		extra = append(extra, p.Invokers[0].Metrics())
	}
	p.Gateway, kc, err = NewGateway(ctx, tr, p.buses, gateway.Config{
		Addr: cfg.Addr, DataDir: cfg.DataDir, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		Log: p.log.With("service", "gateway"), TEE: tr.Name,
		ExtraMetrics: extra,
		ExpirySlack:  cfg.ExpirySlack,
		NoDirect:     cfg.NoDirect || cfg.ControllerInterceptor != nil,
		Replicas:     cfg.Replicas,
		JSEngine:     jsEngine,

		InvocationsPerMinute:  cfg.InvocationsPerMinute,
		ConcurrentInvocations: cfg.ConcurrentInvocations,
		FiresPerMinute:        cfg.FiresPerMinute,
		SkipModuleValidation:  cfg.SkipDeployValidation,
		StepPrewarmInterval:   cfg.StepPrewarmInterval,
	}, GatewayOptions{})
	if err != nil {
		return p, err
	}
	ready := make(chan struct{})
	go func() {
		p.serveErr <- p.Gateway.Serve(runCtx, ready)
	}()
	select {
	case <-ready:
	case err := <-p.serveErr:
		return p, fmt.Errorf("platform: gateway: %w", err)
	case <-ctx.Done():
		return p, ctx.Err()
	}

	if err := p.ensureGuest(ctx); err != nil {
		return p, err
	}
	if !cfg.SkipCatalog {
		// Once installed, this is one file read; a catalog that cannot be
		// installed (no toolchain, no package routes) is not fatal.
		err := catalog.Ensure(ctx, catalog.Options{DataDir: cfg.DataDir, Handler: p.Gateway.Handler(),
			Admin: p.Gateway, Log: p.log.With("service", "catalog")})
		if err != nil {
			p.log.Warn("the whisk.system catalog is not installed", "err", err)
		}
	}
	if err := p.ensureAdmin(ctx); err != nil {
		return p, err
	}
	if err := p.writeRuntimeInfo(); err != nil {
		return p, err
	}
	if p.EnclaveMeasurement != nil {
		if infos, err := p.Gateway.ListNamespaces(ctx); err == nil {
			names := make([]string, len(infos))
			for i, ni := range infos {
				names[i] = ni.Namespace
			}
			warnUnallowed(ctx, kc, p.log, names, p.EnclaveMeasurement)
		}
	}
	p.log.Info("clemmys is up", "api", p.APIHost(), "enclave_measurement", hex.EncodeToString(p.EnclaveMeasurement))
	return p, nil
}

// Connect opens a bus connection of the platform's (tests play bystanders
// and attackers with it); it is closed by Stop.
func (p *Platform) Connect(name string) (*nats.Conn, error) {
	nc, _, err := p.buses.Connect(context.Background(), name)
	return nc, err
}

// APIHost is the gateway's base URL.
func (p *Platform) APIHost() string { return "https://" + p.Gateway.Addr() }

// WskpropsPath is where the guest credential is written.
func (p *Platform) WskpropsPath() string { return filepath.Join(p.cfg.DataDir, "wskprops") }

// ensureGuest makes sure the guest namespace exists and DataDir/wskprops
// holds a working credential for it. Keys are stored hashed, so a lost
// wskprops means a new key (the old one stops working).
func (p *Platform) ensureGuest(ctx context.Context) error {
	if b, err := os.ReadFile(p.WskpropsPath()); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if auth, ok := strings.CutPrefix(strings.TrimSpace(line), "AUTH="); ok {
				if u, k, ok := strings.Cut(auth, ":"); ok {
					if ns, ok := p.Gateway.CheckCredential(ctx, u, k); ok && ns == GuestNamespace {
						p.GuestAuth = auth
						return p.writeWskprops()
					}
				}
			}
		}
	}
	u, k, err := p.Gateway.CreateNamespace(ctx, GuestNamespace)
	if err != nil {
		u, k, err = p.Gateway.RotateKey(ctx, GuestNamespace)
		if err != nil {
			return fmt.Errorf("platform: guest namespace: %w", err)
		}
		p.log.Warn("issued a new guest key (the previous wskprops was missing or stale)")
	}
	p.GuestAuth = u + ":" + k
	return p.writeWskprops()
}

// AdminCredentialPath is where the admin credential ("admin:key", for the
// admin API under /admin/v1 that `clemmys namespace create|delete|rotate`
// uses) is written.
func (p *Platform) AdminCredentialPath() string {
	return filepath.Join(p.cfg.DataDir, "admin-credential")
}

// ensureAdmin makes sure DataDir/admin-credential holds a working admin
// credential, creating a new one (which replaces any other) if it does not.
func (p *Platform) ensureAdmin(ctx context.Context) error {
	auth, err := EnsureAdmin(ctx, p.Gateway, p.cfg.DataDir, true, p.log)
	if err != nil {
		return err
	}
	p.AdminAuth = auth
	return nil
}

// EnsureAdmin makes sure dataDir/admin-credential holds a working admin
// credential and returns it. If the file is missing or stale it creates a
// credential: with replace (one gateway, `clemmys up`), a new one that
// replaces any other; without (one of several gateways sharing the
// store), only if none exists, else it returns "" (the operator copies the
// file from the gateway that created it).
func EnsureAdmin(ctx context.Context, g *gateway.Gateway, dataDir string, replace bool, log *slog.Logger) (string, error) {
	path := filepath.Join(dataDir, "admin-credential")
	if b, err := os.ReadFile(path); err == nil {
		auth := strings.TrimSpace(string(b))
		if u, k, ok := strings.Cut(auth, ":"); ok && g.CheckAdmin(ctx, u, k) {
			return auth, nil
		}
		log.Warn("the admin-credential file is stale: it no longer opens the admin API")
	}
	var auth string
	if replace {
		var err error
		if auth, err = g.NewAdminCredential(ctx); err != nil {
			return "", fmt.Errorf("platform: admin credential: %w", err)
		}
	} else {
		a, created, err := g.CreateAdminCredential(ctx)
		if err != nil {
			return "", fmt.Errorf("platform: admin credential: %w", err)
		}
		if !created {
			return "", nil
		}
		auth = a
	}
	_ = os.Remove(path) // so that the new file is created 0600
	if err := os.WriteFile(path, []byte(auth+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("platform: write admin credential: %w", err)
	}
	return auth, nil
}

func (p *Platform) writeWskprops() error {
	content := fmt.Sprintf("APIHOST=%s\nAUTH=%s\nNAMESPACE=%s\n", p.APIHost(), p.GuestAuth, GuestNamespace)
	if err := os.WriteFile(p.WskpropsPath(), []byte(content), 0o600); err != nil {
		return fmt.Errorf("platform: write wskprops: %w", err)
	}
	return nil
}

// Stop shuts every service down, the gateway first and the bus last.
func (p *Platform) Stop() {
	p.stopOnce.Do(func() {
		p.cancel()
		if p.Gateway != nil {
			select {
			case <-p.serveErr:
			case <-time.After(10 * time.Second):
			}
		}
		var wg sync.WaitGroup
		for _, iv := range p.Invokers {
			wg.Go(iv.Stop)
		}
		wg.Wait()
		if p.Controller != nil {
			p.Controller.Stop()
		}
		if p.KMS != nil {
			p.KMS.Stop()
		}
		if p.buses != nil {
			p.buses.Close()
		}
		if p.Bus != nil {
			p.Bus.Shutdown()
		}
	})
}
