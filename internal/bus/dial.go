package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DialOptions say how a service reaches an existing NATS cluster.
type DialOptions struct {
	// URLs of the cluster's servers (nats:// or tls://); the client
	// learns the others from the first it reaches.
	URLs []string
	// Creds is a NATS credentials file (JWT and nkey seed), NKey a file
	// holding an nkey seed (a user of the server config `clemmys
	// nats-config` writes); at most one. Empty: the URLs' user:password, if
	// any, or no authentication.
	Creds, NKey string
	// NKeyDir, instead of NKey, holds one seed per service user
	// (NKeyDir/<Name>.nk, as `clemmys nats-config` writes them): a process
	// that runs several services connects each as its own user.
	NKeyDir string
	// CA is a PEM file of the certificate authorities that sign the
	// servers' TLS certificates (the system roots if empty); Cert and Key
	// a client certificate, for servers that verify clients.
	CA, Cert, Key string
	// Name is the connection's name, shown by the servers, and its user's
	// name ("kms", "controller", "gateway", "invoker-<id>"): its replies
	// come to inboxes under InboxPrefix(Name).
	Name string
	// Log receives the connection's asynchronous errors (a permission
	// violation, a slow consumer); nil: discarded.
	Log *slog.Logger
	// Timeout bounds the first connection; default 10 s.
	Timeout time.Duration
}

// InboxPrefix is the inbox prefix of the connection named name: each
// service user may subscribe to its own inboxes only (package natsconf).
func InboxPrefix(name string) string {
	if name == "" {
		return "_INBOX"
	}
	return "_INBOX_" + strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(name)
}

// Enabled reports whether o names a cluster.
func (o DialOptions) Enabled() bool { return len(o.URLs) > 0 }

// ParseURLs splits a comma-separated list of server URLs.
func ParseURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Dial connects to the cluster and checks that JetStream answers and that
// the servers accept messages as large as clemmys sends (MaxPayload). It
// fails with an error that says what to check, rather than waiting, when
// the cluster cannot be reached; once connected, the client reconnects for
// ever (to any server of the cluster) if a server goes away.
func Dial(ctx context.Context, o DialOptions) (*nats.Conn, error) {
	if !o.Enabled() {
		return nil, errors.New("bus: no NATS server URL (--nats)")
	}
	if o.NKeyDir != "" && o.NKey == "" && o.Name != "" {
		o.NKey = filepath.Join(o.NKeyDir, o.Name+".nk")
	}
	if o.Creds != "" && o.NKey != "" {
		return nil, errors.New("bus: --nats-creds and --nats-nkey are exclusive")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.CustomInboxPrefix(InboxPrefix(o.Name)),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if o.Log != nil {
				subject := ""
				if sub != nil {
					subject = sub.Subject
				}
				o.Log.Warn("NATS", "connection", o.Name, "subject", subject, "err", err)
			}
		}),
		nats.Timeout(o.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	switch {
	case o.Creds != "":
		if _, err := os.Stat(o.Creds); err != nil {
			return nil, fmt.Errorf("bus: NATS credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(o.Creds))
	case o.NKey != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKey)
		if err != nil {
			return nil, fmt.Errorf("bus: NATS nkey seed file %s: %w", o.NKey, err)
		}
		opts = append(opts, opt)
	}
	if o.CA != "" || o.Cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CA != "" {
			pem, err := os.ReadFile(o.CA)
			if err != nil {
				return nil, fmt.Errorf("bus: NATS CA file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("bus: NATS CA file %s holds no PEM certificate", o.CA)
			}
		}
		if o.Cert != "" || o.Key != "" {
			cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
			if err != nil {
				return nil, fmt.Errorf("bus: NATS client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(o.URLs, ","), opts...)
		done <- result{nc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("bus: connecting to NATS at %s: %w", strings.Join(o.URLs, ","), ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("bus: cannot reach the NATS cluster at %s: %w (check --nats, that the servers run and listen there, and --nats-creds/--nats-nkey/--nats-ca)",
			strings.Join(o.URLs, ","), r.err)
	}
	nc := r.nc
	if mp := nc.MaxPayload(); mp < MaxPayload {
		nc.Close()
		return nil, fmt.Errorf("bus: the NATS servers accept messages of at most %d bytes; clemmys needs %d (set max_payload: %d in their configuration, as `clemmys nats-config` does)", mp, MaxPayload, MaxPayload)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	// A cluster that just started answers once it has elected a JetStream
	// leader: wait for that within ctx (and at least Timeout).
	deadline := time.Now().Add(o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			nc.Close()
			return nil, fmt.Errorf("bus: JetStream does not answer on the NATS cluster at %s: %w (enable jetstream on the servers; a new cluster needs a moment to elect a leader)", strings.Join(o.URLs, ","), err)
		}
		if o.Log != nil {
			o.Log.Info("waiting for JetStream on the NATS cluster", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
