package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/invoker"
	"github.com/clemmys/clemmys/internal/platform"
)

// target is a clemmys gateway the bench drives through its REST API.
type target struct {
	name    string // for messages: "clemmys", "secure child", ...
	apiHost string // https://127.0.0.1:PORT
	auth    string // the guest namespace's uuid:key
	admin   string // admin:key, "" when unknown (no new namespaces)
	tls     *tls.Config
	client  *http.Client
	stop    func()
	pid     int // the child process serving it (0: in this process or elsewhere)
}

func newTarget(name, apiHost, auth, admin string, tc *tls.Config) *target {
	return &target{
		name: name, apiHost: strings.TrimRight(apiHost, "/"), auth: auth, admin: admin, tls: tc,
		client: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
			TLSClientConfig: tc,
			TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		}},
		stop: func() {},
	}
}

// tlsTrusting returns a client configuration that trusts exactly the PEM
// certificate(s) in certPEM.
func tlsTrusting(certPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		return nil, errors.New("bench: no PEM certificate for the gateway")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// call sends a JSON request as auth and returns the status and body.
func (t *target) call(ctx context.Context, auth, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.apiHost+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if u, k, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, k)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, drain(resp.Body), nil
}

// deploy creates or replaces action name of auth's namespace.
func (t *target) deploy(ctx context.Context, auth, name string, wasm []byte) error {
	body := map[string]any{"exec": map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(wasm)}}
	st, b, err := t.call(ctx, auth, http.MethodPut, "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body)
	if err == nil && st != http.StatusOK {
		err = fmt.Errorf("status %d: %.300s", st, b)
	}
	if err != nil {
		return fmt.Errorf("bench: deploy %s on %s: %w", name, t.name, err)
	}
	return nil
}

// deployJS creates or replaces a JavaScript action (kind nodejs:default).
func (t *target) deployJS(ctx context.Context, auth, name, src string) error {
	body := map[string]any{"exec": map[string]any{"kind": "nodejs:default", "code": src}}
	st, b, err := t.call(ctx, auth, http.MethodPut, "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body)
	if err == nil && st != http.StatusOK {
		err = fmt.Errorf("status %d: %.300s", st, b)
	}
	if err != nil {
		return fmt.Errorf("bench: deploy %s on %s: %w", name, t.name, err)
	}
	return nil
}

// deploySequence creates or replaces sequence name of components.
func (t *target) deploySequence(ctx context.Context, auth, name string, components ...string) error {
	body := map[string]any{"exec": map[string]any{"kind": "sequence", "components": components}}
	st, b, err := t.call(ctx, auth, http.MethodPut, "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body)
	if err == nil && st != http.StatusOK {
		err = fmt.Errorf("status %d: %.300s", st, b)
	}
	if err != nil {
		return fmt.Errorf("bench: deploy sequence %s on %s: %w", name, t.name, err)
	}
	return nil
}

// invokePath is the blocking, result-only invoke of an action.
func invokePath(name string) string {
	return "/api/v1/namespaces/_/actions/" + name + "?blocking=true&result=true"
}

// invoke invokes name blocking with result=true and checks the answer.
func (t *target) invoke(ctx context.Context, auth, name string, params []byte, want []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.apiHost+invokePath(name), bytes.NewReader(params))
	if err != nil {
		return err
	}
	u, k, _ := strings.Cut(auth, ":")
	req.SetBasicAuth(u, k)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("bench: invoke %s on %s: %w", name, t.name, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return throttledError(drain(resp.Body))
	}
	if err := checkResult(want)(resp.StatusCode, drain(resp.Body)); err != nil {
		return fmt.Errorf("bench: invoke %s on %s: %w", name, t.name, err)
	}
	return nil
}

// createNamespace creates a namespace with the admin API and returns its
// credential.
func (t *target) createNamespace(ctx context.Context, name string) (string, error) {
	if t.admin == "" {
		return "", errors.New("bench: no admin credential for this platform (pass --admin-auth)")
	}
	st, b, err := t.call(ctx, t.admin, http.MethodPost, "/admin/v1/namespaces", map[string]string{"name": name})
	if err == nil && st != http.StatusCreated {
		err = fmt.Errorf("status %d: %.300s", st, b)
	}
	if err != nil {
		return "", fmt.Errorf("bench: create namespace %s: %w", name, err)
	}
	var cred struct {
		Auth string `json:"auth"`
	}
	if err := json.Unmarshal(b, &cred); err != nil || cred.Auth == "" {
		return "", fmt.Errorf("bench: create namespace %s: no credential in %.200s", name, b)
	}
	return cred.Auth, nil
}

// load returns the Load of blocking result-only invokes of name.
func (t *target) load(auth, name string, params, want []byte) Load {
	return Load{
		URL:  t.apiHost + invokePath(name),
		Body: params,
		Header: http.Header{
			"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(auth))},
			"Content-Type":  {"application/json"},
		},
		TLS:   t.tls,
		Check: checkResult(want),
	}
}

// checkResult accepts status 200 with a JSON body equal to want (compared
// as JSON values), or any 200 when want is nil.
func checkResult(want []byte) func(int, []byte) error {
	var wantV any
	if want != nil {
		if err := json.Unmarshal(want, &wantV); err != nil {
			panic("bench: bad expected result " + string(want))
		}
	}
	norm, _ := json.Marshal(wantV)
	return func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d", status)
		}
		if want == nil {
			return nil
		}
		if bytes.Equal(bytes.TrimSpace(body), want) {
			return nil
		}
		var got any
		if err := json.Unmarshal(body, &got); err != nil {
			return fmt.Errorf("answer is not JSON")
		}
		if g, _ := json.Marshal(got); !bytes.Equal(g, norm) {
			return fmt.Errorf("unexpected result")
		}
		return nil
	}
}

// startInProcess starts a platform in this process (internal/platform, as
// `clemmys up` does) on a loopback port of its own, without the catalog and
// without the gateway's per-namespace throttles (a benchmark is nothing but
// a flood of invocations).
func startInProcess(ctx context.Context, dataDir, enclavePath string, log *slog.Logger, jsEngine string) (*target, error) {
	cfg := platform.Config{
		DataDir: dataDir, Addr: "127.0.0.1:0", EnclavePath: enclavePath, Log: log,
		SkipCatalog: true, InvocationsPerMinute: -1, ConcurrentInvocations: -1,
	}
	if jsEngine != "" {
		cfg.JSEngines, cfg.PrecompileJSEngine = []string{jsEngine}, true
	}
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if jsEngine != "" {
		// Let the spare runtimes compile the engine before anything is
		// measured: it takes seconds of CPU on every core.
		want := uint64(max(invoker.DefaultPoolSize, 1))
		for p.Invoker.EnginesLoaded() < want && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	cert, err := os.ReadFile(filepath.Join(dataDir, "tls", "gateway-cert.pem"))
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("bench: the gateway's certificate: %w", err)
	}
	tc, err := tlsTrusting(cert)
	if err != nil {
		p.Stop()
		return nil, err
	}
	t := newTarget("clemmys", p.APIHost(), p.GuestAuth, p.AdminAuth, tc)
	t.stop = p.Stop
	return t, nil
}

// ServeInfo is the line `clemmys bench serve` prints on stdout once its
// platform is up.
type ServeInfo struct {
	APIHost   string `json:"apihost"`
	Auth      string `json:"auth"`
	Admin     string `json:"admin"`
	CACert    string `json:"cacert"`    // PEM file of the gateway's certificate
	Protected bool   `json:"protected"` // envelope.Protected of that binary
}

// Serve runs the platform of `clemmys bench serve`: like startInProcess,
// in dataDir, then prints a ServeInfo line on out and runs until stdin
// reaches EOF (the parent bench closes it) or ctx ends. It is how the
// bench runs a platform built differently from itself (the unprotected
// build) in a child process.
func Serve(ctx context.Context, dataDir, enclavePath string, stdin io.Reader, out io.Writer, log *slog.Logger) error {
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t, err := startInProcess(startCtx, dataDir, enclavePath, log, "")
	cancel()
	if err != nil {
		return err
	}
	defer t.stop()
	info := ServeInfo{APIHost: t.apiHost, Auth: t.auth, Admin: t.admin,
		CACert: filepath.Join(dataDir, "tls", "gateway-cert.pem"), Protected: envelope.Protected}
	b, _ := json.Marshal(info)
	if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
		return err
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return nil
}

// startChild runs `BIN bench serve` as a child process with the given
// extra environment and returns its platform as a target. Stopping the
// target closes the child's stdin and waits for it to exit (it is killed
// if it has not after 20 s). The child's stderr goes to logPath.
func startChild(ctx context.Context, name, bin, enclavePath, dataDir, logPath string, env []string) (*target, *ServeInfo, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "bench", "serve", "--data-dir", dataDir, "--enclave", enclavePath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	stop := func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	fail := func(err error) (*target, *ServeInfo, error) {
		stop()
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return nil, nil, fmt.Errorf("bench: %s: %w\n%s", name, err, tail)
	}
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			return fail(errors.New("exited before its platform was up"))
		}
		line = l
	case <-time.After(3 * time.Minute):
		return fail(errors.New("platform not up after 3 minutes"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	var info ServeInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		return fail(fmt.Errorf("unexpected first line %.200q", line))
	}
	cert, err := os.ReadFile(info.CACert)
	if err != nil {
		return fail(err)
	}
	tc, err := tlsTrusting(cert)
	if err != nil {
		return fail(err)
	}
	t := newTarget(name, info.APIHost, info.Auth, info.Admin, tc)
	t.stop, t.pid = stop, cmd.Process.Pid
	return t, &info, nil
}
