package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// The environment variable (and its value) without which a binary of the
// unprotected build refuses to start (internal/envelope/unprotected.go
// holds the same two strings; internal/deptest checks they agree).
const (
	UnprotectedEnv      = "CLEMMYS_UNPROTECTED_BENCHMARK"
	UnprotectedEnvValue = "I understand this binary protects nothing"
	// UnprotectedTag is the build tag of the unprotected build.
	UnprotectedTag = "clemmys_unprotected"
)

// unprotected measures hello on two child platforms built alike from the
// source tree, the second with -tags clemmys_unprotected, interleaving
// their points so that both see the same machine.
func (r *runner) unprotected(ctx context.Context) error {
	root := r.opts.SourceRoot
	if root == "" {
		r.skip(ScenarioUnprotected, "needs the clemmys source tree to build the unprotected binaries")
		return nil
	}
	type side struct {
		name, dir, tags string
		env             []string
		t               *target
	}
	sides := []*side{
		{name: "secure", dir: filepath.Join(r.work, "secure")},
		{name: "unprotected", dir: filepath.Join(r.work, "unprotected"), tags: UnprotectedTag,
			env: []string{UnprotectedEnv + "=" + UnprotectedEnvValue}},
	}
	defer func() {
		for _, s := range sides {
			if s.t != nil {
				s.t.stop()
			}
		}
	}()
	for _, s := range sides {
		r.prog.status("building clemmys and clemmys-enclave (%s build)", s.name)
		bin, enc := filepath.Join(s.dir, "clemmys"), filepath.Join(s.dir, "clemmys-enclave")
		if err := goBuild(ctx, root, bin, "./cmd/clemmys", s.tags); err != nil {
			return err
		}
		if err := goBuild(ctx, root, enc, "./cmd/clemmys-enclave", s.tags); err != nil {
			return err
		}
		r.prog.status("starting the %s platform (child process)", s.name)
		t, info, err := startChild(ctx, s.name+" child", bin, enc, filepath.Join(s.dir, "data"), filepath.Join(s.dir, "platform.log"), s.env)
		if err != nil {
			return err
		}
		s.t = t
		if want := s.tags == ""; info.Protected != want {
			return fmt.Errorf("bench: the %s child reports protected=%v", s.name, info.Protected)
		}
		if err := r.ensureHello(ctx, t); err != nil {
			return err
		}
	}
	// Each point is measured in two halves, in the order secure,
	// unprotected, unprotected, secure, so that a drift of the machine
	// (another process, the page cache, a GC cycle) weighs on both alike.
	for _, c := range r.opts.Conns {
		var res [2]*LoadResult
		for _, i := range []int{0, 1, 1, 0} {
			s := sides[i]
			l := s.t.load(s.t.auth, "hello", helloParams, helloResult)
			l.Conns = c
			lr, err := r.measure(ctx, pointLabel(ScenarioUnprotected, "clemmys-"+s.name, "hello", c), l, r.opts.Duration/2)
			if err != nil {
				return err
			}
			res[i] = mergeResults(res[i], lr)
		}
		var pts [2]Point
		for i, s := range sides {
			pts[i] = pointOf(ScenarioUnprotected, "clemmys-"+s.name, "hello", "https", res[i])
			r.prog.finish(summary(pointLabel(ScenarioUnprotected, "clemmys-"+s.name, "hello", c), pts[i]))
			r.rep.Points = append(r.rep.Points, pts[i])
		}
		r.rep.Unprotected = append(r.rep.Unprotected, compare(pts[0], pts[1]))
	}
	return nil
}

// mergeResults adds b's measurement to a's (a may be nil).
func mergeResults(a, b *LoadResult) *LoadResult {
	if a == nil {
		return b
	}
	out := *a
	out.Requests += b.Requests
	out.Errors += b.Errors
	out.Elapsed += b.Elapsed
	if out.FirstError == "" {
		out.FirstError = b.FirstError
	}
	out.Hist.Merge(&b.Hist)
	return &out
}

// workerdBinary returns the workerd executable: the platform package's
// native binary when it is there (the npm wrapper may be a node script),
// else the configured path.
func workerdBinary(configured string) (string, bool) {
	if configured == "" {
		return "", false
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		native := filepath.Join(filepath.Dir(filepath.Dir(configured)), "@cloudflare", "workerd-linux-64", "bin", "workerd")
		if st, err := os.Stat(native); err == nil && st.Mode()&0o111 != 0 {
			return native, true
		}
	}
	if st, err := os.Stat(configured); err == nil && !st.IsDir() {
		return configured, true
	}
	return "", false
}

// workerd measures bench/workerd's worker.js on workerd over plain HTTP
// and compares it with the clemmys points of the same run.
func (r *runner) workerd(ctx context.Context, clemmys []Point) error {
	bin, ok := workerdBinary(r.opts.Workerd)
	if !ok {
		r.skip(ScenarioWorkerd, "workerd is not installed: run `npm ci --prefix bench/workerd` (npm package workerd)")
		return nil
	}
	config := filepath.Join(r.opts.SourceRoot, "bench", "workerd", "config.capnp")
	if _, err := os.Stat(config); err != nil {
		r.skip(ScenarioWorkerd, "no bench/workerd/config.capnp (run inside the clemmys source tree)")
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.work, "workerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	r.prog.status("starting workerd")
	cmd := exec.Command(bin, "serve", config, "--socket-addr", fmt.Sprintf("http=127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: start workerd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		// Our own child's process group, by id.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	check := checkResult(helloResult)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post(url, "application/json", bytes.NewReader(helloParams))
		if err == nil {
			err = check(resp.StatusCode, drain(resp.Body))
			if err == nil {
				break
			}
		}
		select {
		case <-exited:
			return errors.New("bench: workerd exited; see its log in the work dir")
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: workerd does not answer at %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.rep.WorkerdVersion = workerdVersion(bin)
	for _, c := range r.opts.Conns {
		l := Load{URL: url, Body: helloParams, Header: http.Header{"Content-Type": {"application/json"}}, Conns: c, Check: check}
		p, err := r.point(ctx, ScenarioWorkerd, "workerd", "worker.js", "http", l)
		if err != nil {
			return err
		}
		r.rep.Points = append(r.rep.Points, p)
		for _, cp := range clemmys {
			if cp.Conns == c {
				r.rep.Workerd = append(r.rep.Workerd, compare(cp, p))
			}
		}
	}
	return nil
}

func workerdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(out))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return strconv.Atoi(p)
}
