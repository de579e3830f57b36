// Command spy carries a distinctive secret in its code, logs it and returns
// it with its input, so the bus-spy test can look for it everywhere the
// platform stores or transmits anything.
package main

import (
	"fmt"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

// Secret appears verbatim in the compiled module.
const Secret = "CODE-SECRET-b7e1c0de-5a1f-4e6d-9c2b-clemmys-spy"

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		fmt.Fprintf(os.Stderr, "LOG-SECRET %s %v\n", Secret, params["input"])
		return map[string]any{"code": Secret, "echo": params["input"], "out": "OUTPUT-SECRET-only-in-the-result"}, nil
	})
}
