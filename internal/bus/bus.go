// Package bus owns clemmys' message bus: an embedded NATS server with
// JetStream (the default single-machine deployment) and the CBOR
// request/reply helpers every service uses to talk to the others.
//
// Services never import each other; they exchange the message types of
// package wire over the subjects named there. The bus is untrusted: nothing
// confidential crosses it unsealed.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// MaxPayload is the largest NATS message the embedded server accepts. Sealed
// code of a large Go module and sealed logs must fit.
const MaxPayload = 32 << 20

// Options configures the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its streams, KV buckets and objects.
	StoreDir string
	// Listen, if set (HOST:PORT), also accepts NATS clients on TCP so
	// invokers or other services can run in other processes. Empty keeps the
	// server in-process only.
	Listen string
}

// Server is a running embedded NATS server with JetStream enabled.
type Server struct {
	ns *server.Server
}

// Start starts an embedded NATS server with JetStream and waits until it is
// ready for connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("bus: StoreDir is required")
	}
	sopts := &server.Options{
		ServerName:             "clemmys",
		JetStream:              true,
		StoreDir:               opts.StoreDir,
		DontListen:             opts.Listen == "",
		MaxPayload:             MaxPayload,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
	}
	if opts.Listen != "" {
		host, port, err := net.SplitHostPort(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen address: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("bus: listen port: %w", err)
		}
		sopts.Host, sopts.Port = host, p
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: new server: %w", err)
	}
	ns.Start()
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !ns.ReadyForConnections(deadline) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded NATS server did not become ready")
	}
	return &Server{ns: ns}, nil
}

// Connect opens an in-process client connection named name.
func (s *Server) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(s.ns), nats.Name(name),
		nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", name, err)
	}
	return nc, nil
}

// ClientURL returns the TCP URL clients can use, or "" if the server does
// not listen.
func (s *Server) ClientURL() string {
	if a := s.ns.Addr(); a != nil {
		return "nats://" + a.String()
	}
	return ""
}

// Shutdown stops the server and waits for it to finish.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
