// Command hello is the smallest clemmys function: it greets params["name"]
// (default "world") and logs one line.
//
// Build it as a reactor, the fastest calling convention (the platform calls
// the function on the goroutine that serves the activation), with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm ./examples/hello
//
// or, without -buildmode, as a command that serves the same function
// through sdk.Main.
package main

import (
	"fmt"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

func init() { sdk.Handle(hello) }

func main() { sdk.Main() }

func hello(params map[string]any) (map[string]any, error) {
	name, _ := params["name"].(string)
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(os.Stderr, "hello: greeting %s\n", name)
	return map[string]any{"greeting": "Hello " + name + "!"}, nil
}
