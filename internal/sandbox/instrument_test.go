package sandbox

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// Instruction encodings the tests below use.
const (
	opLocalGetT   = 0x20
	opGlobalGetT  = 0x23
	opI32Sub      = 0x6b
	opBlock       = 0x02
	opBrTableT    = 0x0e
	opF32ConstT   = 0x43
	opMiscPrefixT = 0xfc
	opVecPrefixT  = 0xfd
)

// The instrumented kitchen sink (every section and construct precheck
// walks, a start section included) is still valid, and the start function
// is exported.
func TestInstrumentKeepsModulesValid(t *testing.T) {
	out, err := instrument(kitchenSink)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx) // WebAssembly 2.0, reference types included
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("instrumented module does not compile: %v", err)
	}
	if _, ok := cm.ExportedFunctions()[startExport]; !ok {
		t.Error("start function not exported")
	}
}

// A module using block types by index, br_table, SIMD and bulk memory
// instructions with every kind of immediate runs after instrumentation.
func TestInstrumentInstructions(t *testing.T) {
	memarg := []byte{0x00, 0x00} // align 0, offset 0
	body := concat(
		// A loop whose block type is a type index (0: [] -> []).
		[]byte{opLoop, 0x00},
		[]byte{opBlock, blockEmpty}, i32Const(1), []byte{opBrTableT, 0x02, 0x00, 0x00, 0x00, opEnd},
		[]byte{opEnd},
		// SIMD: load, const, shuffle, extract lane, store lane, load zero.
		i32Const(0), []byte{opVecPrefixT, 0x00}, memarg,
		[]byte{opVecPrefixT, 0x0c}, make([]byte, 16),
		[]byte{opVecPrefixT, 0x0d}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		[]byte{opVecPrefixT, 0x15, 0x03, opDrop},
		i32Const(0), []byte{opVecPrefixT, 0x0c}, make([]byte, 16), []byte{opVecPrefixT, 0x5b}, memarg, []byte{0x01},
		i32Const(0), []byte{opVecPrefixT, 0x5c}, memarg, []byte{opDrop},
		// Bulk memory and a saturating truncation.
		i32Const(0), i32Const(0), i32Const(8), []byte{opMiscPrefixT, 0x0b, 0x00},
		i32Const(0), i32Const(8), i32Const(8), []byte{opMiscPrefixT, 0x0a, 0x00, 0x00},
		[]byte{opF32ConstT, 0, 0, 0x80, 0x3f, opMiscPrefixT, 0x00, opDrop},
	)
	m := rawModule(t, command(body).bytes())
	if _, err := m.Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
}

// callTree is a module whose _start computes a call tree of 2^depth calls
// without a single loop: only the checks at function entries stop it.
func callTree(depth int32) []byte {
	m := command(concat(i32Const(depth), []byte{opCall, 0x01}))
	m.types = append(m.types, funcType{params: []valType{i32}})
	m.funcs = append(m.funcs, wasmFunc{typ: 1, body: concat(
		[]byte{opLocalGetT, 0x00, opIf, blockEmpty},
		[]byte{opLocalGetT, 0x00}, i32Const(1), []byte{opI32Sub, opCall, 0x01},
		[]byte{opLocalGetT, 0x00}, i32Const(1), []byte{opI32Sub, opCall, 0x01},
		[]byte{opEnd},
	)})
	return m.bytes()
}

func TestInstrumentStopsGuests(t *testing.T) {
	// The call tree really runs: a small one completes.
	if _, err := rawModule(t, callTree(10)).Run(context.Background(), nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	startLoop := func() []byte {
		m := command(nil)
		m.funcs = append(m.funcs, wasmFunc{typ: 0, body: []byte{opLoop, blockEmpty, opBr, 0x00, opEnd}})
		start := uint32(1)
		m.start = &start
		return m.bytes()
	}()
	for _, tt := range []struct {
		name string
		wasm []byte
	}{
		{"loop", tinyLoop},
		{"call tree without loops", callTree(60)},
		{"start section loops", startLoop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := rawModule(t, tt.wasm)
			t0 := time.Now()
			_, err := m.Run(context.Background(), nil, Limits{Timeout: 200 * time.Millisecond})
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("error %v, want ErrTimeout", err)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("stopped after %v", d)
			}
		})
	}
}

// A guest spinning without host calls does not stop the Go runtime's
// garbage collector (whose stop-the-world would otherwise wait for it
// forever, freezing the process), and goroutines keep running.
func TestSpinningGuestDoesNotFreezeTheProcess(t *testing.T) {
	m := goModule(t, pkgLoop)
	done := make(chan error, 1)
	go func() {
		_, err := m.Run(context.Background(), nil, Limits{Timeout: 3 * time.Second})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the guest spins
	t0 := time.Now()
	runtime.GC()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("GC took %v while a guest spun", d)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
}

// The original code may not touch the instrumentation's local and globals,
// nor export the names it uses, nor use instructions the Engine does not
// enable.
func TestInstrumentRefuses(t *testing.T) {
	withExport := func(name string) []byte {
		m := command(nil)
		m.exports = append(m.exports, wasmExport{name, 0, 0})
		return m.bytes()
	}
	for _, tt := range []struct {
		name, want string
		wasm       []byte
	}{
		{"global past the module's", "global index 0 out of range", command([]byte{opGlobalGetT, 0x00, opDrop}).bytes()},
		{"local past the function's", "local index 0 out of range", command([]byte{opLocalGetT, 0x00, opDrop}).bytes()},
		{"export named like the stop global", "reserved", withExport(stopExport)},
		{"export named like the start function", "reserved", withExport(startExport)},
		{"exception handling", "unsupported instruction 0x6", command([]byte{0x06, blockEmpty, opEnd}).bytes()},
		{"tail call", "unsupported instruction 0x12", command([]byte{0x12, 0x00}).bytes()},
		{"atomics", "unsupported instruction 0xfe", command([]byte{0xfe, 0x03, 0x00}).bytes()},
		{"unknown misc instruction", "unsupported instruction 0xfc 99", command([]byte{opMiscPrefixT, 99}).bytes()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sharedEngine().Compile(context.Background(), tt.wasm)
			if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInvalidModule mentioning %q", err, tt.want)
			}
		})
	}
}
