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
package testfuncs
