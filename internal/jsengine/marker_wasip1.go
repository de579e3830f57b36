//go:build wasip1

package main

// loopMarker tells the sandbox that this module speaks the loop calling
// convention version 2 (activation metadata on each input line).
//
//go:wasmexport clemmys.loop.v2
func loopMarker() {}
