package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// A fake controller serving the entity subjects of internal/wire
// (entities.go) from memory, as the contract describes them, and the
// action get/list the package and rule handlers use. It lets the gateway's
// handlers be tested over a real embedded bus without the controller.

// stubKMS is the part of the KMS the entity handlers need: the gateway
// secret. Function records never verify (renderAction shows no digest).
type stubKMS struct{ secret envelope.Key }

func (k *stubKMS) CreateFunction(context.Context, wire.CreateFunction) (*wire.FunctionRecord, wire.SignedRecord, envelope.Key, error) {
	return nil, wire.SignedRecord{}, envelope.Key{}, errors.New("stub kms: no functions")
}
func (k *stubKMS) GatewaySecret(context.Context) (envelope.Key, error) { return k.secret, nil }
func (k *stubKMS) VerifyRecord(wire.SignedRecord) (*wire.FunctionRecord, error) {
	return nil, errors.New("stub kms: no records")
}
func (k *stubKMS) SetPolicy(context.Context, wire.SetPolicy) (*wire.Policy, error) {
	return nil, errors.New("stub kms: no policies")
}
func (k *stubKMS) GetPolicy(context.Context, string) (*wire.Policy, error) {
	return nil, errors.New("stub kms: no policies")
}
func (k *stubKMS) CommitVersion(context.Context, []byte) (*wire.LatestVersion, error) {
	return nil, errors.New("stub kms: no versions")
}
func (k *stubKMS) RetireAction(context.Context, string, string, int64) (*wire.LatestVersion, error) {
	return nil, errors.New("stub kms: no versions")
}
func (k *stubKMS) LatestVersion(context.Context, string, string) (*wire.LatestVersion, error) {
	return &wire.LatestVersion{}, nil
}

type fakeCtl struct {
	// misname makes it answer a package, trigger or rule put with an
	// entity of another name, as a lying controller may.
	misname atomic.Bool

	mu       sync.Mutex
	clock    int64
	packages map[string]wire.Package
	triggers map[string]wire.Trigger
	rules    map[string]wire.Rule
	actions  map[string]wire.Action
}

func fakeKey(ns, name string) string { return ns + "\x00" + name }

func fakeNotFound() error { return wire.Errorf(wire.CodeNotFound, "not found") }

// bump returns the next patch version.
func fakeBump(v string) string {
	if v == "" {
		return "0.0.1"
	}
	i := strings.LastIndexByte(v, '.')
	n, _ := strconv.Atoi(v[i+1:])
	return v[:i+1] + strconv.Itoa(n+1)
}

// page applies skip, limit and count to sorted names.
func fakePage[T any](items []T, req *wire.ListRequest) ([]T, int) {
	if req.Count {
		return nil, len(items)
	}
	if req.Skip >= len(items) {
		return []T{}, 0
	}
	items = items[req.Skip:]
	if req.Limit > 0 && len(items) > req.Limit {
		items = items[:req.Limit]
	}
	return items, 0
}

func fakeSorted[T any](m map[string]T, keep func(k string, v T) bool) []T {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if keep(k, v) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// putEntity stores v under key unless it exists and overwrite is false.
func fakePut[T any](c *fakeCtl, m map[string]T, key string, v T, overwrite bool, version func(*T) *string, updated func(*T) *int64) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, exists := m[key]
	if exists && !overwrite {
		var zero T
		return zero, wire.Errorf(wire.CodeConflict, "resource already exists")
	}
	prev := ""
	if exists {
		prev = *version(&old)
	}
	*version(&v) = fakeBump(prev)
	c.clock++
	*updated(&v) = c.clock
	m[key] = v
	return v, nil
}

func fakeGet[T any](c *fakeCtl, m map[string]T, key string, del bool) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := m[key]
	if !ok {
		var zero T
		return zero, fakeNotFound()
	}
	if del {
		delete(m, key)
	}
	return v, nil
}

func (c *fakeCtl) serve(t testing.TB, srv *bus.Server) {
	nc, err := srv.Connect("fake-controller")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	handlers := map[string]bus.Handler{
		wire.SubjectPackagePut: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.PackagePut](d)
			if err != nil {
				return nil, err
			}
			p := req.Package
			return fakePut(c, c.packages, fakeKey(p.Namespace, p.Name), p, req.Overwrite,
				func(p *wire.Package) *string { return &p.Version }, func(p *wire.Package) *int64 { return &p.Updated })
		},
		wire.SubjectPackageGet: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.packages, fakeKey(ref.Namespace, ref.Name), false)
		},
		wire.SubjectPackageDelete: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			prefix := fakeKey(ref.Namespace, ref.Name+"/")
			var inside []string
			for k := range c.actions {
				if strings.HasPrefix(k, prefix) {
					inside = append(inside, k)
				}
			}
			if len(inside) > 0 && !ref.Force {
				c.mu.Unlock()
				return nil, wire.Errorf(wire.CodeConflict, "package not empty")
			}
			if _, ok := c.packages[fakeKey(ref.Namespace, ref.Name)]; ok {
				for _, k := range inside {
					delete(c.actions, k)
				}
			}
			c.mu.Unlock()
			return fakeGet(c, c.packages, fakeKey(ref.Namespace, ref.Name), true)
		},
		wire.SubjectPackageList: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.ListRequest](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			all := fakeSorted(c.packages, func(_ string, p wire.Package) bool { return p.Namespace == req.Namespace })
			c.mu.Unlock()
			items, n := fakePage(all, req)
			return wire.PackageList{Packages: items, Count: n}, nil
		},
		wire.SubjectTriggerPut: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.TriggerPut](d)
			if err != nil {
				return nil, err
			}
			tr := req.Trigger
			return fakePut(c, c.triggers, fakeKey(tr.Namespace, tr.Name), tr, req.Overwrite,
				func(t *wire.Trigger) *string { return &t.Version }, func(t *wire.Trigger) *int64 { return &t.Updated })
		},
		wire.SubjectTriggerGet: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.triggers, fakeKey(ref.Namespace, ref.Name), false)
		},
		wire.SubjectTriggerDelete: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.triggers, fakeKey(ref.Namespace, ref.Name), true)
		},
		wire.SubjectTriggerList: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.ListRequest](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			all := fakeSorted(c.triggers, func(_ string, t wire.Trigger) bool { return t.Namespace == req.Namespace })
			c.mu.Unlock()
			items, n := fakePage(all, req)
			return wire.TriggerList{Triggers: items, Count: n}, nil
		},
		wire.SubjectRulePut: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.RulePut](d)
			if err != nil {
				return nil, err
			}
			rl := req.Rule
			return fakePut(c, c.rules, fakeKey(rl.Namespace, rl.Name), rl, req.Overwrite,
				func(r *wire.Rule) *string { return &r.Version }, func(r *wire.Rule) *int64 { return &r.Updated })
		},
		wire.SubjectRuleGet: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.rules, fakeKey(ref.Namespace, ref.Name), false)
		},
		wire.SubjectRuleDelete: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.EntityRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.rules, fakeKey(ref.Namespace, ref.Name), true)
		},
		wire.SubjectRuleStatus: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.RuleStatus](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			rl, ok := c.rules[fakeKey(req.Namespace, req.Name)]
			if !ok {
				return nil, fakeNotFound()
			}
			rl.Status = req.Status
			if req.Generation != 0 {
				rl.Tag, rl.Generation = req.Tag, req.Generation
			}
			c.rules[fakeKey(req.Namespace, req.Name)] = rl
			return rl, nil
		},
		wire.SubjectRuleList: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.ListRequest](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			all := fakeSorted(c.rules, func(_ string, r wire.Rule) bool {
				return r.Namespace == req.Namespace && (req.Name == "" || r.Trigger == req.Name)
			})
			c.mu.Unlock()
			items, n := fakePage(all, req)
			return wire.RuleList{Rules: items, Count: n}, nil
		},
		wire.SubjectActionGet: func(_ context.Context, d []byte) (any, error) {
			ref, err := bus.Decode[wire.ActionRef](d)
			if err != nil {
				return nil, err
			}
			return fakeGet(c, c.actions, fakeKey(ref.Namespace, ref.Name), false)
		},
		wire.SubjectActionList: func(_ context.Context, d []byte) (any, error) {
			req, err := bus.Decode[wire.ListRequest](d)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			all := fakeSorted(c.actions, func(_ string, a wire.Action) bool {
				if a.Namespace != req.Namespace {
					return false
				}
				if strings.HasSuffix(req.Name, "/") {
					return strings.HasPrefix(a.Name, req.Name)
				}
				return req.Name == "" || a.Name == req.Name
			})
			c.mu.Unlock()
			items, n := fakePage(all, req)
			return wire.ActionList{Actions: items, Count: n}, nil
		},
	}
	for _, subject := range []string{wire.SubjectPackagePut, wire.SubjectTriggerPut, wire.SubjectRulePut} {
		h := handlers[subject]
		handlers[subject] = func(ctx context.Context, d []byte) (any, error) {
			v, err := h(ctx, d)
			if err != nil || !c.misname.Load() {
				return v, err
			}
			switch e := v.(type) {
			case wire.Package:
				e.Name += "-other"
				return e, nil
			case wire.Trigger:
				e.Name += "-other"
				return e, nil
			case wire.Rule:
				e.Name += "-other"
				return e, nil
			}
			return v, err
		}
	}
	for subject, h := range handlers {
		stop, err := bus.Serve(context.Background(), nc, slog.New(slog.NewTextHandler(io.Discard, nil)), subject, wire.QueueController, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// addAction stores an action directly (as if deployed).
func (c *fakeCtl) addAction(ns, name string, anns ...wire.KeyValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.actions[fakeKey(ns, name)] = wire.Action{Namespace: ns, Name: name, Version: "0.0.1", Kind: wire.KindWasm, Annotations: anns}
}

// pkg returns a stored package.
func (c *fakeCtl) pkg(ns, name string) wire.Package {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.packages[fakeKey(ns, name)]
}

// trigger returns a stored trigger.
func (c *fakeCtl) trigger(ns, name string) wire.Trigger {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.triggers[fakeKey(ns, name)]
}

// rule returns a stored rule.
func (c *fakeCtl) rule(ns, name string) wire.Rule {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rules[fakeKey(ns, name)]
}

func (c *fakeCtl) hasAction(ns, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.actions[fakeKey(ns, name)]
	return ok
}

// entEnv is a gateway on an embedded bus with the fake controller and two
// namespaces, guest and alice.
type entEnv struct {
	t      *testing.T
	g      *Gateway
	ctl    *fakeCtl
	h      http.Handler
	guest  string // "uuid:key"
	alice  string
	secret envelope.Key
}

func newEntEnv(t *testing.T, opts ...func(*Config)) *entEnv {
	t.Helper()
	ctx := context.Background()
	srv, err := bus.Start(ctx, bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctl := &fakeCtl{packages: map[string]wire.Package{}, triggers: map[string]wire.Trigger{}, rules: map[string]wire.Rule{}, actions: map[string]wire.Action{}}
	ctl.serve(t, srv)
	nc, err := srv.Connect("gateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kms := &stubKMS{secret: envelope.NewKey()}
	cfg := Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Conn: nc, JS: js, KMS: kms}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &entEnv{t: t, g: g, ctl: ctl, h: g.Handler(), secret: kms.secret}
	for _, p := range []struct {
		ns   string
		cred *string
	}{{"guest", &e.guest}, {"alice", &e.alice}} {
		u, k, err := g.CreateNamespace(ctx, p.ns)
		if err != nil {
			t.Fatal(err)
		}
		*p.cred = u + ":" + k
	}
	return e
}

// do sends a request as cred ("" = unauthenticated) and returns the status,
// the decoded JSON body (nil if none) and the response.
func (e *entEnv) do(cred, method, path string, body any) (int, any, *http.Response) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if cred != "" {
		u, k, _ := strings.Cut(cred, ":")
		req.SetBasicAuth(u, k)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	var v any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return res.StatusCode, v, res
}

// must is do that fails the test unless the status is want; it returns the
// body as an object (or nil).
func (e *entEnv) must(want int, cred, method, path string, body any) map[string]any {
	e.t.Helper()
	st, v, _ := e.do(cred, method, path, body)
	if st != want {
		e.t.Fatalf("%s %s: status %d, want %d: %v", method, path, st, want, v)
	}
	m, _ := v.(map[string]any)
	return m
}

// compact renders v as compact JSON for comparisons.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (k *stubKMS) CommitEntity(context.Context, string, string, int64) (*wire.LatestVersion, error) {
	return nil, errors.New("stub kms: no versions")
}
