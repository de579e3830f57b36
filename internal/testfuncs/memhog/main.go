// Command memhog allocates memory until it dies, to test memory limits.
package main

import "github.com/clemmys/clemmys/sdk"

// Hog keeps every allocation reachable.
var Hog [][]byte

func main() {
	sdk.Run(func(map[string]any) (map[string]any, error) {
		for i := 0; ; i++ {
			b := make([]byte, 1<<20)
			b[0], b[len(b)-1] = byte(i), byte(i) // touch it
			Hog = append(Hog, b)
		}
	})
}
