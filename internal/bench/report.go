package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of a run. Its JSON form is what `clemmys bench
// --json` prints.
type Report struct {
	Date           time.Time `json:"date"`
	Machine        Machine   `json:"machine"`
	GoVersion      string    `json:"go_version"`
	Platform       string    `json:"platform"`
	DurationS      float64   `json:"duration_s"` // of each load point
	Conns          []int     `json:"connections"`
	Scenarios      []string  `json:"scenarios"`
	WorkerdVersion string    `json:"workerd_version,omitempty"`

	Points      []Point         `json:"points"`
	Sequence    *SequenceResult `json:"sequence,omitempty"`
	Cold        []Cold          `json:"cold,omitempty"`
	Workerd     []Comparison    `json:"workerd,omitempty"` // A = clemmys, B = workerd
	Overload    *Overload       `json:"overload,omitempty"`
	Unprotected []Comparison    `json:"unprotected,omitempty"` // A = secure, B = unprotected
	Targets     []TargetResult  `json:"targets,omitempty"`
	Notes       []string        `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryGB int    `json:"memory_gib"`
	OS       string `json:"os"`
	// LoadBefore and LoadAfter are the 1-minute load averages at the start
	// and the end of the run: other work on the machine shows there.
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
}

// loadAvg returns the 1-minute load average (Linux), or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Point is one load point.
type Point struct {
	Scenario   string  `json:"scenario"`
	System     string  `json:"system"` // clemmys, clemmys-secure, clemmys-unprotected, workerd
	Function   string  `json:"function"`
	Transport  string  `json:"transport"` // https or http
	Conns      int     `json:"connections"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"requests_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MeanMs     float64 `json:"mean_ms"`
	MaxMs      float64 `json:"max_ms"`
	// CPUUsPerReq is the CPU time (user + system, µs) the serving
	// processes spent per successful answer during the point (cpu.go);
	// for a platform in the bench process it includes the load generator
	// (CPUIncludesClient), and ClientCPUUsPerReq is the bench process's
	// own when the server is another process.
	CPUUsPerReq       float64 `json:"cpu_us_per_request,omitempty"`
	ClientCPUUsPerReq float64 `json:"client_cpu_us_per_request,omitempty"`
	CPUIncludesClient bool    `json:"cpu_includes_client,omitempty"`
	// Peak resident memory (MiB) during the point, sampled every 250 ms:
	// of the serving process (the bench process itself for a platform in
	// it) and of it with its descendants (the enclave runtimes).
	PeakRSSMB     float64 `json:"peak_rss_mib,omitempty"`
	PeakTreeRSSMB float64 `json:"peak_tree_rss_mib,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func pointOf(scenario, system, function, transport string, r *LoadResult) Point {
	return Point{
		Scenario: scenario, System: system, Function: function, Transport: transport,
		Conns: r.Conns, Requests: r.Requests, Errors: r.Errors, FirstError: r.FirstError,
		Seconds: r.Elapsed.Seconds(), RPS: r.RPS(),
		P50Ms: ms(r.Hist.Quantile(0.5)), P99Ms: ms(r.Hist.Quantile(0.99)),
		MeanMs: ms(r.Hist.Mean()), MaxMs: ms(r.Hist.Max()),
	}
}

// SequenceResult is the latency a warm sequence step adds, with one
// connection: (p50 of the 3-step sequence − p50 of the 1-step sequence of
// the same echo) / 2. AddedOverActionMs is the same difference against
// the echo invoked alone, which takes the warm path while a sequence goes
// through the controller: it counts the sequence path's own cost too
// (before the warm path the two were the same measure).
type SequenceResult struct {
	EchoP50Ms         float64 `json:"echo_p50_ms"`
	Seq1P50Ms         float64 `json:"seq1_p50_ms"`
	Seq3P50Ms         float64 `json:"seq3_p50_ms"`
	AddedPerStepMs    float64 `json:"added_per_step_ms"`
	AddedOverActionMs float64 `json:"added_over_action_ms"`
}

// Cold start names.
const (
	ColdFreshRuntime = "fresh runtime"
	ColdPreAttested  = "pre-attested runtime"
	ColdNewModule    = "new module"
	// JavaScript (the js scenario).
	ColdJSPreAttested  = "js, pre-attested runtime"
	ColdJSNewNamespace = "js, new namespace"
)

// Cold is a repeated cold-start measurement: deploy, then the first
// invoke at once.
type Cold struct {
	Name           string `json:"name"`
	What           string `json:"what"`
	ModuleBytes    int    `json:"module_bytes"`
	Runs           int    `json:"runs"`
	Deploy         Stats  `json:"deploy_ms"`
	FirstInvoke    Stats  `json:"first_invoke_ms"`
	DeployToResult Stats  `json:"deploy_to_result_ms"`
}

// Stats summarizes repeated measurements, in milliseconds.
type Stats struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func statsOf(samples []float64) Stats {
	st := Stats{Samples: samples}
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return st
	}
	st.Min, st.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		st.Median = s[len(s)/2]
	} else {
		st.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return st
}

func (r *Report) addCold(name, what string, size int, deploy, first []float64) {
	total := make([]float64, len(deploy))
	for i := range deploy {
		total[i] = deploy[i] + first[i]
	}
	r.Cold = append(r.Cold, Cold{Name: name, What: what, ModuleBytes: size, Runs: len(deploy),
		Deploy: statsOf(deploy), FirstInvoke: statsOf(first), DeployToResult: statsOf(total)})
}

func (r *Report) cold(name string) *Cold {
	for i := range r.Cold {
		if r.Cold[i].Name == name {
			return &r.Cold[i]
		}
	}
	return nil
}

// Comparison puts two points of the same connection count side by side.
type Comparison struct {
	Conns    int     `json:"connections"`
	A        Point   `json:"a"`
	B        Point   `json:"b"`
	RPSRatio float64 `json:"rps_ratio"` // A.RPS / B.RPS
	P50Ratio float64 `json:"p50_ratio"` // A.P50 / B.P50
	// CPU per successful answer of each side's server (µs): A's, when it
	// ran in the bench process, less B's load generator's (the same
	// client, measured while B was served by another process), an
	// estimate; CPURatio = ACPU / BCPU.
	ACPUUsPerReq float64 `json:"a_cpu_us_per_request,omitempty"`
	BCPUUsPerReq float64 `json:"b_cpu_us_per_request,omitempty"`
	CPURatio     float64 `json:"cpu_ratio,omitempty"`
}

func compare(a, b Point) Comparison {
	c := Comparison{Conns: a.Conns, A: a, B: b}
	c.ACPUUsPerReq, c.BCPUUsPerReq = a.CPUUsPerReq, b.CPUUsPerReq
	if a.CPUIncludesClient && !b.CPUIncludesClient {
		c.ACPUUsPerReq = max(0, a.CPUUsPerReq-b.ClientCPUUsPerReq)
	}
	if c.BCPUUsPerReq > 0 {
		c.CPURatio = c.ACPUUsPerReq / c.BCPUUsPerReq
	}
	if b.RPS > 0 {
		c.RPSRatio = a.RPS / b.RPS
	}
	if b.P50Ms > 0 {
		c.P50Ratio = a.P50Ms / b.P50Ms
	}
	return c
}

// TargetResult is one of issue 5's targets and what this run measured.
// They are reported, not asserted.
type TargetResult struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

func newReport(o Options) *Report {
	return &Report{
		Date: time.Now().UTC().Truncate(time.Second), Machine: machine(), GoVersion: runtime.Version(),
		DurationS: o.Duration.Seconds(), Conns: o.Conns, Scenarios: o.Scenarios,
	}
}

// machine reads the CPU model and memory size from /proc (Linux).
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, LoadBefore: loadAvg()}
	scan := func(path string, f func(k, v string)) {
		fh, err := os.Open(path)
		if err != nil {
			return
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
				f(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
	}
	scan("/proc/cpuinfo", func(k, v string) {
		if k == "model name" && m.CPU == "" {
			m.CPU = v
		}
	})
	scan("/proc/meminfo", func(k, v string) {
		if k == "MemTotal" {
			if kb, err := strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64); err == nil {
				m.MemoryGB = int((kb + 1<<19) >> 20)
			}
		}
	})
	return m
}

// cpuCell is a point's CPU per answer for the tables ("incl. client"
// when the server ran in the bench process).
func cpuCell(pt Point) string {
	switch {
	case pt.CPUUsPerReq == 0:
		return "—"
	case pt.CPUIncludesClient:
		return strconv.FormatFloat(pt.CPUUsPerReq, 'f', 0, 64) + " (incl. client)"
	}
	return strconv.FormatFloat(pt.CPUUsPerReq, 'f', 0, 64)
}

// evaluate fills in Targets from what was measured.
func (r *Report) evaluate() {
	r.Machine.LoadAfter = loadAvg()
	add := func(target string, met bool, format string, args ...any) {
		r.Targets = append(r.Targets, TargetResult{Target: target, Measured: fmt.Sprintf(format, args...), Met: met})
	}
	var multi, single []Comparison
	for _, c := range r.Workerd {
		if c.Conns == 1 {
			single = append(single, c)
		} else {
			multi = append(multi, c)
		}
	}
	if len(multi) > 0 {
		met, parts := true, []string{}
		for _, c := range multi {
			met = met && c.RPSRatio >= 1.0
			parts = append(parts, fmt.Sprintf("%.2f× at %d conns", c.RPSRatio, c.Conns))
		}
		add("warm throughput ≥ 1.0× workerd's", met, "%s", strings.Join(parts, ", "))
	}
	for _, c := range single {
		add("warm p50 ≤ 1.5× workerd's (1 conn)", c.P50Ratio <= 1.5, "%.2f× (%.3f ms vs %.3f ms)", c.P50Ratio, c.A.P50Ms, c.B.P50Ms)
	}
	if o := r.Overload; o != nil && o.IdleRSSMB > 0 {
		add("overload: peak RSS < 2× idle", o.Growth < 2, "%.2f× (%.0f → %.0f MiB, %d connections)", o.Growth, o.IdleRSSMB, o.PeakRSSMB, o.Conns)
	}
	if len(r.Unprotected) > 0 {
		met, parts := true, []string{}
		for _, c := range r.Unprotected {
			if c.Conns == 1 {
				continue
			}
			fewer := 1 - c.RPSRatio
			met = met && fewer <= 0.05
			parts = append(parts, fmt.Sprintf("%+.1f%% at %d conns", -100*fewer, c.Conns))
		}
		if len(parts) > 0 {
			add("secure ≤ 5% fewer requests/s than unprotected", met, "%s", strings.Join(parts, ", "))
		}
		for _, c := range r.Unprotected {
			if c.Conns == 1 {
				add("secure p50 ≤ 10% above unprotected (1 conn)", c.P50Ratio <= 1.10, "%+.1f%% (%.3f ms vs %.3f ms)", 100*(c.P50Ratio-1), c.A.P50Ms, c.B.P50Ms)
			}
		}
	}
	if s := r.Sequence; s != nil {
		add("≤ 0.2 ms added per warm sequence step", s.AddedPerStepMs <= 0.2, "%.3f ms", s.AddedPerStepMs)
	}
	if c := r.cold(ColdPreAttested); c != nil {
		add("≤ 100 ms first invocation on a pre-attested runtime", c.FirstInvoke.Median <= 100, "%.0f ms (median of %d)", c.FirstInvoke.Median, c.Runs)
	}
	if c := r.cold(ColdJSPreAttested); c != nil {
		add("≤ 150 ms JavaScript cold start (pre-attested runtime)", c.FirstInvoke.Median <= 150, "%.0f ms (median of %d)", c.FirstInvoke.Median, c.Runs)
	}
	if js, g := r.point(ScenarioJS, "jshello", 1), r.point(ScenarioWarm, "hello", 1); js != nil && g != nil && g.P50Ms > 0 {
		add("warm JavaScript hello p50 ≤ 2× the Go hello's (1 conn)", js.P50Ms <= 2*g.P50Ms, "%.2f× (%.3f ms vs %.3f ms)", js.P50Ms/g.P50Ms, js.P50Ms, g.P50Ms)
	}
	if c := r.cold(ColdNewModule); c != nil {
		add("≤ 1.5 s deploy → first result", c.DeployToResult.Median <= 1500, "%.0f ms for a new %.1f MB module (median of %d)", c.DeployToResult.Median, float64(c.ModuleBytes)/1e6, c.Runs)
	}
}

// WriteText writes the report as plain-text tables.
func (r *Report) WriteText(w io.Writer) error {
	bw := &errWriter{w: w}
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	m := r.Machine
	p("clemmys bench, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	p("machine: %d cores, %s, %d GiB, %s, %s; load average %s before, %s after\n", m.Cores, m.CPU, m.MemoryGB, m.OS, r.GoVersion, m.LoadBefore, m.LoadAfter)
	p("platform: %s; %.0f s per point; load: closed loop, HTTP/1.1 keep-alive, one connection per client\n", r.Platform, r.DurationS)

	table := func(title string, head string, rows [][]string) {
		if len(rows) == 0 {
			return
		}
		p("\n%s\n", title)
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, head+"\t")
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	f0 := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	f2 := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	f3 := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	pointRows := func(scenario string, fn string) [][]string {
		var rows [][]string
		for _, pt := range r.Points {
			if pt.Scenario == scenario && (fn == "" || pt.Function == fn) {
				rows = append(rows, []string{pt.System, pt.Function, strconv.Itoa(pt.Conns), f0(pt.RPS), f3(pt.P50Ms), f3(pt.P99Ms), strconv.FormatInt(pt.Requests, 10), strconv.FormatInt(pt.Errors, 10), cpuCell(pt), f0(pt.PeakRSSMB) + " / " + f0(pt.PeakTreeRSSMB)})
			}
		}
		return rows
	}
	const pointHead = "system\tfunction\tconns\treq/s\tp50 ms\tp99 ms\trequests\terrors\tCPU µs/req\tpeak RSS MiB (process / with runtimes)"
	table("(a) warm invoke: hello, HTTPS, blocking, result=true", pointHead, pointRows(ScenarioWarm, ""))
	table("(a′) warm invoke: the JavaScript hello (nodejs:default), HTTPS, blocking, result=true", pointHead, pointRows(ScenarioJS, ""))
	table("(b) sequence: echo ×3 (and echo ×1, and one echo alone), HTTPS, blocking, result=true", pointHead, pointRows(ScenarioSequence, ""))
	if s := r.Sequence; s != nil {
		p("added per step (1 conn): (seq3 %.3f − seq1 %.3f) / 2 = %.3f ms; against the echo alone (warm path, no controller): (%.3f − %.3f) / 2 = %.3f ms\n",
			s.Seq3P50Ms, s.Seq1P50Ms, s.AddedPerStepMs, s.Seq3P50Ms, s.EchoP50Ms, s.AddedOverActionMs)
	}
	var coldRows [][]string
	rng := func(s Stats) string { return f0(s.Min) + "–" + f0(s.Max) }
	for _, c := range r.Cold {
		coldRows = append(coldRows, []string{c.Name, f0(c.Deploy.Median), f0(c.FirstInvoke.Median), rng(c.FirstInvoke),
			f0(c.DeployToResult.Median), rng(c.DeployToResult), strconv.Itoa(c.Runs), fmt.Sprintf("%.2f MB", float64(c.ModuleBytes)/1e6)})
	}
	table("(c) cold start, ms (medians; deploy, then the first invoke at once)",
		"case\tdeploy\tfirst invoke\t(min–max)\tdeploy → result\t(min–max)\truns\tmodule", coldRows)
	cmpRows := func(cs []Comparison) [][]string {
		var rows [][]string
		for _, c := range cs {
			rows = append(rows, []string{strconv.Itoa(c.Conns), f0(c.A.RPS), f0(c.B.RPS), f2(c.RPSRatio), f3(c.A.P50Ms), f3(c.B.P50Ms), f2(c.P50Ratio), f3(c.A.P99Ms), f3(c.B.P99Ms)})
		}
		return rows
	}
	table("(d) secure vs unprotected: hello on two child platforms built alike, HTTPS (ratio = secure / unprotected)",
		"conns\tsecure req/s\tunprot. req/s\tratio\tsecure p50\tunprot. p50\tratio\tsecure p99\tunprot. p99", cmpRows(r.Unprotected))
	wt := "(e) clemmys (hello) vs workerd (worker.js), both HTTPS, successful answers only (ratio = clemmys / workerd)"
	if r.WorkerdVersion != "" {
		wt += ", " + r.WorkerdVersion
	}
	var wrows [][]string
	for i, row := range cmpRows(r.Workerd) {
		c := r.Workerd[i]
		wrows = append(wrows, append(row, f0(c.ACPUUsPerReq), f0(c.BCPUUsPerReq), f2(c.CPURatio)))
	}
	table(wt, "conns\tclemmys req/s\tworkerd req/s\tratio\tclemmys p50\tworkerd p50\tratio\tclemmys p99\tworkerd p99\tclemmys CPU µs/req*\tworkerd CPU µs/req\tratio", wrows)
	if len(r.Workerd) > 0 {
		p("* CPU of the serving processes per successful answer (/proc): clemmys's is the bench process's and its runtimes' less the load generator's (the bench process's own CPU per answer while workerd, another process, served the same load)\n")
	}
	if o := r.Overload; o != nil {
		table(fmt.Sprintf("(f) overload: hello, %d connections, HTTPS, a namespace throttled at %d/min and %d at once, child platform", o.Conns, overloadPerMinute, overloadConcurrent),
			"seconds\tok\t429\terrors\tidle RSS MiB\tpeak RSS MiB\tgrowth\tidle with runtimes\tpeak with runtimes",
			[][]string{{f0(o.Seconds), strconv.FormatInt(o.OK, 10), strconv.FormatInt(o.Throttled, 10), strconv.FormatInt(o.Errors, 10),
				f0(o.IdleRSSMB), f0(o.PeakRSSMB), f2(o.Growth), f0(o.IdleTreeRSSMB), f0(o.PeakTreeRSSMB)}})
	}
	var trows [][]string
	for _, t := range r.Targets {
		met := "not met"
		if t.Met {
			met = "met"
		}
		trows = append(trows, []string{t.Target, t.Measured, met})
	}
	if len(trows) > 0 {
		p("\ntargets (reported, not asserted)\n")
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		for _, row := range trows {
			fmt.Fprintln(tw, "  "+strings.Join(row, "\t"))
		}
		tw.Flush()
	}
	for _, n := range r.Notes {
		p("note: %s\n", n)
	}
	for _, pt := range r.Points {
		if pt.Errors > 0 {
			p("note: %s %s c=%d: %d errors, first: %s\n", pt.Scenario, pt.System, pt.Conns, pt.Errors, pt.FirstError)
		}
	}
	return bw.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

// clientTLS is the client configuration for a running platform: its
// certificate from caCert (PEM), or no verification with insecure.
func clientTLS(caCert string, insecure bool) (*tls.Config, error) {
	if insecure {
		return &tls.Config{InsecureSkipVerify: true}, nil //nolint:gosec // explicit --insecure
	}
	if caCert == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, err
		}
		return &tls.Config{RootCAs: pool}, nil
	}
	pem, err := os.ReadFile(caCert)
	if err != nil {
		return nil, fmt.Errorf("bench: --cacert: %w", err)
	}
	return tlsTrusting(pem)
}

// point returns the point of scenario and function at conns, or nil.
func (r *Report) point(scenario, function string, conns int) *Point {
	for i := range r.Points {
		if p := &r.Points[i]; p.Scenario == scenario && p.Function == function && p.Conns == conns {
			return p
		}
	}
	return nil
}
