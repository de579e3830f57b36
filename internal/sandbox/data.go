package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
)

// DataDir is where a bound module's instances find their Data files: a
// read-only WASI preopen.
const DataDir = "/action"

// Bounds of Data.
const (
	// MaxDataFiles bounds the files of a Data.
	MaxDataFiles = 16
	// MaxDataBytes bounds the files' contents in all.
	MaxDataBytes = 64 << 20
	// MaxDataEnv bounds the environment variables of a Data.
	MaxDataEnv = 16
	// maxDataNameBytes bounds a file's name and a variable's name or value.
	maxDataNameBytes = 256
)

// Data is what a module's instances get besides the module itself: files,
// read-only under DataDir, and environment variables. A JavaScript
// function is the engine's module bound to the function's code as Data.
type Data struct {
	Files map[string][]byte // by name: no slash, not "." or ".."
	Env   map[string]string // names without '=' or NUL
}

// binding is the Data of a Module's instances, and the pool of idle
// instances made with it: an instance serves only Modules of its binding,
// so warm instances are never shared between two bound Modules (two
// functions running on one engine). Modules compiled from the same bytes
// without Data share their compiled module's plain binding.
type binding struct {
	fs  wazero.FSConfig // nil without files
	env [][2]string     // sorted by name

	// Guarded by Engine.poolMu.
	idle     int  // instances in Engine.idle
	starting bool // a prestart is in flight
	closing  bool // the bound Module was closed: no new idle instances
}

// Bind returns a Module whose instances run m's code with d: its files
// under DataDir, its environment. It shares m's compilation (Close it as
// any Module; m may be closed first), never m's instances nor those of
// another Bind: each call gets its own pool of warm instances. The files
// are copied.
func (m *Module) Bind(d Data) (*Module, error) {
	b, err := newBinding(d)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	e := m.e
	e.mu.Lock()
	m.c.refs++ // m holds a reference, so c is not released meanwhile
	e.mu.Unlock()
	return &Module{e: e, c: m.c, b: b, bound: true, oneShot: m.oneShot}, nil
}

// ErrInvalidData: Data out of its bounds.
var ErrInvalidData = errors.New("invalid data")

func newBinding(d Data) (*binding, error) {
	if len(d.Files) > MaxDataFiles || len(d.Env) > MaxDataEnv {
		return nil, fmt.Errorf("%w: at most %d files and %d environment variables", ErrInvalidData, MaxDataFiles, MaxDataEnv)
	}
	b := &binding{}
	var total int
	files := make(memFS, len(d.Files))
	for name, content := range d.Files {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > maxDataNameBytes {
			return nil, fmt.Errorf("%w: file name %q", ErrInvalidData, name)
		}
		total += len(content)
		if total > MaxDataBytes {
			return nil, fmt.Errorf("%w: files exceed %d bytes", ErrInvalidData, MaxDataBytes)
		}
		files[name] = bytes.Clone(content)
	}
	if len(files) > 0 {
		b.fs = wazero.NewFSConfig().WithFSMount(files, DataDir)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Env)) {
		v := d.Env[k]
		if k == "" || k == LoopEnv || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) ||
			len(k) > maxDataNameBytes || len(v) > maxDataNameBytes {
			return nil, fmt.Errorf("%w: environment variable %q", ErrInvalidData, k)
		}
		b.env = append(b.env, [2]string{k, v})
	}
	return b, nil
}

// configure adds the binding to an instance's configuration.
func (b *binding) configure(cfg wazero.ModuleConfig) wazero.ModuleConfig {
	if b.fs != nil {
		cfg = cfg.WithFSConfig(b.fs)
	}
	for _, kv := range b.env {
		cfg = cfg.WithEnv(kv[0], kv[1])
	}
	return cfg
}

// memFS is a read-only directory of files in memory: the Data files.
type memFS map[string][]byte

var _ fs.ReadDirFS = memFS(nil)

func (m memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &memDir{fs: m}, nil
	}
	b, ok := m[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{name: name, Reader: bytes.NewReader(b), size: int64(len(b))}, nil
}

func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	d := &memDir{fs: m}
	return d.ReadDir(-1)
}

// memFile is an open Data file.
type memFile struct {
	name string
	*bytes.Reader
	size int64
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{name: f.name, size: f.size}, nil }
func (f *memFile) Close() error               { return nil }

// memDir is the open root of a memFS.
type memDir struct {
	fs   memFS
	read int // entries returned by ReadDir so far
}

func (d *memDir) Stat() (fs.FileInfo, error) { return memInfo{name: ".", dir: true}, nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: errors.New("is a directory")}
}
func (d *memDir) Close() error { return nil }

func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	names := slices.Sorted(maps.Keys(d.fs))[d.read:]
	if n > 0 && len(names) > n {
		names = names[:n]
	}
	if n > 0 && len(names) == 0 {
		return nil, io.EOF
	}
	out := make([]fs.DirEntry, len(names))
	for i, name := range names {
		out[i] = fs.FileInfoToDirEntry(memInfo{name: name, size: int64(len(d.fs[name]))})
	}
	d.read += len(names)
	return out, nil
}

// memInfo describes a Data file or the directory.
type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// closeBinding ends a bound Module's pool: its idle instances are closed
// and no more are kept.
func (e *Engine) closeBinding(ctx context.Context, b *binding) {
	_ = ctx
	e.poolMu.Lock()
	b.closing = true
	e.poolMu.Unlock()
	e.drainIdle(nil, b)
}
