// Package fresh makes every activation of a function run in a fresh
// instance, one that served no other activation, so that nothing a previous
// activation left in the function's memory (global variables, caches,
// goroutines) can reach it. Import it for its side effect:
//
//	import _ "github.com/clemmys/clemmys/sdk/fresh"
//
// Without it the platform reuses warm instances across activations of the
// same function version, as OpenWhisk reuses warm containers.
//
// The request is part of the code: the package makes the module export the
// function "clemmys.fresh.v1", which the enclave runtime looks for in the
// code it decrypted and checked against the function's code digest, so no
// one between the developer and the runtime can remove it. The platform
// still serves such functions quickly, from instances it started ahead of
// time and uses once.
package fresh
