// Package catalog installs the whisk.system catalog: the namespace
// "whisk.system" and its public packages "utils" (OpenWhisk's
// /whisk.system/utils: echo, cat, sort, split, head, date, smash), whose
// actions are Go functions built with the SDK from
// internal/catalog/utils/<name>, and "alarms" (the feeds alarm, once and
// interval, which the gateway serves: internal/gateway/feeds.go).
//
// The catalog is installed through the gateway's public REST API (its HTTP
// handler, called in-process with the whisk.system credential), exactly as
// a user would deploy it: PUT .../packages/utils, then PUT
// .../actions/utils/<name> with the wasm modules. The modules are not
// shipped prebuilt (a few MB each): Ensure builds them with the Go
// toolchain from the clemmys source tree (GOOS=wasip1 GOARCH=wasm) into
// DATA_DIR/catalog/build-<version>/ (kept until the install completes, so a
// partial install resumes without rebuilding) and records what it installed
// in DATA_DIR/catalog/installed.json, so later starts cost one file read.
// Without a toolchain or source tree, Ensure reports ErrNoSource and the
// platform runs without the catalog.
//
// The whisk.system credential is kept in DATA_DIR/whisk.system-credential
// (mode 0600, "uuid:key").
package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/srctree"
)

// Namespace is the catalog's namespace, PackageName its package.
const (
	Namespace   = "whisk.system"
	PackageName = "utils"
)

// schema is bumped when the installer or the SDK changes in a way the
// embedded sources do not show (it is part of Version).
const schema = "clemmys catalog 1"

// CredentialFile is the name, in the data directory, of the whisk.system
// credential.
const CredentialFile = "whisk.system-credential"

// ErrNoSource is returned when the modules cannot be built: no Go toolchain
// or no clemmys source tree.
var ErrNoSource = errors.New("catalog: cannot build the catalog functions (no Go toolchain or clemmys source tree)")

// ErrNoPackages is returned while the gateway has no package routes.
var ErrNoPackages = errors.New("catalog: the gateway does not serve packages")

//go:embed utils/*.go utils/*/main.go
var sources embed.FS

// Param documents an action parameter (OpenWhisk's "parameters"
// annotation).
type Param struct {
	Name        string `json:"name"`
	Required    bool   `json:"required"`
	Type        string `json:"type,omitempty"`
	Description string `json:"description"`
}

// Action is one catalog action and its annotations.
type Action struct {
	Name         string
	Description  string
	Parameters   []Param
	SampleInput  map[string]any
	SampleOutput map[string]any
}

// PackageDescription is the utils package's description annotation.
const PackageDescription = "Building blocks that format and assemble data"

// Utils are the actions of /whisk.system/utils, with OpenWhisk's
// annotations.
var Utils = []Action{
	{Name: "echo", Description: "Returns the input",
		SampleInput:  map[string]any{"payload": "Five fuzzy felines"},
		SampleOutput: map[string]any{"payload": "Five fuzzy felines"}},
	{Name: "cat", Description: "Concatenates input into a string",
		Parameters:   []Param{{Name: "lines", Required: true, Type: "array", Description: "An array of strings or numbers"}},
		SampleInput:  map[string]any{"lines": []any{4, 2, 3}},
		SampleOutput: map[string]any{"lines": []any{4, 2, 3}, "payload": "4\n2\n3"}},
	{Name: "sort", Description: "Sorts an array",
		Parameters:   []Param{{Name: "lines", Required: true, Type: "array", Description: "An array of strings"}},
		SampleInput:  map[string]any{"lines": []any{4, 2, 3}},
		SampleOutput: map[string]any{"lines": []any{2, 3, 4}, "length": 3}},
	{Name: "split", Description: "Split a string into an array",
		Parameters: []Param{
			{Name: "payload", Required: true, Description: "A string"},
			{Name: "separator", Required: false, Description: "The string to split at (default: line breaks)"},
		},
		SampleInput:  map[string]any{"payload": "one,two,three", "separator": ","},
		SampleOutput: map[string]any{"lines": []any{"one", "two", "three"}, "payload": "one,two,three"}},
	{Name: "head", Description: "Extract prefix of an array",
		Parameters: []Param{
			{Name: "lines", Required: true, Type: "array", Description: "An array of strings"},
			{Name: "num", Required: false, Type: "integer", Description: "The number of elements to take"},
		},
		SampleInput:  map[string]any{"lines": []any{4, 2, 3}, "num": 2},
		SampleOutput: map[string]any{"lines": []any{4, 2}, "num": 2}},
	{Name: "date", Description: "Current date and time",
		SampleOutput: map[string]any{"date": "2016-03-22T00:59:55.961Z"}},
	{Name: "smash", Description: "Nests all properties under given property.",
		Parameters:   []Param{{Name: "$fieldName", Required: true, Type: "string", Description: "The name of the property under which to nest content"}},
		SampleInput:  map[string]any{"a": 1, "$fieldName": "x"},
		SampleOutput: map[string]any{"x": map[string]any{"a": 1}}},
}

// AlarmsPackage is the alarms package, AlarmsDescription its description.
const (
	AlarmsPackage     = "alarms"
	AlarmsDescription = "Alarms and periodic utility"
)

// alarmModule is the code of the alarms feed actions (utils/alarmfeed):
// the gateway serves them.
const alarmModule = "alarmfeed"

// Alarms are the feed actions of /whisk.system/alarms, with OpenWhisk's
// annotations (feed: true).
var Alarms = []Action{
	{Name: "alarm", Description: "Fire trigger when alarm occurs",
		Parameters: []Param{
			{Name: "cron", Required: true, Description: "UNIX crontab syntax for firing trigger in Coordinated Universal Time (UTC)"},
			{Name: "trigger_payload", Required: false, Description: "The payload to pass to the trigger"},
			{Name: "startDate", Required: false, Description: "Date when the trigger should start firing (ISO 8601)"},
			{Name: "stopDate", Required: false, Description: "Date when the trigger should stop firing (ISO 8601)"},
			{Name: "maxTriggers", Required: false, Type: "integer", Description: "Maximum number of times the trigger fires"},
		}},
	{Name: "once", Description: "Fire trigger once when alarm occurs",
		Parameters: []Param{
			{Name: "date", Required: true, Description: "Date when the trigger fires (ISO 8601)"},
			{Name: "trigger_payload", Required: false, Description: "The payload to pass to the trigger"},
			{Name: "deleteAfterFire", Required: false, Description: "false, true (delete the trigger) or rules (delete it and its rules) after it fires"},
		}},
	{Name: "interval", Description: "Fire trigger at specified interval",
		Parameters: []Param{
			{Name: "minutes", Required: true, Type: "integer", Description: "The interval, in minutes"},
			{Name: "trigger_payload", Required: false, Description: "The payload to pass to the trigger"},
			{Name: "startDate", Required: false, Description: "Date when the trigger should start firing (ISO 8601)"},
			{Name: "stopDate", Required: false, Description: "Date when the trigger should stop firing (ISO 8601)"},
		}},
}

// Version identifies the catalog: the installer schema, the embedded
// sources of the functions, and the Go version that builds them.
func Version() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", schema, runtime.Version())
	var names []string
	_ = fs.WalkDir(sources, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := sources.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	for _, a := range append(append([]Action(nil), Utils...), Alarms...) {
		b, _ := json.Marshal(annotations(a))
		fmt.Fprintf(h, "%s %s\n", a.Name, b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// NamespaceAdmin creates namespaces and checks credentials (the gateway).
type NamespaceAdmin interface {
	CreateNamespace(ctx context.Context, ns string) (uuid, key string, err error)
	RotateKey(ctx context.Context, ns string) (uuid, key string, err error)
	CheckCredential(ctx context.Context, uuid, key string) (string, bool)
}

// Options configure Ensure.
type Options struct {
	DataDir string       // the platform's data directory
	Handler http.Handler // the gateway's REST API handler
	Admin   NamespaceAdmin
	// ModuleRoot is the clemmys source tree to build the functions from;
	// empty: the tree containing the working directory, if any.
	ModuleRoot string
	Log        *slog.Logger
}

// marker is DATA_DIR/catalog/installed.json.
type marker struct {
	Version   string    `json:"version"`
	Actions   []string  `json:"actions"`
	Installed time.Time `json:"installed"`
}

// Ensure installs the catalog unless the installed one (per the marker) is
// current. It is idempotent: a partial install is completed on the next
// call, and entities are put with overwrite. It returns ErrNoPackages when
// the gateway does not serve packages and ErrNoSource when the functions
// cannot be built; the caller decides whether that matters.
func Ensure(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir := filepath.Join(o.DataDir, "catalog")
	version := Version()
	if m, err := readMarker(dir); err == nil && m.Version == version {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	auth, err := credential(ctx, o)
	if err != nil {
		return err
	}
	api := client{h: o.Handler, auth: auth}
	// The package first: while the gateway has no package routes there is
	// nothing to build for.
	pkg := map[string]any{
		"publish": true,
		"annotations": []map[string]any{
			{"key": "description", "value": PackageDescription},
		},
	}
	st, body := api.do(ctx, "PUT", "/api/v1/namespaces/_/packages/"+PackageName+"?overwrite=true", pkg)
	switch {
	case st == http.StatusNotFound || st == http.StatusMethodNotAllowed:
		return fmt.Errorf("%w (PUT package %s: %d %s)", ErrNoPackages, PackageName, st, body)
	case st != http.StatusOK:
		return fmt.Errorf("catalog: PUT package %s: %d %s", PackageName, st, body)
	}
	modules, err := buildModules(ctx, o, dir, version)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(Utils))
	for _, a := range Utils {
		wasm := modules[a.Name]
		body := map[string]any{
			"exec":        map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(wasm)},
			"annotations": annotations(a),
		}
		path := "/api/v1/namespaces/_/actions/" + PackageName + "/" + a.Name + "?overwrite=true"
		if st, resp := api.do(ctx, "PUT", path, body); st != http.StatusOK {
			return fmt.Errorf("catalog: PUT action %s/%s: %d %s", PackageName, a.Name, st, resp)
		}
		names = append(names, PackageName+"/"+a.Name)
	}
	// The alarms package: its feeds are served by the gateway.
	alarms := map[string]any{
		"publish":     true,
		"annotations": []map[string]any{{"key": "description", "value": AlarmsDescription}},
	}
	if st, body := api.do(ctx, "PUT", "/api/v1/namespaces/_/packages/"+AlarmsPackage+"?overwrite=true", alarms); st != http.StatusOK {
		return fmt.Errorf("catalog: PUT package %s: %d %s", AlarmsPackage, st, body)
	}
	for _, a := range Alarms {
		body := map[string]any{
			"exec":        map[string]any{"kind": "wasm", "code": base64.StdEncoding.EncodeToString(modules[alarmModule])},
			"annotations": append(annotations(a), map[string]any{"key": "feed", "value": true}),
		}
		path := "/api/v1/namespaces/_/actions/" + AlarmsPackage + "/" + a.Name + "?overwrite=true"
		if st, resp := api.do(ctx, "PUT", path, body); st != http.StatusOK {
			return fmt.Errorf("catalog: PUT action %s/%s: %d %s", AlarmsPackage, a.Name, st, resp)
		}
		names = append(names, AlarmsPackage+"/"+a.Name)
	}
	m := marker{Version: version, Actions: names, Installed: time.Now().UTC()}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "installed.json"), b, 0o600); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	// The modules are stored (sealed) by the platform now; the next
	// install is of another version, which needs another build.
	removeBuilds(dir, "")
	o.Log.Info("installed the whisk.system catalog", "package", "/"+Namespace+"/"+PackageName, "actions", len(names), "version", version[:12])
	return nil
}

// Installed reports whether the current catalog version is installed in
// dataDir.
func Installed(dataDir string) bool {
	m, err := readMarker(filepath.Join(dataDir, "catalog"))
	return err == nil && m.Version == Version()
}

// Credential returns the stored whisk.system credential ("uuid:key").
func Credential(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, CredentialFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readMarker(dir string) (*marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, "installed.json"))
	if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func annotations(a Action) []map[string]any {
	anns := []map[string]any{{"key": "description", "value": a.Description}}
	if a.Parameters != nil {
		anns = append(anns, map[string]any{"key": "parameters", "value": a.Parameters})
	}
	if a.SampleInput != nil {
		anns = append(anns, map[string]any{"key": "sampleInput", "value": a.SampleInput})
	}
	if a.SampleOutput != nil {
		anns = append(anns, map[string]any{"key": "sampleOutput", "value": a.SampleOutput})
	}
	return anns
}

// credential returns a working whisk.system credential: the stored one, or
// a new namespace's, or (the namespace exists but the stored credential is
// missing or stale) a rotated key.
func credential(ctx context.Context, o Options) (string, error) {
	path := filepath.Join(o.DataDir, CredentialFile)
	if auth, err := Credential(o.DataDir); err == nil {
		if u, k, ok := strings.Cut(auth, ":"); ok {
			if ns, ok := o.Admin.CheckCredential(ctx, u, k); ok && ns == Namespace {
				return auth, nil
			}
		}
	}
	u, k, err := o.Admin.CreateNamespace(ctx, Namespace)
	if err != nil {
		if u, k, err = o.Admin.RotateKey(ctx, Namespace); err != nil {
			return "", fmt.Errorf("catalog: namespace %s: %w", Namespace, err)
		}
		o.Log.Warn("issued a new whisk.system key (the stored credential was missing or stale)")
	}
	auth := u + ":" + k
	if err := writeFileAtomic(path, []byte(auth+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("catalog: %w", err)
	}
	return auth, nil
}

// client calls the gateway's handler in-process.
type client struct {
	h    http.Handler
	auth string
}

func (c client) do(ctx context.Context, method, path string, body any) (int, string) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err.Error()
		}
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	u, k, _ := strings.Cut(c.auth, ":")
	req.SetBasicAuth(u, k)
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	msg := strings.TrimSpace(rec.Body.String())
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return rec.Code, msg
}

// buildModules returns the wasm module of every action: from
// DATA_DIR/catalog/build-<version>/ when a previous, interrupted install
// left it complete, else built from source into it.
func buildModules(ctx context.Context, o Options, dir, version string) (map[string][]byte, error) {
	out := filepath.Join(dir, "build-"+version[:16])
	if m, err := readModules(out); err == nil {
		return m, nil
	}
	root := o.ModuleRoot
	if root == "" {
		root = srctree.Root(ctx)
	}
	goTool, err := exec.LookPath("go")
	if root == "" || err != nil {
		return nil, ErrNoSource
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "catalog", "utils")); err != nil {
		return nil, ErrNoSource
	}
	tmp, err := os.MkdirTemp(dir, "build-tmp-")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", tmp + string(filepath.Separator)}
	built := append(moduleNames(), alarmModule)
	for _, n := range built {
		args = append(args, "./internal/catalog/utils/"+n)
	}
	o.Log.Info("building the whisk.system catalog functions", "module", root, "out", out)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("catalog: building the functions: %v\n%s", err, stderr.String())
	}
	for _, n := range built {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(tmp, n+".wasm")); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	removeBuilds(dir, tmp)
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	o.Log.Debug("built the catalog functions", "took", time.Since(t0))
	return readModules(out)
}

// moduleNames are the utils actions' module names.
func moduleNames() []string {
	out := make([]string, 0, len(Utils)+1)
	for _, a := range Utils {
		out = append(out, a.Name)
	}
	return out
}

// removeBuilds removes the build directories in dir but keep.
func removeBuilds(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "build-*"))
	for _, d := range old {
		if d != keep {
			os.RemoveAll(d)
		}
	}
}

func readModules(dir string) (map[string][]byte, error) {
	m := make(map[string][]byte, len(Utils)+1)
	for _, n := range append(moduleNames(), alarmModule) {
		b, err := os.ReadFile(filepath.Join(dir, n+".wasm"))
		if err != nil {
			return nil, err
		}
		m[n] = b
	}
	return m, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
