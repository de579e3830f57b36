//go:build wasip1

package fresh

//go:wasmexport clemmys.fresh.v1
func freshMarker() {}
