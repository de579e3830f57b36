// Command counterfresh is counter without the misbehaviours, with package
// sdk/fresh imported: every activation runs in a fresh instance, so it
// always returns {"count": 1}.
package main

import (
	"github.com/clemmys/clemmys/sdk"
	_ "github.com/clemmys/clemmys/sdk/fresh"
)

// Count is the number of activations this instance served.
var Count int

func main() {
	sdk.Run(func(map[string]any) (map[string]any, error) {
		Count++
		return map[string]any{"count": Count}, nil
	})
}
