package sandbox

import "fmt"

// Interruption checks.
//
// wazero's compiled code cannot be preempted: a guest spinning in a loop
// without calling the host never returns to Go. Without
// RuntimeConfig.WithCloseOnContextDone nothing stops it (closing its module
// from another goroutine does not), and worse, the whole process freezes at
// the next garbage collection, whose stop-the-world waits forever for the
// guest's thread. WithCloseOnContextDone fixes both by exiting to Go at every
// loop back-edge and function call, which costs several times on loop-heavy
// code.
//
// instrument does what wasmtime calls epoch interruption, in wasm: it
// rewrites the module so that every loop header runs
//
//	n += 1                        // n: a new i32 local of the function
//	if n & (fuelQuantum-1) == 0 {
//		memory.grow 0             // exits to Go: a preemption point
//		if stop { unreachable }
//	}
//
// and every function that contains a call runs the same check on entry with
// a new global counter instead of the local one, where stop is a mutable i32
// global appended to the module's and exported as stopExport. The common
// path is an add, an and and a branch on a register (plus a load and a
// store for calls); once every fuelQuantum checks the guest exits to Go
// (memory.grow by 0 pages always does, changes nothing and returns the
// current size), where the Go scheduler can preempt it, and reads stop,
// which the host sets from another goroutine to stop the guest with a trap.
//
// Work between two checks is bounded: a wasm program runs forever only
// through loops (every iteration passes its header) or through unbounded
// calls. Call depth is bounded by the stack, so unbounded calls mean
// unboundedly many invocations of functions that contain calls, each of
// which is counted on entry; a function without calls or loops runs at most
// its own length.
//
// The original code must not touch the new local and globals: any
// local.get/set/tee or global.get/set of an index past the function's or
// module's own is refused (it is invalid in the original module anyway), so
// a guest can neither hold its counters nor clear stop. Everything else is
// copied byte for byte; function indexes do not change, so exports, calls,
// tables and the name section stay valid. The decoder knows every
// instruction of the features the Engine enables (WebAssembly 2.0 without
// reference types) and refuses any other, as wazero would.
//
// A start section would run guest code inside wazero's InstantiateModule,
// before the host has the instance's stop global; instrument removes it
// and exports its function as startExport instead, which the sandbox calls
// before _start, as the first thing the instance runs.
const (
	stopExport  = "clemmys.stop"
	startExport = "clemmys.start"
	fuelQuantum = 1 << 12
)

// sectionOrder is the position of each known section id in a module
// (custom sections, 0, may appear anywhere).
var sectionOrder = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11,
	secCode: 12, secData: 13,
}

// instrumenter rewrites one module. It uses precheck's reader (and its
// value type reader), so it is as strict about structure.
type instrumenter struct {
	p   prechecker
	out []byte

	params    []uint32 // parameter count of each type
	funcTypes []uint32 // type of each defined function
	globals   uint32   // imported and defined, as seen so far
	memories  uint32
	fuel      uint32 // index of the call counter global
	stop      uint32 // index of the stop global
	added     bool   // the globals were added
	exported  bool   // stop was exported
	slow      []byte // the slow path of a check, once the indexes are known
	start     uint32 // the start function
	hasStart  bool   // the module has a start section
	command   bool   // the module exports a function "_start"
	reactor   bool   // the module exports a function "_initialize"
}

// instrument returns a copy of wasm with interruption checks (see above).
// wasm must have passed precheck. Errors wrap ErrInvalidModule.
func instrument(wasm []byte) ([]byte, error) {
	in := &instrumenter{p: prechecker{r: reader{b: wasm, pos: 8, end: len(wasm)}}}
	in.out = make([]byte, 0, len(wasm)+len(wasm)/4)
	in.out = append(in.out, wasm[:8]...)
	r := &in.p.r
	// The start section comes after the export section that exports its
	// function: find it first.
	for r.err == nil && r.pos < r.end {
		id := r.u8()
		size := r.u32()
		prevEnd := r.enter(size, "section")
		if id == secStart {
			in.start, in.hasStart = r.u32(), true
		}
		r.skip(uint64(r.left()), "section")
		r.leave(prevEnd, "section")
	}
	r.pos, r.end = 8, len(wasm)
	last := 0 // order of the last non-custom section
	for r.err == nil && r.pos < r.end {
		r.where = ""
		id := r.u8()
		size := r.u32()
		if r.err != nil {
			break
		}
		if int(id) >= len(sectionNames) {
			r.failf("unknown section id %d", id)
			break
		}
		what := sectionNames[id] + " section"
		if id != secCustom {
			if sectionOrder[id] <= last {
				r.failf("%s out of order or repeated", what)
				break
			}
			last = sectionOrder[id]
			if sectionOrder[id] > sectionOrder[secGlobal] && !in.added {
				in.addGlobals(nil, 0)
			}
			if sectionOrder[id] > sectionOrder[secExport] && !in.exported {
				in.addExport(nil, 0)
			}
		}
		prevEnd := r.enter(size, what)
		r.where = what
		in.section(id, r.b[r.pos:r.end])
		r.leave(prevEnd, what)
	}
	if r.err == nil && !in.added {
		in.addGlobals(nil, 0)
	}
	if r.err == nil && !in.exported {
		in.addExport(nil, 0)
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case !in.command && !in.reactor:
		// validate would say the same, after compiling.
		return nil, fmt.Errorf(`%w: not a WASI module: it exports neither "_start" (a command) nor "_initialize" (a reactor)`, ErrInvalidModule)
	case in.memories == 0:
		// memory.grow needs one; a command module must have it anyway.
		return nil, fmt.Errorf(`%w: a WASI module must export its memory as "memory"`, ErrInvalidModule)
	}
	return in.out, nil
}

// section copies or rewrites the section id whose payload is body; the
// reader is at the start of body and must end at its end.
func (in *instrumenter) section(id byte, body []byte) {
	r := &in.p.r
	switch id {
	case secImport:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.name("import module name")
			r.name("import name")
			switch kind := r.u8(); kind {
			case kindFunc:
				r.u32()
			case kindTable:
				in.p.tableType()
			case kindMemory:
				in.p.limits()
				in.memories++
			case kindGlobal:
				in.p.valType()
				r.u8()
				in.globals++
			case kindTag:
				r.u8()
				r.u32()
			default:
				r.failf("invalid import kind 0x%x", kind)
			}
		}
		in.copySection(id, body)
	case secType:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			if b := r.u8(); b == typeRecGroup {
				m := r.u32()
				for j := uint32(0); j < m && r.err == nil; j++ {
					in.funcType(r.u8())
				}
			} else {
				in.funcType(b)
			}
		}
		in.copySection(id, body)
	case secFunction:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			in.funcTypes = append(in.funcTypes, r.u32())
		}
		in.copySection(id, body)
	case secMemory:
		n := r.u32()
		in.memories += n
		r.skip(uint64(r.left()), "memory section")
		in.copySection(id, body)
	case secGlobal:
		n := r.u32()
		rest := r.b[r.pos:r.end]
		in.globals += n
		r.skip(uint64(r.left()), "global section")
		in.addGlobals(rest, n)
	case secExport:
		n := r.u32()
		start := r.pos
		for i := uint32(0); i < n && r.err == nil; i++ {
			name := string(r.name("export name"))
			if (name == stopExport || name == startExport) && r.err == nil {
				r.failf("export name %q is reserved", name)
			}
			if kind := r.u8(); kind == kindFunc {
				in.command = in.command || name == "_start"
				in.reactor = in.reactor || name == "_initialize"
			}
			r.u32()
		}
		in.addExport(r.b[start:r.pos], n)
	case secStart:
		r.u32() // dropped: exported as startExport
	case secCode:
		in.code()
	default:
		r.skip(uint64(r.left()), "section")
		in.copySection(id, body)
	}
}

// funcType reads a function type whose leading byte was b and records its
// parameter count.
func (in *instrumenter) funcType(b byte) {
	r := &in.p.r
	if b != typeFunc {
		r.failf("invalid function type 0x%x", b)
		return
	}
	params := r.u32()
	for i := uint32(0); i < params && r.err == nil; i++ {
		in.p.valType()
	}
	results := r.u32()
	for i := uint32(0); i < results && r.err == nil; i++ {
		in.p.valType()
	}
	in.params = append(in.params, params)
}

func (in *instrumenter) copySection(id byte, body []byte) {
	if in.p.r.err != nil {
		return
	}
	in.out = append(in.out, id)
	in.out = appendULEB(in.out, uint64(len(body)))
	in.out = append(in.out, body...)
}

// addGlobals writes the global section: the module's n globals (encoded in
// entries) and fuel and stop.
func (in *instrumenter) addGlobals(entries []byte, n uint32) {
	in.added = true
	in.fuel, in.stop = in.globals, in.globals+1
	if in.globals > maxGlobals {
		in.p.r.failf("more than %d globals", maxGlobals)
		return
	}
	var b []byte
	b = appendULEB(b, uint64(n)+2)
	b = append(b, entries...)
	for range 2 {
		b = append(b, 0x7f, 0x01, opI32ConstByte, 0x00, opEndByte) // mutable i32 = 0
	}
	in.copySection(secGlobal, b)
	in.slow = slowPath(in.stop)
}

// addExport writes the export section: the module's n exports (encoded in
// entries) and stop.
func (in *instrumenter) addExport(entries []byte, n uint32) {
	in.exported = true
	if !in.added { // cannot happen: the global section comes first
		in.p.r.failf("internal error: export before globals")
		return
	}
	var b []byte
	add := uint64(1)
	if in.hasStart {
		add++
	}
	b = appendULEB(b, uint64(n)+add)
	b = append(b, entries...)
	b = appendULEB(b, uint64(len(stopExport)))
	b = append(b, stopExport...)
	b = append(b, kindGlobal)
	b = appendULEB(b, uint64(in.stop))
	if in.hasStart {
		b = appendULEB(b, uint64(len(startExport)))
		b = append(b, startExport...)
		b = append(b, kindFunc)
		b = appendULEB(b, uint64(in.start))
	}
	in.copySection(secExport, b)
}

// slowPath is the body of a check's if: yield to Go, trap if stopped.
func slowPath(stop uint32) []byte {
	b := []byte{opI32ConstByte, 0x00, 0x40, 0x00, 0x1a, opGlobalGet} // i32.const 0; memory.grow 0; drop; global.get
	b = appendULEB(b, uint64(stop))
	return append(b, 0x04, 0x40, 0x00, opEndByte) // if; unreachable; end
}

// appendCheck appends a check of the counter get/set idx (local or global).
func (in *instrumenter) appendCheck(b []byte, get, set byte, idx uint32) []byte {
	b = append(b, get)
	b = appendULEB(b, uint64(idx))
	b = append(b, opI32ConstByte, 0x01, 0x6a) // i32.const 1; i32.add
	b = append(b, set)
	b = appendULEB(b, uint64(idx))
	if set == opGlobalSet {
		b = append(b, opGlobalGet)
		b = appendULEB(b, uint64(idx))
	}
	b = append(b, opI32ConstByte)
	b = appendSLEB(b, fuelQuantum-1)
	b = append(b, 0x71, 0x45, 0x04, 0x40) // i32.and; i32.eqz; if
	b = append(b, in.slow...)
	return append(b, opEndByte)
}

// Local and global instructions.
const (
	opLocalGet  = 0x20
	opLocalTee  = 0x22
	opGlobalSet = 0x24
)

// code rewrites the code section.
func (in *instrumenter) code() {
	r := &in.p.r
	if !in.added {
		r.failf("internal error: code before globals")
		return
	}
	n := r.u32()
	if r.err == nil && uint64(n) != uint64(len(in.funcTypes)) {
		r.failf("%d function bodies for %d functions", n, len(in.funcTypes))
		return
	}
	var sec []byte
	sec = appendULEB(sec, uint64(n))
	var insts, body []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		prevEnd := r.enter(size, "function body")
		t := in.funcTypes[i]
		if uint64(t) >= uint64(len(in.params)) {
			r.failf("function %d has type %d, which does not exist", i, t)
			break
		}
		// The new local, an i32, comes after the parameters and the
		// declared locals.
		locals := uint64(in.params[t])
		decls := r.u32()
		declStart := r.pos
		for j := uint32(0); j < decls && r.err == nil; j++ {
			locals += uint64(r.u32())
			in.p.valType()
		}
		if r.err == nil && locals >= 1<<32-1 {
			r.failf("too many locals")
		}
		counter := uint32(locals)
		body = appendULEB(body[:0], uint64(decls)+1)
		body = append(body, r.b[declStart:r.pos]...)
		body = append(body, 0x01, 0x7f) // one i32
		var calls bool
		insts, calls = in.instructions(insts[:0], counter)
		if calls {
			body = in.appendCheck(body, opGlobalGet, opGlobalSet, in.fuel)
		}
		body = append(body, insts...)
		r.leave(prevEnd, "function body")
		sec = appendULEB(sec, uint64(len(body)))
		sec = append(sec, body...)
	}
	in.copySection(secCode, sec)
}

// instructions appends the instructions of a function body to out, adding
// a check of the local counter after every loop instruction, and reports
// whether the body contains calls. counter is the first local index the
// original code may not use.
func (in *instrumenter) instructions(out []byte, counter uint32) ([]byte, bool) {
	r := &in.p.r
	calls := false
	for r.err == nil && r.pos < r.end {
		start := r.pos
		op := r.u8()
		in.immediates(op, counter)
		out = append(out, r.b[start:r.pos]...)
		switch op {
		case opLoopByte:
			out = in.appendCheck(out, opLocalGet, opLocalTee, counter)
		case opCallByte, opCallIndirect:
			calls = true
		}
	}
	return out, calls
}

// Opcodes with immediates the instrumenter reads.
const (
	opLoopByte       = 0x03
	opBrTable        = 0x0e
	opCallByte       = 0x10
	opCallIndirect   = 0x11
	opSelectTyped    = 0x1c
	opMiscPrefix     = 0xfc
	memargAlignLimit = 0x40 // an alignment with this bit set is followed by a memory index
)

// immediates skips the immediates of op and refuses unknown instructions.
func (in *instrumenter) immediates(op byte, counter uint32) {
	r := &in.p.r
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b:
		// unreachable nop else end return drop select
	case op >= 0x02 && op <= 0x04: // block loop if
		in.blockType()
	case op == 0x0c || op == 0x0d: // br br_if
		r.u32()
	case op == opBrTable:
		n := r.count("br_table labels", 1, maxFunctionBody)
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == opCallByte:
		r.u32()
	case op == opCallIndirect:
		r.u32() // type
		r.u32() // table
	case op == opSelectTyped:
		n := r.count("select types", 1, maxFunctionBody)
		for i := uint32(0); i < n && r.err == nil; i++ {
			in.p.valType()
		}
	case op >= opLocalGet && op <= opLocalTee: // local.get local.set local.tee
		if idx := r.u32(); idx >= counter && r.err == nil {
			r.failf("local index %d out of range", idx)
		}
	case op == opGlobalGet || op == opGlobalSet:
		if idx := r.u32(); idx >= in.fuel && r.err == nil {
			r.failf("global index %d out of range", idx)
		}
	case op == 0x25 || op == 0x26: // table.get table.set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		in.memarg()
	case op == 0x3f || op == 0x40: // memory.size memory.grow
		r.u32()
	case op == opI32ConstByte:
		r.sleb(5)
	case op == opI64Const:
		r.sleb(10)
	case op == opF32Const:
		r.skip(4, "f32 constant")
	case op == opF64Const:
		r.skip(8, "f64 constant")
	case op >= 0x45 && op <= 0xc4: // numeric, sign extension
	case op == opRefNull:
		in.p.refType(r.u8())
	case op == 0xd1: // ref.is_null
	case op == opRefFunc:
		r.u32()
	case op == opMiscPrefix:
		in.misc(r.u32())
	case op == opVecPrefix:
		in.vector(r.u32())
	default:
		if r.err == nil {
			r.failf("unsupported instruction 0x%x", op)
		}
	}
}

// blockType skips a block type: empty, a value type or a type index.
func (in *instrumenter) blockType() {
	r := &in.p.r
	if r.pos >= r.end {
		r.failf("unexpected end")
		return
	}
	switch r.b[r.pos] {
	case refNullable, refNonNullable:
		r.pos++
		r.sleb(5)
	default: // 0x40, a value type or a type index: all s33
		r.sleb(5)
	}
}

func (in *instrumenter) memarg() {
	r := &in.p.r
	if align := r.u32(); align&memargAlignLimit != 0 {
		r.u32() // memory index (multi-memory)
	}
	r.u32() // offset
}

// misc skips the immediates of the 0xfc instruction sub.
func (in *instrumenter) misc(sub uint32) {
	r := &in.p.r
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init
		r.u32()
		r.u32()
	case sub == 9: // data.drop
		r.u32()
	case sub == 10: // memory.copy
		r.u32()
		r.u32()
	case sub == 11: // memory.fill
		r.u32()
	case sub == 12 || sub == 14: // table.init table.copy
		r.u32()
		r.u32()
	case sub == 13 || (sub >= 15 && sub <= 17): // elem.drop table.grow table.size table.fill
		r.u32()
	default:
		if r.err == nil {
			r.failf("unsupported instruction 0xfc %d", sub)
		}
	}
}

// vector skips the immediates of the SIMD instruction sub.
func (in *instrumenter) vector(sub uint32) {
	r := &in.p.r
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads and stores
		in.memarg()
	case sub == 12 || sub == 13: // v128.const i8x16.shuffle
		r.skip(16, "v128 immediate")
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.u8()
	case sub >= 84 && sub <= 91: // load and store lane
		in.memarg()
		r.u8()
	case sub <= 255: // the rest take no immediates
	default:
		if r.err == nil {
			r.failf("unsupported instruction 0xfd %d", sub)
		}
	}
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
