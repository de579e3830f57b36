package natsconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// startServer runs the first node's configuration in process.
func startServer(t *testing.T, dir string) (string, *Files) {
	t.Helper()
	files, err := Write(dir, Options{Hosts: []string{"127.0.0.1"}, ClientPort: -1, Invokers: []string{"inv1", "inv2"}})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(files.Configs[0])
	if err != nil {
		t.Fatalf("the written configuration does not load: %v", err)
	}
	opts.Port = -1 // any free port
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s.ClientURL(), files
}

// conn connects as user, collecting its asynchronous errors.
func conn(t *testing.T, url string, files *Files, user string) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 16)
	opt, err := nats.NkeyOptionFromSeed(files.Seeds[user])
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.CustomInboxPrefix(bus.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// refused reports whether the server refused what f did on nc.
func refused(t *testing.T, nc *nats.Conn, errs chan error, f func() error) bool {
	t.Helper()
	for len(errs) > 0 {
		<-errs
	}
	if err := f(); err != nil {
		return errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "ermission")
	}
	if err := nc.Flush(); err != nil {
		return true
	}
	select {
	case err := <-errs:
		return errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "ermission")
	case <-time.After(300 * time.Millisecond):
		return false
	}
}

// TestPermissions: each service user may use its own subjects and buckets
// and is refused the others'.
func TestPermissions(t *testing.T) {
	url, files := startServer(t, t.TempDir())
	inv, invErrs := conn(t, url, files, InvokerUser("inv1"))
	gw, gwErrs := conn(t, url, files, UserGateway)
	ctl, ctlErrs := conn(t, url, files, UserController)
	sub := func(nc *nats.Conn, subject string) func() error {
		return func() error { _, err := nc.SubscribeSync(subject); return err }
	}
	pub := func(nc *nats.Conn, subject string) func() error {
		return func() error { return nc.Publish(subject, []byte("x")) }
	}
	tests := []struct {
		name    string
		nc      *nats.Conn
		errs    chan error
		f       func() error
		refused bool
	}{
		{"invoker takes its own work", inv, invErrs, sub(inv, wire.SubjectInvokerRun("inv1")), false},
		{"invoker heart-beats", inv, invErrs, pub(inv, wire.SubjectInvokerHeartbeat), false},
		{"invoker asks for the KMS identity (to pin it)", inv, invErrs, pub(inv, wire.SubjectKMSIdentity), false},
		{"invoker asks for a release", inv, invErrs, pub(inv, wire.SubjectKMSReleaseAt("0123456789abcdef")), false},
		{"invoker takes another invoker's work", inv, invErrs, sub(inv, wire.SubjectInvokerRun("inv2")), true},
		{"invoker listens to the KMS", inv, invErrs, sub(inv, "clemmys.kms.>"), true},
		{"invoker serves the controller's subjects", inv, invErrs, sub(inv, wire.SubjectInvoke), true},
		{"invoker reads the gateway's replies", inv, invErrs, sub(inv, bus.InboxPrefix(UserGateway)+".>"), true},
		{"invoker writes an action entity", inv, invErrs, pub(inv, "$KV.clemmys_actions.x"), true},
		{"invoker writes sealed code", inv, invErrs, pub(inv, "$O.clemmys_code.C.x"), true},
		{"invoker reads the KMS's state", inv, invErrs, pub(inv, "$JS.API.DIRECT.GET.KV_clemmys_kms"), true},
		{"gateway invokes", gw, gwErrs, pub(gw, wire.SubjectInvoke), false},
		{"gateway impersonates an invoker", gw, gwErrs, pub(gw, wire.SubjectInvokerHeartbeat), true},
		{"gateway takes an invoker's work", gw, gwErrs, sub(gw, wire.SubjectInvokerRun("inv1")), true},
		{"gateway sends work to an invoker", gw, gwErrs, pub(gw, wire.SubjectInvokerRun("inv1")), true},
		{"gateway serves the controller", gw, gwErrs, sub(gw, "clemmys.ctl.>"), true},
		{"gateway stores an alarm feed", gw, gwErrs, pub(gw, "$KV.clemmys_feeds.x"), false},
		{"gateway stores an API route", gw, gwErrs, pub(gw, "$KV.clemmys_routes.x"), false},
		{"gateway reads sealed code", gw, gwErrs, pub(gw, "$JS.API.STREAM.INFO.OBJ_clemmys_code"), false},
		{"gateway writes sealed code", gw, gwErrs, pub(gw, "$O.clemmys_code.C.x"), true},
		{"gateway writes an action entity", gw, gwErrs, pub(gw, "$KV.clemmys_actions.x"), true},
		{"gateway watches the actions' revisions", gw, gwErrs, pub(gw, "$JS.API.CONSUMER.CREATE.KV_clemmys_actions"), false},
		{"controller dispatches", ctl, ctlErrs, pub(ctl, wire.SubjectInvokerRun("inv1")), false},
		{"controller asks the KMS for a release", ctl, ctlErrs, pub(ctl, wire.SubjectKMSReleaseAt("0123456789abcdef")), true},
		{"controller makes gateway calls", ctl, ctlErrs, pub(ctl, wire.SubjectKMSGatewayAt("0123456789abcdef")), true},
		{"controller reads the credentials", ctl, ctlErrs, pub(ctl, "$JS.API.DIRECT.GET.KV_clemmys_auth"), true},
		{"gateway stores a namespace's limits", gw, gwErrs, pub(gw, "$KV.clemmys_limits.x"), false},
		{"controller reads the namespaces' limits", ctl, ctlErrs, pub(ctl, "$JS.API.DIRECT.GET.KV_clemmys_limits"), false},
		{"controller writes a namespace's limits", ctl, ctlErrs, pub(ctl, "$KV.clemmys_limits.x"), true},
		{"invoker reads the namespaces' limits", inv, invErrs, pub(inv, "$JS.API.DIRECT.GET.KV_clemmys_limits"), true},
		// The warm path: gateway → invoker, the invoker storing the records.
		{"gateway sends a warm step to an invoker", gw, gwErrs, pub(gw, wire.SubjectInvokerDirect("inv1")), false},
		{"gateway takes warm steps", gw, gwErrs, sub(gw, wire.SubjectInvokerDirect("inv1")), true},
		{"invoker takes its own warm steps", inv, invErrs, sub(inv, wire.SubjectInvokerDirect("inv1")), false},
		{"invoker takes another invoker's warm steps", inv, invErrs, sub(inv, wire.SubjectInvokerDirect("inv2")), true},
		{"invoker stores an activation record", inv, invErrs, pub(inv, "$KV.clemmys_activations.x"), false},
		{"invoker stores a complete record", inv, invErrs, pub(inv, "$KV.clemmys_records.x"), false},
		{"invoker purges the records", inv, invErrs, pub(inv, "$JS.API.STREAM.PURGE.KV_clemmys_activations"), true},
		{"invoker deletes a record's message", inv, invErrs, pub(inv, "$JS.API.STREAM.MSG.DELETE.KV_clemmys_records"), true},
		{"invoker changes the records' stream", inv, invErrs, pub(inv, "$JS.API.STREAM.UPDATE.KV_clemmys_activations"), true},
	}
	for _, tt := range tests {
		if got := refused(t, tt.nc, tt.errs, tt.f); got != tt.refused {
			t.Errorf("%s: refused %v, want %v", tt.name, got, tt.refused)
		}
	}
}

// TestWriteKeepsKeys: writing again (say, with one more invoker) keeps
// every existing user's key, and seeds are private.
func TestWriteKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	a, err := Write(dir, Options{Hosts: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Invokers: []string{"inv1"}})
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := os.ReadFile(a.Seeds[UserKMS])
	b, err := Write(dir, Options{Hosts: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Invokers: []string{"inv1", "inv2"}})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(b.Seeds[UserKMS])
	if string(seed) != string(again) || len(b.Seeds) != len(a.Seeds)+1 {
		t.Fatal("writing again changed a key, or did not add the new invoker's")
	}
	for _, p := range b.Seeds {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "nats-1.conf"))
	for _, want := range []string{`listen: "10.0.0.2:4222"`, `"nats-route://10.0.0.3:6222"`, "max_payload: 33554432"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nats-1.conf does not say %s", want)
		}
	}
	if _, err := Write(dir, Options{Hosts: []string{"h"}, Invokers: []string{"a.b"}}); err == nil {
		t.Error("an invoker id with a dot was accepted")
	}
}
