//go:build !wasip1

package sdk

import "embed"

// Source is the source code of this package and of its subpackages (test
// files aside, which the copy skips): `clemmys init go` copies it into a
// new function project, so that a function written outside the clemmys
// source tree builds without fetching the module (it is not published).
// It is compiled only for the host, never into a function.
//
//go:embed *.go fresh/*.go
var Source embed.FS
