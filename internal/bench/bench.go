// Package bench measures clemmys (`clemmys bench`, docs/performance.md): a
// closed-loop HTTP/1.1 keep-alive load generator with a latency histogram,
// and the scenarios of issue 5, each reported as medians and ratios:
//
//   - warm: blocking invokes with result=true of examples/hello over HTTPS,
//     p50/p99 and requests/s for each number of connections;
//   - sequence: the same for a sequence of three echo functions, and the
//     latency a step adds (against one echo alone);
//   - cold: the first invoke on a fresh runtime (new namespace), on a
//     pre-attested runtime (new action in a namespace whose runtime runs),
//     and deploy → first result of a module no runtime has seen;
//   - unprotected: the warm measurement against two child platforms built
//     alike from the source tree, one of them with -tags
//     clemmys_unprotected (no envelope crypto, see internal/envelope's
//     unprotected.go), side by side;
//   - workerd: the equivalent JavaScript function on Cloudflare's workerd
//     (bench/workerd, installed with npm), over HTTPS like clemmys, side
//     by side with the warm measurement.
//
// Every point also reports the CPU time its serving processes spent per
// successful answer (cpu.go).
//
// The platform runs in this process (internal/platform, with a temporary
// data directory) unless Options.APIHost names a running one. Targets are
// reported, never asserted.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clemmys/clemmys/internal/srctree"
)

// Scenario names.
const (
	ScenarioWarm        = "warm"
	ScenarioSequence    = "sequence"
	ScenarioCold        = "cold"
	ScenarioUnprotected = "unprotected"
	ScenarioWorkerd     = "workerd"
	ScenarioJS          = "js"
)

// AllScenarios is the default, in the order they run.
var AllScenarios = []string{ScenarioWarm, ScenarioWorkerd, ScenarioSequence, ScenarioCold, ScenarioJS, ScenarioUnprotected}

// KnownScenarios are AllScenarios and those run only when named
// (overload: 200 connections against a child platform).
var KnownScenarios = append(slices.Clone(AllScenarios), ScenarioOverload)

// Options configures a run.
type Options struct {
	// Duration of each load point (default 10 s).
	Duration time.Duration
	// Conns are the numbers of connections of the load points (default
	// 1, 16, 32).
	Conns []int
	// Scenarios to run (default AllScenarios).
	Scenarios []string
	// ColdRuns is how often each cold start is measured (default 5).
	ColdRuns int

	// APIHost, Auth: a running platform to measure instead of starting
	// one. AdminAuth (optional) lets the cold scenario create namespaces.
	// CACert is the PEM file of its certificate; Insecure skips the check.
	APIHost, Auth, AdminAuth, CACert string
	Insecure                         bool

	// EnclavePath is the runtime binary of the in-process platform.
	EnclavePath string
	// SourceRoot is the clemmys source tree (functions, the unprotected
	// build, bench/workerd); default srctree.Root.
	SourceRoot string
	// Workerd is the workerd binary; default
	// SOURCE_ROOT/bench/workerd/node_modules/.bin/workerd.
	Workerd string
	// WorkDir holds data directories, builds and logs; default a
	// temporary directory removed at the end.
	WorkDir string

	// Progress receives the progress display (nil: none); ProgressTTY
	// makes it one updating line.
	Progress    io.Writer
	ProgressTTY bool
	// Log receives the platform's logs (default: discarded).
	Log *slog.Logger
}

func (o *Options) defaults(ctx context.Context) error {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if len(o.Conns) == 0 {
		o.Conns = []int{1, 16, 32}
	}
	for _, c := range o.Conns {
		if c <= 0 || c > 4096 {
			return fmt.Errorf("bench: %d connections", c)
		}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(KnownScenarios, s) {
			return fmt.Errorf("bench: unknown scenario %q (known: %s)", s, strings.Join(KnownScenarios, ", "))
		}
	}
	if o.ColdRuns <= 0 {
		o.ColdRuns = 5
	}
	if o.SourceRoot == "" {
		o.SourceRoot = srctree.Root(ctx)
	}
	if o.Workerd == "" && o.SourceRoot != "" {
		o.Workerd = filepath.Join(o.SourceRoot, "bench", "workerd", "node_modules", ".bin", "workerd")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

func (o *Options) has(s string) bool { return slices.Contains(o.Scenarios, s) }

// The function the warm scenarios run, and what it must answer.
var (
	helloParams = []byte(`{"name":"bench"}`)
	helloResult = []byte(`{"greeting":"Hello bench!"}`)
)

// Run runs the scenarios of opts and returns their report. A scenario that
// cannot run here (no workerd, no source tree, no admin credential) is
// skipped with a note in the report; an error is returned only when a
// measurement fails or the platform cannot be started.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(ctx); err != nil {
		return nil, err
	}
	work := opts.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "clemmys-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	r := &runner{opts: opts, work: work, prog: newProgress(opts.Progress, opts.ProgressTTY), rep: newReport(opts)}
	defer r.close()
	if err := r.run(ctx); err != nil {
		return r.rep, err
	}
	r.rep.evaluate()
	return r.rep, nil
}

// runner holds the state of one run.
type runner struct {
	opts Options
	work string
	prog *progress
	rep  *Report

	main  *target // the platform measured by warm, sequence, cold
	hello []byte  // examples/hello
	echo  []byte  // internal/testfuncs/echo
	// jsEngine is the JavaScript engine's file (the js scenario).
	jsEngine string

	helloReady bool // "hello" is deployed and warm on main
}

func (r *runner) close() {
	if r.main != nil {
		r.main.stop()
		r.main = nil
	}
}

func (r *runner) skip(scenario, why string) {
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: skipped: %s", scenario, why))
	r.prog.note("clemmys bench: %s skipped: %s", scenario, why)
}

func (r *runner) run(ctx context.Context) error {
	o := &r.opts
	needMain := o.has(ScenarioWarm) || o.has(ScenarioSequence) || o.has(ScenarioCold) || o.has(ScenarioWorkerd) || o.has(ScenarioJS)
	if needMain || o.has(ScenarioUnprotected) || o.has(ScenarioOverload) {
		if o.SourceRoot == "" {
			return errors.New("bench: the functions are built from the clemmys source tree: run the bench inside it (go run ./cmd/clemmys bench)")
		}
		r.prog.status("building examples/hello and the echo function (wasm)")
		var err error
		if r.hello, err = buildWasm(ctx, o.SourceRoot, r.work, "./examples/hello"); err != nil {
			return err
		}
		if o.has(ScenarioSequence) {
			if r.echo, err = buildWasm(ctx, o.SourceRoot, r.work, "./internal/testfuncs/echo"); err != nil {
				return err
			}
		}
		if o.has(ScenarioJS) && o.APIHost == "" {
			r.prog.status("building the JavaScript engine (wasm)")
			if _, err = buildWasm(ctx, o.SourceRoot, r.work, "./internal/jsengine"); err != nil {
				return err
			}
			r.jsEngine = filepath.Join(r.work, "internal_jsengine.wasm")
		}
	}
	if needMain {
		if err := r.startMain(ctx); err != nil {
			return err
		}
	}
	var warm []Point
	if o.has(ScenarioWarm) || o.has(ScenarioWorkerd) {
		var err error
		if warm, err = r.warm(ctx, r.main, ScenarioWarm, "clemmys"); err != nil {
			return err
		}
		r.rep.Points = append(r.rep.Points, warm...)
	}
	if o.has(ScenarioWorkerd) {
		if err := r.workerd(ctx, warm); err != nil {
			return err
		}
	}
	if o.has(ScenarioSequence) {
		if err := r.sequence(ctx); err != nil {
			return err
		}
	}
	if o.has(ScenarioCold) {
		if err := r.cold(ctx); err != nil {
			return err
		}
	}
	if o.has(ScenarioJS) {
		if err := r.js(ctx); err != nil {
			return err
		}
	}
	// The children of the unprotected comparison get the machine to
	// themselves.
	r.close()
	if o.has(ScenarioUnprotected) {
		if err := r.unprotected(ctx); err != nil {
			return err
		}
	}
	if o.has(ScenarioOverload) {
		if err := r.overload(ctx); err != nil {
			return err
		}
	}
	r.prog.finish("")
	return nil
}

// startMain starts the in-process platform, or connects to opts.APIHost.
func (r *runner) startMain(ctx context.Context) error {
	o := &r.opts
	if o.APIHost != "" {
		tc, err := clientTLS(o.CACert, o.Insecure)
		if err != nil {
			return err
		}
		host := o.APIHost
		if !strings.Contains(host, "://") {
			host = "https://" + host
		}
		r.main = newTarget("clemmys at "+host, host, o.Auth, o.AdminAuth, tc)
		r.rep.Platform = "running platform at " + host
		return nil
	}
	if o.EnclavePath == "" {
		return errors.New("bench: no enclave runtime binary (Options.EnclavePath)")
	}
	r.prog.status("starting the platform (in-process)")
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t, err := startInProcess(sctx, filepath.Join(r.work, "data"), o.EnclavePath, o.Log, r.jsEngine)
	if err != nil {
		return fmt.Errorf("bench: start the platform: %w", err)
	}
	r.main = t
	r.rep.Platform = "in-process (internal/platform, temporary data dir, gateway throttles off)"
	return nil
}

// point runs one load and records it as a Point.
func (r *runner) point(ctx context.Context, scenario, system, function, transport string, l Load) (Point, error) {
	return r.pointOn(ctx, 0, scenario, system, function, transport, l)
}

// rssInterval is how often a point samples its server's memory.
const rssInterval = 250 * time.Millisecond

// pointOn is point for a server that is process server (0: this one),
// whose CPU it accounts.
func (r *runner) pointOn(ctx context.Context, server int, scenario, system, function, transport string, l Load) (Point, error) {
	label := pointLabel(scenario, system, function, l.Conns)
	root := server
	if root == 0 {
		root = os.Getpid()
	}
	if !settle(ctx, root, settleMax) {
		r.prog.note("%s: the platform was still busy after %s (background work: a spare runtime compiling the JavaScript engine?); measuring anyway", label, settleMax)
	}
	stopRSS := sampleRSS(root, rssInterval)
	before := sampleCPU(server)
	res, err := r.measure(ctx, label, l, r.opts.Duration)
	after := sampleCPU(server)
	mem := stopRSS()
	if err != nil {
		return Point{}, err
	}
	p := pointOf(scenario, system, function, transport, res)
	cpuPerRequest(&p, before, after, server)
	p.PeakRSSMB, p.PeakTreeRSSMB = float64(mem.root)/(1<<20), float64(mem.tree)/(1<<20)
	r.prog.finish(summary(label, p))
	return p, nil
}

// A point is measured on a settled platform: the CPU of the server's
// process tree (its runtimes included) below settleBusy in each
// settleWindow for settleQuiet in a row, waited for up to settleMax.
// Deploying takes a spare runtime, and its replacement compiles the
// JavaScript engine ahead (seconds of CPU on both cores) when the
// platform has one, a second after it started (invoker.precompileDelay,
// hence a quiet spell longer than that): measured meanwhile, a point
// would count that work as the invocations'.
const (
	settleWindow = 250 * time.Millisecond
	settleBusy   = settleWindow / 10 // a tenth of one core
	settleQuiet  = 1500 * time.Millisecond
	settleMax    = 30 * time.Second
)

// settle waits until process root's tree is quiet (see settleWindow) and
// reports whether it became so within wait.
func settle(ctx context.Context, root int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	var quiet time.Duration
	for time.Now().Before(deadline) && ctx.Err() == nil {
		before := treeCPU(root)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(settleWindow):
		}
		if treeCPU(root)-before >= settleBusy {
			quiet = 0
			continue
		}
		if quiet += settleWindow; quiet >= settleQuiet {
			return true
		}
	}
	return false
}

// measure runs l for d with the progress display.
func (r *runner) measure(ctx context.Context, label string, l Load, d time.Duration) (*LoadResult, error) {
	l.Conns = max(l.Conns, 1)
	l.Duration = d
	var done atomic.Int64
	l.Done = &done
	stop := r.prog.load(label, l.Duration, &done)
	res, err := RunLoad(ctx, l)
	stop()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return res, nil
}

func pointLabel(scenario, system, function string, conns int) string {
	label := scenario
	if system != scenario {
		label += " " + system
	}
	if scenario == ScenarioSequence {
		label += " " + function
	}
	return label + fmt.Sprintf(" c=%d", max(conns, 1))
}

func summary(label string, p Point) string {
	return fmt.Sprintf("%-36s %9.0f req/s  p50 %8.3f ms  p99 %8.3f ms  (%d req, %d errors)", label, p.RPS, p.P50Ms, p.P99Ms, p.Requests, p.Errors)
}

// ensureHello deploys hello on t and runs it once.
func (r *runner) ensureHello(ctx context.Context, t *target) error {
	if t == r.main && r.helloReady {
		return nil
	}
	r.prog.status("%s: deploying hello", t.name)
	if err := t.deploy(ctx, t.auth, "hello", r.hello); err != nil {
		return err
	}
	if err := t.invoke(ctx, t.auth, "hello", helloParams, helloResult); err != nil {
		return err
	}
	if t == r.main {
		r.helloReady = true
	}
	return nil
}

// warm measures hello on t for each number of connections.
func (r *runner) warm(ctx context.Context, t *target, scenario, system string) ([]Point, error) {
	if err := r.ensureHello(ctx, t); err != nil {
		return nil, err
	}
	var out []Point
	for _, c := range r.opts.Conns {
		l := t.load(t.auth, "hello", helloParams, helloResult)
		l.Conns = c
		p, err := r.point(ctx, scenario, system, "hello", "https", l)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// sequence measures a 3-step sequence of echo functions for each number
// of connections, and with one connection a 1-step sequence of the same
// echo and the echo alone: the difference of the 3- and 1-step medians,
// over the two added steps, is the latency a step adds; the 1-step
// sequence against the action alone is what the sequence path costs once
// (a sequence goes through the controller, a single action the warm
// path).
func (r *runner) sequence(ctx context.Context) error {
	t := r.main
	r.prog.status("deploying echo ×3 and the sequence")
	for _, n := range []string{"echo1", "echo2", "echo3"} {
		if err := t.deploy(ctx, t.auth, n, r.echo); err != nil {
			return err
		}
	}
	if err := t.deploySequence(ctx, t.auth, "seq3", "/_/echo1", "/_/echo2", "/_/echo3"); err != nil {
		return err
	}
	if err := t.deploySequence(ctx, t.auth, "seq1", "/_/echo1"); err != nil {
		return err
	}
	for _, n := range []string{"echo1", "seq1", "seq3"} {
		if err := t.invoke(ctx, t.auth, n, helloParams, helloParams); err != nil {
			return err
		}
	}
	l := t.load(t.auth, "echo1", helloParams, helloParams)
	l.Conns = 1
	one, err := r.point(ctx, ScenarioSequence, "clemmys", "echo", "https", l)
	if err != nil {
		return err
	}
	r.rep.Points = append(r.rep.Points, one)
	l = t.load(t.auth, "seq1", helloParams, helloParams)
	l.Conns = 1
	single, err := r.point(ctx, ScenarioSequence, "clemmys", "seq1", "https", l)
	if err != nil {
		return err
	}
	r.rep.Points = append(r.rep.Points, single)
	var seq1 Point
	for _, c := range r.opts.Conns {
		l := t.load(t.auth, "seq3", helloParams, helloParams)
		l.Conns = c
		p, err := r.point(ctx, ScenarioSequence, "clemmys", "seq3", "https", l)
		if err != nil {
			return err
		}
		if c == 1 {
			seq1 = p
		}
		r.rep.Points = append(r.rep.Points, p)
	}
	if seq1.Conns == 1 {
		r.rep.Sequence = &SequenceResult{
			EchoP50Ms: one.P50Ms, Seq1P50Ms: single.P50Ms, Seq3P50Ms: seq1.P50Ms,
			AddedPerStepMs:    (seq1.P50Ms - single.P50Ms) / 2,
			AddedOverActionMs: (seq1.P50Ms - one.P50Ms) / 2,
		}
	}
	return nil
}

// cold measures first invocations: on a fresh runtime, on a pre-attested
// one, and of a module no runtime has compiled. Each run deploys (timed),
// then invokes at once (timed): a deploy may start loading the function
// (the gateway's prewarm), so the first invoke alone depends on how much of
// that the deploy's answer already covered, and deploy → first result is
// the figure that does not.
func (r *runner) cold(ctx context.Context) error {
	t := r.main
	o := &r.opts
	if err := r.ensureHello(ctx, t); err != nil { // the guest runtime exists from here on
		return err
	}
	stamp := time.Now().UTC().Format("150405")
	// measure runs deploy + first invoke o.ColdRuns times; setup (untimed)
	// returns the credential and action name of run i.
	measure := func(name, what string, wasm func(i int) []byte, setup func(i int) (string, string, error)) error {
		return r.coldRuns(ctx, name, what, len(wasm(0)), setup, func(auth, action string, i int) error {
			return t.deploy(ctx, auth, action, wasm(i))
		})
	}
	hello := func(int) []byte { return r.hello }

	// Fresh runtime: a new namespace has no runtime yet; its first
	// function needs one started and attested, then the key release, the
	// code fetch and the compilation.
	if t.admin == "" {
		r.skip("cold (fresh runtime)", "no admin credential to create namespaces (pass --admin-auth)")
	} else {
		err := measure(ColdFreshRuntime, "hello in a new namespace: runtime start and attestation, key release, code fetch, compilation", hello,
			func(i int) (string, string, error) {
				auth, err := t.createNamespace(ctx, fmt.Sprintf("bench-%s-%d", stamp, i))
				return auth, "hello", err
			})
		if err != nil {
			return err
		}
	}

	// Pre-attested runtime: the guest runtime runs; a new action (hello's
	// module, a new function id and keys) needs its key release and load.
	err := measure(ColdPreAttested, "a new action with hello's module in a namespace whose runtime runs: key release, code fetch, load", hello,
		func(i int) (string, string, error) { return t.auth, fmt.Sprintf("pa%s%d", stamp, i), nil })
	if err != nil {
		return err
	}

	// A module no runtime has compiled (a unique custom section changes
	// its digest), on the pre-attested runtime.
	fresh := func(i int) []byte { return withCustomSection(r.hello, fmt.Sprintf("fresh%s%d", stamp, i)) }
	err = measure(ColdNewModule, "a module no runtime has compiled (hello + a unique custom section), pre-attested runtime: key release, code fetch, compilation", fresh,
		func(i int) (string, string, error) { return t.auth, fmt.Sprintf("fresh%s%d", stamp, i), nil })
	if err != nil {
		return err
	}
	r.prog.finish(fmt.Sprintf("cold: %d runs of each done", o.ColdRuns))
	return nil
}

// coldRuns runs deploy + first invoke o.ColdRuns times and records them
// as the cold start name; setup (untimed) returns the credential and
// action name of run i, deploy deploys it (timed).
func (r *runner) coldRuns(ctx context.Context, name, what string, size int, setup func(i int) (string, string, error), deploy func(auth, action string, i int) error) error {
	t, o := r.main, &r.opts
	timeIt := func(f func() error) (float64, error) {
		t0 := time.Now()
		err := f()
		return float64(time.Since(t0).Microseconds()) / 1000, err
	}
	var deploys, first []float64
	for i := range o.ColdRuns {
		r.prog.status("cold: %s %d/%d", name, i+1, o.ColdRuns)
		auth, action, err := setup(i)
		if err != nil {
			return err
		}
		d1, err := timeIt(func() error { return deploy(auth, action, i) })
		if err != nil {
			return err
		}
		d2, err := timeIt(func() error { return t.invoke(ctx, auth, action, helloParams, helloResult) })
		if err != nil {
			return err
		}
		deploys, first = append(deploys, d1), append(first, d2)
	}
	r.rep.addCold(name, what, size, deploys, first)
	return nil
}

// jsHello is the JavaScript twin of examples/hello.
const jsHello = `function main(params) { return {greeting: 'Hello ' + (params.name || 'stranger') + '!'} }`

// js measures the JavaScript hello (kind nodejs:default): warm, for each
// number of connections, like the warm scenario's Go hello; and first
// invocations of a new JavaScript action on a pre-attested runtime (the
// engine compiled already), and in a new namespace (a spare runtime, which
// compiled the engine ahead).
func (r *runner) js(ctx context.Context) error {
	t, o := r.main, &r.opts
	r.prog.status("js: deploying the JavaScript hello")
	if err := t.deployJS(ctx, t.auth, "jshello", jsHello); err != nil {
		return err
	}
	if err := t.invoke(ctx, t.auth, "jshello", helloParams, helloResult); err != nil {
		return err
	}
	for _, c := range o.Conns {
		l := t.load(t.auth, "jshello", helloParams, helloResult)
		l.Conns = c
		p, err := r.point(ctx, ScenarioJS, "clemmys", "jshello", "https", l)
		if err != nil {
			return err
		}
		r.rep.Points = append(r.rep.Points, p)
	}
	stamp := time.Now().UTC().Format("150405")
	deploy := func(auth, action string, i int) error {
		// A comment makes each run's code, and so its digest, new.
		return t.deployJS(ctx, auth, action, fmt.Sprintf("// run %s-%d\n%s", stamp, i, jsHello))
	}
	err := r.coldRuns(ctx, ColdJSPreAttested, "a new JavaScript action in a namespace whose runtime runs (engine compiled): key release, code fetch, instance start",
		len(jsHello), func(i int) (string, string, error) { return t.auth, fmt.Sprintf("js%s%d", stamp, i), nil }, deploy)
	if err != nil {
		return err
	}
	if t.admin == "" {
		r.skip("js cold (new namespace)", "no admin credential to create namespaces (pass --admin-auth)")
	} else {
		err := r.coldRuns(ctx, ColdJSNewNamespace, "a JavaScript action in a new namespace: a spare runtime (engine compiled ahead), key release, code fetch, instance start",
			len(jsHello), func(i int) (string, string, error) {
				// Let the spare taken by the previous run be replaced and
				// compile the engine (the invoker waits 1 s, then 2-3 s of
				// CPU; more on a busy machine).
				if i > 0 {
					select {
					case <-time.After(10 * time.Second):
					case <-ctx.Done():
						return "", "", ctx.Err()
					}
				}
				auth, err := t.createNamespace(ctx, fmt.Sprintf("benchjs-%s-%d", stamp, i))
				return auth, "hello", err
			}, deploy)
		if err != nil {
			return err
		}
	}
	r.prog.finish(fmt.Sprintf("js: %d cold runs of each done", o.ColdRuns))
	return nil
}
