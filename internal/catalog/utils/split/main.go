// Command split is the /whisk.system/utils/split action: it splits
// params.payload by params.separator into lines (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Split) }
