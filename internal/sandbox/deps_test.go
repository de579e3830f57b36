package sandbox

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The sandbox is part of the enclave runtime's trusted computing base: its
// non-test code may import only the standard library and wazero.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			stdlib := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
			wazero := path == "github.com/tetratelabs/wazero" || strings.HasPrefix(path, "github.com/tetratelabs/wazero/")
			if !stdlib && !wazero {
				t.Errorf("%s imports %q: only the standard library and wazero are allowed", name, path)
			}
			if path == "unsafe" || path == "os/exec" || path == "net" || strings.HasPrefix(path, "net/") {
				t.Errorf("%s imports %q, which the sandbox has no business using", name, path)
			}
		}
	}
}
