// Command counter returns {"count": n} where n counts the activations its
// instance has served, to observe warm reuse: global state persists between
// the activations of a warm instance. Params make it misbehave instead:
//
//   - "fail": returns an application error (the instance stays usable);
//   - "panic": panics (the sdk ends the instance);
//   - "exit": exits with that status;
//   - "spin": loops forever;
//   - "raw": writes that string to the real stdout, around the sdk;
//   - "log": logs that string.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

// Count is the number of activations this instance served.
var Count int

// Spins keeps the spin loop from being optimized away.
var Spins uint64

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		Count++
		if msg, ok := params["log"].(string); ok {
			fmt.Fprintln(os.Stderr, msg)
		}
		if _, ok := params["fail"]; ok {
			return nil, errors.New("failed as asked")
		}
		if _, ok := params["panic"]; ok {
			panic("panicked as asked")
		}
		if code, ok := params["exit"].(float64); ok {
			os.Exit(int(code))
		}
		if _, ok := params["spin"]; ok {
			for {
				Spins++
			}
		}
		if raw, ok := params["raw"].(string); ok {
			_, _ = os.NewFile(1, "stdout").WriteString(raw)
		}
		return map[string]any{"count": Count}, nil
	})
}
