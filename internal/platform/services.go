package platform

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/gateway"
	"github.com/clemmys/clemmys/internal/invoker"
	"github.com/clemmys/clemmys/internal/kms"
	"github.com/clemmys/clemmys/internal/kmsclient"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

// The building blocks of a deployment, one per service. Start (`clemmys
// up`) uses all of them in one process; the service commands (`clemmys
// kms|controller|invoker|gateway`) use one each, in processes of their own
// on a NATS cluster.

// Trust is what the trusted services of a deployment get from its TEE:
// the platform's name, the verifiers of the evidence it accepts, this
// process's attester and measurement (the KMS accepts the gateway's and
// the gateway the KMS's: they are the same clemmys executable), the KMS's
// storage key, and the runtime's arguments. On the simulated TEE every
// service shares the root key in SimDir.
type Trust struct {
	Name       string
	SimDir     string       // sim only
	Machine    *sim.Machine // sim only
	Verifiers  *tee.Registry
	Self       []byte
	StorageKey [32]byte
	// Runtime is the measurement of the runtime binary (sim: its digest;
	// nil on real TEEs, where it is the confidential VM's), and
	// DefaultPolicy the policy of a namespace that has none (sim: that
	// measurement; none on real TEEs).
	Runtime       []byte
	DefaultPolicy wire.Policy
	attester      tee.Attester
	enclaveArgs   []string
}

// LoadTrust loads the simulated root from simDir; with create it makes one
// if there is none (the first KMS, or `up`), else it refuses: every
// service must share the same root.
func LoadTrust(simDir string, create bool) (*Trust, error) {
	var m *sim.Machine
	var err error
	if create {
		m, err = sim.LoadOrCreate(simDir)
	} else {
		m, err = sim.Load(simDir)
	}
	if err != nil {
		return nil, err
	}
	self, err := sim.MeasureSelf()
	if err != nil {
		return nil, err
	}
	v := tee.NewRegistry()
	v.Add(sim.Platform, sim.NewVerifier(m.PublicKey()))
	return &Trust{
		Name: sim.Platform, SimDir: simDir, Machine: m, Verifiers: v, Self: self,
		StorageKey:  m.SealingKey("clemmys kms storage"),
		attester:    m.Attester(self, 1, false),
		enclaveArgs: []string{"--tee", sim.Platform, "--sim-dir", simDir},
	}, nil
}

// fromSetup is the Trust of a real TEE (setupReal).
func fromSetup(ts *teeSetup) *Trust {
	return &Trust{Name: ts.name, Verifiers: ts.verifiers, Self: ts.self, StorageKey: ts.storageKey,
		Runtime: ts.runtime, DefaultPolicy: ts.defaultPolicy, attester: ts.attester, enclaveArgs: ts.enclaveArgs}
}

// trust is the Trust of the platform's configuration.
func (cfg Config) trust() (*Trust, error) {
	if cfg.TEE != "" && cfg.TEE != sim.Platform {
		ts, err := setupReal(cfg)
		if err != nil {
			return nil, err
		}
		return fromSetup(ts), nil
	}
	t, err := LoadTrust(filepath.Join(cfg.DataDir, "sim"), true)
	if err != nil {
		return nil, err
	}
	if t.Runtime, err = sim.MeasureFile(cfg.EnclavePath); err != nil {
		return nil, err
	}
	t.DefaultPolicy = wire.Policy{Measurements: [][]byte{t.Runtime}}
	cfg.Log.Warn("SIMULATED TEE: sim evidence is accepted; this deployment has no hardware protection and is for development only",
		"sim_root", filepath.Join(t.SimDir, sim.KeyFile))
	return t, nil
}

// Attester is this process's attester (gateway or KMS).
func (t *Trust) Attester() tee.Attester { return t.attester }

// Bus opens the bus connections of a process's services: to an embedded
// server, or to a NATS cluster.
type Bus struct {
	server *bus.Server
	dial   bus.DialOptions

	mu    sync.Mutex
	conns []*nats.Conn
}

// EmbeddedBus connects to the in-process server s.
func EmbeddedBus(s *bus.Server) *Bus { return &Bus{server: s} }

// ClusterBus connects to the cluster o names.
func ClusterBus(o bus.DialOptions) *Bus { return &Bus{dial: o} }

// Connect opens a connection named name and its JetStream context.
func (b *Bus) Connect(ctx context.Context, name string) (*nats.Conn, jetstream.JetStream, error) {
	var nc *nats.Conn
	var err error
	if b.server != nil {
		nc, err = b.server.Connect(name)
	} else {
		o := b.dial
		o.Name = name
		nc, err = bus.Dial(ctx, o)
	}
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("platform: jetstream: %w", err)
	}
	b.mu.Lock()
	b.conns = append(b.conns, nc)
	b.mu.Unlock()
	return nc, js, nil
}

// Close closes every connection opened (the embedded server, if any, is
// its owner's to shut down).
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, nc := range b.conns {
		nc.Close()
	}
	b.conns = nil
}

// KMSOptions configures StartKMS.
type KMSOptions struct {
	// DefaultPolicy is the policy of a namespace that has none: the
	// runtimes (measurements, release signers) the platform trusts.
	DefaultPolicy wire.Policy
	// GatewayMeasurements are accepted for gateway calls; default: the
	// measurement of this binary.
	GatewayMeasurements [][]byte
	Replicas            int
	Log                 *slog.Logger
}

// StartKMS starts a KMS replica serving until runCtx ends or Stop.
func StartKMS(ctx, runCtx context.Context, t *Trust, b *Bus, o KMSOptions) (*kms.KMS, error) {
	nc, js, err := b.Connect(ctx, "kms")
	if err != nil {
		return nil, err
	}
	gw := o.GatewayMeasurements
	if len(gw) == 0 {
		gw = [][]byte{t.Self}
	}
	k, err := kms.New(ctx, kms.Config{
		Conn: nc, JS: js, Verifiers: t.Verifiers, Attester: t.Attester(),
		StorageKey:          t.StorageKey,
		DefaultPolicy:       o.DefaultPolicy,
		GatewayMeasurements: gw,
		Replicas:            o.Replicas,
		Log:                 o.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := k.Start(runCtx); err != nil {
		return nil, err
	}
	return k, nil
}

// StartController starts a controller replica; cfg's Conn and JS are set
// here.
func StartController(ctx, runCtx context.Context, b *Bus, cfg controller.Config) (*controller.Controller, error) {
	nc, js, err := b.Connect(ctx, "controller")
	if err != nil {
		return nil, err
	}
	cfg.Conn, cfg.JS = nc, js
	c, err := controller.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(runCtx); err != nil {
		return nil, err
	}
	return c, nil
}

// StartInvoker starts an invoker whose runtimes run on t's TEE and accept
// key bundles only from the KMS whose identity key is kmsKey (mutual
// attestation: the runtime pins it); nil: the KMS on the bus, once its
// evidence verifies against t (kmsMeasurements, default this binary's:
// acceptable on the simulated TEE; on a real one the key belongs in the
// runtime's measured command line, docs/operations.md). cfg's Conn, JS
// and EnclaveArgs are set here.
func StartInvoker(ctx, runCtx context.Context, t *Trust, b *Bus, kmsKey []byte, cfg invoker.Config) (*invoker.Invoker, error) {
	nc, js, err := b.Connect(ctx, "invoker-"+cfg.ID)
	if err != nil {
		return nil, err
	}
	if kmsKey == nil {
		kc := kmsclient.New(kmsclient.Config{Conn: nc, Verifiers: t.Verifiers, KMSMeasurements: [][]byte{t.Self}, Log: cfg.Log})
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kc.Connect(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("platform: the invoker cannot find an attested KMS to pin for its runtimes: %w", err)
		}
		kmsKey = kc.SignKey()
	}
	cfg.Conn, cfg.JS = nc, js
	cfg.EnclaveArgs = append(slices.Clone(t.enclaveArgs), "--kms-key", hex.EncodeToString(kmsKey))
	iv, err := invoker.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := iv.Start(runCtx); err != nil {
		return nil, err
	}
	return iv, nil
}

// GatewayOptions configures NewGateway beyond gateway.Config.
type GatewayOptions struct {
	// KMSMeasurements are the KMS measurements accepted; default: the
	// measurement of this binary.
	KMSMeasurements [][]byte
	// KMSWait bounds the wait for an attested KMS; default 30 s.
	KMSWait time.Duration
}

// NewGateway connects to an attested KMS and makes a gateway (cfg's Conn,
// JS and KMS are set here); the caller serves it. It returns the KMS
// client too.
func NewGateway(ctx context.Context, t *Trust, b *Bus, cfg gateway.Config, o GatewayOptions) (*gateway.Gateway, *kmsclient.Client, error) {
	nc, js, err := b.Connect(ctx, "gateway")
	if err != nil {
		return nil, nil, err
	}
	km := o.KMSMeasurements
	if len(km) == 0 {
		km = [][]byte{t.Self}
	}
	kc := kmsclient.New(kmsclient.Config{
		Conn: nc, Attester: t.Attester(), Verifiers: t.Verifiers,
		KMSMeasurements: km, Log: cfg.Log,
	})
	wait := o.KMSWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	err = kc.Connect(cctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("platform: the gateway cannot reach an attested KMS (is `clemmys kms` running on the same bus, with the same sim root and binary?): %w", err)
	}
	cfg.Conn, cfg.JS, cfg.KMS = nc, js, kc
	if cfg.Attester == nil {
		cfg.Attester = t.Attester()
	}
	if t.Machine != nil && cfg.SimRoot == nil {
		cfg.SimRoot = t.Machine.PublicKey()
	}
	if cfg.TEE == "" {
		cfg.TEE = t.Name
	}
	g, err := gateway.New(ctx, cfg)
	return g, kc, err
}
