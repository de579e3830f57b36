package invoker

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/clemmys/clemmys/internal/wire"
)

// ManifestSuffix names a runtime binary's signed release manifest: the
// invoker forwards EnclavePath+ManifestSuffix, if it exists, with each key
// release of a runtime it started from EnclavePath. The manifest is public
// and signed (wire.SignedManifest); the invoker does not interpret it.
const ManifestSuffix = ".manifest"

// readManifest reads the release manifest next to the runtime binary, read
// when a runtime starts so that it goes with the binary that runtime runs
// (an upgrade installs the new manifest, listing the old and the new
// measurements, before the new binary).
func (iv *Invoker) readManifest() []byte {
	f, err := os.Open(iv.cfg.EnclavePath + ManifestSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		iv.log.Warn("runtime release manifest unreadable", "err", err)
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, wire.MaxManifestSize+1))
	if err != nil || len(b) > wire.MaxManifestSize {
		iv.log.Warn("runtime release manifest unreadable or larger than the limit", "limit", wire.MaxManifestSize)
		return nil
	}
	return b
}
