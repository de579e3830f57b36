// Package natsconf writes the nats-server configuration of a clemmys
// deployment (`clemmys nats-config`): a JetStream cluster of n nodes, and
// one NATS user per service, identified by an nkey, whose permissions
// allow only that service's subjects. An invoker cannot subscribe to the
// KMS's or the controller's subjects or read other invokers' work; a
// gateway cannot take an invoker's work or announce itself as one; every
// service has its own inbox prefix (bus.DialOptions.InboxPrefix), so none
// can read the replies another one receives. The bus stays untrusted —
// everything confidential on it is sealed — but a compromised service
// host gets no more of it than its service needs.
//
// Permissions name the JetStream API subjects of each service's own
// buckets (store: KV_<bucket>, OBJ_<bucket>), so a service reaches only its
// own state: the invoker reads the sealed code and writes the records of
// the steps gateways send it directly (the warm path), and changes no
// stream. A gateway may send those steps, not take them.
package natsconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// Options describe a deployment's NATS cluster and services.
type Options struct {
	// Hosts are the nodes' addresses, one per node (their number is the
	// cluster's size: 1, or 3 and more for replicated buckets).
	Hosts []string
	// ClientPort and ClusterPort are every node's ports (default 4222,
	// 6222); with several nodes on one host, node i uses port + i.
	ClientPort, ClusterPort int
	// StoreDir is where each node keeps JetStream data; node i uses
	// StoreDir/n<i>.
	StoreDir string
	// Invokers are the invoker ids (each gets its own user).
	Invokers []string
	// Cluster is the cluster's name (default "clemmys").
	Cluster string
}

// Users of the services, by name; invokers are "invoker-<id>".
const (
	UserKMS        = "kms"
	UserController = "controller"
	UserGateway    = "gateway"
)

// ResponseWindow is how long after a request its responder may answer
// (allow_responses): longer than the longest step (the 5-min action
// timeout) with its queueing and the runtime's start.
const ResponseWindow = 15 * time.Minute

// InvokerUser is the user of invoker id.
func InvokerUser(id string) string { return "invoker-" + id }

// permissions of one user.
type permissions struct {
	pub, sub []string
}

// bucket access: a KV bucket or an object store, read-write or read-only.
type bucket struct {
	stream, data string // "KV_x", "$KV.x"
	write        bool
	// entries: its entries may be written, not its stream changed.
	entries bool
}

func kv(name string) bucket { return bucket{stream: "KV_" + name, data: "$KV." + name, write: true} }
func objects(name string) bucket {
	return bucket{stream: "OBJ_" + name, data: "$O." + name, write: true}
}
func readOnly(b bucket) bucket  { b.write = false; return b }
func entriesOf(b bucket) bucket { b.write, b.entries = false, true; return b }

// jetStream returns the API subjects (publish) a user needs for buckets.
func jetStream(buckets ...bucket) []string {
	out := []string{"$JS.API.INFO", "$JS.FC.>"}
	for _, b := range buckets {
		s := b.stream
		out = append(out,
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.DELETE."+s+".>", "$JS.API.CONSUMER.INFO."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".>", "$JS.ACK."+s+".>",
		)
		if b.write {
			out = append(out,
				"$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s,
				"$JS.API.STREAM.MSG.DELETE."+s, "$JS.API.STREAM.PURGE."+s,
				b.data+".>",
			)
		}
		if b.entries {
			out = append(out, b.data+".>")
		}
	}
	return out
}

// Permissions returns each user's permissions (publish, subscribe).
func userPermissions(o Options) map[string]permissions {
	controllerBuckets := []bucket{objects(store.ObjectsCode), readOnly(kv(store.BucketLimits))}
	for _, b := range []string{store.BucketActions, store.BucketActivations, store.BucketRecords,
		store.BucketPackages, store.BucketTriggers, store.BucketRules} {
		controllerBuckets = append(controllerBuckets, kv(b))
	}
	p := map[string]permissions{
		UserKMS: {
			pub: jetStream(kv(store.BucketKMS)),
			sub: []string{wire.SubjectKMSIdentity, wire.SubjectKMSNonce, wire.SubjectKMSGatewayAt("*"), wire.SubjectKMSReleaseAt("*")},
		},
		UserController: {
			pub: append(jetStream(controllerBuckets...),
				wire.SubjectInvokerRun("*"), wire.SubjectInvokerPrewarm("*"), wire.SubjectInvokerPlace("*")),
			sub: []string{"clemmys.ctl.>", wire.SubjectInvokerHeartbeat},
		},
		UserGateway: {
			pub: append(jetStream(kv(store.BucketAuth), kv(store.BucketFeeds), kv(store.BucketFeedTicks),
				kv(store.BucketRoutes), kv(store.BucketLimits), readOnly(objects(store.ObjectsCode)),
				readOnly(kv(store.BucketActions))),
				"clemmys.ctl.>", wire.SubjectKMSIdentity, wire.SubjectKMSNonce, wire.SubjectKMSGatewayAt("*"), wire.SubjectInvokerDirect("*")),
		},
	}
	for _, id := range o.Invokers {
		p[InvokerUser(id)] = permissions{
			pub: append(jetStream(readOnly(objects(store.ObjectsCode)),
				entriesOf(kv(store.BucketActivations)), entriesOf(kv(store.BucketRecords))),
				wire.SubjectInvokerHeartbeat, wire.SubjectKMSIdentity, wire.SubjectKMSNonce, wire.SubjectKMSReleaseAt("*")),
			sub: []string{wire.SubjectInvokerRun(id), wire.SubjectInvokerPrewarm(id), wire.SubjectInvokerPlace(id), wire.SubjectInvokerDirect(id)},
		}
	}
	for u, perm := range p {
		perm.sub = append(perm.sub, bus.InboxPrefix(u)+".>")
		p[u] = perm
	}
	return p
}

// Files is what Write wrote.
type Files struct {
	Configs []string          // nats-server config of each node
	Seeds   map[string]string // nkey seed file of each user
}

// Write writes the nodes' configurations and the users' nkey seeds
// (mode 0600) under dir: dir/nats-<i>.conf, dir/nkeys/<user>.nk. Existing
// seeds are kept, so that running it again (say, to add an invoker) does
// not change the other services' identities.
func Write(dir string, o Options) (*Files, error) {
	if len(o.Hosts) == 0 {
		return nil, errors.New("natsconf: at least one host")
	}
	if o.ClientPort == 0 {
		o.ClientPort = 4222
	}
	if o.ClusterPort == 0 {
		o.ClusterPort = 6222
	}
	if o.Cluster == "" {
		o.Cluster = "clemmys"
	}
	if o.StoreDir == "" {
		o.StoreDir = filepath.Join(dir, "jetstream")
	}
	for _, id := range o.Invokers {
		if !validID(id) {
			return nil, fmt.Errorf("natsconf: invoker id %q: use letters, digits, - and _", id)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "nkeys"), 0o700); err != nil {
		return nil, err
	}
	perms := userPermissions(o)
	users := slices.Sorted(func(yield func(string) bool) {
		for u := range perms {
			if !yield(u) {
				return
			}
		}
	})
	f := &Files{Seeds: map[string]string{}}
	pubs := map[string]string{}
	for _, u := range users {
		path := filepath.Join(dir, "nkeys", u+".nk")
		pub, err := userKey(path)
		if err != nil {
			return nil, fmt.Errorf("natsconf: nkey of %s: %w", u, err)
		}
		pubs[u], f.Seeds[u] = pub, path
	}
	same := sameHost(o.Hosts)
	port := func(base, i int) int {
		if same {
			return base + i
		}
		return base
	}
	var routes []string
	for i, h := range o.Hosts {
		routes = append(routes, fmt.Sprintf("nats-route://%s:%d", h, port(o.ClusterPort, i)))
	}
	for i, h := range o.Hosts {
		var b strings.Builder
		fmt.Fprintf(&b, "# nats-server configuration of node %d of the clemmys deployment (written by `clemmys nats-config`).\n", i)
		fmt.Fprintf(&b, "server_name: n%d\nlisten: %q\nmax_payload: %d\n", i, fmt.Sprintf("%s:%d", h, port(o.ClientPort, i)), bus.MaxPayload)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", filepath.Join(o.StoreDir, fmt.Sprintf("n%d", i)))
		if len(o.Hosts) > 1 {
			fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n  routes: [\n", o.Cluster, fmt.Sprintf("%s:%d", h, port(o.ClusterPort, i)))
			for _, r := range routes {
				fmt.Fprintf(&b, "    %q\n", r)
			}
			b.WriteString("  ]\n}\n")
		}
		b.WriteString("authorization {\n  users: [\n")
		for _, u := range users {
			p := perms[u]
			fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %q\n      permissions: {\n", u, pubs[u])
			fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(p.pub))
			fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(p.sub))
			// A reply may come long after its request (a step runs for
			// up to its action's timeout, 5 min): NATS's default lets a
			// responder answer for 2 min only.
			fmt.Fprintf(&b, "        allow_responses: { max: 1, expires: %q }\n      }\n    }\n", ResponseWindow.String())
		}
		b.WriteString("  ]\n}\n")
		path := filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i))
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		f.Configs = append(f.Configs, path)
	}
	return f, nil
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func sameHost(hosts []string) bool {
	for _, h := range hosts[1:] {
		if h != hosts[0] {
			return false
		}
	}
	return true
}

// userKey returns the public key of the user seed at path, creating it if
// needed.
func userKey(path string) (string, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", err
		}
		if seed, err = kp.Seed(); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", fmt.Errorf("%s holds no nkey seed: %w", path, err)
	}
	return kp.PublicKey()
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
