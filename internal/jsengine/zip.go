package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Bounds of a zipped action, unpacked here, inside the sandbox: the zip is
// the owner's (or an attacker's) bytes, and the memory limit stops the
// rest.
const (
	maxZipFiles  = 10_000
	maxZipBytes  = 128 << 20 // all files, uncompressed
	actionPrefix = "/action/"
)

// isZip reports whether code is a zip archive (local file header magic).
func isZip(code []byte) bool { return bytes.HasPrefix(code, []byte("PK\x03\x04")) }

// unzip returns the archive's regular files by path under /action.
func unzip(code []byte) (map[string][]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(code), int64(len(code)))
	if err != nil {
		return nil, fmt.Errorf("the action's zip archive is malformed: %v", err)
	}
	if len(zr.File) > maxZipFiles {
		return nil, fmt.Errorf("the action's zip archive has more than %d files", maxZipFiles)
	}
	files := map[string][]byte{}
	var total int64
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || !f.Mode().IsRegular() {
			continue // directories and symbolic links
		}
		name, ok := cleanZipName(f.Name)
		if !ok {
			return nil, fmt.Errorf("the action's zip archive has a file outside the archive: %q", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("the action's zip archive: %s: %v", name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxZipBytes-total+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("the action's zip archive: %s: %v", name, err)
		}
		total += int64(len(b))
		if total > maxZipBytes {
			return nil, fmt.Errorf("the action's zip archive expands to more than %d bytes", maxZipBytes)
		}
		files[actionPrefix+name] = b
	}
	return files, nil
}

// cleanZipName is a zip entry's path, relative and inside the archive.
func cleanZipName(name string) (string, bool) {
	name = strings.ReplaceAll(name, "\\", "/")
	if strings.HasPrefix(name, "/") {
		return "", false
	}
	c := path.Clean(name)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}

// cleanPath cleans a slash-separated path.
func cleanPath(p string) string { return path.Clean(p) }

// loadZip unpacks a zipped action and requires its main module:
// package.json's "main", else index.js, at the archive's root (or in its
// only top-level directory, as archives made by zipping a folder have it).
func (e *engine) loadZip(code []byte, main string) error {
	files, err := unzip(code)
	if err != nil {
		return err
	}
	root, err := zipRoot(files)
	if err != nil {
		return err
	}
	rm, err := e.enableRequire(files)
	if err != nil {
		return fmt.Errorf("engine: %v", err)
	}
	exports, err := rm.Require(root)
	if err != nil {
		return e.initError(err)
	}
	if fn := exported(exports, main, e.rt); fn != nil {
		e.main = fn
		return nil
	}
	return fmt.Errorf("the action's main module does not export a function %q (set exports.%s)", main, main)
}

// zipRoot finds the directory whose package.json or index.js is the
// action's main module.
func zipRoot(files map[string][]byte) (string, error) {
	has := func(dir string) bool {
		if b, ok := files[dir+"/package.json"]; ok {
			var pkg struct {
				Main string `json:"main"`
			}
			if json.Unmarshal(b, &pkg) == nil && pkg.Main != "" {
				return true
			}
		}
		_, ok := files[dir+"/index.js"]
		return ok
	}
	root := strings.TrimSuffix(actionPrefix, "/")
	if has(root) {
		return root, nil
	}
	tops := map[string]bool{}
	for p := range files {
		rest := strings.TrimPrefix(p, actionPrefix)
		top, _, nested := strings.Cut(rest, "/")
		if !nested {
			tops = map[string]bool{} // a file at the root: no single folder
			break
		}
		tops[top] = true
	}
	if len(tops) == 1 {
		for top := range tops {
			if has(root + "/" + top) {
				return root + "/" + top, nil
			}
		}
	}
	return "", errors.New("the action's zip archive has no package.json with a main file and no index.js at its root")
}
