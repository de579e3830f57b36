// Package teelog silences github.com/google/logger, the logging library of
// the AMD and Intel attestation libraries, before any of them can set it up.
//
// go-tdx-guest's client and verify packages call logger.Init with
// os.Stdout in their init functions, and the first Init wins. The enclave
// runtime's stdout is its IPC channel to the invoker, so a library warning
// printed there would corrupt a frame. Go initialises packages in the order
// of their import paths among those whose imports are ready, so this package
// (github.com/clemmys/...) runs its init before github.com/google/go-tdx-guest/...
// as long as a package that imports both imports this one; the TEE backends
// do. Info and warning lines are discarded; the library's errors still go to
// stderr (logger always adds it), never to stdout.
package teelog

import (
	"io"

	"github.com/google/logger"
)

func init() {
	logger.Init("clemmys-tee", false, false, io.Discard)
}

// Ready is a no-op that backends call so the import is not dropped.
func Ready() {}
