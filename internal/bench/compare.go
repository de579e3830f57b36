package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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

// workerd measures bench/workerd's worker.js on workerd over HTTPS, as
// clemmys is measured, and compares it with the clemmys points of the
// same run.
func (r *runner) workerd(ctx context.Context, clemmys []Point) error {
	bin, ok := workerdBinary(r.opts.Workerd)
	if !ok {
		r.skip(ScenarioWorkerd, "workerd is not installed: run `npm ci --prefix bench/workerd` (npm package workerd)")
		return nil
	}
	worker := filepath.Join(r.opts.SourceRoot, "bench", "workerd", "worker.js")
	if _, err := os.Stat(worker); err != nil {
		r.skip(ScenarioWorkerd, "no bench/workerd/worker.js (run inside the clemmys source tree)")
		return nil
	}
	config, certPEM, err := workerdHTTPS(filepath.Join(r.work, "workerd"), worker)
	if err != nil {
		return err
	}
	tc, err := tlsTrusting(certPEM)
	if err != nil {
		return err
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
	cmd := exec.Command(bin, "serve", config, "--socket-addr", fmt.Sprintf("https=127.0.0.1:%d", port))
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
	url := fmt.Sprintf("https://127.0.0.1:%d/", port)
	check := checkResult(helloResult)
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer probe.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := probe.Post(url, "application/json", bytes.NewReader(helloParams))
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
		l := Load{URL: url, Body: helloParams, Header: http.Header{"Content-Type": {"application/json"}}, Conns: c, Check: check, TLS: tc}
		p, err := r.pointOn(ctx, cmd.Process.Pid, ScenarioWorkerd, "workerd", "worker.js", "https", l)
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

// workerdHTTPS writes into dir a workerd configuration serving worker
// over HTTPS (socket "https", its address given on the command line) with
// a fresh self-signed ECDSA P-256 certificate for 127.0.0.1, and returns
// the configuration's path and the certificate.
func workerdHTTPS(dir, worker string) (config string, certPEM []byte, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	js, err := os.ReadFile(worker)
	if err != nil {
		return "", nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "clemmys bench workerd"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	files := map[string][]byte{
		"worker.js": js,
		"cert.pem":  certPEM,
		"key.pem":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"config.capnp": []byte(`# written by clemmys bench: bench/workerd/worker.js over HTTPS
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "hello", worker = .helloWorker) ],
  sockets = [ (name = "https", address = "127.0.0.1:8443", service = "hello",
    https = (tlsOptions = (keypair = (privateKey = embed "key.pem", certificateChain = embed "cert.pem")))) ],
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-01-01",
);
`),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", nil, err
		}
	}
	return filepath.Join(dir, "config.capnp"), certPEM, nil
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
