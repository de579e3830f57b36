package clustertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/srctree"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// proc is one OS process of the deployment.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// cluster is a running deployment.
type cluster struct {
	t      *testing.T
	dir    string
	bin    string
	nats   string // client URLs
	procs  map[string]*proc
	killed map[string]*proc // their logs are kept for dumpLogs
	order  []string
	client *http.Client
}

func (c *cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	var mu sync.Mutex
	buf := &bytes.Buffer{}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = lockedWriter{&mu, buf}
	cmd.Stderr = lockedWriter{&mu, buf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: buf, mu: &mu}
	c.procs[name] = p
	c.order = append(c.order, name)
	go func() { _ = cmd.Wait() }()
	return p
}

// kill -9s a process (and its children: an invoker's runtimes).
func (c *cluster) kill(name string) {
	c.t.Helper()
	p := c.procs[name]
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %s: %v", name, err)
	}
	delete(c.procs, name)
	c.killed[name] = p
}

func (c *cluster) stopAll() {
	for _, name := range c.order {
		if p, ok := c.procs[name]; ok {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func (c *cluster) dumpLogs() {
	for _, name := range c.order {
		p, ok := c.procs[name]
		if !ok {
			if p, ok = c.killed[name]; !ok {
				continue
			}
			name += " (killed by the test)"
		}
		// NATS nodes repeat their attempts to reach a killed peer: not
		// what a reader of a failure needs.
		var keep []string
		for line := range strings.Lines(p.logs()) {
			if !strings.Contains(line, "Error trying to connect to route") {
				keep = append(keep, line)
			}
		}
		l := strings.Join(keep, "")
		c.t.Logf("=== %s\n%s", name, l[max(0, len(l)-6000):])
	}
}

// waitFor polls cond for up to d; the deadlines are generous (CI runs on
// two busy cores) and only bound a failure.
func (c *cluster) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.dumpLogs()
			c.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call makes a REST call as auth to gateway base and decodes the answer.
func (c *cluster) call(base, auth, method, path string, body, out any) int {
	c.t.Helper()
	return c.do(c.client, base, auth, method, path, body, out)
}

// probe is call bounded to probeTimeout: after a kill, a request whose
// message or reply the dead part carried is answered only at its
// deadline (core NATS delivers at most once), and a probe of the service
// going on moves on to the next request rather than waiting for it.
func (c *cluster) probe(base, auth, method, path string, body, out any) int {
	c.t.Helper()
	return c.do(&http.Client{Timeout: probeTimeout, Transport: c.client.Transport}, base, auth, method, path, body, out)
}

const probeTimeout = 20 * time.Second

func (c *cluster) do(client *http.Client, base, auth, method, path string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		u, k, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, k)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

// freePorts returns a base port such that base..base+n-1 are free.
func freePorts(t *testing.T, n int) int {
	for range 100 {
		base := 20000 + rand.IntN(30000)
		ok := true
		for i := range n {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// homeOf returns which of the invokers is the home of action key
// (controller/scheduler.go's rendezvous weight), to build a sequence whose
// steps land on different invokers.
func homeOf(key string, ids ...string) string {
	best, bw := "", uint64(0)
	for _, id := range ids {
		h := sha256.Sum256([]byte(id + "\x00" + key))
		if w := binary.BigEndian.Uint64(h[:8]); best == "" || w > bw {
			best, bw = id, w
		}
	}
	return best
}

// TestCluster runs the deployment as separate processes and kills parts
// of it. Skipped with -short.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test (-short)")
	}
	root := srctree.Root(context.Background())
	if root == "" {
		t.Skip("not in the source tree")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	for _, b := range []struct{ out, pkg string }{
		{"clemmys", "./cmd/clemmys"},
		{"clemmys-enclave", "./cmd/clemmys-enclave"},
		{"nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	c := &cluster{t: t, dir: dir, bin: bin, procs: map[string]*proc{}, killed: map[string]*proc{}, client: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed, per gateway
	}}
	defer c.stopAll()
	defer func() {
		if t.Failed() {
			c.dumpLogs()
		}
	}()
	clemmys := filepath.Join(bin, "clemmys")

	// The NATS cluster, with a user per service.
	clientBase, clusterBase := freePorts(t, 3), freePorts(t, 3)
	conf := filepath.Join(dir, "nats")
	out, err := exec.Command(clemmys, "nats-config", "--out", conf, "--invokers", "inv1,inv2",
		"--client-port", fmt.Sprint(clientBase), "--cluster-port", fmt.Sprint(clusterBase)).CombinedOutput()
	if err != nil {
		t.Fatalf("nats-config: %v\n%s", err, out)
	}
	var urls []string
	for i := range 3 {
		c.start(fmt.Sprintf("nats%d", i), filepath.Join(bin, "nats-server"), "-c", filepath.Join(conf, fmt.Sprintf("nats-%d.conf", i)))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientBase+i))
	}
	c.nats = strings.Join(urls, ",")
	nkeys := filepath.Join(conf, "nkeys")
	common := func(service, data string) []string {
		// Debug logs: a failure's dump shows each service's view of it.
		return []string{"--nats", c.nats, "--nats-nkey", filepath.Join(nkeys, service+".nk"),
			"--data-dir", filepath.Join(dir, data), "--sim-dir", filepath.Join(dir, "sim"), "--replicas", "3", "--log-level", "debug"}
	}
	enclave := filepath.Join(bin, "clemmys-enclave")
	// The first KMS creates the simulated root every service shares.
	c.start("kms1", append([]string{clemmys, "kms"}, append(common("kms", "kms1"), "--enclave", enclave)...)...)
	c.waitFor("the first KMS", 2*time.Minute, func() bool { return strings.Contains(c.procs["kms1"].logs(), "clemmys kms: running") })
	c.start("kms2", append([]string{clemmys, "kms"}, append(common("kms", "kms2"), "--enclave", enclave)...)...)
	for _, n := range []string{"controller1", "controller2"} {
		c.start(n, append([]string{clemmys, "controller"}, common("controller", n)...)...)
	}
	metrics := map[string]string{}
	for i, id := range []string{"inv1", "inv2"} {
		addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
		metrics[id] = "http://" + addr + "/metrics"
		c.start(id, append([]string{clemmys, "invoker"}, append(common("invoker-"+id, id),
			"--id", id, "--enclave", enclave, "--pool-size", "1", "--metrics-addr", addr, "--capacity", fmt.Sprint(8+i))...)...)
	}
	gateways := map[string]string{}
	for _, n := range []string{"gateway1", "gateway2"} {
		port := freePorts(t, 1)
		gateways[n] = fmt.Sprintf("https://127.0.0.1:%d", port)
		c.start(n, append([]string{clemmys, "gateway"}, append(common("gateway", n),
			"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--invocations-per-minute", "0", "--concurrent-invocations", "0")...)...)
	}
	for n, base := range gateways {
		c.waitFor(n, 3*time.Minute, func() bool { return c.call(base, "", "GET", "/api/v1", nil, nil) == 200 })
	}
	// Every service is up: the gateways' answering says nothing of the
	// controllers'.
	for _, n := range []string{"kms1", "kms2", "controller1", "controller2", "inv1", "inv2"} {
		c.waitFor(n, 2*time.Minute, func() bool { return strings.Contains(c.procs[n].logs(), ": running") })
	}

	// A namespace, from the admin credential the first gateway wrote.
	var admin string
	c.waitFor("an admin credential", time.Minute, func() bool {
		for _, n := range []string{"gateway1", "gateway2"} {
			if b, err := os.ReadFile(filepath.Join(dir, n, "admin-credential")); err == nil {
				admin = strings.TrimSpace(string(b))
				return true
			}
		}
		return false
	})
	gw1, gw2 := gateways["gateway1"], gateways["gateway2"]
	var cred struct{ Auth string }
	if st := c.call(gw1, admin, "POST", "/admin/v1/namespaces", map[string]string{"name": "alice"}, &cred); st != http.StatusCreated {
		t.Fatalf("create namespace: %d", st)
	}
	alice := cred.Auth

	// Deploy through one gateway, invoke through both.
	echo := base64.StdEncoding.EncodeToString(wasmbuild.MustBuild(t, "internal/testfuncs/echo"))
	deploy := func(name string) {
		t.Helper()
		body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": echo}}
		if st := c.call(gw1, alice, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, nil); st != 200 {
			t.Fatalf("deploy %s: %d", name, st)
		}
	}
	invoke := func(base, name string, params map[string]any) (int, map[string]any) {
		var res map[string]any
		st := c.call(base, alice, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", params, &res)
		return st, res
	}
	probeInvoke := func(base, name string, params map[string]any) (int, map[string]any) {
		var res map[string]any
		st := c.probe(base, alice, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", params, &res)
		return st, res
	}
	deploy("echo")
	for _, base := range []string{gw1, gw2} {
		if st, res := invoke(base, "echo", map[string]any{"via": base}); st != 200 || res["via"] != base {
			t.Fatalf("invoke through %s: %d %v", base, st, res)
		}
	}

	// Limits set through one gateway are enforced by the other (both watch
	// the limits bucket): a namespace of its own, so that the burst below
	// is not throttled.
	var capped struct{ Auth string }
	if st := c.call(gw1, admin, "POST", "/admin/v1/namespaces", map[string]string{"name": "capped"}, &capped); st != http.StatusCreated {
		t.Fatalf("create namespace capped: %d", st)
	}
	if st := c.call(gw1, admin, "PUT", "/admin/v1/namespaces/capped/limits", map[string]any{"firesPerMinute": 1}, nil); st != 200 {
		t.Fatalf("set limits through gateway1: %d", st)
	}
	c.waitFor("gateway2 to enforce capped's limits", time.Minute, func() bool {
		var l map[string]any
		return c.call(gw2, capped.Auth, "GET", "/api/v1/namespaces/_/limits", nil, &l) == 200 && l["firesPerMinute"] == 1.0
	})
	if st := c.call(gw2, capped.Auth, "PUT", "/api/v1/namespaces/_/triggers/t", map[string]any{}, nil); st != 200 {
		t.Fatalf("create trigger: %d", st)
	}
	c.call(gw2, capped.Auth, "POST", "/api/v1/namespaces/_/triggers/t", map[string]any{}, nil)
	var throttled struct{ Error string }
	if st := c.call(gw2, capped.Auth, "POST", "/api/v1/namespaces/_/triggers/t", map[string]any{}, &throttled); st != http.StatusTooManyRequests ||
		!strings.Contains(throttled.Error, "Too many requests in the last minute") {
		t.Fatalf("second fire through gateway2: %d %q", st, throttled.Error)
	}

	// A sequence whose steps land on different invokers.
	var onInv1, onInv2 string
	for i := 0; onInv1 == "" || onInv2 == ""; i++ {
		name := fmt.Sprintf("step%d", i)
		switch homeOf("alice/"+name, "inv1", "inv2") {
		case "inv1":
			if onInv1 == "" {
				onInv1 = name
			}
		default:
			if onInv2 == "" {
				onInv2 = name
			}
		}
	}
	deploy(onInv1)
	deploy(onInv2)
	seq := map[string]any{"exec": map[string]any{"kind": "sequence", "components": []string{"/_/" + onInv1, "/_/" + onInv2, "/_/" + onInv1}}}
	if st := c.call(gw1, alice, "PUT", "/api/v1/namespaces/_/actions/spread", seq, nil); st != 200 {
		t.Fatalf("deploy the sequence: %d", st)
	}
	// The steps' homes are on different invokers, but the scheduler sends
	// a step elsewhere when its home looks full or late with its heartbeat
	// (on two busy cores, an invoker can be); so a few sequences are run,
	// each of which must succeed, until both invokers have run a step of
	// them.
	before := map[string]float64{"inv1": c.metric(metrics["inv1"], "clemmys_invoker_executions_total"), "inv2": c.metric(metrics["inv2"], "clemmys_invoker_executions_total")}
	spread := false
	for i := 0; i < 5 && !spread; i++ {
		if st, res := invoke([]string{gw2, gw1}[i%2], "spread", map[string]any{"x": "across"}); st != 200 || res["x"] != "across" {
			t.Fatalf("sequence across invokers: %d %v", st, res)
		}
		spread = true
		for id, n := range before {
			spread = spread && c.metric(metrics[id], "clemmys_invoker_executions_total") > n
		}
		if !spread {
			t.Logf("sequence %d ran on one invoker only", i+1)
		}
	}
	if !spread {
		t.Errorf("five sequences whose steps have homes on both invokers ran on one invoker only")
	}

	// A burst of 200 activations; one invoker is killed during it. Every
	// activation ends (success or failure), none is left pending.
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for i := range 200 {
		if i == 60 {
			c.kill("inv2")
		}
		wg.Go(func() {
			var acc map[string]string
			base := []string{gw1, gw2}[i%2]
			if st := c.call(base, alice, "POST", "/api/v1/namespaces/_/actions/"+[]string{onInv1, onInv2}[i%2], map[string]any{"i": i}, &acc); st == 202 {
				mu.Lock()
				ids = append(ids, acc["activationId"])
				mu.Unlock()
			}
		})
		if i%20 == 19 {
			wg.Wait()
		}
	}
	wg.Wait()
	if len(ids) < 150 {
		t.Fatalf("only %d of 200 activations were accepted", len(ids))
	}
	ended := func(id string) bool {
		var rec map[string]any
		return c.call(gw1, alice, "GET", "/api/v1/namespaces/_/activations/"+id, nil, &rec) == 200 && rec["end"] != nil
	}
	c.waitFor("every activation of the burst to end", 2*time.Minute, func() bool {
		for _, id := range ids {
			if !ended(id) {
				return false
			}
		}
		return true
	})
	outcomes := map[string]int{}
	for _, id := range ids {
		var rec struct {
			Response struct {
				Status string
				Result map[string]any
			}
		}
		c.call(gw1, alice, "GET", "/api/v1/namespaces/_/activations/"+id, nil, &rec)
		code, _ := rec.Response.Result["errorCode"].(string)
		outcomes[rec.Response.Status+" "+code]++
	}
	t.Logf("burst: %d activations accepted, all ended: %v", len(ids), outcomes)

	// A NATS node dies: the service goes on, nothing stored is lost.
	var before2 map[string]int
	c.call(gw1, alice, "GET", "/api/v1/namespaces/_/activations?count=true", nil, &before2)
	c.kill("nats1")
	c.waitFor("an invocation after losing a NATS node", 2*time.Minute, func() bool {
		st, res := probeInvoke(gw2, "echo", map[string]any{"after": "node"})
		return st == 200 && res["after"] == "node"
	})
	// Every action is still there, through the other gateway too. A read
	// in flight when the node died (its stream's leader, or the NATS
	// server of gw1's connection) is answered by a timeout: the service
	// recovers within seconds, and nothing stored is lost.
	for _, name := range []string{"echo", onInv1, onInv2, "spread"} {
		c.waitFor("action "+name+" readable through gw1 after losing a NATS node", 2*time.Minute, func() bool {
			return c.call(gw1, alice, "GET", "/api/v1/namespaces/_/actions/"+name, nil, nil) == 200
		})
	}
	var after map[string]int
	c.call(gw1, alice, "GET", "/api/v1/namespaces/_/activations?count=true", nil, &after)
	if after["activations"] < before2["activations"] {
		t.Errorf("activation records lost with a NATS node: %d before, %d after", before2["activations"], after["activations"])
	}
	for _, id := range ids[:20] {
		if !ended(id) {
			t.Errorf("activation %s lost with a NATS node", id)
		}
	}

	// A controller and a gateway die: the others carry on.
	c.kill("controller1")
	c.kill("gateway1")
	c.waitFor("an invocation after losing a controller and a gateway", 2*time.Minute, func() bool {
		st, res := probeInvoke(gw2, "spread", map[string]any{"after": "kills"})
		return st == 200 && res["after"] == "kills"
	})
}

// metric reads one metric's value from a Prometheus text endpoint.
func (c *cluster) metric(url, name string) float64 {
	c.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		c.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			var v float64
			fmt.Sscan(f[1], &v)
			return v
		}
	}
	return 0
}
