// Command reactor is a test function for the reactor convention: built
// with -buildmode=c-shared it registers its function with sdk.Handle (its
// main never runs); built as a command, sdk.Main serves the same function.
// It counts its activations (state kept between warm activations), logs
// one line and echoes its params, and param "mode" makes it misbehave:
// "spin" loops forever, "panic" panics, "exit" exits 3, "error" returns an
// error, "grow" allocates until the memory limit, "big" returns 2 MiB,
// "print" prints its param "print" to stdout (which must become a log).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/clemmys/clemmys/sdk"
)

var n int

func init() { sdk.Handle(fn) }

func main() { sdk.Main() }

var sink [][]byte

func fn(params map[string]any) (map[string]any, error) {
	n++
	fmt.Fprintf(os.Stderr, "reactor activation %d\n", n)
	switch params["mode"] {
	case "spin":
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
	case "panic":
		panic("reactor panics")
	case "exit":
		os.Exit(3)
	case "error":
		return nil, errors.New("reactor fails")
	case "grow":
		for {
			sink = append(sink, make([]byte, 8<<20))
		}
	case "big":
		return map[string]any{"big": strings.Repeat("x", 2<<20)}, nil
	case "print":
		fmt.Println(params["print"])
	}
	return map[string]any{"n": n, "params": params}, nil
}
