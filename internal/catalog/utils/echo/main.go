// Command echo is the /whisk.system/utils/echo action: it returns its
// parameters unchanged (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Echo) }
