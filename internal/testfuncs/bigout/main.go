// Command bigout returns a result larger than param "bytes" (default 1 MiB).
package main

import (
	"strings"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		n := 1 << 20
		if v, ok := params["bytes"].(float64); ok && v >= 0 {
			n = int(v)
		}
		return map[string]any{"data": strings.Repeat("x", n+1)}, nil
	})
}
