// Package cli implements the clemmys command: the platform services (`up`),
// tools (`measure`) and client commands that talk to a gateway (`policy`,
// and wsk's verbs: `action`, `activation`, `trigger`, `rule`, `package`,
// `namespace`). Run is the whole program; cmd/clemmys/main.go only
// calls it, so the CLI is testable.
package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
)

const usage = `clemmys — confidential functions as a service

Usage:
  clemmys up [--data-dir DIR] [--addr HOST:PORT] [--enclave PATH] [--nats URL,...]
                                run the whole platform in one process (on an
                                embedded NATS server, or an existing cluster)
  clemmys kms|controller|invoker|gateway --nats URL,... [--data-dir DIR] ...
                                run one service on a NATS cluster (several
                                machines: docs/operations.md)
  clemmys nats-config --out DIR [--hosts H1,H2,H3] [--invokers ID,...]
                                write the NATS cluster's configuration, with
                                one least-privilege user per service
  clemmys measure [--enclave PATH]
                                print the measurement of the enclave runtime
  clemmys policy get|allow|remove|set [MEASUREMENT...]
                                show or change which enclave runtimes may
                                receive the keys of your functions
  clemmys action create|update|get|list|delete|invoke ...
                                deploy and run WebAssembly functions and sequences
  clemmys activation list|get|logs|result|poll ...
                                results and logs of invocations
  clemmys trigger create|update|get|list|delete|fire ...
  clemmys rule create|update|get|list|delete|enable|disable ...
  clemmys package create|update|get|list|delete ...
  clemmys namespace list|create|rotate|delete ...
                                namespaces and their credentials (create,
                                rotate, delete: admin of a local platform)
  clemmys bench [--duration 10s] [--connections 1,16,32] [--scenarios ...] [--json]
                                measure latency, throughput and cold starts
                                (docs/performance.md)
  clemmys version               print the version

Client commands read the API host and credential like wsk: --apihost/--auth,
__OW_API_HOST/__OW_API_KEY, $WSK_CONFIG_FILE or ~/.wskprops, then the
wskprops of the local platform (--data-dir). Add --json for the API's JSON.

Run 'clemmys COMMAND -h' for a command's flags.
`

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Run runs the clemmys command with args (without the program name) and
// returns the process exit status.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "up":
		return cmdUp(args[1:], stdout, stderr)
	case "measure":
		return cmdMeasure(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdout, stderr)
	case "action":
		return cmdAction(args[1:], stdout, stderr)
	case "activation":
		return cmdActivation(args[1:], stdout, stderr)
	case "trigger":
		return cmdTrigger(args[1:], stdout, stderr)
	case "rule":
		return cmdRule(args[1:], stdout, stderr)
	case "package":
		return cmdPackage(args[1:], stdout, stderr)
	case "namespace":
		return cmdNamespace(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "kms":
		return cmdKMS(args[1:], stdout, stderr)
	case "controller":
		return cmdController(args[1:], stdout, stderr)
	case "invoker":
		return cmdInvoker(args[1:], stdout, stderr)
	case "gateway":
		return cmdGateway(args[1:], stdout, stderr)
	case "nats-config":
		return cmdNATSConfig(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "clemmys", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "clemmys: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func defaultDataDir() string {
	if d := os.Getenv("CLEMMYS_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".clemmys"
	}
	return filepath.Join(home, ".clemmys")
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", defaultDataDir(), "where clemmys keeps its state (env CLEMMYS_DATA_DIR)")
	addr := fs.String("addr", "127.0.0.1:3233", "gateway HTTPS listen address")
	enclavePath := fs.String("enclave", "", "clemmys-enclave binary (default: $CLEMMYS_ENCLAVE, next to clemmys, built from source, or on PATH)")
	tlsCert := fs.String("tls-cert", "", "gateway TLS certificate (PEM); default: self-signed, created in the data dir")
	tlsKey := fs.String("tls-key", "", "gateway TLS key (PEM)")
	natsListen := fs.String("nats-listen", "", "also expose the embedded NATS server on HOST:PORT (default: in-process only)")
	jsEnginePath := fs.String("js-engine", "", "JavaScript engine of the nodejs kinds, a wasm module (default: $CLEMMYS_JS_ENGINE, next to clemmys, or built from source)")
	verbose := fs.Bool("v", false, "debug logging")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	replicas := fs.Int("replicas", 1, "replicas of the JetStream buckets: 1, or 3 with --nats on a cluster of 3 or more nodes")
	nf := addNATSFlags(fs, false)
	th := throttleFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := th.check(); err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 2
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(stderr, "clemmys up: --tls-cert and --tls-key go together")
		return 2
	}
	log, err := newLogger(stderr, *logFormat, *verbose)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 2
	}
	if *replicas < 1 {
		fmt.Fprintln(stderr, "clemmys up: --replicas must be at least 1")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	enc, how, err := findEnclave(ctx, *enclavePath, *dataDir, log, true)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 1
	}
	log.Info("enclave runtime", "path", enc, "found", how)
	engines, err := jsEngines(ctx, *jsEnginePath, *dataDir, log)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 1
	}

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	p, err := platform.Start(startCtx, platform.Config{
		DataDir: *dataDir, Addr: *addr, EnclavePath: enc,
		TLSCert: *tlsCert, TLSKey: *tlsKey, NATSListen: *natsListen, Log: log,
		InvocationsPerMinute: th.config(th.invokes), ConcurrentInvocations: th.config(th.concurrent),
		FiresPerMinute: th.config(th.fires),
		NATS:           nf.options(log), Replicas: *replicas,
		JSEngines: engines, PrecompileJSEngine: true,
	})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 1
	}
	busAt := "embedded NATS server (in-process)"
	switch {
	case nf.options(nil).Enabled():
		busAt = "NATS cluster " + *nf.urls
	case p.Bus.ClientURL() != "":
		busAt = "embedded NATS server, also at " + p.Bus.ClientURL()
	}
	fmt.Fprintf(stdout, `
clemmys is up at %s (simulated TEE: development only)
  bus:          %s`, p.APIHost(), busAt)
	fmt.Fprintf(stdout, `
  credentials:  %[1]s
  use them:     export WSK_CONFIG_FILE=%[1]s
                curl -k -u "$(grep AUTH= %[1]s | cut -d= -f2)" %[2]s/api/v1/namespaces
Press Ctrl-C to stop.
`, p.WskpropsPath(), p.APIHost())
	<-ctx.Done()
	log.Info("shutting down")
	p.Stop()
	return 0
}

func cmdMeasure(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys measure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	enclavePath := fs.String("enclave", "", "clemmys-enclave binary (default: found like `clemmys up` finds it)")
	dataDir := fs.String("data-dir", defaultDataDir(), "data dir (where `up` builds the runtime from source)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	enc, _, err := findEnclave(context.Background(), *enclavePath, *dataDir, log, false)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
		return 1
	}
	m, err := sim.MeasureFile(enc)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s  %s\n", hex.EncodeToString(m), enc)
	return 0
}

var errNoEnclave = errors.New("no clemmys-enclave binary found: pass --enclave PATH, set CLEMMYS_ENCLAVE, put it next to clemmys or on PATH, or run from the clemmys source tree so it can be built")
