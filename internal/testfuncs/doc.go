// Package testfuncs holds WebAssembly functions used by tests. Each
// subdirectory is a main package built with GOOS=wasip1 GOARCH=wasm (see
// internal/wasmbuild):
//
//   - loop: spins forever.
//   - memhog: allocates memory until it dies.
//   - echo: returns its params; writes param "log" to stderr and param
//     "print" to stdout (which the sdk turns into logs).
//   - fail: returns an application error with param "message".
//   - bigout: returns a result larger than param "bytes".
//   - loglots: writes param "bytes" bytes of logs, returns {}.
//   - sleep: sleeps param "ms" milliseconds, returns {}.
//   - probe: reports what the guest can see (args, env, fs, net, clock, rand).
//   - spy: carries a distinctive secret in its code, logs and output (the
//     bus-spy test looks for it everywhere).
//   - compute: CPU-bound work without host calls (param "kind": loop,
//     sha256, sort; "n": its size), for guest speed and timeouts.
//   - counter: counts the activations its instance served (warm reuse);
//     params make it fail, panic, exit, spin, log or write around the sdk.
//   - counterfresh: counter built with sdk/fresh: always a fresh instance.
//   - reactor: registers with sdk.Handle, built as a reactor
//     (wasmbuild.BuildReactor) or a command; counts, echoes, and misbehaves
//     on param "mode" (spin, panic, exit, error, grow, big, print).
package testfuncs
