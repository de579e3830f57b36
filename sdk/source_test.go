package sdk

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSourceComplete: Source holds every non-test Go file of the SDK's
// directories, so a package added under sdk/ without being added to the
// embed pattern fails here rather than in a user's project.
func TestSourceComplete(t *testing.T) {
	var onDisk, embedded []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			onDisk = append(onDisk, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = fs.WalkDir(Source, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			embedded = append(embedded, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(onDisk)
	slices.Sort(embedded)
	if !slices.Equal(onDisk, embedded) {
		t.Fatalf("Source holds %q, the directory %q: extend the go:embed pattern in source.go", embedded, onDisk)
	}
	if b, err := fs.ReadFile(Source, "sdk.go"); err != nil || !strings.Contains(string(b), "func Run(") {
		t.Fatalf("sdk.go in Source: %v", err)
	}
}
