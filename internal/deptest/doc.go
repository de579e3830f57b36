// Package deptest holds tests that enforce clemmys' dependency rules: the
// enclave runtime (the TCB) imports only an allowlist, services never import
// each other, and every package has a package comment.
package deptest
