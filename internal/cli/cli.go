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
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

const usage = `clemmys — confidential functions as a service

Usage:
  clemmys up [--tee sim|snp|tdx] [--data-dir DIR] [--addr HOST:PORT] [--enclave PATH] [--nats URL,...]
                                run the whole platform in one process (on an
                                embedded NATS server, or an existing cluster;
                                sim by default: simulated, no protection)
  clemmys kms|controller|invoker|gateway --nats URL,... [--data-dir DIR] ...
                                run one service on a NATS cluster (several
                                machines: docs/operations.md)
  clemmys nats-config --out DIR [--hosts H1,H2,H3] [--invokers ID,...]
                                write the NATS cluster's configuration, with
                                one least-privilege user per service
  clemmys measure [--tee sim|snp|tdx] [--enclave PATH]
                                print the measurement of the enclave runtime,
                                or what of it can be computed here (snp, tdx)
  clemmys release keygen|sign   make a runtime release signing key; sign a
                                release manifest of runtime measurements
  clemmys collateral fetch|status
                                download AMD's and Intel's attestation collateral
                                for the KMS; show until when it is valid
  clemmys policy get|allow|remove|set [MEASUREMENT...]
                                show or change which enclave runtimes may
                                receive the keys of your functions
  clemmys init go|js DIR        start a function project (Go or JavaScript)
                                that builds and deploys as is
  clemmys action create|update|get|list|delete|invoke ...
                                deploy and run functions (wasm, JavaScript)
                                and sequences
  clemmys activation list|get|logs|result|poll ...
                                results and logs of invocations
  clemmys trigger create|update|get|list|delete|fire ...
  clemmys rule create|update|get|list|delete|enable|disable ...
  clemmys package create|update|get|list|delete ...
  clemmys namespace list|get|create|rotate|delete|limits ...
                                namespaces, their credentials and limits (create,
                                rotate, delete, limits: admin of a local platform)
  clemmys list [NS]             everything in a namespace
  clemmys bench [--duration 10s] [--connections 1,16,32] [--scenarios ...] [--json]
                                measure latency, throughput and cold starts
                                (docs/performance.md)
  clemmys attest [--expect FILE] verify the platform's attestation evidence (docs/verify.md)
  clemmys property get|set|unset [--apihost H] [--auth K] [--namespace NS]
                                the API host and credential saved in ~/.wskprops
  clemmys completion bash|zsh   shell completion script
  clemmys version               print the version, commit and Go version

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
	case "release":
		return cmdRelease(args[1:], stdout, stderr)
	case "collateral":
		return cmdCollateral(args[1:], stdout, stderr)
	case "init":
		return cmdInit(args[1:], stdout, stderr)
	case "action":
		return cmdAction(args[1:], stdout, stderr)
	case "activation":
		return cmdActivation(args[1:], stdout, stderr)
	case "attest":
		return cmdAttest(args[1:], stdout, stderr)
	case "trigger":
		return cmdTrigger(args[1:], stdout, stderr)
	case "rule":
		return cmdRule(args[1:], stdout, stderr)
	case "package":
		return cmdPackage(args[1:], stdout, stderr)
	case "namespace":
		return cmdNamespace(args[1:], stdout, stderr)
	case "list":
		return cmdNamespace(append([]string{"get"}, args[1:]...), stdout, stderr)
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
		printVersion(stdout)
		return 0
	case "property":
		return cmdProperty(args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
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
	releaseKey := fs.String("release-key", "", "default policy of new namespaces: trust runtime releases signed by this ed25519 key (hex) instead of the measurement of the runtime started")
	releaseMin := fs.Uint("release-min-version", 0, "with --release-key: the lowest release version trusted")
	teeName := fs.String("tee", "sim", "TEE: sim (simulated, NO protection, development only), snp or tdx (run inside that confidential VM)")
	logs := addLogFlags(fs)
	replicas := fs.Int("replicas", 1, "replicas of the JetStream buckets: 1, or 3 with --nats on a cluster of 3 or more nodes")
	nf := addNATSFlags(fs, false)
	th := throttleFlags(fs)
	direct := fs.Bool("direct", true, "send warm blocking invocations straight to their invoker (false: every invocation through the controller)")
	retention := retentionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ret, err := retention()
	if err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 2
	}
	if err := th.check(); err != nil {
		fmt.Fprintf(stderr, "clemmys up: %v\n", err)
		return 2
	}
	switch *teeName {
	case "sim":
	case "snp", "sev-snp":
		*teeName = "sev-snp"
	case "tdx":
	default:
		fmt.Fprintf(stderr, "clemmys up: unknown --tee %q: sim, snp or tdx\n", *teeName)
		return 2
	}
	var signer *wire.ReleaseSigner
	if *releaseKey != "" {
		k, err := hex.DecodeString(*releaseKey)
		if err != nil || len(k) != 32 {
			fmt.Fprintln(stderr, "clemmys up: --release-key must be a 32-byte ed25519 public key in hex")
			return 2
		}
		signer = &wire.ReleaseSigner{PublicKey: k, MinVersion: uint32(*releaseMin)}
	}
	if *teeName == "sim" {
		fmt.Fprint(stdout, simBanner)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(stderr, "clemmys up: --tls-cert and --tls-key go together")
		return 2
	}
	log, err := logs.logger(stderr)
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
		DataDir: *dataDir, Addr: *addr, EnclavePath: enc, Retention: ret,
		TLSCert: *tlsCert, TLSKey: *tlsKey, NATSListen: *natsListen, Log: log, TEE: *teeName,
		ReleaseSigner:        signer,
		InvocationsPerMinute: th.config(th.invokes), ConcurrentInvocations: th.config(th.concurrent),
		FiresPerMinute: th.config(th.fires),
		NATS:           nf.options(log), Replicas: *replicas,
		JSEngines: engines, PrecompileJSEngine: true, NoDirect: !*direct,
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
	protection := "SIMULATED TEE: no hardware protection, development only"
	if p.TEE != "sim" {
		protection = "TEE " + p.TEE + ": runtimes must pass the namespaces' policies"
	}
	fmt.Fprintf(stdout, `
clemmys is up at %[1]s (%[2]s)
  bus:          %[3]s
  credentials:  %[4]s
  use them:     export WSK_CONFIG_FILE=%[4]s
                curl -k -u "$(grep AUTH= %[4]s | cut -d= -f2)" %[1]s/api/v1/namespaces
Press Ctrl-C to stop.
`, p.APIHost(), protection, busAt, p.WskpropsPath())
	<-ctx.Done()
	log.Info("shutting down")
	p.Stop()
	return 0
}

const simBanner = `*****************************************************************
*  clemmys up is starting on the SIMULATED TEE (--tee sim).     *
*  There is NO hardware protection: whoever can read the data   *
*  directory or this machine's memory reads every function's    *
*  code, inputs, outputs and keys. For development only. In a   *
*  confidential VM, start with --tee snp or --tee tdx.          *
*****************************************************************
`

func cmdMeasure(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys measure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	enclavePath := fs.String("enclave", "", "clemmys-enclave binary (default: found like `clemmys up` finds it)")
	dataDir := fs.String("data-dir", defaultDataDir(), "data dir (where `up` builds the runtime from source)")
	teeName := fs.String("tee", "sim", "sim, snp or tdx: what to measure for")
	var regs tdxRegisters
	fs.StringVar(&regs.mrtd, "mrtd", "", "tdx: MRTD (hex), to print the runtime's combined TDX measurement")
	for i := range regs.rtmr {
		fs.StringVar(&regs.rtmr[i], fmt.Sprintf("rtmr%d", i), "", fmt.Sprintf("tdx: RTMR%d (hex)", i))
	}
	logs := addLogFlags(fs)
	*logs.level = "warn"
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := logs.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
		return 2
	}
	enc, _, err := findEnclave(context.Background(), *enclavePath, *dataDir, log, false)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
		return 1
	}
	switch *teeName {
	case "sim":
		m, err := sim.MeasureFile(enc)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s  %s\n", hex.EncodeToString(m), enc)
		return 0
	case "snp", "sev-snp", "tdx":
		if err := measureReal(stdout, *teeName, enc, &regs); err != nil {
			fmt.Fprintf(stderr, "clemmys measure: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "clemmys measure: unknown --tee %q: sim, snp or tdx\n", *teeName)
	return 2
}

var errNoEnclave = errors.New("no clemmys-enclave binary found: pass --enclave PATH, set CLEMMYS_ENCLAVE, put it next to clemmys or on PATH, or run from the clemmys source tree so it can be built")
