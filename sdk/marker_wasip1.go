//go:build wasip1

package sdk

import "os"

// loopMarker is exported so that the platform knows this module speaks the
// loop convention (see Run): the export is in the code, so it is bound to
// the code digest like the rest of the function.
//
//go:wasmexport clemmys.loop.v1
func loopMarker() {}

// resultOut is the real stdout, which carries results; os.Stdout points at
// stderr while a reactor's function runs (see Run).
var resultOut = os.Stdout

// reactorEntry serves one activation of a reactor build (see Handle): the
// platform calls it with the params on stdin.
//
//go:wasmexport clemmys.reactor.v1
func reactorEntry() {
	os.Stdout = os.Stderr
	if react(os.Stdin, resultOut, os.Stderr, handler) {
		os.Exit(exitDeveloperErr)
	}
}
