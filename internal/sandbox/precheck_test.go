package sandbox

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/clemmys/clemmys/internal/wasmbuild"
)

const wasmHeader = "\x00asm\x01\x00\x00\x00"

// mod is a module made of the header and the given sections.
func mod(sections ...[]byte) []byte {
	return concat(append([][]byte{[]byte(wasmHeader)}, sections...)...)
}

// big is a vector count no module can hold.
var big = uleb(0xffffffff)

// constI32 is the constant expression i32.const v.
func constI32(v int32) []byte { return append(i32Const(v), opEnd) }

// kitchenSink is a valid module that uses every construct precheck walks
// that wazero accepts with api.CoreFeaturesV2.
var kitchenSink = mod(
	section(secType, vec(
		[]byte{0x60, 0, 0}, // () -> ()
		[]byte{0x60, 1, i32, 1, i32},
		[]byte{0x60, 7, i32, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 2, i32, i32},
	)),
	section(secImport, vec(
		concat(wname("env"), wname("f"), []byte{kindFunc}, uleb(0)),
		concat(wname("env"), wname("g"), []byte{kindGlobal, i32, 0}),
		concat(wname("env"), wname("t"), []byte{kindTable, 0x70}, limits(0, 0)),
	)),
	section(secFunction, vec(uleb(0), uleb(1), uleb(2))),
	section(secTable, vec(
		append([]byte{0x70}, limits(4, 10)...),
		append([]byte{0x6f}, limits(0, 0)...),
	)),
	section(secMemory, vec(limits(1, 2))),
	section(secGlobal, vec(
		concat([]byte{i32, 0}, constI32(42)),
		concat([]byte{0x7e, 1, opI64Const}, sleb(-1), []byte{opEnd}),
		concat([]byte{0x7d, 0, opF32Const, 0, 0, 0x80, 0x3f, opEnd}),
		concat([]byte{0x7c, 0, opF64Const}, make([]byte, 8), []byte{opEnd}),
		concat([]byte{0x7b, 0, opVecPrefix, opVecV128Const}, make([]byte, 16), []byte{opEnd}),
		[]byte{0x70, 0, opRefNull, 0x70, opEnd},
		[]byte{0x70, 0, opRefFunc, 1, opEnd},
		[]byte{i32, 0, opGlobalGet, 0, opEnd},
	)),
	section(secExport, vec(
		concat(wname("_start"), []byte{kindFunc}, uleb(1)),
		concat(wname("memory"), []byte{kindMemory}, uleb(0)),
		concat(wname("t"), []byte{kindTable}, uleb(1)),
	)),
	section(secStart, uleb(1)),
	section(secElement, vec(
		concat(uleb(0), constI32(0), vec(uleb(1))),
		concat(uleb(1), []byte{0}, vec(uleb(1), uleb(2))),
		concat(uleb(2), uleb(1), constI32(1), []byte{0}, vec(uleb(3))),
		concat(uleb(3), []byte{0}, vec(uleb(2))),
		concat(uleb(4), constI32(2), vec([]byte{opRefFunc, 1, opEnd}, []byte{opRefNull, 0x70, opEnd})),
		concat(uleb(5), []byte{0x70}, vec([]byte{opRefFunc, 3, opEnd})),
		concat(uleb(6), uleb(2), constI32(0), []byte{0x6f}, vec()),
		concat(uleb(7), []byte{0x70}, vec([]byte{opRefFunc, 2, opEnd})),
	)),
	section(secDataCount, uleb(3)),
	section(secCode, vec(
		wbody(vec([]byte{2, i32}, []byte{1, 0x7e}), opEnd),
		wbody(vec(), 0x20, 0, opEnd), // local.get 0
		wbody(vec([]byte{1, 0x7b}), opI32Const, 0, opI32Const, 0, opEnd),
	)),
	section(secData, vec(
		concat(uleb(0), constI32(0), wname("hi")),
		concat(uleb(1), wname("x")),
		concat(uleb(2), uleb(0), constI32(8), wname("yz")),
	)),
	section(secCustom, concat(wname("name"),
		[]byte{nameSubModule}, wname(string(wname("m"))),
		[]byte{nameSubFunctions}, wname(string(vec(concat(uleb(1), wname("start")), concat(uleb(2), wname("id"))))),
		[]byte{nameSubLocals}, wname(string(vec(concat(uleb(1), vec(concat(uleb(0), wname("a")), concat(uleb(1), wname("b"))))))),
		[]byte{7}, wname("\x00\x00"), // an extended-name subsection, skipped
	)),
	section(secCustom, concat(wname("producers"), []byte("anything"))),
)

// wbody is a function body: local declarations (a vector) then code.
func wbody(locals []byte, code ...byte) []byte {
	b := append(bytes.Clone(locals), code...)
	return append(uleb(uint64(len(b))), b...)
}

// manyLocals is a module whose functions each declare perFunc locals.
func manyLocals(funcs int, perFunc uint64) []byte {
	fs, bodies := make([][]byte, funcs), make([][]byte, funcs)
	for i := range fs {
		fs[i] = uleb(0)
		bodies[i] = wbody(vec(append(uleb(perFunc), i32)), opEnd)
	}
	return mod(section(secType, vec([]byte{0x60, 0, 0})), section(secFunction, vec(fs...)), section(secCode, vec(bodies...)))
}

func TestPrecheckAccepts(t *testing.T) {
	hello := wasmbuild.MustBuild(t, pkgHello)
	tests := []struct {
		name string
		wasm []byte
		// valid: wazero must compile it too (the module is really valid,
		// so precheck is not stricter than the format).
		valid bool
	}{
		{"header only", []byte(wasmHeader), true},
		{"tiny nop", tinyNop, true},
		{"tiny write", tinyWrite, true},
		{"kitchen sink", kitchenSink, true},
		{"Go hello", hello, true},
		{"locals at the function limit", manyLocals(1, maxFunctionLocals), true},
		{"locals at the module limit", manyLocals(maxModuleLocals/maxFunctionLocals, maxFunctionLocals), true},
		{"table at the size limit", mod(section(secTable, vec(append([]byte{0x70}, limits(maxTableSize, 0)...)))), true},
		{"empty vectors", mod(
			section(secType, vec()), section(secImport, vec()), section(secFunction, vec()),
			section(secTable, vec()), section(secMemory, vec()), section(secGlobal, vec()),
			section(secExport, vec()), section(secElement, vec()), section(secCode, vec()),
			section(secData, vec()),
		), true},
		// Structurally sound; wazero refuses them later for other reasons.
		{"tag section", mod(section(secTag, vec([]byte{0, 0}))), false},
		{"rec group", mod(section(secType, vec([]byte{typeRecGroup, 2, 0x60, 0, 0, 0x60, 1, refNullable, 0, 0}))), false},
		{"table with init expression", mod(section(secTable, vec(concat([]byte{tableWithInit, 0, refNonNullable, 0x70}, limits(1, 0), []byte{opRefNull, 0x70, opEnd})))), false},
		{"extended const", mod(section(secGlobal, vec(concat([]byte{i32, 0}, i32Const(1), i32Const(2), []byte{0x6a, opEnd})))), false},
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := precheck(tt.wasm); err != nil {
				t.Fatalf("precheck: %v", err)
			}
			if !tt.valid {
				return
			}
			m, err := rt.CompileModule(ctx, tt.wasm)
			if err != nil {
				t.Fatalf("test module is not valid: wazero: %v", err)
			}
			_ = m.Close(ctx)
		})
	}
}

func TestPrecheckRefuses(t *testing.T) {
	funcType0 := section(secType, vec([]byte{0x60, 0, 0}))
	oneFunc := section(secFunction, vec(uleb(0)))
	tests := []struct {
		name    string
		wasm    []byte
		wantMsg string
	}{
		{"empty", nil, "magic"},
		{"garbage", []byte("garbage garbage"), "magic"},
		{"magic only", []byte("\x00asm"), "version"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), "version"},
		{"truncated section header", mod([]byte{secType}), "unexpected end"},
		{"section overruns the module", mod([]byte{secType, 10, 0}), "type section of 10 bytes overruns the 1 bytes left"},
		{"section size too long an integer", mod([]byte{secType, 0x80, 0x80, 0x80, 0x80, 0x10}), "integer too large"},
		{"unknown section", mod(section(14, nil)), "unknown section id 14"},
		{"bytes left in a section", mod(section(secType, []byte{0, 0})), "1 bytes left over at the end of the type section"},

		// The fuzz corpus crashers: huge import counts.
		{"corpus 09b83fc51dcd5194", []byte("\x00asm\x01\x00\x00\x00\x02\x1e\x83ſ\n0"), "import section"},
		{"corpus 640e8b6a53eac2cd", []byte("\x00asm\x01\x00\x00\x00\x020\xff\xff\xff\xff\x01000"), "import section"},

		// Every vector wazero sizes an allocation from.
		{"types", mod(section(secType, big)), "types, more than the limit"},
		{"types that do not fit", mod(section(secType, concat(uleb(1000), make([]byte, 100)))), "1000 types cannot fit in the 100 bytes left"},
		{"rec group", mod(section(secType, concat(vec([]byte{typeRecGroup}), uleb(1000)))), "types in a rec group cannot fit"},
		{"params", mod(section(secType, concat(uleb(1), []byte{0x60}, uleb(999), make([]byte, 10)))), "999 parameters cannot fit"},
		{"params over the limit", mod(section(secType, concat(uleb(1), []byte{0x60}, uleb(1001)))), "1001 parameters, more than the limit"},
		{"results", mod(section(secType, concat(uleb(1), []byte{0x60, 0}, uleb(999), make([]byte, 10)))), "999 results cannot fit"},
		{"imports", mod(section(secImport, big)), "imports, more than the limit"},
		{"imports that do not fit", mod(section(secImport, concat(uleb(1000), make([]byte, 100)))), "1000 imports cannot fit"},
		{"import module name", mod(section(secImport, concat(uleb(1), big, make([]byte, 10)))), "import module name of 4294967295 bytes overruns"},
		{"import name", mod(section(secImport, concat(uleb(1), wname("m"), uleb(1000), make([]byte, 10)))), "import name of 1000 bytes overruns"},
		{"functions", mod(section(secFunction, big)), "functions, more than the limit"},
		{"functions that do not fit", mod(section(secFunction, concat(uleb(1000), make([]byte, 999)))), "1000 functions cannot fit"},
		{"tables", mod(section(secTable, big)), "tables, more than the limit"},
		{"tables that do not fit", mod(section(secTable, concat(uleb(1000), make([]byte, 100)))), "1000 tables cannot fit"},
		{"memories", mod(section(secMemory, big)), "memories, more than the limit"},
		{"two memories", mod(section(secMemory, vec(limits(1, 0), limits(1, 0)))), "more than the limit of 1"},
		{"globals", mod(section(secGlobal, big)), "globals, more than the limit"},
		{"globals that do not fit", mod(section(secGlobal, concat(uleb(1000), make([]byte, 100)))), "1000 globals cannot fit"},
		{"exports", mod(section(secExport, big)), "exports, more than the limit"},
		{"exports that do not fit", mod(section(secExport, concat(uleb(1000), make([]byte, 100)))), "1000 exports cannot fit"},
		{"export name", mod(section(secExport, concat(uleb(1), big, make([]byte, 10)))), "export name of 4294967295 bytes overruns"},
		{"element segments", mod(section(secElement, big)), "element segments cannot fit"},
		{"element indexes", mod(section(secElement, concat(uleb(1), uleb(0), constI32(0), big))), "element function indexes, more than the limit"},
		{"element indexes that do not fit", mod(section(secElement, concat(uleb(1), uleb(1), []byte{0}, uleb(1000), make([]byte, 10)))), "1000 element function indexes cannot fit"},
		{"element expressions", mod(section(secElement, concat(uleb(1), uleb(5), []byte{0x70}, uleb(1000), make([]byte, 10)))), "1000 element expressions cannot fit"},
		{"function bodies", mod(section(secCode, big)), "function bodies, more than the limit"},
		{"function bodies that do not fit", mod(section(secCode, concat(uleb(1000), make([]byte, 100)))), "1000 function bodies cannot fit"},
		{"function body size", mod(section(secCode, concat(uleb(1), uleb(100), []byte{0, opEnd}))), "function body of 100 bytes overruns the 2 bytes left"},
		{"function body over the limit", mod(section(secCode, concat(uleb(1), uleb(maxFunctionBody+1)))), "function body of 7654322 bytes, more than the limit"},
		{"local declarations", mod(section(secCode, vec(wbody(concat(uleb(1000), make([]byte, 10)))))), "1000 local declarations cannot fit"},
		{"locals in a declaration", mod(funcType0, oneFunc, section(secCode, vec(wbody(vec(append(big, i32)), opEnd)))), "4294967295 locals in a function, more than the limit of 50000"},
		{"locals in a function", manyLocals(1, maxFunctionLocals+1), "50001 locals in a function"},
		{"locals in the module", manyLocals(maxModuleLocals/maxFunctionLocals+1, maxFunctionLocals), "locals in the module, more than the limit"},
		{"local type", mod(section(secCode, vec(wbody(vec([]byte{1, 0x40}), opEnd)))), "invalid value type 0x40"},
		{"function without code", mod(section(secCode, concat(uleb(1), wbody(vec()), []byte{0}))), "no instructions"},
		{"data segments", mod(section(secData, big)), "data segments, more than the limit"},
		{"data segments that do not fit", mod(section(secData, concat(uleb(1000), make([]byte, 100)))), "1000 data segments cannot fit"},
		{"data segment bytes", mod(section(secData, concat(uleb(1), uleb(1), big))), "data segment of 4294967295 bytes overruns"},
		{"data segment prefix", mod(section(secData, concat(uleb(1), uleb(3), uleb(0)))), "invalid data segment prefix 3"},
		{"tags", mod(section(secTag, big)), "tags, more than the limit"},
		{"custom section name", mod(section(secCustom, big)), "section name of 4294967295 bytes overruns"},
		{"module name", mod(section(secCustom, concat(wname("name"), []byte{nameSubModule}, uleb(6), big, []byte{0}))), "module name of 4294967295 bytes overruns"},
		{"function names", mod(section(secCustom, concat(wname("name"), []byte{nameSubFunctions}, uleb(5), big))), "function names cannot fit"},
		{"function name", mod(section(secCustom, concat(wname("name"), []byte{nameSubFunctions}, uleb(7), uleb(1), uleb(0), big))), "name of 4294967295 bytes overruns"},
		{"local names functions", mod(section(secCustom, concat(wname("name"), []byte{nameSubLocals}, uleb(5), big))), "functions with local names cannot fit"},
		{"local names", mod(section(secCustom, concat(wname("name"), []byte{nameSubLocals}, uleb(7), uleb(1), uleb(0), big))), "local names cannot fit"},
		{"name subsection overruns", mod(section(secCustom, concat(wname("name"), []byte{9}, uleb(100), []byte{0}))), "name subsection of 100 bytes overruns"},
		{"name subsection left over", mod(section(secCustom, concat(wname("name"), []byte{nameSubModule}, uleb(3), wname("m"), []byte{0}))), "left over at the end of the name subsection"},

		// Tables wazero allocates in full when it instantiates.
		{"table size", mod(section(secTable, vec(append([]byte{0x70}, limits(maxTableSize+1, 0)...)))), "table of 10000001 elements"},
		{"imported table size", mod(section(secImport, vec(concat(wname("m"), wname("t"), []byte{kindTable, 0x70}, limits(1<<27, 0))))), "table of 134217728 elements"},
		{"tables size", mod(section(secTable, vec(
			append([]byte{0x70}, limits(maxTableSize, 0)...),
			append([]byte{0x70}, limits(1, 0)...),
		))), "tables of 10000001 elements in all"},
		{"table type", mod(section(secTable, vec(append([]byte{i32}, limits(1, 0)...)))), "invalid reference type 0x7f"},
		{"limits flag", mod(section(secMemory, vec([]byte{4, 1}))), "invalid limits flag 0x4"},

		// Constant expressions are walked exactly.
		{"const expr opcode", mod(section(secGlobal, vec([]byte{i32, 0, 0x20, 0, opEnd}))), "invalid constant instruction 0x20"},
		{"const expr unterminated", mod(section(secGlobal, vec(concat([]byte{i32, 0}, i32Const(1))))), "unexpected end"},
		{"const expr i32 too long", mod(section(secGlobal, vec([]byte{i32, 0, opI32Const, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, opEnd}))), "integer too large"},
		{"const expr v128", mod(section(secGlobal, vec([]byte{0x7b, 0, opVecPrefix, 0x0d, opEnd}))), "invalid constant instruction 0xfd 0xd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := precheck(tt.wasm)
			t.Logf("err: %v", err)
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("precheck error = %v, want ErrInvalidModule", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

// The precheck runs before wazero: Compile reports its refusal.
func TestCompilePrechecks(t *testing.T) {
	wasm := mod(section(secImport, big))
	_, err := sharedEngine().Compile(context.Background(), wasm)
	if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "imports, more than the limit") {
		t.Fatalf("Compile error = %v, want the precheck's", err)
	}
}

// FuzzPrecheck feeds arbitrary bytes to precheck: it must never panic, must
// refuse with ErrInvalidModule, and must read exactly to the end of what it
// accepts (so a truncated accepted module is refused).
//
//	go test -run '^$' -fuzz FuzzPrecheck -fuzztime 20s ./internal/sandbox
func FuzzPrecheck(f *testing.F) {
	for _, seed := range [][]byte{
		nil, []byte(wasmHeader), tinyNop, tinyWrite, tinyLoop, tinyExit(3), kitchenSink,
		manyLocals(2, 3),
		mod(section(secImport, big)),
		[]byte("\x00asm\x01\x00\x00\x00\x02\x1e\x83ſ\n0"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		err := precheck(wasm)
		if err != nil {
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("precheck error %v does not wrap ErrInvalidModule", err)
			}
			if again := precheck(wasm); again == nil || again.Error() != err.Error() {
				t.Fatalf("precheck is not deterministic: %v, then %v", err, again)
			}
			return
		}
		if err := precheck(wasm[:len(wasm)-1]); err == nil {
			t.Fatalf("precheck accepts %x and its truncation", wasm)
		}
	})
}
