//go:build wasip1

package sdk

// loopMarker is exported so that the platform knows this module speaks the
// loop convention (see Run): the export is in the code, so it is bound to
// the code digest like the rest of the function.
//
//go:wasmexport clemmys.loop.v1
func loopMarker() {}
