// Command echo returns its params unchanged and logs param "log", if any.
// It also prints param "print", if any, with fmt.Println: the sdk must turn
// that stray stdout into a log line instead of corrupting the result.
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
		if msg, ok := params["print"].(string); ok {
			fmt.Println(msg)
		}
		return params, nil
	})
}
