// Command head is the /whisk.system/utils/head action: it returns the first
// params.num lines of params.lines (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Head) }
