package cli

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/natsconf"
)

// cmdNATSConfig writes the nats-server configuration of a deployment.
func cmdNATSConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys nats-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write nats-<i>.conf and nkeys/<service>.nk into (required)")
	hosts := fs.String("hosts", "127.0.0.1,127.0.0.1,127.0.0.1", "the nodes' addresses, one per node, comma-separated (3 or more for replicated buckets)")
	invokers := fs.String("invokers", "invoker0", "the invokers' ids, comma-separated (each gets its own user)")
	clientPort := fs.Int("client-port", 4222, "client port (node i uses port+i when all nodes share a host)")
	clusterPort := fs.Int("cluster-port", 6222, "cluster route port (likewise)")
	storeDir := fs.String("store-dir", "", "JetStream data directory of the nodes (default OUT/jetstream; node i uses STORE/n<i>)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "clemmys nats-config: --out DIR is required")
		return 2
	}
	o := natsconf.Options{Hosts: bus.ParseURLs(*hosts), Invokers: bus.ParseURLs(*invokers),
		ClientPort: *clientPort, ClusterPort: *clusterPort, StoreDir: *storeDir}
	files, err := natsconf.Write(*out, o)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys nats-config: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %d node configuration(s) and %d service keys:\n", len(files.Configs), len(files.Seeds))
	for _, c := range files.Configs {
		fmt.Fprintf(stdout, "  nats-server -c %s\n", c)
	}
	var urls []string
	for i, h := range o.Hosts {
		port := *clientPort
		if allSame(o.Hosts) {
			port += i
		}
		urls = append(urls, fmt.Sprintf("nats://%s:%d", h, port))
	}
	fmt.Fprintf(stdout, "then each service, e.g.:\n  clemmys kms --nats %s --nats-nkey %s --replicas %d ...\n",
		strings.Join(urls, ","), filepath.Join(*out, "nkeys", natsconf.UserKMS+".nk"), min(len(o.Hosts), 3))
	fmt.Fprintln(stdout, "Copy each service's nkey seed (nkeys/<service>.nk) to its machine only; keep them 0600.")
	return 0
}

func allSame(hosts []string) bool {
	for _, h := range hosts {
		if h != hosts[0] {
			return false
		}
	}
	return true
}
