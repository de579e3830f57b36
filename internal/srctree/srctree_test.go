package srctree

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestRoot(t *testing.T) {
	ctx := context.Background()
	root := Root(ctx) // the tests run in this package's directory
	if root == "" {
		t.Fatal("no source tree found from inside it")
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "srctree", "srctree.go")); err != nil {
		t.Fatalf("root %s: %v", root, err)
	}

	t.Chdir(t.TempDir()) // outside any module
	if got := Root(ctx); got != "" {
		t.Fatalf("outside the tree: %q", got)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	if got := Root(ctx); got != "" {
		t.Fatalf("in another module: %q", got)
	}
}
