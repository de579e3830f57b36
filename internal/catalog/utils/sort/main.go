// Command sort is the /whisk.system/utils/sort action: it sorts params.lines
// (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Sort) }
