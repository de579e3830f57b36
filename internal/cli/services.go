package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/controller"
	"github.com/clemmys/clemmys/internal/gateway"
	"github.com/clemmys/clemmys/internal/invoker"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

// The service commands: one clemmys service per process, on a NATS
// cluster (docs/operations.md, "Running on several machines").

// serviceFlags are the flags every service command takes.
type serviceFlags struct {
	fs          *flag.FlagSet
	name        string
	dataDir     *string
	simDir      *string
	replicas    *int
	metricsAddr *string
	logs        logFlags
	nats        natsFlags
}

// natsFlags say how to reach the NATS cluster (shared with `up --nats`).
type natsFlags struct {
	urls, creds, nkey, nkeyDir, ca, cert, key *string
}

func addNATSFlags(fs *flag.FlagSet, required bool) natsFlags {
	help := "NATS server URLs, comma-separated (nats://host:4222,...)"
	if !required {
		help += "; set: run against that existing cluster instead of an embedded server"
	}
	return natsFlags{
		urls:    fs.String("nats", "", help),
		creds:   fs.String("nats-creds", "", "NATS credentials file (JWT and nkey seed)"),
		nkey:    fs.String("nats-nkey", "", "file with this service's NATS nkey seed (as written by `clemmys nats-config`)"),
		nkeyDir: fs.String("nats-nkey-dir", "", "directory of the services' nkey seeds (DIR/<service>.nk, as `clemmys nats-config` writes them); each service connects as its own user"),
		ca:      fs.String("nats-ca", "", "PEM file of the CA that signs the NATS servers' TLS certificates"),
		cert:    fs.String("nats-cert", "", "client TLS certificate for the NATS servers (PEM), with --nats-key"),
		key:     fs.String("nats-key", "", "client TLS key (PEM)"),
	}
}

func (n natsFlags) options(log *slog.Logger) bus.DialOptions {
	return bus.DialOptions{URLs: bus.ParseURLs(*n.urls), Creds: *n.creds, NKey: *n.nkey, NKeyDir: *n.nkeyDir,
		CA: *n.ca, Cert: *n.cert, Key: *n.key, Log: log}
}

func newServiceFlags(name string, stderr io.Writer) *serviceFlags {
	fs := flag.NewFlagSet("clemmys "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &serviceFlags{fs: fs, name: name}
	s.dataDir = fs.String("data-dir", defaultDataDir(), "this service's local state (env CLEMMYS_DATA_DIR)")
	s.simDir = fs.String("sim-dir", "", "the simulated TEE's root key, shared by every service of the deployment (default DATA_DIR/sim)")
	s.replicas = fs.Int("replicas", 1, "replicas of the JetStream buckets this service creates: 1, or 3 on a cluster of 3 or more nodes")
	s.metricsAddr = fs.String("metrics-addr", "", "serve Prometheus metrics on HOST:PORT/metrics (default: none)")
	s.logs = addLogFlags(fs)
	s.nats = addNATSFlags(fs, true)
	return s
}

// parse parses args and checks the common flags; it returns the logger.
func (s *serviceFlags) parse(args []string, stderr io.Writer) (*slog.Logger, bool) {
	if err := s.fs.Parse(args); err != nil {
		return nil, false
	}
	if s.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clemmys %s: unexpected argument %q\n", s.name, s.fs.Arg(0))
		return nil, false
	}
	if !s.nats.options(nil).Enabled() {
		fmt.Fprintf(stderr, "clemmys %s: --nats URL is required (the NATS cluster the services share); to run everything in one process, use `clemmys up`\n", s.name)
		return nil, false
	}
	if *s.replicas < 1 {
		fmt.Fprintf(stderr, "clemmys %s: --replicas must be at least 1\n", s.name)
		return nil, false
	}
	if *s.simDir == "" {
		*s.simDir = filepath.Join(*s.dataDir, "sim")
	}
	log, err := s.logs.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys %s: %v\n", s.name, err)
		return nil, false
	}
	if err := os.MkdirAll(*s.dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "clemmys %s: data dir: %v\n", s.name, err)
		return nil, false
	}
	return log.With("service", s.name), true
}

// logFlags are the logging flags of every command: --log-format,
// --log-level and -v (short for --log-level debug).
type logFlags struct {
	format, level *string
	verbose       *bool
}

func addLogFlags(fs *flag.FlagSet) logFlags {
	return logFlags{
		format:  fs.String("log-format", "text", "log format: text or json (one JSON object per line)"),
		level:   fs.String("log-level", "info", "log level: debug, info, warn or error"),
		verbose: fs.Bool("v", false, "debug logging (--log-level debug)"),
	}
}

// logger makes the logger the flags describe, writing to w.
func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	level := *l.level
	if *l.verbose {
		level = "debug"
	}
	return newLogger(w, *l.format, level)
}

// newLogger makes a text or JSON slog logger at level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info", "":
		lv = slog.LevelInfo
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// run starts a service with start, serves its metrics and waits for a
// signal, then stops it. start returns the service's metrics and its stop.
func (s *serviceFlags) run(stdout, stderr io.Writer, log *slog.Logger, start func(ctx, runCtx context.Context, b *platform.Bus) (prometheus.Gatherer, func(), error)) int {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	b := platform.ClusterBus(s.nats.options(log))
	defer b.Close()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	g, stop, err := start(startCtx, runCtx, b)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "clemmys %s: %v\n", s.name, err)
		return 1
	}
	var msrv *http.Server
	if *s.metricsAddr != "" {
		ln, err := net.Listen("tcp", *s.metricsAddr)
		if err != nil {
			stop()
			fmt.Fprintf(stderr, "clemmys %s: --metrics-addr: %v\n", s.name, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(ln) }()
		fmt.Fprintf(stdout, "clemmys %s: metrics on http://%s/metrics\n", s.name, ln.Addr())
	}
	fmt.Fprintf(stdout, "clemmys %s: running on NATS %s (simulated TEE: development only); Ctrl-C stops it\n", s.name, *s.nats.urls)
	<-ctx.Done()
	log.Info("shutting down")
	if msrv != nil {
		_ = msrv.Close()
	}
	cancelRun()
	stop()
	return 0
}

// hexFlags is a repeatable flag of hex byte strings.
type hexFlags [][]byte

func (h *hexFlags) String() string {
	var s []string
	for _, b := range *h {
		s = append(s, hex.EncodeToString(b))
	}
	return strings.Join(s, ",")
}

func (h *hexFlags) Set(v string) error {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) < 32 || len(b) > 64 {
		return errors.New("want the hex of a 32..64-byte measurement")
	}
	*h = append(*h, b)
	return nil
}

func cmdKMS(args []string, stdout, stderr io.Writer) int {
	s := newServiceFlags("kms", stderr)
	enclavePath := s.fs.String("enclave", "", "measure this clemmys-enclave binary for the default runtime policy (default: found like `clemmys up` finds it)")
	var runtimes, gateways hexFlags
	s.fs.Var(&runtimes, "runtime-measurement", "an enclave runtime measurement of the default policy (repeatable; replaces --enclave)")
	s.fs.Var(&gateways, "gateway-measurement", "a gateway measurement accepted for gateway calls (repeatable; default: this binary's)")
	releaseKey := s.fs.String("release-key", "", "default policy of new namespaces: trust runtime releases signed by this ed25519 key (hex) instead of a measurement")
	releaseMin := s.fs.Uint("release-min-version", 0, "with --release-key: the lowest release version trusted")
	log, ok := s.parse(args, stderr)
	if !ok {
		return 2
	}
	policy := wire.Policy{}
	if *releaseKey != "" {
		k, err := hex.DecodeString(*releaseKey)
		if err != nil || len(k) != 32 {
			fmt.Fprintln(stderr, "clemmys kms: --release-key must be a 32-byte ed25519 public key in hex")
			return 2
		}
		policy.Signers = []wire.ReleaseSigner{{PublicKey: k, MinVersion: uint32(*releaseMin)}}
	}
	if len(runtimes) == 0 && *releaseKey == "" {
		enc, _, err := findEnclave(context.Background(), *enclavePath, *s.dataDir, log, true)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys kms: %v (or give --runtime-measurement HEX)\n", err)
			return 1
		}
		m, err := sim.MeasureFile(enc)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys kms: %v\n", err)
			return 1
		}
		runtimes = append(runtimes, m)
	}
	return s.run(stdout, stderr, log, func(ctx, runCtx context.Context, b *platform.Bus) (prometheus.Gatherer, func(), error) {
		tr, err := platform.LoadTrust(*s.simDir, true)
		if err != nil {
			return nil, nil, err
		}
		log.Warn("SIMULATED TEE: sim evidence is accepted; this deployment has no hardware protection and is for development only",
			"sim_root", filepath.Join(tr.SimDir, sim.KeyFile))
		k, err := platform.StartKMS(ctx, runCtx, tr, b, platform.KMSOptions{
			DefaultPolicy: wire.Policy{Measurements: runtimes, Signers: policy.Signers}, GatewayMeasurements: gateways, Replicas: *s.replicas, Log: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return k.Metrics(), k.Stop, nil
	})
}

func cmdController(args []string, stdout, stderr io.Writer) int {
	s := newServiceFlags("controller", stderr)
	retention := retentionFlag(s.fs)
	log, ok := s.parse(args, stderr)
	if !ok {
		return 2
	}
	ret, err := retention()
	if err != nil {
		fmt.Fprintf(stderr, "clemmys controller: %v\n", err)
		return 2
	}
	return s.run(stdout, stderr, log, func(ctx, runCtx context.Context, b *platform.Bus) (prometheus.Gatherer, func(), error) {
		c, err := platform.StartController(ctx, runCtx, b, controller.Config{Log: log, Replicas: *s.replicas, Retention: ret})
		if err != nil {
			return nil, nil, err
		}
		return c.Metrics(), c.Stop, nil
	})
}

func cmdInvoker(args []string, stdout, stderr io.Writer) int {
	s := newServiceFlags("invoker", stderr)
	host, _ := os.Hostname()
	id := s.fs.String("id", host, "this invoker's id, unique in the deployment")
	enclavePath := s.fs.String("enclave", "", "clemmys-enclave binary (default: $CLEMMYS_ENCLAVE, next to clemmys, built from source, or on PATH)")
	capacity := s.fs.Int("capacity", 16, "activations run at once")
	pool := s.fs.Int("pool-size", invoker.DefaultPoolSize, "spare enclave runtimes kept started (0: none)")
	jsEnginePath := s.fs.String("js-engine", "", "JavaScript engine of the nodejs kinds, a wasm module (default: $CLEMMYS_JS_ENGINE, next to clemmys, or built from source); the same build as the gateways'")
	log, ok := s.parse(args, stderr)
	if !ok {
		return 2
	}
	if *pool == 0 {
		*pool = -1
	}
	return s.run(stdout, stderr, log, func(ctx, runCtx context.Context, b *platform.Bus) (prometheus.Gatherer, func(), error) {
		enc, how, err := findEnclave(ctx, *enclavePath, *s.dataDir, log, true)
		if err != nil {
			return nil, nil, err
		}
		log.Info("enclave runtime", "path", enc, "found", how)
		engines, err := jsEngines(ctx, *jsEnginePath, *s.dataDir, log)
		if err != nil {
			return nil, nil, err
		}
		tr, err := platform.LoadTrust(*s.simDir, false)
		if err != nil {
			return nil, nil, err
		}
		iv, err := platform.StartInvoker(ctx, runCtx, tr, b, nil, invoker.Config{
			ID: *id, EnclavePath: enc, Capacity: *capacity, PoolSize: *pool, Log: log,
			Engines: engines, PrecompileEngine: len(engines) > 0,
		})
		if err != nil {
			return nil, nil, err
		}
		return iv.Metrics(), iv.Stop, nil
	})
}

func cmdGateway(args []string, stdout, stderr io.Writer) int {
	s := newServiceFlags("gateway", stderr)
	addr := s.fs.String("addr", "127.0.0.1:3233", "HTTPS listen address")
	tlsCert := s.fs.String("tls-cert", "", "TLS certificate (PEM); default: self-signed, created in the data dir")
	tlsKey := s.fs.String("tls-key", "", "TLS key (PEM)")
	var kmsMeasurements hexFlags
	s.fs.Var(&kmsMeasurements, "kms-measurement", "a KMS measurement accepted (repeatable; default: this binary's)")
	jsEnginePath := s.fs.String("js-engine", "", "JavaScript engine new nodejs actions are bound to (default: $CLEMMYS_JS_ENGINE, next to clemmys, or built from source); the invokers need the same build")
	direct := s.fs.Bool("direct", true, "send warm blocking invocations straight to their invoker (false: every invocation through the controller)")
	th := throttleFlags(s.fs)
	log, ok := s.parse(args, stderr)
	if !ok {
		return 2
	}
	if err := th.check(); err != nil {
		fmt.Fprintf(stderr, "clemmys gateway: %v\n", err)
		return 2
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(stderr, "clemmys gateway: --tls-cert and --tls-key go together")
		return 2
	}
	return s.run(stdout, stderr, log, func(ctx, runCtx context.Context, b *platform.Bus) (prometheus.Gatherer, func(), error) {
		tr, err := platform.LoadTrust(*s.simDir, false)
		if err != nil {
			return nil, nil, err
		}
		engines, err := jsEngines(ctx, *jsEnginePath, *s.dataDir, log)
		if err != nil {
			return nil, nil, err
		}
		var engine []byte
		if len(engines) > 0 {
			if engine, err = platform.EngineDigest(engines[0]); err != nil {
				return nil, nil, fmt.Errorf("JavaScript engine: %w", err)
			}
		}
		g, _, err := platform.NewGateway(ctx, tr, b, gateway.Config{
			JSEngine: engine,
			Addr:     *addr, DataDir: *s.dataDir, TLSCert: *tlsCert, TLSKey: *tlsKey, Log: log, Replicas: *s.replicas,
			InvocationsPerMinute: th.config(th.invokes), ConcurrentInvocations: th.config(th.concurrent),
			FiresPerMinute: th.config(th.fires),
			NoDirect:       !*direct,
		}, platform.GatewayOptions{KMSMeasurements: kmsMeasurements})
		if err != nil {
			return nil, nil, err
		}
		ready := make(chan struct{})
		served := make(chan error, 1)
		go func() { served <- g.Serve(runCtx, ready) }()
		select {
		case <-ready:
		case err := <-served:
			return nil, nil, err
		}
		auth, err := platform.EnsureAdmin(ctx, g, *s.dataDir, false, log)
		switch {
		case err != nil:
			log.Warn("admin credential", "err", err)
		case auth == "":
			log.Info("an admin credential exists in the store: copy admin-credential from the gateway that created it to use the admin API from here")
		}
		fmt.Fprintf(stdout, "clemmys gateway: serving https://%s (OpenWhisk API under /api/v1)\n", g.Addr())
		return g.Metrics(), func() {
			select {
			case <-served:
			case <-time.After(15 * time.Second):
			}
		}, nil
	})
}

// retentionFlag registers --activation-retention: how long activation
// records are kept in namespaces that set no retention of their own.
func retentionFlag(fs *flag.FlagSet) func() (time.Duration, error) {
	v := fs.String("activation-retention", "7d", "keep activation records this long (7d, 36h; \"forever\": never delete) unless a namespace sets its own (clemmys namespace limits)")
	return func() (time.Duration, error) {
		if *v == "forever" {
			return -1, nil
		}
		d, err := parseDays(*v)
		if err != nil {
			return 0, fmt.Errorf("--activation-retention: %w", err)
		}
		return d, nil
	}
}
