// Command compute does CPU-bound work without calling the host, to measure
// how fast guests run and how timeouts stop them. Param "kind" picks the
// work and "n" its size:
//
//   - "loop" (default): n iterations (default 10^7) of a tight integer loop;
//   - "sha256": n SHA-256 hashes (default 1000) of a 4 KiB buffer;
//   - "sort": sorts n pseudo-random integers (default 10^5).
//
// It returns {"x": a checksum of the work}.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		kind, _ := params["kind"].(string)
		n := -1
		if v, ok := params["n"].(float64); ok && v >= 0 {
			n = int(v)
		}
		var x uint64
		switch kind {
		case "", "loop":
			if n < 0 {
				n = 10_000_000
			}
			x = 1
			for i := 0; i < n; i++ {
				x = x*6364136223846793005 + 1442695040888963407
				x ^= x >> 29
			}
		case "sha256":
			if n < 0 {
				n = 1000
			}
			buf := make([]byte, 4096)
			for i := 0; i < n; i++ {
				sum := sha256.Sum256(buf)
				copy(buf, sum[:])
			}
			x = binary.LittleEndian.Uint64(buf)
		case "sort":
			if n < 0 {
				n = 100_000
			}
			s := make([]uint64, n)
			v := uint64(1)
			for i := range s {
				v = v*6364136223846793005 + 1442695040888963407
				s[i] = v
			}
			slices.Sort(s)
			for i, e := range s {
				x += e * uint64(i)
			}
		default:
			return nil, fmt.Errorf("unknown kind %q", kind)
		}
		return map[string]any{"x": x}, nil
	})
}
