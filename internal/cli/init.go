package cli

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/template"

	"github.com/clemmys/clemmys/internal/srctree"
	"github.com/clemmys/clemmys/sdk"
)

// `clemmys init go|js DIR`: a function project, outside the clemmys
// source tree, that builds and deploys as is.
//
// The Go SDK is not published as a module, so `go get` cannot fetch it.
// By default the project gets a copy of it (sdk.Source, embedded in this
// binary) in DIR/clemmys-sdk, a module named github.com/clemmys/clemmys,
// and its go.mod a replace to that directory: it builds offline, without
// a checkout, with the SDK of the clemmys that made it. --sdk CHECKOUT
// makes the replace point at a clemmys source checkout instead (nothing is
// copied), for who develops the SDK too.

const initUsage = `Usage:
  clemmys init go DIR [--sdk CHECKOUT] [--name NAME]
                        a Go function: go.mod, main.go, main_test.go,
                        build.sh (GOOS=wasip1 GOARCH=wasm go build
                        -buildmode=c-shared: a WASI reactor), and a
                        copy of the SDK in DIR/clemmys-sdk (or, with --sdk,
                        a replace to the clemmys source checkout CHECKOUT)
  clemmys init js DIR [--name NAME]
                        a JavaScript action: index.js (OpenWhisk's main),
                        package.json, test.js

DIR may exist if it holds none of the files; nothing is overwritten. NAME
(default: DIR's base name) names the module and the action.
`

//go:embed inittmpl
var initTemplates embed.FS

// sdkGoVersion is the go line of the projects' go.mod and of the SDK
// copy: the oldest Go that builds the SDK for wasip1 (//go:wasmexport).
// TestInit builds a project with it.
const sdkGoVersion = "1.24"

// initData is what the templates see.
type initData struct {
	Name      string // module, action and file name
	GoVersion string
	Vendored  bool   // the SDK is copied into the project
	SDKPath   string // the replace target
	Version   string // of this clemmys
}

func cmdInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, initUsage, "\nFlags:\n"); fs.PrintDefaults() }
	sdkDir := fs.String("sdk", "", "go: build with the SDK of the clemmys source checkout `CHECKOUT` (a replace to it) instead of a copy in the project")
	name := fs.String("name", "", "the function's `NAME` (default: DIR's base name)")
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 || (pos[0] != "go" && pos[0] != "js") {
		fmt.Fprint(stderr, "error: clemmys init takes a language, go or js, and a directory\n\n", initUsage)
		return 2
	}
	lang, dir := pos[0], pos[1]
	if lang == "js" && *sdkDir != "" {
		fmt.Fprintln(stderr, "error: --sdk is for Go projects")
		return 2
	}
	n := *name
	if n == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		n = filepath.Base(abs)
	}
	n = projectName(n)
	data := initData{Name: n, GoVersion: sdkGoVersion, Vendored: true, SDKPath: "./clemmys-sdk", Version: buildVersion()}
	if *sdkDir != "" {
		abs, err := checkSDKCheckout(*sdkDir)
		if err != nil {
			fmt.Fprintf(stderr, "error: --sdk: %v\n", err)
			return 1
		}
		data.Vendored, data.SDKPath = false, abs
	}
	files, err := initFiles(lang, data)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if err := writeNew(dir, files); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	switch lang {
	case "go":
		fmt.Fprintf(stdout, `ok: created the Go function %[1]s in %[2]s
next:
  cd %[2]s
  go test ./...                                # test it natively
  ./build.sh                                   # GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o %[1]s.wasm .
  clemmys action create %[1]s %[1]s.wasm
  clemmys action invoke %[1]s -p name Ada -r
`, n, dir)
	case "js":
		fmt.Fprintf(stdout, `ok: created the JavaScript action %[1]s in %[2]s
next:
  cd %[2]s
  npm test                                     # run it locally with node
  clemmys action create %[1]s index.js
  clemmys action invoke %[1]s -p name Ada -r
`, n, dir)
	}
	return 0
}

// projectName makes name a valid module path, npm package and action
// name: lower case letters, digits, '-' and '_', starting with a letter.
func projectName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9' && b.Len() > 0, (r == '-' || r == '_') && b.Len() > 0:
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
		if b.Len() >= 64 {
			break
		}
	}
	s := strings.Trim(b.String(), "-_")
	if s == "" {
		return "function"
	}
	return s
}

// checkSDKCheckout returns the absolute path of dir if it is a clemmys
// source checkout (its go.mod declares the module and it has sdk/).
func checkSDKCheckout(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	gomod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("%s is not a clemmys source checkout: %w", dir, err)
	}
	if !bytes.Contains(gomod, []byte("module "+srctree.ModulePath+"\n")) {
		return "", fmt.Errorf("%s/go.mod is not the module %s", dir, srctree.ModulePath)
	}
	if _, err := os.Stat(filepath.Join(abs, "sdk", "sdk.go")); err != nil {
		return "", fmt.Errorf("%s has no sdk/: %w", dir, err)
	}
	return abs, nil
}

// initFiles are the project's files by slash-separated path, with their
// modes.
func initFiles(lang string, data initData) (map[string]initFile, error) {
	files := map[string]initFile{}
	root := "inittmpl/" + lang
	err := fs.WalkDir(initTemplates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := initTemplates.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(path.Base(p)).Parse(string(src))
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := t.Execute(&out, data); err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		if name == "gitignore" {
			name = ".gitignore"
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		files[name] = initFile{out.Bytes(), mode}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	if lang == "go" && data.Vendored {
		if err := addSDKCopy(files, data); err != nil {
			return nil, err
		}
	}
	return files, nil
}

type initFile struct {
	data []byte
	mode fs.FileMode
}

// addSDKCopy adds the SDK's source (test files aside) under clemmys-sdk/,
// a module of the SDK's module path.
func addSDKCopy(files map[string]initFile, data initData) error {
	err := fs.WalkDir(sdk.Source, ".", func(p string, d fs.DirEntry, err error) error {
		// source.go is the embedding itself, of no use in a project.
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") || p == "source.go" {
			return err
		}
		b, err := fs.ReadFile(sdk.Source, p)
		if err != nil {
			return err
		}
		files["clemmys-sdk/sdk/"+p] = initFile{b, 0o644}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the SDK's source: %w", err)
	}
	files["clemmys-sdk/go.mod"] = initFile{[]byte("module " + srctree.ModulePath + "\n\ngo " + data.GoVersion + "\n"), 0o644}
	files["clemmys-sdk/README.md"] = initFile{[]byte(fmt.Sprintf(`# clemmys SDK (copy)

The Go SDK of clemmys %s (package github.com/clemmys/clemmys/sdk and
sdk/fresh), copied here by `+"`clemmys init go`"+` because the module is not
published. The project's go.mod replaces github.com/clemmys/clemmys with
this directory. Do not edit it; replace it to update the SDK.
`, data.Version)), 0o644}
	return nil
}

// writeNew writes files under dir, which may exist, refusing to
// overwrite anything: it checks every file first.
func writeNew(dir string, files map[string]initFile) error {
	for name := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: choose an empty or new directory", p)
		}
	}
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return err
		}
		_, err = out.Write(f.data)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// buildVersion is this binary's version: Version, or the module version
// and VCS revision of its build info.
func buildVersion() string {
	if Version != "dev" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (commit " + s.Value[:12] + ")"
		}
	}
	if v == "" {
		return Version
	}
	return v
}
