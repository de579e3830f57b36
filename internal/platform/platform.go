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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/catalog"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/gateway"
	"github.com/clemmys/clemmys/internal/invoker"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/tee/sim"
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
	NATSListen      string
	InvokerCapacity int
	// InvokerPoolSize is the invoker's number of spare enclave runtimes
	// (invoker.Config.PoolSize): 0 is its default, negative none.
	InvokerPoolSize int
	Log             *slog.Logger
	// ControllerInterceptor plays a malicious controller in the attack
	// tests (see controller.Interceptor); nil in production.
	ControllerInterceptor controller.Interceptor
	// ExpirySlack overrides the gateway's envelope expiry slack (tests).
	ExpirySlack time.Duration
	// SkipCatalog skips installing the whisk.system catalog (package
	// catalog) on start; tests that do not need it set it.
	SkipCatalog bool
	// InvocationsPerMinute and ConcurrentInvocations are the gateway's
	// per-namespace throttles (gateway.Config): 0 is the default, < 0 no
	// limit. `clemmys bench` turns them off.
	InvocationsPerMinute  int
	ConcurrentInvocations int

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
	Invoker    *invoker.Invoker

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

	conns    []*nats.Conn
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

	p.Bus, err = bus.Start(ctx, bus.Options{StoreDir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen})
	if err != nil {
		return p, err
	}

	setup := setupSim
	if cfg.TEE != "" && cfg.TEE != sim.Platform {
		setup = setupReal
	}
	ts, err := setup(cfg)
	if err != nil {
		return p, err
	}
	if cfg.ReleaseSigner != nil {
		ts.defaultPolicy = wire.Policy{Signers: []wire.ReleaseSigner{*cfg.ReleaseSigner}}
	}
	p.TEE = ts.name
	p.EnclaveMeasurement = ts.runtime
	verifiers, attester, self := ts.verifiers, ts.attester, ts.self

	conn := func(name string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := p.Bus.Connect(name)
		if err != nil {
			return nil, nil, err
		}
		p.conns = append(p.conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, nil, fmt.Errorf("platform: jetstream: %w", err)
		}
		return nc, js, nil
	}

	nc, js, err := conn("kms")
	if err != nil {
		return p, err
	}
	p.KMS, err = kms.New(ctx, kms.Config{
		Conn: nc, JS: js, Verifiers: verifiers, Attester: attester,
		StorageKey:          ts.storageKey,
		DefaultPolicy:       ts.defaultPolicy,
		GatewayMeasurements: [][]byte{self},
		Log:                 p.log.With("service", "kms"),
	})
	if err != nil {
		return p, err
	}
	if err := p.KMS.Start(runCtx); err != nil {
		return p, err
	}

	nc, js, err = conn("controller")
	if err != nil {
		return p, err
	}
	p.Controller, err = controller.New(ctx, controller.Config{Conn: nc, JS: js, Log: p.log.With("service", "controller"),
		Interceptor: cfg.ControllerInterceptor})
	if err != nil {
		return p, err
	}
	if err := p.Controller.Start(runCtx); err != nil {
		return p, err
	}

	nc, js, err = conn("invoker0")
	if err != nil {
		return p, err
	}
	p.Invoker, err = invoker.New(ctx, invoker.Config{
		ID: "invoker0", Conn: nc, JS: js,
		EnclavePath: cfg.EnclavePath,
		// The runtime pins the KMS identity: it accepts key bundles only
		// from this KMS (mutual attestation, docs/protocol.md).
		EnclaveArgs: append(ts.enclaveArgs, "--kms-key", hex.EncodeToString(p.KMS.SignKey())),
		Capacity:    cfg.InvokerCapacity,
		PoolSize:    cfg.InvokerPoolSize,
		Log:         p.log.With("service", "invoker"),
	})
	if err != nil {
		return p, err
	}
	if err := p.Invoker.Start(runCtx); err != nil {
		return p, err
	}

	nc, js, err = conn("gateway")
	if err != nil {
		return p, err
	}
	kc := kmsclient.New(kmsclient.Config{
		Conn: nc, Attester: attester, Verifiers: verifiers,
		KMSMeasurements: [][]byte{self},
		Log:             p.log.With("service", "gateway"),
	})
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	err = kc.Connect(cctx)
	ccancel()
	if err != nil {
		return p, fmt.Errorf("platform: gateway cannot reach an attested KMS: %w", err)
	}
	p.Gateway, err = gateway.New(ctx, gateway.Config{
		Addr: cfg.Addr, DataDir: cfg.DataDir, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		Conn: nc, JS: js, KMS: kc, Log: p.log.With("service", "gateway"), TEE: ts.name,
		ExtraMetrics: []prometheus.Gatherer{p.Controller.Metrics()},
		ExpirySlack:  cfg.ExpirySlack,

		InvocationsPerMinute:  cfg.InvocationsPerMinute,
		ConcurrentInvocations: cfg.ConcurrentInvocations,
	})
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
	if b, err := os.ReadFile(p.AdminCredentialPath()); err == nil {
		auth := strings.TrimSpace(string(b))
		if u, k, ok := strings.Cut(auth, ":"); ok && p.Gateway.CheckAdmin(ctx, u, k) {
			p.AdminAuth = auth
			return nil
		}
		p.log.Warn("issued a new admin credential (the previous admin-credential file was stale)")
	}
	auth, err := p.Gateway.NewAdminCredential(ctx)
	if err != nil {
		return fmt.Errorf("platform: admin credential: %w", err)
	}
	_ = os.Remove(p.AdminCredentialPath()) // so that the new file is created 0600
	if err := os.WriteFile(p.AdminCredentialPath(), []byte(auth+"\n"), 0o600); err != nil {
		return fmt.Errorf("platform: write admin credential: %w", err)
	}
	p.AdminAuth = auth
	return nil
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
		if p.Invoker != nil {
			p.Invoker.Stop()
		}
		if p.Controller != nil {
			p.Controller.Stop()
		}
		if p.KMS != nil {
			p.KMS.Stop()
		}
		for _, nc := range p.conns {
			nc.Close()
		}
		if p.Bus != nil {
			p.Bus.Shutdown()
		}
	})
}
