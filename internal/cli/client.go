package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// apiConfig is where and as whom client commands talk to a gateway.
type apiConfig struct {
	Host     string // https://HOST:PORT
	Auth     string // uuid:key
	Insecure bool
	CACert   string // PEM file to trust in addition to the system roots
	// logs and logOut: --log-format/--log-level/-v; at debug, every API
	// request is logged (method, path, status, time; never bodies).
	logs   logFlags
	logOut io.Writer
	quiet  bool // no upload progress (--json)
}

// clientFlags registers the flags shared by client commands.
func clientFlags(fs *flag.FlagSet) (*apiConfig, *string) {
	c := &apiConfig{}
	dataDir := fs.String("data-dir", defaultDataDir(), "`DIR` of a local 'clemmys up' (its wskprops and certificate are used when nothing else is configured)")
	fs.StringVar(&c.Host, "apihost", "", "API host (default: __OW_API_HOST, WSK_CONFIG_FILE, ~/.wskprops or DATA_DIR/wskprops)")
	fs.StringVar(&c.Auth, "auth", "", "credential uuid:key (default: like --apihost)")
	fs.BoolVar(&c.Insecure, "insecure", false, "do not verify the gateway's certificate")
	fs.StringVar(&c.CACert, "cacert", "", "PEM certificate to trust (default: DATA_DIR/tls/gateway-cert.pem if it exists)")
	c.logs = logFlags{
		format:  fs.String("log-format", "text", "log format: text or json"),
		level:   fs.String("log-level", "warn", "log level: debug (every API request), info, warn or error"),
		verbose: new(bool),
	}
	fs.BoolVar(c.logs.verbose, "d", false, "debug: log every API request (--log-level debug)")
	return c, dataDir
}

// resolve fills in Host and Auth from the environment and property files,
// in OpenWhisk's order, then the local data dir.
func (c *apiConfig) resolve(dataDir string) error {
	if c.Host == "" {
		c.Host = os.Getenv("__OW_API_HOST")
	}
	if c.Auth == "" {
		c.Auth = os.Getenv("__OW_API_KEY")
	}
	var files []string
	if f := os.Getenv("WSK_CONFIG_FILE"); f != "" {
		files = append(files, f)
	} else if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".wskprops"))
	}
	files = append(files, filepath.Join(dataDir, "wskprops"))
	for _, f := range files {
		if c.Host != "" && c.Auth != "" {
			break
		}
		props, err := readProps(f)
		if err != nil {
			continue
		}
		if c.Host == "" {
			c.Host = props["APIHOST"]
		}
		if c.Auth == "" {
			c.Auth = props["AUTH"]
		}
	}
	if c.Host == "" || c.Auth == "" {
		return errors.New("no API host or credential: run `clemmys up`, or set APIHOST and AUTH in ~/.wskprops, or pass --apihost and --auth")
	}
	return c.finish(dataDir)
}

// resolveAdmin fills in Host and Auth for the admin API of the platform
// whose data dir is dataDir: Host from --apihost, else DATA_DIR/wskprops;
// Auth from --auth, else DATA_DIR/admin-credential. Unlike resolve it never
// reads the environment or ~/.wskprops, so that the admin credential is
// not sent to another host than the one named with it.
func (c *apiConfig) resolveAdmin(dataDir string) error {
	if c.Host == "" {
		if props, err := readProps(filepath.Join(dataDir, "wskprops")); err == nil {
			c.Host = props["APIHOST"]
		}
	}
	if c.Auth == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "admin-credential"))
		if err != nil {
			return fmt.Errorf("no admin credential: %w (it is written by `clemmys up` to DATA_DIR/admin-credential; pass --data-dir or --auth admin:KEY)", err)
		}
		c.Auth = strings.TrimSpace(string(b))
	}
	if c.Host == "" {
		return fmt.Errorf("no API host: pass --apihost, or --data-dir of a `clemmys up` (its wskprops names the host)")
	}
	return c.finish(dataDir)
}

// finish normalizes Host and trusts the data dir's certificate.
func (c *apiConfig) finish(dataDir string) error {
	if !strings.Contains(c.Host, "://") {
		c.Host = "https://" + c.Host
	}
	c.Host = strings.TrimRight(c.Host, "/")
	if c.CACert == "" {
		if p := filepath.Join(dataDir, "tls", "gateway-cert.pem"); fileExists(p) {
			c.CACert = p
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readProps reads KEY=VALUE lines.
func readProps(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	props := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			props[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return props, sc.Err()
}

// apiClient calls the gateway's REST API.
type apiClient struct {
	cfg  *apiConfig
	http *http.Client
	log  *slog.Logger
}

func newAPIClient(cfg *apiConfig) (*apiClient, error) {
	tc := &tls.Config{InsecureSkipVerify: cfg.Insecure} //nolint:gosec // explicit --insecure
	if cfg.CACert != "" && !cfg.Insecure {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("read --cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", cfg.CACert)
		}
		tc.RootCAs = pool
	}
	var log *slog.Logger
	if cfg.logs.format != nil {
		out := cfg.logOut
		if out == nil {
			out = io.Discard
		}
		l, err := cfg.logs.logger(out)
		if err != nil {
			return nil, err
		}
		log = l
	}
	return &apiClient{cfg: cfg, log: log, http: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment},
	}}, nil
}

// apiError is an error answer of the gateway.
type apiError struct {
	Status int
	Msg    string
	Code   string
	Body   []byte // the raw answer (a failed blocking invoke answers the activation)
}

func (e *apiError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (status %d, code %s)", e.Msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (status %d)", e.Msg, e.Status)
}

// do sends a request with a JSON body (if in != nil) and decodes a JSON
// answer into out (if non-nil and the answer is not empty).
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	_, raw, err := c.call(ctx, method, path, in)
	if err != nil {
		return err
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode the gateway's answer: %w", err)
		}
	}
	return nil
}

// call sends a request with a JSON body (if in != nil) and returns the
// status and body of a successful answer, or an *apiError.
func (c *apiClient) call(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
		if len(b) >= progressMinBytes && c.cfg.logOut != nil && !c.cfg.quiet {
			body = &progressReader{r: body, total: len(b), w: c.cfg.logOut}
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.Host+path, body)
	if err != nil {
		return 0, nil, err
	}
	if pr, ok := body.(*progressReader); ok {
		req.ContentLength = int64(pr.total)
	}
	u, k, _ := strings.Cut(c.cfg.Auth, ":")
	req.SetBasicAuth(u, k)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := c.http.Do(req)
	if c.log != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		c.log.Debug("api request", "method", method, "url", c.cfg.Host+path, "status", st,
			"ms", time.Since(t0).Milliseconds())
	}
	if err != nil {
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &uerr) {
			return 0, nil, fmt.Errorf("%w (the gateway's certificate is not trusted: pass --cacert FILE or --insecure)", err)
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(raw, &eb) != nil || eb.Error == "" {
			eb.Error = http.StatusText(resp.StatusCode)
		}
		return resp.StatusCode, nil, &apiError{Status: resp.StatusCode, Msg: eb.Error, Code: eb.Code, Body: raw}
	}
	return resp.StatusCode, raw, nil
}

// progressMinBytes: request bodies this large (a module of 1.5 MiB and
// more) report their upload on stderr.
const progressMinBytes = 2 << 20

// progressReader reports how much of a request body was sent, at every
// quarter, then that the gateway is checking it.
type progressReader struct {
	r           io.Reader
	total, sent int
	w           io.Writer
	shown       int // quarters reported
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += n
	for q := p.shown + 1; q <= 4 && p.sent*4 >= p.total*q; q++ {
		p.shown = q
		fmt.Fprintf(p.w, "uploading %.1f MB: %d%%\n", float64(p.total)/(1<<20), q*25)
		if q == 4 {
			fmt.Fprintln(p.w, "uploaded; the gateway validates, seals and stores the module (a large one takes seconds)")
		}
	}
	return n, err
}
