// Command loop spins forever, to test timeouts.
package main

import "github.com/clemmys/clemmys/sdk"

// Counter is a global so the compiler cannot remove the loop.
var Counter uint64

func main() {
	sdk.Run(func(map[string]any) (map[string]any, error) {
		for {
			Counter++
		}
	})
}
