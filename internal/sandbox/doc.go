// Package sandbox runs WebAssembly functions (WASI commands and reactors) with
// wazero's compiler engine, under memory, time, output and log limits.
//
// It is part of the enclave runtime, the trusted computing base, so it
// imports only the standard library and wazero (a test enforces this).
//
// # Model
//
// An Engine owns one wazero runtime and its in-memory compilation cache.
// Compile validates, instruments (see Time below) and compiles each distinct
// module (by SHA-256) once, even under concurrent calls, and keeps the
// native code in memory, never on disk. Run runs one activation in an
// instance of the module; concurrent activations never share an instance.
//
// The guest gets no file system, no network, args [name], no environment
// (except LoopEnv=1, below), the real clock, and crypto/rand as its random
// source; a bound module (below) gets its Data too.
//
// # Calling conventions
//
// One-shot: params JSON on stdin, result JSON on stdout, logs on stderr;
// the activation is the guest's whole life, in a fresh instance. Every WASI
// command speaks it.
//
// Loop, in the spirit of OpenWhisk's actionloop: a module that exports a
// function "clemmys.loop.v1" of type [] -> [] (package sdk makes every Go
// function export it) is started with LoopEnv=1 in its environment and
// serves activations one after the other: the host writes the params as
// one line (valid JSON compacted, so a newline never splits it), the guest
// writes the result as one line to stdout, and the activation ends when the
// guest next reads stdin with nothing pending, which the host sees
// synchronously, in the fd_read call, because the guest's stdin, stdout and
// stderr are host functions, not pipes. So whatever the guest wrote between
// the params and that read is exactly this activation's output and logs: no
// in-band end marker is needed, and none can be forged by a function
// printing it. (OpenWhisk needs its "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
// marker because its container's streams are asynchronous pipes.) The sdk
// also points os.Stdout at stderr, so stray prints become logs. What a
// guest writes outside an activation (while it starts, or if it writes
// after asking for its next input) goes to its next activation.
//
// Loop, version 2: a module that exports "clemmys.loop.v2" instead gets
// each activation as one line in the form of OpenWhisk's action loop,
// {"value": params, "activation_id": …, "namespace": …, "action_name": …,
// "deadline": "<unix ms>"} (RunActivation supplies the names; the deadline
// is when the activation's time limit ends), so that it can give a function
// OpenWhisk's __OW_* environment values; params that are not valid JSON
// are sent as a JSON string. Everything else is as in version 1. The
// JavaScript engine (internal/jsengine) speaks it.
//
// Reactor: a module without "_start" that exports "clemmys.reactor.v1"
// ([] -> []; package sdk's Handle, in a -buildmode=c-shared build) and
// usually "_initialize". Its instance has no goroutine of its own: the
// activation's goroutine runs "_initialize" once, in a new instance, then
// calls "clemmys.reactor.v1" with the params on stdin followed by end of
// file; the call's return ends the activation, and what the guest wrote to
// stdout and stderr during it is the result and the logs (reactor.go). No
// hand-off between goroutines and no line framing: for a small Go function
// about half the host time of the loop. A reactor without the entry, or a
// module with both "_start" and the entry, is refused at Compile.
//
// The convention is decided by the module's code: an export is part of the
// code, bound to its digest, so what runs is what the owner built, and a
// WASI command that exports nothing keeps the one-shot convention. An
// export was chosen over an environment or argument probe (which needs a
// first run to find out) and over an action annotation (which the
// untrusted platform carries and which could disagree with the code).
//
// # Data: one module, many functions
//
// Module.Bind makes a Module that runs the same compiled code with Data:
// files, read-only under DataDir (/action, a WASI preopen of an in-memory
// directory), and environment variables. A JavaScript function is the
// engine module, compiled once per Engine, bound to the function's code
// and entry point. A bound Module has its own pool of warm instances:
// instances are pooled per (compiled module, binding), so two functions on
// one engine never share an instance, and closing a bound Module closes
// its idle instances. Data is bounded (MaxDataFiles, MaxDataBytes,
// MaxDataEnv).
//
// # Warm and fresh instances
//
// A loop- or reactor-convention activation takes an idle instance of the
// module if one exists (most recently used first), else starts one. When
// the activation succeeded or failed cleanly (an application error, bad
// params: the result came and the guest asks for more), the instance goes
// back to the pool; an instance that timed out, was cancelled, exceeded
// its memory or output, trapped, exited or wrote anything but one line is
// discarded.
// Between the activations of a warm instance the function's global state
// persists, as in a warm OpenWhisk container. Idle instances are bounded
// in number per module and per Engine, and in memory per Engine (a wasm
// memory never shrinks; an idle Go instance of a small function holds about
// 3 MiB), the least recently used evicted first; they are closed after
// Config.IdleTimeout and when the module's last Module is closed, and an
// instance serves only activations with the memory limit it was made for.
//
// A function that needs stricter isolation exports "clemmys.fresh.v1"
// (package sdk/fresh): each of its activations runs in an instance that
// served no other. The request is made by the code for the same reason as
// the convention: an action annotation reaches the runtime through the
// controller and invoker, which are untrusted, and isolation is a security
// property that they must not be able to downgrade; the code digest is
// authenticated end to end (the KMS-signed function record, the envelope's
// chain, the runtime's check of the decrypted code). To keep such functions
// fast, the Engine keeps Config.Prestart instances started ahead (the Go
// runtime inside a guest takes milliseconds to start), each used once.
//
// # Limits and errors
//
// Every limit breach is a typed error (see the Err variables) whose message
// is safe to show to the function's owner; it never hangs or crashes the host:
//
//   - Time: wazero's compiled code cannot be preempted, and without
//     RuntimeConfig.WithCloseOnContextDone nothing stops a spinning guest:
//     closing its module from another goroutine does not, and the next
//     garbage collection freezes the whole process, its stop-the-world
//     waiting forever for the guest's thread. WithCloseOnContextDone exits
//     to Go at every loop back-edge, which costs 3-13x on loop-heavy code.
//     Instead Compile instruments the module (instrument.go, in the manner
//     of wasmtime's epoch interruption): a register counter at every loop
//     header and a global one at the entry of every function that calls,
//     and every 4096 counts an exit to Go (memory.grow 0) and a test of a
//     stop flag the host sets from another goroutine. The guest then runs
//     at full speed (within a few percent), the process never freezes, and
//     a halted guest traps within microseconds: Run reports ErrTimeout.
//     Sleeps wait on the instance's halt too. A halted guest that does not
//     stop within seconds would be an instrumentation bug: Engine.Runaway
//     then asks for the process to be replaced.
//   - Memory: enforced per instance by a wazero memory allocator
//     (experimental.WithMemoryAllocator) that refuses to grow linear memory
//     past Limits.MemoryBytes. Refusals are recorded, so a guest that dies
//     after a refused memory.grow (a Go guest exits with status 2 and "out of
//     memory") is reported as ErrMemoryLimit precisely rather than guessed
//     from its exit code or its memory size. Because the limit is per
//     instance rather than per wazero.Runtime (WithMemoryLimitPages), one
//     runtime serves every limit and a module is compiled exactly once; and
//     a module that declares a large maximum memory still runs under a small
//     limit. Memory is grown on demand, never reserved up front.
//   - Module structure: before wazero decodes a module, Compile walks it
//     (precheck) and refuses, with ErrInvalidModule, any vector count or
//     length that the bytes after it cannot hold, and anything over the
//     WebAssembly JS API's implementation limits: wazero allocates from
//     those counts before reading what they count, and a fatal out of memory
//     cannot be recovered.
//   - Output: stdout is capped; the first write past the cap stops the guest.
//   - Logs: stderr is capped; the rest is dropped and a marker line is
//     appended.
package sandbox
