// Command sleep sleeps param "ms" milliseconds (default one hour) and
// returns {}, to test that timeouts stop a guest blocked in the host.
package main

import (
	"time"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		d := time.Hour
		if v, ok := params["ms"].(float64); ok && v >= 0 {
			d = time.Duration(v) * time.Millisecond
		}
		time.Sleep(d)
		return map[string]any{}, nil
	})
}
