package sandbox

import (
	"fmt"
	"math"
)

// precheck is a strict structural pass over a WebAssembly binary that runs
// before wazero sees it. wazero's decoder sizes its allocations from vector
// counts and lengths read from the module before it reads the elements
// (make([]Import, count), make([]byte, size), ...), so a few bytes declaring
// 2^32 imports or a 4 GiB name make it allocate until the Go runtime dies
// with a fatal, unrecoverable "out of memory", taking the enclave runtime
// down. precheck walks every section wazero decodes, in the same way, and
// refuses the module unless every such count and length is bounded by the
// bytes that actually follow it (each element needs at least a known number
// of bytes), so what wazero allocates is proportional to the module's size.
//
// It also enforces the implementation limits of the WebAssembly JavaScript
// API (https://webassembly.github.io/spec/js-api/#limits), which every
// browser enforces and so every toolchain respects, plus a bound on the
// locals of the whole module: run-length encoded locals and table sizes are
// the two places where a tiny module legitimately asks for a lot of memory.
//
// precheck only looks at the module's structure, not its meaning: wazero
// still decodes and validates everything it accepts. It is a pure function
// of wasm; the error wraps ErrInvalidModule and says what is wrong where.
func precheck(wasm []byte) error {
	_, err := prechecked(wasm)
	return err
}

// precheckCommand is precheck plus what the sandbox cannot provide and
// wazero's API does not show after compilation: a module importing a
// table, a global or a tag cannot be instantiated (WASI provides only
// functions), so it is refused before it is compiled.
func precheckCommand(wasm []byte) error {
	p, err := prechecked(wasm)
	if err != nil {
		return err
	}
	if p.otherImport != "" {
		return fmt.Errorf("%w: it imports a %s: the sandbox provides only functions of %q", ErrInvalidModule, p.otherImport, wasiModule)
	}
	return nil
}

func prechecked(wasm []byte) (*prechecker, error) {
	if len(wasm) < 4 || string(wasm[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: not a WebAssembly binary (bad magic number)", ErrInvalidModule)
	}
	if len(wasm) < 8 || string(wasm[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: unsupported WebAssembly binary version (want 1)", ErrInvalidModule)
	}
	p := &prechecker{r: reader{b: wasm, pos: 8, end: len(wasm)}}
	p.module()
	return p, p.r.err
}

// Limits enforced by precheck. The first group are the JS API's.
const (
	maxTypes           = 1_000_000
	maxFunctions       = 1_000_000 // imported and defined
	maxImports         = 100_000
	maxExports         = 100_000
	maxGlobals         = 1_000_000 // imported and defined
	maxTags            = 1_000_000
	maxDataSegments    = 100_000
	maxTables          = 100_000 // imported and defined
	maxMemories        = 1
	maxTableSize       = 10_000_000 // initial size of one table
	maxTableInit       = 10_000_000 // entries of one element segment
	maxParams          = 1_000
	maxResults         = 1_000
	maxFunctionBody    = 7_654_321  // bytes, with the local declarations
	maxFunctionLocals  = 50_000     // declared locals of one function
	maxModuleLocals    = 1 << 22    // declared locals of all functions (wazero keeps 8 bytes per local)
	maxModuleTableSize = 10_000_000 // initial sizes of all tables (wazero allocates 8 bytes per entry per instance)
)

// Minimal encoded sizes of vector elements, in bytes, in what wazero decodes
// without error. A count is refused if count*size exceeds the bytes left.
const (
	minTypeSize       = 2 // rec group 0x4e, count 0 (a function type is 0x60 + 2 counts)
	minFuncTypeSize   = 3 // 0x60, params count, results count
	minValTypeSize    = 1
	minImportSize     = 4 // module name length, name length, kind, one-byte desc
	minFuncSize       = 1 // type index
	minTableSize      = 3 // reftype, limits flag, min
	minMemorySize     = 2 // limits flag, min
	minGlobalSize     = 3 // valtype, mutability, end
	minExportSize     = 3 // name length, kind, index
	minElementSize    = 3 // e.g. prefix 1, elemkind, count
	minElemIndexSize  = 1 // function index
	minElemExprSize   = 1 // end
	minCodeSize       = 3 // body size, locals count, end
	minLocalDeclSize  = 2 // count, valtype
	minDataSize       = 2 // prefix 1, length
	minTagSize        = 2 // attribute, type index
	minNameAssocSize  = 2 // index, name length
	minIndirectAssocs = 2 // index, count
)

// Section IDs.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

var sectionNames = [...]string{
	secCustom: "custom", secType: "type", secImport: "import", secFunction: "function",
	secTable: "table", secMemory: "memory", secGlobal: "global", secExport: "export",
	secStart: "start", secElement: "element", secCode: "code", secData: "data",
	secDataCount: "data count", secTag: "tag",
}

// Encodings precheck needs to tell apart.
const (
	typeFunc         = 0x60
	typeRecGroup     = 0x4e
	refNullable      = 0x63 // followed by a heap type (s33)
	refNonNullable   = 0x64
	refFunc          = 0x70
	refExtern        = 0x6f
	tableWithInit    = 0x40
	opEndByte        = 0x0b
	opGlobalGet      = 0x23
	opI32ConstByte   = 0x41
	opI64Const       = 0x42
	opF32Const       = 0x43
	opF64Const       = 0x44
	opRefNull        = 0xd0
	opRefFunc        = 0xd2
	opVecPrefix      = 0xfd
	opVecV128Const   = 0x0c
	kindFunc         = 0x00
	kindTable        = 0x01
	kindMemory       = 0x02
	kindGlobal       = 0x03
	kindTag          = 0x04
	nameSubModule    = 0
	nameSubFunctions = 1
	nameSubLocals    = 2
)

// reader reads a module with a sticky error: after the first error every
// read returns zero without consuming anything, so loops end at once.
type reader struct {
	b     []byte
	pos   int
	end   int    // end of the current section, subsection or body
	where string // what is being read, for errors
	err   error
}

func (r *reader) failf(format string, args ...any) {
	if r.err == nil {
		where := r.where
		if where != "" {
			where += " "
		}
		r.err = fmt.Errorf("%w: malformed module: %sat byte %d: %s",
			ErrInvalidModule, where, r.pos, fmt.Sprintf(format, args...))
	}
}

func (r *reader) left() int { return r.end - r.pos }

func (r *reader) u8() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= r.end {
		r.failf("unexpected end")
		return 0
	}
	b := r.b[r.pos]
	r.pos++
	return b
}

func (r *reader) skip(n uint64, what string) {
	if r.err != nil {
		return
	}
	if n > uint64(r.left()) {
		r.failf("%s of %d bytes overruns the %d bytes left", what, n, r.left())
		return
	}
	r.pos += int(n)
}

// u32 reads an unsigned LEB128 value of at most 32 bits.
func (r *reader) u32() uint32 {
	var v uint32
	for i := 0; i < 5; i++ {
		b := r.u8()
		if r.err != nil {
			return 0
		}
		if i == 4 && b&0xf0 != 0 {
			r.failf("integer too large")
			return 0
		}
		v |= uint32(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v
		}
	}
	r.failf("integer too large") // not reached: the fifth byte ends it
	return 0
}

// sleb skips a signed LEB128 value of at most maxLen bytes.
func (r *reader) sleb(maxLen int) {
	for i := 0; i < maxLen; i++ {
		if r.u8() < 0x80 || r.err != nil {
			return
		}
	}
	r.failf("integer too large")
}

// count reads a vector count and refuses it if its elements, of at least
// minSize bytes each, cannot fit in the bytes left, or if it is over max.
func (r *reader) count(what string, minSize, max uint64) uint32 {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if uint64(n) > max {
		r.failf("%d %s, more than the limit of %d", n, what, max)
		return 0
	}
	if uint64(n)*minSize > uint64(r.left()) {
		r.failf("%d %s cannot fit in the %d bytes left", n, what, r.left())
		return 0
	}
	return n
}

// name skips a length-prefixed name.
func (r *reader) name(what string) []byte {
	n := r.u32()
	start := r.pos
	r.skip(uint64(n), what)
	if r.err != nil {
		return nil
	}
	return r.b[start:r.pos]
}

// enter restricts reading to the next size bytes (a section, a subsection
// or a function body) and returns the previous end for leave.
func (r *reader) enter(size uint32, what string) (prevEnd int) {
	prevEnd = r.end
	if r.err != nil {
		return prevEnd
	}
	if uint64(size) > uint64(r.left()) {
		r.failf("%s of %d bytes overruns the %d bytes left", what, size, r.left())
		return prevEnd
	}
	r.end = r.pos + int(size)
	return prevEnd
}

// leave checks that the region entered was read exactly and restores end.
func (r *reader) leave(prevEnd int, what string) {
	if r.err == nil && r.pos != r.end {
		r.failf("%d bytes left over at the end of the %s", r.left(), what)
	}
	if r.err == nil {
		r.end = prevEnd
	}
}

// prechecker holds the module-wide totals.
type prechecker struct {
	r         reader
	functions uint64
	globals   uint64
	tables    uint64
	memories  uint64
	tags      uint64
	tableSize uint64 // initial sizes of all tables
	locals    uint64 // declared locals of all functions
	// otherImport is the kind of the first import that is neither a
	// function nor a memory ("table", "global", "tag"), if any.
	otherImport string
}

func (p *prechecker) module() {
	r := &p.r
	for r.err == nil && r.pos < r.end {
		r.where = ""
		id := r.u8()
		size := r.u32()
		if r.err != nil {
			return
		}
		if int(id) >= len(sectionNames) {
			r.failf("unknown section id %d", id)
			return
		}
		what := sectionNames[id] + " section"
		prevEnd := r.enter(size, what)
		r.where = what
		p.section(id)
		r.leave(prevEnd, what)
	}
}

func (p *prechecker) section(id byte) {
	r := &p.r
	switch id {
	case secCustom:
		if name := r.name("section name"); string(name) == "name" && r.err == nil {
			r.where = `"name" section`
			p.nameSection()
		} else {
			r.skip(uint64(r.left()), "custom section")
		}
	case secType:
		n := r.count("types", minTypeSize, maxTypes)
		for i := uint32(0); i < n && r.err == nil; i++ {
			if b := r.u8(); b == typeRecGroup {
				m := r.count("types in a rec group", minFuncTypeSize, maxTypes)
				for j := uint32(0); j < m && r.err == nil; j++ {
					p.funcType(r.u8())
				}
			} else {
				p.funcType(b)
			}
		}
	case secImport:
		n := r.count("imports", minImportSize, maxImports)
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.name("import module name")
			r.name("import name")
			switch kind := r.u8(); kind {
			case kindFunc:
				r.u32()
				p.addFunctions(1)
			case kindTable:
				p.tableType()
				p.noteImport("table")
			case kindMemory:
				p.addMemories(1)
				p.limits()
			case kindGlobal:
				p.valType()
				r.u8()
				p.addGlobals(1)
				p.noteImport("global")
			case kindTag:
				r.u8()
				r.u32()
				p.addTags(1)
				p.noteImport("tag")
			default:
				r.failf("invalid import kind 0x%x", kind)
			}
		}
	case secFunction:
		n := r.count("functions", minFuncSize, maxFunctions)
		p.addFunctions(uint64(n))
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.u32()
		}
	case secTable:
		n := r.count("tables", minTableSize, maxTables)
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.tableType()
		}
	case secMemory:
		n := r.count("memories", minMemorySize, maxMemories)
		p.addMemories(uint64(n))
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.limits()
		}
	case secGlobal:
		n := r.count("globals", minGlobalSize, maxGlobals)
		p.addGlobals(uint64(n))
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.valType()
			r.u8()
			p.constExpr()
		}
	case secExport:
		n := r.count("exports", minExportSize, maxExports)
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.name("export name")
			r.u8()
			r.u32()
		}
	case secStart, secDataCount:
		r.u32()
	case secElement:
		n := r.count("element segments", minElementSize, math.MaxUint32)
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.elementSegment()
		}
	case secCode:
		n := r.count("function bodies", minCodeSize, maxFunctions)
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.functionBody()
		}
	case secData:
		n := r.count("data segments", minDataSize, maxDataSegments)
		for i := uint32(0); i < n && r.err == nil; i++ {
			switch prefix := r.u32(); prefix {
			case 0:
				p.constExpr()
			case 1:
			case 2:
				r.u32()
				p.constExpr()
			default:
				r.failf("invalid data segment prefix %d", prefix)
			}
			r.skip(uint64(r.u32()), "data segment")
		}
	case secTag:
		n := r.count("tags", minTagSize, maxTags)
		p.addTags(uint64(n))
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.u8()
			r.u32()
		}
	}
}

// funcType reads a function type whose leading byte was b.
func (p *prechecker) funcType(b byte) {
	r := &p.r
	if b != typeFunc {
		r.failf("invalid function type 0x%x", b)
		return
	}
	n := r.count("parameters", minValTypeSize, maxParams)
	for i := uint32(0); i < n && r.err == nil; i++ {
		p.valType()
	}
	n = r.count("results", minValTypeSize, maxResults)
	for i := uint32(0); i < n && r.err == nil; i++ {
		p.valType()
	}
}

// valType reads a value type.
func (p *prechecker) valType() {
	r := &p.r
	switch b := r.u8(); b {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, refFunc, refExtern, 0x69: // i32 i64 f32 f64 v128 funcref externref exnref
	case refNullable, refNonNullable:
		r.sleb(5) // heap type
	default:
		if r.err == nil {
			r.failf("invalid value type 0x%x", b)
		}
	}
}

// refType reads the rest of a reference type whose leading byte was b, as
// wazero does for tables and elements.
func (p *prechecker) refType(b byte) {
	r := &p.r
	switch b {
	case refFunc, refExtern:
	case refNullable, refNonNullable:
		r.sleb(5)
	default:
		if r.err == nil {
			r.failf("invalid reference type 0x%x", b)
		}
	}
}

// limits reads limits and returns the minimum.
func (p *prechecker) limits() uint32 {
	r := &p.r
	flag := r.u8()
	if flag > 3 {
		r.failf("invalid limits flag 0x%x", flag)
		return 0
	}
	min := r.u32()
	if flag&1 != 0 {
		r.u32()
	}
	return min
}

func (p *prechecker) tableType() {
	r := &p.r
	p.tables++
	if p.tables > maxTables {
		r.failf("more than %d tables", maxTables)
		return
	}
	b := r.u8()
	withInit := b == tableWithInit
	if withInit {
		if reserved := r.u8(); reserved != 0 && r.err == nil {
			r.failf("invalid table prefix 0x40 0x%x", reserved)
			return
		}
		b = r.u8()
	}
	p.refType(b)
	min := p.limits()
	if r.err != nil {
		return
	}
	if min > maxTableSize {
		r.failf("table of %d elements, more than the limit of %d", min, maxTableSize)
		return
	}
	p.tableSize += uint64(min)
	if p.tableSize > maxModuleTableSize {
		r.failf("tables of %d elements in all, more than the limit of %d", p.tableSize, maxModuleTableSize)
		return
	}
	if withInit {
		p.constExpr()
	}
}

// constExpr reads a constant expression up to and including its end, with
// the instructions wazero's decoder knows.
func (p *prechecker) constExpr() {
	r := &p.r
	for r.err == nil {
		switch op := r.u8(); op {
		case opEndByte:
			return
		case opI32ConstByte:
			r.sleb(5)
		case opI64Const:
			r.sleb(10)
		case opF32Const:
			r.skip(4, "f32 constant")
		case opF64Const:
			r.skip(8, "f64 constant")
		case opGlobalGet, opRefFunc:
			r.u32()
		case opRefNull:
			switch b := r.u8(); b {
			case refFunc, refExtern, 0x69:
			default:
				if r.err == nil {
					r.pos--
					r.u32() // a type index
				}
			}
		case opVecPrefix:
			if b := r.u8(); b != opVecV128Const && r.err == nil {
				r.failf("invalid constant instruction 0xfd 0x%x", b)
			}
			r.skip(16, "v128 constant")
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // i32/i64 add, sub, mul (extended-const)
		default:
			if r.err == nil {
				r.failf("invalid constant instruction 0x%x", op)
			}
		}
	}
}

func (p *prechecker) elementSegment() {
	r := &p.r
	prefix := r.u32()
	if prefix > 7 {
		r.failf("invalid element segment prefix %d", prefix)
		return
	}
	// Bit 0: passive or declarative; bit 1: explicit table index (if
	// active) or declarative; bit 2: expressions rather than indexes.
	active := prefix&1 == 0
	if active && prefix&2 != 0 {
		r.u32() // table index
	}
	if active {
		p.constExpr() // offset
	}
	exprs := prefix&4 != 0
	if prefix != 0 && prefix != 4 { // 0 and 4 imply funcref
		if exprs {
			p.refType(r.u8())
		} else if kind := r.u8(); kind != 0 && r.err == nil {
			r.failf("invalid element kind 0x%x", kind)
		}
	}
	if exprs {
		n := r.count("element expressions", minElemExprSize, maxTableInit)
		for i := uint32(0); i < n && r.err == nil; i++ {
			p.constExpr()
		}
	} else {
		n := r.count("element function indexes", minElemIndexSize, maxTableInit)
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.u32()
		}
	}
}

func (p *prechecker) functionBody() {
	r := &p.r
	size := r.u32()
	if r.err == nil && size > maxFunctionBody {
		r.failf("function body of %d bytes, more than the limit of %d", size, maxFunctionBody)
		return
	}
	prevEnd := r.enter(size, "function body")
	n := r.count("local declarations", minLocalDeclSize, maxFunctionLocals)
	var locals uint64
	for i := uint32(0); i < n && r.err == nil; i++ {
		locals += uint64(r.u32())
		p.valType()
		if locals > maxFunctionLocals && r.err == nil {
			r.failf("%d locals in a function, more than the limit of %d", locals, maxFunctionLocals)
		}
	}
	p.locals += locals
	if p.locals > maxModuleLocals && r.err == nil {
		r.failf("%d locals in the module, more than the limit of %d", p.locals, maxModuleLocals)
	}
	if r.left() == 0 && r.err == nil {
		r.failf("function body has no instructions")
	}
	r.skip(uint64(r.left()), "function body") // instructions: wazero checks them
	r.leave(prevEnd, "function body")
}

// nameSection reads the subsections of a "name" custom section that wazero
// decodes (module, function and local names) and skips the others.
func (p *prechecker) nameSection() {
	r := &p.r
	for r.err == nil && r.left() > 0 {
		id := r.u8()
		size := r.u32()
		prevEnd := r.enter(size, "name subsection")
		switch id {
		case nameSubModule:
			r.name("module name")
		case nameSubFunctions:
			p.nameMap("function names")
		case nameSubLocals:
			n := r.count("functions with local names", minIndirectAssocs, math.MaxUint32)
			for i := uint32(0); i < n && r.err == nil; i++ {
				r.u32()
				p.nameMap("local names")
			}
		default:
			r.skip(uint64(r.left()), "name subsection")
		}
		r.leave(prevEnd, "name subsection")
	}
}

func (p *prechecker) nameMap(what string) {
	r := &p.r
	n := r.count(what, minNameAssocSize, math.MaxUint32)
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.u32()
		r.name("name")
	}
}

func (p *prechecker) noteImport(kind string) {
	if p.otherImport == "" {
		p.otherImport = kind
	}
}

func (p *prechecker) addFunctions(n uint64) {
	if p.functions += n; p.functions > maxFunctions {
		p.r.failf("more than %d functions", maxFunctions)
	}
}

func (p *prechecker) addGlobals(n uint64) {
	if p.globals += n; p.globals > maxGlobals {
		p.r.failf("more than %d globals", maxGlobals)
	}
}

func (p *prechecker) addMemories(n uint64) {
	if p.memories += n; p.memories > maxMemories {
		p.r.failf("more than %d memory", maxMemories)
	}
}

func (p *prechecker) addTags(n uint64) {
	if p.tags += n; p.tags > maxTags {
		p.r.failf("more than %d tags", maxTags)
	}
}
