// Command echo returns its params unchanged and logs param "log", if any.
package main

import (
	"fmt"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		if msg, ok := params["log"].(string); ok {
			fmt.Fprintln(os.Stderr, msg)
		}
		return params, nil
	})
}
