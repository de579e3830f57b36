package sandbox

// A tiny WebAssembly assembler for hand-written test modules: traps, exits,
// memory growth and malformed shapes that a Go guest cannot produce.

type valType = byte

const (
	i32 valType = 0x7f

	opUnreachable = 0x00
	opLoop        = 0x03
	opIf          = 0x04
	opEnd         = 0x0b
	opBr          = 0x0c
	opCall        = 0x10
	opDrop        = 0x1a
	opI32Const    = 0x41
	opI32Eq       = 0x46
	opMemoryGrow  = 0x40
	blockEmpty    = 0x40
)

type funcType struct{ params, results []valType }

type wasmImport struct {
	module, name string
	kind         byte // 0 func, 2 memory, 3 global
	desc         []byte
}

type wasmFunc struct {
	typ  uint32
	body []byte // instructions, without locals and final end
}

type wasmExport struct {
	name string
	kind byte // 0 func, 2 memory
	idx  uint32
}

type wasmData struct {
	offset uint32
	bytes  []byte
}

type wasmModule struct {
	types   []funcType
	imports []wasmImport
	funcs   []wasmFunc
	memory  *[2]uint32 // min, max (max 0 = none)
	exports []wasmExport
	start   *uint32
	data    []wasmData
}

func uleb(n uint64) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(n int64) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if (n == 0 && c&0x40 == 0) || (n == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wname(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func vec(items ...[]byte) []byte {
	b := uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func section(id byte, payload []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(payload)))...), payload...)
}

func i32Const(v int32) []byte { return append([]byte{opI32Const}, sleb(int64(v))...) }

func (m wasmModule) bytes() []byte {
	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	if len(m.types) > 0 {
		var ts [][]byte
		for _, t := range m.types {
			b := []byte{0x60}
			b = append(b, vec(bytesOf(t.params)...)...)
			b = append(b, vec(bytesOf(t.results)...)...)
			ts = append(ts, b)
		}
		out = append(out, section(1, vec(ts...))...)
	}
	if len(m.imports) > 0 {
		var is [][]byte
		for _, im := range m.imports {
			b := append(wname(im.module), wname(im.name)...)
			b = append(b, im.kind)
			is = append(is, append(b, im.desc...))
		}
		out = append(out, section(2, vec(is...))...)
	}
	if len(m.funcs) > 0 {
		var fs [][]byte
		for _, f := range m.funcs {
			fs = append(fs, uleb(uint64(f.typ)))
		}
		out = append(out, section(3, vec(fs...))...)
	}
	if m.memory != nil {
		out = append(out, section(5, vec(limits(m.memory[0], m.memory[1])))...)
	}
	if len(m.exports) > 0 {
		var es [][]byte
		for _, e := range m.exports {
			es = append(es, append(append(wname(e.name), e.kind), uleb(uint64(e.idx))...))
		}
		out = append(out, section(7, vec(es...))...)
	}
	if m.start != nil {
		out = append(out, section(8, uleb(uint64(*m.start)))...)
	}
	if len(m.funcs) > 0 {
		var cs [][]byte
		for _, f := range m.funcs {
			body := append([]byte{0x00}, f.body...) // no locals
			body = append(body, opEnd)
			cs = append(cs, append(uleb(uint64(len(body))), body...))
		}
		out = append(out, section(10, vec(cs...))...)
	}
	if len(m.data) > 0 {
		var ds [][]byte
		for _, d := range m.data {
			b := []byte{0x00} // active, memory 0
			b = append(b, i32Const(int32(d.offset))...)
			b = append(b, opEnd)
			b = append(b, uleb(uint64(len(d.bytes)))...)
			ds = append(ds, append(b, d.bytes...))
		}
		out = append(out, section(11, vec(ds...))...)
	}
	return out
}

func limits(min, max uint32) []byte {
	if max == 0 {
		return append([]byte{0x00}, uleb(uint64(min))...)
	}
	return append(append([]byte{0x01}, uleb(uint64(min))...), uleb(uint64(max))...)
}

func bytesOf(vs []valType) [][]byte {
	var b [][]byte
	for _, v := range vs {
		b = append(b, []byte{v})
	}
	return b
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// command returns a WASI command module whose _start runs body, with
// one page of memory (or mem, if given) and the given WASI imports (each of
// type (i32...) -> ... as listed in types, index i+1 for import i).
func command(body []byte, imports ...wasiImport) wasmModule {
	m := wasmModule{
		types:  []funcType{{}},
		memory: &[2]uint32{1, 0},
	}
	for _, im := range imports {
		m.types = append(m.types, im.typ)
		m.imports = append(m.imports, wasmImport{
			module: "wasi_snapshot_preview1", name: im.name, kind: 0,
			desc: uleb(uint64(len(m.types) - 1)),
		})
	}
	startIdx := uint32(len(imports))
	m.funcs = []wasmFunc{{typ: 0, body: body}}
	m.exports = []wasmExport{{"_start", 0, startIdx}, {"memory", 2, 0}}
	return m
}

type wasiImport struct {
	name string
	typ  funcType
}

var (
	importProcExit = wasiImport{"proc_exit", funcType{params: []valType{i32}}}
	importFdWrite  = wasiImport{"fd_write", funcType{params: []valType{i32, i32, i32, i32}, results: []valType{i32}}}
)

// Test modules.
var (
	// tinyNop returns at once.
	tinyNop = command(nil).bytes()

	// tinyTrap executes unreachable.
	tinyTrap = command([]byte{opUnreachable}).bytes()

	// tinyLoop spins forever.
	tinyLoop = command([]byte{opLoop, blockEmpty, opBr, 0x00, opEnd}).bytes()

	// tinyWrite writes "{}\n" to stdout with fd_write.
	tinyWrite = func() []byte {
		m := command(concat(
			i32Const(1), i32Const(0), i32Const(1), i32Const(8), // fd, iovs, iovs_len, nwritten
			[]byte{opCall, 0x00, opDrop},
		), importFdWrite)
		m.data = []wasmData{
			{0, []byte{16, 0, 0, 0, 3, 0, 0, 0}}, // iovec{buf: 16, len: 3}
			{16, []byte("{}\n")},
		}
		return m.bytes()
	}()
)

// tinyExit calls proc_exit(code).
func tinyExit(code int32) []byte {
	return command(concat(i32Const(code), []byte{opCall, 0x00}), importProcExit).bytes()
}

// tinyGrow grows memory by pages and traps if that fails (if trapOnFail),
// else returns normally either way.
func tinyGrow(pages int32, trapOnFail bool) []byte {
	body := concat(i32Const(pages), []byte{opMemoryGrow, 0x00})
	if trapOnFail {
		body = concat(body, i32Const(-1), []byte{opI32Eq, opIf, blockEmpty, opUnreachable, opEnd})
	} else {
		body = append(body, opDrop)
	}
	return command(body).bytes()
}
