package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clemmys/clemmys/internal/bench"
)

const benchUsage = `Usage: clemmys bench [flags]

Measures clemmys (docs/performance.md): warm invoke latency and throughput,
a 3-step sequence, cold starts, the secure pipeline against an unprotected
build of it, and workerd running the equivalent function. It starts the
platform in this process with a temporary data dir (or measures a running
one with --apihost/--auth) and builds its functions from the source tree:
run it there, as 'go run ./cmd/clemmys bench'. Progress goes to stderr, the
table (or --json) to stdout.

Scenarios: warm, workerd (needs 'npm ci --prefix bench/workerd'), sequence,
cold, js (the JavaScript hello, kind nodejs:default: warm, and its cold
starts), unprotected (builds clemmys with -tags clemmys_unprotected into a
temporary dir and runs it, and a default build, as child processes),
and, only when named, overload (200 connections against a child platform
whose namespace has OpenWhisk's default throttles: answers, 429s and the
child's memory, idle and peak).

Flags:
`

// cmdBench is `clemmys bench` (and `clemmys bench serve`, the child
// process of the unprotected comparison).
func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		return cmdBenchServe(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("clemmys bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	duration := fs.Duration("duration", 10*time.Second, "length of each load point")
	conns := fs.String("connections", "1,16,32", "comma-separated numbers of concurrent connections")
	scenarios := fs.String("scenarios", strings.Join(bench.AllScenarios, ","), "comma-separated scenarios: "+strings.Join(bench.KnownScenarios, ", "))
	asJSON := fs.Bool("json", false, "print the report as JSON")
	coldRuns := fs.Int("cold-runs", 5, "repetitions of each cold-start measurement")
	apiHost := fs.String("apihost", "", "measure a running platform at this API host instead of starting one")
	auth := fs.String("auth", "", "credential uuid:key for --apihost")
	adminAuth := fs.String("admin-auth", "", "admin credential admin:key for --apihost (the cold scenario creates namespaces)")
	caCert := fs.String("cacert", "", "PEM certificate of --apihost's gateway")
	insecure := fs.Bool("insecure", false, "do not verify --apihost's certificate")
	enclavePath := fs.String("enclave", "", "clemmys-enclave binary of the in-process platform (default: found like `clemmys up` finds it)")
	workerd := fs.String("workerd", "", "workerd binary (default: bench/workerd/node_modules/.bin/workerd)")
	workDir := fs.String("work-dir", "", "keep data dirs, builds and logs here (default: a temporary dir, removed)")
	logFile := fs.String("log", "", "write the platform's logs to this file")
	logs := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clemmys bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	opts := bench.Options{
		Duration: *duration, ColdRuns: *coldRuns,
		APIHost: *apiHost, Auth: *auth, AdminAuth: *adminAuth, CACert: *caCert, Insecure: *insecure,
		Workerd: *workerd, Progress: stderr, ProgressTTY: isTerminal(stderr),
	}
	for _, c := range splitList(*conns) {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "clemmys bench: --connections: %q is not a positive number\n", c)
			return 2
		}
		opts.Conns = append(opts.Conns, n)
	}
	opts.Scenarios = splitList(*scenarios)
	if (*apiHost == "") != (*auth == "") {
		fmt.Fprintln(stderr, "clemmys bench: --apihost and --auth go together")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The platform's logs go to --log FILE (at debug unless --log-level
	// says otherwise), else nowhere.
	var logOut io.Writer = io.Discard
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys bench: %v\n", err)
			return 1
		}
		defer f.Close()
		logOut = f
		if !isFlagSet(fs, "log-level") {
			*logs.level = "debug"
		}
	}
	log, err := logs.logger(logOut)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys bench: %v\n", err)
		return 2
	}
	opts.Log = log

	opts.WorkDir = *workDir
	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "clemmys-bench-")
		if err != nil {
			fmt.Fprintf(stderr, "clemmys bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(d)
		opts.WorkDir = d
	} else if err := os.MkdirAll(opts.WorkDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "clemmys bench: %v\n", err)
		return 1
	}

	inProcess := *apiHost == "" && slices.ContainsFunc(opts.Scenarios, func(s string) bool { return s != bench.ScenarioUnprotected })
	if inProcess {
		enc, _, err := findEnclave(ctx, *enclavePath, opts.WorkDir, log, true)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys bench: %v\n", err)
			return 1
		}
		opts.EnclavePath = enc
	}

	rep, err := bench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "\nclemmys bench: %s\n", strings.TrimPrefix(err.Error(), "bench: "))
		if rep == nil || len(rep.Points) == 0 {
			return 1
		}
		fmt.Fprintln(stderr, "clemmys bench: what was measured before the failure:")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return 1
		}
	} else if werr := rep.WriteText(stdout); werr != nil {
		return 1
	}
	if err != nil {
		return 1
	}
	return 0
}

// cmdBenchServe is `clemmys bench serve --data-dir DIR --enclave PATH`: a
// platform for a parent `clemmys bench`, which reads its address and
// credentials from the first line of stdout and stops it by closing stdin.
func cmdBenchServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys bench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "data dir of the platform (required)")
	enclavePath := fs.String("enclave", "", "clemmys-enclave binary (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || *enclavePath == "" {
		fmt.Fprintln(stderr, "clemmys bench serve: --data-dir and --enclave are required (it is run by `clemmys bench`)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := bench.Serve(ctx, *dataDir, *enclavePath, os.Stdin, stdout, log); err != nil {
		fmt.Fprintf(stderr, "clemmys bench serve: %v\n", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// isFlagSet reports whether the flag name was given.
func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
