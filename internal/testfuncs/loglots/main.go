// Command loglots writes param "bytes" bytes of logs to stderr (in lines of
// at most 80 bytes) and returns {}.
package main

import (
	"bytes"
	"os"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		n := 0
		if v, ok := params["bytes"].(float64); ok && v > 0 {
			n = int(v)
		}
		line := append(bytes.Repeat([]byte("l"), 79), '\n')
		for n > 0 {
			k := min(n, len(line))
			if _, err := os.Stderr.Write(line[len(line)-k:]); err != nil {
				return nil, err
			}
			n -= k
		}
		return map[string]any{}, nil
	})
}
