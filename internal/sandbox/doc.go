// Package sandbox runs WebAssembly functions (WASI command modules) with
// wazero's compiler engine, under memory, time, output and log limits.
//
// It is part of the enclave runtime, the trusted computing base, so it
// imports only the standard library and wazero (a test enforces this).
//
// # Model
//
// An Engine owns one wazero runtime and its in-memory compilation cache.
// Compile validates and compiles each distinct module (by SHA-256) once, even
// under concurrent calls, and keeps the native code in memory, never on disk;
// Run instantiates a fresh instance per call, so activations never share
// state. The calling convention is one-shot: params JSON on stdin,
// result JSON on stdout, logs on stderr (see package sdk).
//
// The guest gets no file system, no network, args [name], no environment, the
// real clock, and crypto/rand as its random source.
//
// # Limits and errors
//
// Every limit breach is a typed error (see the Err variables) whose message
// is safe to show to the function's owner; it never hangs or crashes the host:
//
//   - Time: RuntimeConfig.WithCloseOnContextDone makes compiled code check for
//     cancellation at loop back-edges and calls, and the guest's sleeps wait
//     on the run's context, so a deadline stops a spinning or sleeping guest.
//     The checks cost up to several times on loop-heavy code; there is no
//     other in-process way to stop a guest.
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
