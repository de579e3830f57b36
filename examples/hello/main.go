// Command hello is the smallest clemmys function: it greets params["name"]
// (default "world") and logs one line.
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello.wasm ./examples/hello
package main

import (
	"fmt"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(hello) }

func hello(params map[string]any) (map[string]any, error) {
	name, _ := params["name"].(string)
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(os.Stderr, "hello: greeting %s\n", name)
	return map[string]any{"greeting": "Hello " + name + "!"}, nil
}
