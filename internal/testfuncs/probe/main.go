// Command probe reports what the sandbox lets a guest see: its args,
// environment, file system, network, clock and random source.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"time"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(map[string]any) (map[string]any, error) {
		res := map[string]any{
			"args":    os.Args,
			"env":     os.Environ(),
			"unix_ms": time.Now().UnixMilli(),
		}
		if _, err := os.ReadDir("/"); err != nil {
			res["fs_error"] = err.Error()
		}
		if _, err := os.Open("/etc/passwd"); err != nil {
			res["open_error"] = err.Error()
		}
		if _, err := net.Dial("tcp", "127.0.0.1:80"); err != nil {
			res["net_error"] = err.Error()
		}
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		res["rand"] = hex.EncodeToString(b)
		return res, nil
	})
}
