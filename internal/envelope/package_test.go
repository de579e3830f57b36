package envelope

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps envelope a leaf: the standard library and the CBOR
// codec only, nothing of ours, no unsafe.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	hasDoc := false
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package envelope ") {
			hasDoc = true
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			stdlib := !strings.Contains(strings.SplitN(p, "/", 2)[0], ".")
			switch {
			case p == "unsafe" || p == "math/rand" || p == "math/rand/v2":
				t.Errorf("%s imports %s", name, p)
			case p == "github.com/fxamacker/cbor/v2", stdlib:
			default:
				t.Errorf("%s imports %s: envelope is a leaf (stdlib + cbor only)", name, p)
			}
		}
	}
	if !hasDoc {
		t.Error("no package documentation")
	}
}
