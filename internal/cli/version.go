package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// versionString is the version and, from the binary's build info, the
// commit it was built from ("+dirty" when the tree had changes).
func versionString() string {
	v := Version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (commit " + rev + dirty + ")"
	}
	return v
}

// printVersion prints `clemmys version`: version, commit and build time,
// Go version and platform.
func printVersion(w io.Writer) {
	fmt.Fprintln(w, "clemmys", versionString())
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				fmt.Fprintln(w, "built from a commit of", s.Value)
			}
		}
	}
	fmt.Fprintf(w, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
