// Command fail returns an application error with the message in param
// "message" (default "failed").
package main

import (
	"errors"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(params map[string]any) (map[string]any, error) {
		msg, _ := params["message"].(string)
		if msg == "" {
			msg = "failed"
		}
		return nil, errors.New(msg)
	})
}
